//! How long planning takes, and how many candidates each search profiles.
//!
//! How to read it: the graph is a synthetic 525-operator residual network (quantize, a 3×3
//! convolution, 166 blocks of 1×1 convolution, 3×3 depthwise convolution and a residual add,
//! every seventh block 512 wide with a 1×1 projection back to 64, dequantize: 2 + 166 × 3 +
//! 24 + 1 operators), planned into 2, 4 and 8 segments with the Edge TPU cost model (USB) as
//! profiler. Criterion times one whole `plan` call per strategy:
//! `profiled` is the optimal search pruned by the cost model's own floor (default tolerance,
//! ties within one part in 10⁹), `libcoral` the re-implementation of libcoral's bisection
//! search. The target is well under a second per plan.
//!
//! Before timing, the bench prints one line per segment count with the bottleneck each search
//! reaches and what it would cost on hardware, where that count, not the time here, is what
//! planning costs: for `profiled`, the segments compiled and timed (each distinct candidate
//! once); for `libcoral`, its compile-and-benchmark rounds and the segments they compile and
//! time (every round compiles all N segments of a candidate partition, see
//! `multitpu::segment::LibcoralCost`), and how libcoral's tool would end. For 2 and 4 segments
//! the line also shows `profiled` with tolerance 0 (bit-exact), planned once and not timed by
//! criterion: on a graph of identical blocks it must profile every plan that ties with the
//! best to the last bit, which can take hundreds of candidates and seconds (8 segments are
//! left out for that reason).
//!
//! `extract_525_ops` times what turns a plan into models: building the validated graph of
//! the network once (`graph`), and cutting a plan's N segments out of it (`segments`).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::builder::{Activation, ModelBuilder, Padding, range_quantization};
use multitpu::model::{ElementType, Graph, Model};
use multitpu::segment::{LibcoralSearch, Profiled, Segmenter, UniformByOps};

/// The synthetic residual network (525 operators).
fn residual_network() -> Model<'static> {
    let build = || -> multitpu::Result<Model<'static>> {
        let mut b = ModelBuilder::new(0x500);
        let x = b.input("input", ElementType::F32, &[1, 32, 32, 3], None)?;
        let quantization = range_quantization(-1.0, 1.0, ElementType::I8)?;
        let q = b.quantize(x, ElementType::I8, quantization)?;
        let mut h = b.conv2d(q, 64, [3, 3], [1, 1], Padding::Same, Activation::Relu)?;
        for block in 0..166 {
            let width = if block % 7 == 3 { 512 } else { 64 };
            let expand = b.conv2d(h, width, [1, 1], [1, 1], Padding::Same, Activation::Relu)?;
            let mixed =
                b.depthwise_conv2d(expand, 1, [3, 3], [1, 1], Padding::Same, Activation::Relu)?;
            let project = if width == 64 {
                mixed
            } else {
                b.conv2d(mixed, 64, [1, 1], [1, 1], Padding::Same, Activation::None)?
            };
            h = b.add(h, project, Activation::None)?;
        }
        let out = b.dequantize(h)?;
        b.output(out)?;
        b.build()
    };
    match build() {
        Ok(model) => model,
        Err(e) => panic!("the bench model does not build: {e}"),
    }
}

fn planning(c: &mut Criterion) {
    let model = residual_network();
    let graph = match Graph::new(&model) {
        Ok(graph) => graph,
        Err(e) => panic!("the bench model is not a valid graph: {e}"),
    };
    let cost_model = EdgeTpuCostModel::usb_default();
    // One segment per device, every operator on a device: what libcoral searches.
    let profiled = Profiled::new(cost_model.clone())
        .with_floor(cost_model.clone())
        .with_exact_devices();
    let exact = match profiled.clone().with_tolerance(0.0) {
        Ok(segmenter) => segmenter,
        Err(e) => panic!("{e}"),
    };
    // The budget planner: devices used, replicas and CPU segments chosen too.
    let budget = Profiled::cost_model(cost_model.clone());
    let libcoral = LibcoralSearch::new(cost_model);
    let strategies: [(&str, &dyn Segmenter); 2] =
        [("profiled", &profiled), ("libcoral", &libcoral)];

    println!(
        "planning a {}-operator graph with the USB cost model",
        graph.op_count()
    );
    for segments in [2, 4, 8] {
        let mut line = format!("N={segments}:");
        // Bit-exact planning into 8 segments takes tens of seconds here: shown up to 4.
        let mut shown: Vec<(&str, &dyn Segmenter)> =
            vec![("profiled", &profiled), ("profiled-budget", &budget)];
        if segments <= 4 {
            shown.push(("profiled-exact", &exact));
        }
        for (name, strategy) in shown {
            let started = std::time::Instant::now();
            match strategy.plan(&graph, segments) {
                Ok(plan) => line.push_str(&format!(
                    "  {name}: bottleneck {:.3} ms, {} segments compiled and timed, {:.3} s;",
                    plan.bottleneck_s().unwrap_or(f64::NAN) * 1e3,
                    plan.candidates_profiled,
                    started.elapsed().as_secs_f64()
                )),
                Err(e) => panic!("{name} failed for {segments} segments: {e}"),
            }
        }
        let started = std::time::Instant::now();
        match libcoral.plan_with_cost(&graph, segments) {
            Ok((plan, cost)) => line.push_str(&format!(
                "  libcoral: bottleneck {:.3} ms, {} rounds, {} segments compiled and timed \
                 ({:?}), {:.3} s;",
                plan.bottleneck_s().unwrap_or(f64::NAN) * 1e3,
                cost.rounds,
                cost.segments_compiled,
                cost.outcome,
                started.elapsed().as_secs_f64()
            )),
            Err(e) => panic!("libcoral failed for {segments} segments: {e}"),
        }
        println!("{line}");
    }

    let mut group = c.benchmark_group("plan_525_ops");
    group.sample_size(10);
    for segments in [2, 4, 8] {
        for (name, strategy) in strategies {
            group.bench_with_input(BenchmarkId::new(name, segments), &segments, |bench, &n| {
                bench.iter(|| strategy.plan(&graph, n))
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("extract_525_ops");
    group.sample_size(10);
    group.bench_function("graph", |bench| bench.iter(|| Graph::new(&model)));
    for segments in [2, 4, 8] {
        let plan = match UniformByOps.plan(&graph, segments) {
            Ok(plan) => plan,
            Err(e) => panic!("uniform failed for {segments} segments: {e}"),
        };
        group.bench_with_input(
            BenchmarkId::new("segments", segments),
            &plan,
            |bench, plan| bench.iter(|| plan.extract(&graph)),
        );
    }
    group.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);
