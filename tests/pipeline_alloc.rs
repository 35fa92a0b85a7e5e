//! No heap allocation per item in steady state, measured with a counting global allocator.
//!
//! Runs without the test harness (`harness = false`), so nothing but the pipeline and this
//! thread allocates while counting; counts cover every thread of the process.

mod stages;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use multitpu::pipeline::{Pipeline, PipelineBuilder};
use stages::{FnStage, adder};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZE: usize = 1024;
const WARM_UP: u64 = 200;
const MEASURED: u64 = 1000;

/// Pushes items keeping up to `in_flight` of them in the pipeline, popping and checking the
/// rest; returns the allocations counted over the last `MEASURED` items.
fn allocations_per_run(pipeline: &Pipeline, in_flight: u64, add: u8) -> u64 {
    let input = vec![7u8; SIZE];
    let mut next_out = 0u64;
    let pop_one = |next_out: &mut u64| {
        let output = pipeline.pop().unwrap().unwrap();
        assert_eq!(output.seq(), *next_out);
        assert_eq!(output.tensor(0).unwrap()[0], 7u8.wrapping_add(add));
        *next_out += 1;
    };
    let mut before = 0;
    for seq in 0..WARM_UP + MEASURED {
        if seq == WARM_UP {
            before = ALLOCATIONS.load(Ordering::SeqCst);
        }
        assert_eq!(pipeline.push(&[("x", &input)]).unwrap(), seq);
        if seq + 1 >= in_flight {
            pop_one(&mut next_out);
        }
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    pipeline.close().unwrap();
    while next_out < WARM_UP + MEASURED {
        pop_one(&mut next_out);
    }
    assert!(pipeline.pop().unwrap().is_none());
    after - before
}

fn check(what: &str, pipeline: Pipeline, in_flight: u64, add: u8) {
    let count = allocations_per_run(&pipeline, in_flight, add);
    println!("{what}: {count} allocations over {MEASURED} items");
    assert_eq!(count, 0, "{what}: the pipeline allocated in steady state");
}

fn main() {
    // The counter sees allocations: a failing check would mean nothing otherwise.
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    drop(std::hint::black_box(vec![0u8; 10]));
    assert!(ALLOCATIONS.load(Ordering::SeqCst) > before);

    let chain = PipelineBuilder::new()
        .stage(adder("0", "x", "a", SIZE, 1))
        .stage(adder("1", "a", "b", SIZE, 1))
        .stage(adder("2", "b", "y", SIZE, 1))
        .output_capacity(Some(4))
        .build()
        .unwrap();
    check("3 stages, lockstep", chain, 1, 3);

    let chain = PipelineBuilder::new()
        .stage(adder("0", "x", "a", SIZE, 1))
        .stage(adder("1", "a", "b", SIZE, 1))
        .stage(adder("2", "b", "y", SIZE, 1))
        .input_capacity(2)
        .output_capacity(Some(4))
        .build()
        .unwrap();
    check("3 stages, 6 in flight", chain, 6, 3);

    let unbounded_output = PipelineBuilder::new()
        .stage(adder("0", "x", "a", SIZE, 1))
        .stage(adder("1", "a", "y", SIZE, 1))
        .build()
        .unwrap();
    check("default (unbounded) output queue", unbounded_output, 8, 2);

    // Replicas, a skip connection and a stage with several inputs and outputs.
    let wide = FnStage::boxed(
        "wide",
        &[("a", SIZE), ("x", SIZE)],
        &[("y", SIZE), ("side", 4)],
        Box::new(|_, ins, outs| {
            outs[0].copy_from_slice(ins[0]);
            outs[1].copy_from_slice(&ins[1][..4]);
            Ok(())
        }),
    );
    let replicated = PipelineBuilder::new()
        .replicated_stage(vec![
            adder("0a", "x", "a", SIZE, 2),
            adder("0b", "x", "a", SIZE, 2),
        ])
        .stage(wide)
        .outputs(["y", "side"])
        .output_capacity(Some(2))
        .build()
        .unwrap();
    check("replicated stage and skip connection", replicated, 4, 2);
    println!("ok");
}
