//! The pipeline's contract, with trivial in-test stages.

mod stages;

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use multitpu::Error;
use multitpu::backend::Stage;
use multitpu::model::ElementType;
use multitpu::pipeline::{Pipeline, PipelineBuilder, Popped};
use multitpu::tensor::TensorSpec;
use stages::{Fault, FnStage, adder, faulty, payload, seq_of};
use std::sync::mpsc::{Receiver, Sender};

const SIZE: usize = 16;

/// Runs `f` on another thread and fails the test if it does not return within a generous
/// bound: the property checked is "does not hang", not speed.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn chain(stages: usize) -> PipelineBuilder {
    let mut builder = PipelineBuilder::new();
    for i in 0..stages {
        let input = if i == 0 {
            "x".to_string()
        } else {
            format!("t{i}")
        };
        let output = if i + 1 == stages {
            "y".to_string()
        } else {
            format!("t{}", i + 1)
        };
        builder = builder.stage(adder(&format!("{i}"), &input, &output, SIZE, 1));
    }
    builder
}

#[test]
fn push_valid() {
    let pipeline = chain(3).build().unwrap();
    assert_eq!(pipeline.stage_count(), 3);
    assert_eq!(pipeline.inputs()[0].name, "x");
    assert_eq!(pipeline.outputs()[0].name, "y");
    for seq in 0..20u64 {
        let data = payload(seq, SIZE - 8);
        assert_eq!(pipeline.push(&[("x", &data)]).unwrap(), seq);
    }
    pipeline.close().unwrap();
    let mut expected = 0;
    for output in &pipeline {
        let output = output.unwrap();
        assert_eq!(output.seq(), expected);
        let y = output.get("y").unwrap();
        assert_eq!(seq_of(y, 3), expected);
        assert_eq!(y[8..], vec![(expected as u8).wrapping_add(3); SIZE - 8][..]);
        assert_eq!(output.tensor(0), Some(y));
        assert_eq!(output.len(), 1);
        expected += 1;
    }
    assert_eq!(expected, 20);
    assert!(pipeline.pop().unwrap().is_none());
    let stats = pipeline.stats();
    assert_eq!((stats.pushed, stats.popped), (20, 20));
    for stage in &stats.stages {
        assert_eq!(stage.invokes, 20);
        assert!(stage.latency_p50 <= stage.latency_p99);
        assert_eq!(stage.instances, [format!("test stage {}", stage.index)]);
    }
}

#[test]
fn push_rejects_bad_inputs_and_keeps_running() {
    let two = FnStage::boxed(
        "two",
        &[("a", 4), ("b", 2)],
        &[("y", 6)],
        Box::new(|_, ins, outs| {
            outs[0][..4].copy_from_slice(ins[0]);
            outs[0][4..].copy_from_slice(ins[1]);
            Ok(())
        }),
    );
    let pipeline = PipelineBuilder::new().stage(two).build().unwrap();
    let (a, b) = ([1u8, 2, 3, 4], [5u8, 6]);
    assert!(matches!(
        pipeline.push(&[("a", &a), ("c", &b)]),
        Err(Error::UnknownTensor { name, .. }) if name == "c"
    ));
    assert!(matches!(
        pipeline.push(&[("a", &a)]),
        Err(Error::MissingTensor { name, .. }) if name == "b"
    ));
    assert!(matches!(
        pipeline.push(&[("a", &a), ("a", &a), ("b", &b)]),
        Err(Error::DuplicateTensor { name, .. }) if name == "a"
    ));
    assert!(matches!(
        pipeline.push(&[("a", &a), ("b", &a)]),
        Err(Error::TensorSize {
            expected: 2,
            actual: 4,
            ..
        })
    ));
    assert!(matches!(
        pipeline.try_push(&[("b", &b)]),
        Err(Error::MissingTensor { .. })
    ));
    // Order of the named buffers does not matter; nothing was pushed before.
    assert_eq!(pipeline.push(&[("b", &b), ("a", &a)]).unwrap(), 0);
    let out = pipeline.pop().unwrap().unwrap();
    assert_eq!(out.get("y").unwrap(), [1, 2, 3, 4, 5, 6]);
    assert!(out.get("a").is_none());
}

#[test]
fn push_after_close_and_close_twice() {
    let pipeline = chain(2).build().unwrap();
    let data = payload(0, SIZE - 8);
    pipeline.push(&[("x", &data)]).unwrap();
    pipeline.close().unwrap();
    pipeline.close().unwrap();
    assert!(matches!(
        pipeline.push(&[("x", &data)]),
        Err(Error::PipelineClosed)
    ));
    assert!(matches!(
        pipeline.try_push(&[("x", &data)]),
        Err(Error::PipelineClosed)
    ));
    // What was pushed before close still comes out.
    assert_eq!(pipeline.pop().unwrap().unwrap().seq(), 0);
    assert!(pipeline.pop().unwrap().is_none());
    assert!(pipeline.pop().unwrap().is_none());
    pipeline.close().unwrap();
    assert!(matches!(
        pipeline.push(&[("x", &data)]),
        Err(Error::PipelineClosed)
    ));
}

/// A stage that reports each run on `started` and then waits for a token on `gate`.
/// A stage from `x` to `y` that reports each run it starts and then waits for the gate.
fn gated(started: Sender<u64>, gate: Receiver<()>) -> Box<dyn multitpu::backend::Stage> {
    gated_named("x", "y", started, gate)
}

#[test]
fn queue_capacity_respected() {
    let (started_tx, started) = mpsc::channel();
    let (gate, gate_rx) = mpsc::channel();
    let pipeline = PipelineBuilder::new()
        .stage(gated(started_tx, gate_rx))
        .input_capacity(3)
        .output_capacity(Some(2))
        .build()
        .unwrap();
    let data = payload(0, SIZE - 8);
    let x = [("x", &data[..])];
    pipeline.push(&x).unwrap();
    assert_eq!(started.recv().unwrap(), 0);
    // The stage holds item 0; the input queue takes exactly 3 more.
    for seq in 1..=3 {
        assert_eq!(pipeline.try_push(&x).unwrap(), Some(seq));
    }
    assert_eq!(pipeline.try_push(&x).unwrap(), None);
    assert_eq!(pipeline.try_push(&x).unwrap(), None);
    let stats = pipeline.stats();
    assert_eq!(stats.stages[0].queue_depth, 3);
    assert_eq!(stats.pushed, 4);
    // Let items 0 and 1 through: they fill the output queue (capacity 2).
    gate.send(()).unwrap();
    gate.send(()).unwrap();
    assert_eq!(started.recv().unwrap(), 1);
    assert_eq!(started.recv().unwrap(), 2);
    // Item 2 is in the stage, item 3 queued: room for two more in the input queue.
    assert_eq!(pipeline.try_push(&x).unwrap(), Some(4));
    assert_eq!(pipeline.try_push(&x).unwrap(), Some(5));
    assert_eq!(pipeline.try_push(&x).unwrap(), None);
    // Item 2 finishes but the output queue is full, so the stage blocks and takes nothing.
    gate.send(()).unwrap();
    assert_eq!(pipeline.pop().unwrap().unwrap().seq(), 0);
    assert_eq!(started.recv().unwrap(), 3);
    assert_eq!(pipeline.stats().stages[0].queue_depth, 2);
    drop(gate);
    pipeline.close().unwrap();
    let seqs: Vec<u64> = (&pipeline).into_iter().map(|o| o.unwrap().seq()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

/// Generous: what is checked is that the item comes, not how soon.
const LONG: Duration = Duration::from_secs(60);

#[test]
fn try_pop_and_pop_timeout_return_what_pop_would() {
    within("try_pop and pop_timeout", || {
        let (started_tx, started) = mpsc::channel();
        let (gate, gate_rx) = mpsc::channel();
        let pipeline = PipelineBuilder::new()
            .stage(gated(started_tx, gate_rx))
            .build()
            .unwrap();
        // Nothing pushed: nothing to wait for, and nothing ends.
        assert!(matches!(pipeline.try_pop().unwrap(), Popped::Pending));
        let data = payload(0, SIZE - 8);
        for seq in 0..2 {
            assert_eq!(pipeline.push(&[("x", &data)]).unwrap(), seq);
        }
        // Item 0 is held in the stage: not finished, and not taken by looking.
        assert_eq!(started.recv().unwrap(), 0);
        assert!(matches!(pipeline.try_pop().unwrap(), Popped::Pending));
        assert!(matches!(
            pipeline.pop_timeout(Duration::ZERO).unwrap(),
            Popped::Pending
        ));
        drop(gate);
        for seq in 0..2 {
            match pipeline.pop_timeout(LONG).unwrap() {
                Popped::Item(output) => assert_eq!(output.seq(), seq),
                other => panic!("item {seq}: {other:?}"),
            }
        }
        // Nothing in flight, still open: pop would wait; closed, it returns Ok(None).
        assert!(matches!(pipeline.try_pop().unwrap(), Popped::Pending));
        pipeline.close().unwrap();
        assert!(matches!(
            pipeline.pop_timeout(LONG).unwrap(),
            Popped::Finished
        ));
        assert!(matches!(pipeline.try_pop().unwrap(), Popped::Finished));
        assert!(pipeline.pop().unwrap().is_none());
        let stats = pipeline.stats();
        assert_eq!((stats.pushed, stats.popped), (2, 2));
    });
}

#[test]
fn try_pop_and_pop_timeout_account_for_every_item_after_a_failure() {
    let (pushed, came_out, error) = within("try_pop after a failure", || {
        let pipeline = PipelineBuilder::new()
            .stage(adder("first", "x", "y", SIZE, 0))
            .stage(faulty("faulty", "y", "z", SIZE, 7, Fault::Error))
            .stage(adder("last", "z", "out", SIZE, 0))
            .input_capacity(20)
            .build()
            .unwrap();
        for seq in 0..20 {
            // A push may already see the failure: the items it did not take are not counted.
            if pipeline.push(&[("x", &payload(seq, SIZE - 8))]).is_err() {
                break;
            }
        }
        let pushed = pipeline.stats().pushed;
        let mut came_out = Vec::new();
        let error = loop {
            let popped = if came_out.len() % 2 == 0 {
                pipeline.try_pop()
            } else {
                pipeline.pop_timeout(LONG)
            };
            match popped {
                Ok(Popped::Item(output)) => came_out.push(output.seq()),
                Ok(Popped::Pending) => std::thread::yield_now(),
                Ok(Popped::Finished) => panic!("pipeline ended without reporting the failure"),
                Err(error) => break error,
            }
        };
        for again in [pipeline.try_pop().err(), pipeline.pop_timeout(LONG).err()] {
            assert_eq!(again.map(|e| e.to_string()), Some(error.to_string()));
        }
        assert_eq!(pipeline.stats().popped, came_out.len() as u64);
        (pushed, came_out, error)
    });
    let Error::StageFailed { item, lost, .. } = &error else {
        panic!("unexpected error {error}");
    };
    assert_eq!(*item, Some(7));
    assert_eq!(came_out, (0..7).collect::<Vec<_>>());
    check_accounting(pushed, &came_out, lost);
}

/// Pushes `n` items through adder → faulty → adder; stage 0 holds back until all are pushed,
/// so every push succeeds. Returns the popped sequence numbers and the error.
fn run_to_failure(n: u64, at: u64, fault: Fault) -> (Vec<u64>, Error) {
    let (started_tx, _started) = mpsc::channel();
    let (gate, gate_rx) = mpsc::channel::<()>();
    let pipeline = PipelineBuilder::new()
        .stage(gated(started_tx, gate_rx))
        .stage(faulty("faulty", "y", "z", SIZE, at, fault))
        .stage(adder("last", "z", "out", SIZE, 0))
        .input_capacity(n as usize)
        .build()
        .unwrap();
    for seq in 0..n {
        let data = payload(seq, SIZE - 8);
        assert_eq!(pipeline.push(&[("x", &data)]).unwrap(), seq);
    }
    drop(gate);
    let mut came_out = Vec::new();
    let error = loop {
        match pipeline.pop() {
            Ok(Some(output)) => {
                assert_eq!(seq_of(output.get("out").unwrap(), 0), output.seq());
                came_out.push(output.seq());
            }
            Ok(None) => panic!("pipeline ended without reporting the failure"),
            Err(error) => break error,
        }
    };
    // Every later call reports the same failure, and nothing hangs.
    let data = payload(0, SIZE - 8);
    for again in [
        pipeline.pop().err(),
        pipeline.push(&[("x", &data)]).err(),
        pipeline.try_push(&[("x", &data)]).err(),
        pipeline.close().err(),
    ] {
        assert_eq!(again.map(|e| e.to_string()), Some(error.to_string()));
    }
    (came_out, error)
}

fn check_accounting(n: u64, came_out: &[u64], lost: &[u64]) {
    let mut all: Vec<u64> = came_out.iter().chain(lost).copied().collect();
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an item is reported twice");
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    assert!(came_out.windows(2).all(|w| w[0] < w[1]), "out of order");
}

#[test]
fn stage_error_stops_cleanly_and_accounts_for_every_item() {
    let (came_out, error) = within("failing pipeline", || run_to_failure(100, 50, Fault::Error));
    let Error::StageFailed {
        stage,
        stage_desc,
        message,
        panicked,
        lost,
        ..
    } = &error
    else {
        panic!("unexpected error {error}");
    };
    assert_eq!(*stage, 1);
    assert_eq!(stage_desc, "test stage faulty");
    assert!(message.contains("injected failure at run 50"), "{message}");
    assert!(!panicked);
    // Every item before the failed one ran through and came out; the rest are lost.
    assert_eq!(came_out, (0..50).collect::<Vec<_>>());
    assert_eq!(*lost, (50..100).collect::<Vec<_>>());
    check_accounting(100, &came_out, lost);
    assert!(
        error
            .to_string()
            .contains("stage 1 (test stage faulty) failed on item 50")
    );
}

#[test]
fn stage_panic_stops_cleanly_and_accounts_for_every_item() {
    let (came_out, error) = within("panicking pipeline", || {
        run_to_failure(100, 50, Fault::Panic)
    });
    let Error::StageFailed {
        stage,
        message,
        panicked,
        lost,
        ..
    } = &error
    else {
        panic!("unexpected error {error}");
    };
    assert_eq!(*stage, 1);
    assert!(*panicked);
    assert!(message.contains("injected panic at run 50"), "{message}");
    assert_eq!(came_out, (0..50).collect::<Vec<_>>());
    check_accounting(100, &came_out, lost);
}

#[test]
fn panic_payload_that_panics_on_drop_still_accounts_for_every_item() {
    let (came_out, error) = within("panicking payload", || {
        run_to_failure(100, 10, Fault::PanicPayloadPanicsOnDrop)
    });
    let Error::StageFailed {
        stage,
        stage_desc,
        message,
        panicked,
        lost,
        ..
    } = &error
    else {
        panic!("unexpected error {error}");
    };
    assert_eq!(*stage, 1);
    assert_eq!(stage_desc, "test stage faulty");
    assert!(*panicked);
    assert_eq!(message, "panic with a non-string payload");
    assert_eq!(
        *lost,
        (10..100).collect::<Vec<_>>(),
        "the item in hand and later"
    );
    check_accounting(100, &came_out, lost);
}

#[test]
fn failure_with_concurrent_producer_and_bounded_queues() {
    for fault in [Fault::Error, Fault::Panic] {
        let (accepted, came_out, lost) = within("concurrent failure", move || {
            let pipeline = PipelineBuilder::new()
                .stage(adder("first", "x", "y", SIZE, 0))
                .stage(faulty("faulty", "y", "z", SIZE, 50, fault))
                .stage(adder("last", "z", "out", SIZE, 0))
                .output_capacity(Some(1))
                .build()
                .unwrap();
            std::thread::scope(|scope| {
                let producer = scope.spawn(|| {
                    let mut accepted = Vec::new();
                    for seq in 0..100 {
                        let data = payload(seq, SIZE - 8);
                        match pipeline.push(&[("x", &data)]) {
                            Ok(s) => accepted.push(s),
                            Err(Error::StageFailed { .. }) => break,
                            Err(other) => panic!("unexpected push error {other}"),
                        }
                    }
                    accepted
                });
                let mut came_out = Vec::new();
                let lost = loop {
                    match pipeline.pop() {
                        Ok(Some(output)) => came_out.push(output.seq()),
                        Ok(None) => panic!("ended without the failure"),
                        Err(Error::StageFailed { lost, .. }) => break lost,
                        Err(other) => panic!("unexpected pop error {other}"),
                    }
                };
                (producer.join().unwrap(), came_out, lost)
            })
        });
        assert!(accepted.len() > 50);
        assert_eq!(accepted, (0..accepted.len() as u64).collect::<Vec<_>>());
        assert_eq!(came_out, (0..50).collect::<Vec<_>>());
        check_accounting(accepted.len() as u64, &came_out, &lost);
    }
}

#[test]
fn finished_items_come_out_after_push_reports_the_failure() {
    within("push after a failure", || {
        // Bounded output and nobody popping: the items before the failed one still finish.
        let pipeline = PipelineBuilder::new()
            .stage(adder("first", "x", "y", SIZE, 1))
            .stage(faulty("faulty", "y", "z", SIZE, 3, Fault::Error))
            .stage(adder("last", "z", "out", SIZE, 1))
            .output_capacity(Some(1))
            .build()
            .unwrap();
        let mut pushed = 0;
        let error = loop {
            match pipeline.push(&[("x", &payload(pushed, SIZE - 8))]) {
                Ok(seq) => pushed = seq + 1,
                Err(error) => break error,
            }
        };
        let Error::StageFailed { item, lost, .. } = &error else {
            panic!("unexpected error {error}");
        };
        assert_eq!(*item, Some(3));
        assert_eq!(*lost, (3..pushed).collect::<Vec<_>>());
        for seq in 0..3 {
            let output = pipeline.pop().unwrap().expect("a finished item");
            assert_eq!(output.seq(), seq);
            assert_eq!(seq_of(output.get("out").unwrap(), 2), seq);
        }
        let again = pipeline.pop().unwrap_err();
        assert_eq!(again.to_string(), error.to_string());
        assert_eq!(pipeline.stats().popped + lost.len() as u64, pushed);
    });
}

#[test]
fn a_stage_error_keeps_its_cause() {
    let sensor = FnStage::boxed(
        "sensor",
        &[("x", SIZE)],
        &[("y", SIZE)],
        Box::new(|run, ins, outs| {
            if run == 2 {
                let cause = std::io::Error::other("unplugged");
                return Err(Error::stage_with_source("cannot read the sensor", cause));
            }
            outs[0].copy_from_slice(ins[0]);
            Ok(())
        }),
    );
    let pipeline = PipelineBuilder::new().stage(sensor).build().unwrap();
    for seq in 0..3 {
        pipeline.push(&[("x", &payload(seq, SIZE - 8))]).unwrap();
    }
    assert_eq!(pipeline.pop().unwrap().unwrap().seq(), 0);
    assert_eq!(pipeline.pop().unwrap().unwrap().seq(), 1);
    let error = pipeline.pop().unwrap_err();
    let Error::StageFailed {
        item, cause, lost, ..
    } = &error
    else {
        panic!("unexpected error {error}");
    };
    assert_eq!((*item, &lost[..]), (Some(2), &[2][..]));
    let cause = cause.as_deref().expect("the stage's error");
    assert!(
        matches!(cause, Error::Stage { message, .. } if message == "cannot read the sensor"),
        "{cause:?}"
    );
    let source = std::error::Error::source(cause).expect("the io error");
    assert_eq!(source.to_string(), "unplugged");
    assert!(
        error
            .to_string()
            .contains("failed on item 2: cannot read the sensor")
    );
}

#[test]
fn dropping_a_full_pipeline_returns_promptly() {
    within("drop", || {
        let (started_tx, started) = mpsc::channel();
        let (gate, gate_rx) = mpsc::channel::<()>();
        // The last stage holds item 0 until the gate closes; everything behind it fills up.
        let pipeline = PipelineBuilder::new()
            .stage(adder("0", "x", "t", SIZE, 0))
            .stage(adder("1", "t", "u", SIZE, 0))
            .stage(gated_named("u", "y", started_tx, gate_rx))
            .output_capacity(Some(1))
            .build()
            .unwrap();
        let data = payload(0, SIZE - 8);
        pipeline.push(&[("x", &data)]).unwrap();
        assert_eq!(started.recv().unwrap(), 0);
        // Fill the queues: push until the pipeline pushes back and stage 0 sits on a full
        // queue (input queue, stage 0 and two queues of capacity 1 behind it).
        let mut accepted = 1;
        while accepted < 5 {
            if pipeline.try_push(&[("x", &data)]).unwrap().is_some() {
                accepted += 1;
            } else {
                std::thread::yield_now();
            }
        }
        // Let the run in progress end, then drop mid-stream with four items in flight.
        drop(gate);
        drop(pipeline);
    });
}

fn gated_named(
    input: &str,
    output: &str,
    started: Sender<u64>,
    gate: Receiver<()>,
) -> Box<dyn multitpu::backend::Stage> {
    FnStage::boxed(
        "gated",
        &[(input, SIZE)],
        &[(output, SIZE)],
        Box::new(move |run, ins, outs| {
            let _ = started.send(run);
            // A closed gate lets everything through.
            let _ = gate.recv();
            outs[0].copy_from_slice(ins[0]);
            Ok(())
        }),
    )
}

#[test]
fn dropping_with_a_full_output_queue_returns_promptly() {
    within("drop", || {
        let pipeline: Pipeline = chain(3).output_capacity(Some(1)).build().unwrap();
        let data = payload(0, SIZE - 8);
        // Fill every queue: push until the pipeline pushes back, without popping.
        let mut accepted = 0;
        while accepted < 10_000 {
            match pipeline.try_push(&[("x", &data)]).unwrap() {
                Some(_) => accepted += 1,
                None if pipeline.stats().output_queue_depth == 1 => break,
                None => std::thread::yield_now(),
            }
        }
        assert!(accepted < 10_000, "the pipeline never filled up");
        drop(pipeline);
    });
}

#[test]
fn skip_connection() {
    // Stage 2 reads a pipeline input (x) and a stage-0 output (a), skipping stage 1.
    let combine = FnStage::boxed(
        "combine",
        &[("b", SIZE), ("x", SIZE), ("a", SIZE)],
        &[("y", SIZE)],
        Box::new(|_, ins, outs| {
            for (k, o) in outs[0].iter_mut().enumerate() {
                *o = ins[0][k] ^ ins[1][k] ^ ins[2][k];
            }
            Ok(())
        }),
    );
    let pipeline = PipelineBuilder::new()
        .stage(adder("0", "x", "a", SIZE, 1))
        .stage(adder("1", "a", "b", SIZE, 2))
        .stage(combine)
        .build()
        .unwrap();
    assert_eq!(pipeline.inputs().len(), 1);
    let names: Vec<&str> = pipeline.outputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["y"]);
    for seq in 0..10u64 {
        let x = payload(seq * 37, SIZE - 8);
        pipeline.push(&[("x", &x)]).unwrap();
        let out = pipeline.pop().unwrap().unwrap();
        let expected: Vec<u8> = x
            .iter()
            .map(|&v| v.wrapping_add(1) ^ v.wrapping_add(3) ^ v)
            .collect();
        assert_eq!(out.get("y").unwrap(), &expected[..]);
    }
}

#[test]
fn unconsumed_stage_outputs_are_pipeline_outputs() {
    let split = FnStage::boxed(
        "split",
        &[("x", SIZE)],
        &[("side", 1), ("a", SIZE)],
        Box::new(|_, ins, outs| {
            outs[0][0] = ins[0][0];
            outs[1].copy_from_slice(ins[0]);
            Ok(())
        }),
    );
    let pipeline = PipelineBuilder::new()
        .stage(split)
        .stage(adder("1", "a", "y", SIZE, 5))
        .build()
        .unwrap();
    let names: Vec<&str> = pipeline.outputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["side", "y"]);
    let x = payload(9, SIZE - 8);
    pipeline.push(&[("x", &x)]).unwrap();
    let out = pipeline.pop().unwrap().unwrap();
    assert_eq!(out.get("side").unwrap(), [9]);
    let all: Vec<(&str, usize)> = out
        .iter()
        .map(|(s, d)| (s.name.as_str(), d.len()))
        .collect();
    assert_eq!(all, [("side", 1), ("y", SIZE)]);
    drop(out);
    // Requested outputs, in the requested order.
    let pipeline = PipelineBuilder::new()
        .stage(adder("0", "x", "a", SIZE, 1))
        .stage(adder("1", "a", "y", SIZE, 1))
        .outputs(["y", "a"])
        .build()
        .unwrap();
    pipeline.push(&[("x", &x)]).unwrap();
    let out = pipeline.pop().unwrap().unwrap();
    assert_eq!(seq_of(out.tensor(0).unwrap(), 2), 9);
    assert_eq!(seq_of(out.tensor(1).unwrap(), 1), 9);
}

#[test]
fn replicated_stage_keeps_order() {
    // Three instances whose run time depends on the item, so they finish out of order.
    let instances = (0..3)
        .map(|i| {
            FnStage::boxed(
                &format!("replica {i}"),
                &[("a", SIZE)],
                &[("b", SIZE)],
                Box::new(move |run, ins, outs| {
                    let delay = (run * 7 + i) % 4;
                    std::thread::sleep(Duration::from_micros(200 * delay));
                    outs[0].copy_from_slice(ins[0]);
                    Ok(())
                }),
            )
        })
        .collect();
    let pipeline = PipelineBuilder::new()
        .stage(adder("0", "x", "a", SIZE, 1))
        .replicated_stage(instances)
        .replicated_stage(vec![
            adder("2a", "b", "y", SIZE, 1),
            adder("2b", "b", "y", SIZE, 1),
        ])
        .build()
        .unwrap();
    let n = 90u64;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for seq in 0..n {
                pipeline.push(&[("x", &payload(seq, SIZE - 8))]).unwrap();
            }
            pipeline.close().unwrap();
        });
        let mut expected = 0;
        for output in &pipeline {
            let output = output.unwrap();
            assert_eq!(output.seq(), expected);
            assert_eq!(seq_of(output.get("y").unwrap(), 2), expected);
            expected += 1;
        }
        assert_eq!(expected, n);
    });
    let stats = pipeline.stats();
    assert_eq!(stats.stages[1].invokes, n);
    assert_eq!(stats.stages[1].instances.len(), 3);
    assert_eq!(stats.stages[2].invokes, n);
}

#[test]
fn build_rejects_bad_configurations() {
    let mismatched = PipelineBuilder::new()
        .replicated_stage(vec![
            adder("a", "x", "y", SIZE, 0),
            adder("b", "x", "y", SIZE + 1, 0),
        ])
        .build();
    assert!(matches!(mismatched, Err(Error::Invalid { .. })));
    assert!(matches!(
        PipelineBuilder::new().build(),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        PipelineBuilder::new().replicated_stage(Vec::new()).build(),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        chain(1).queue_capacity(0).build(),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        chain(1).output_capacity(Some(0)).build(),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        chain(2).outputs(["nope"]).build(),
        Err(Error::UnknownTensor { .. })
    ));
}

/// Segment `i` of a three-segment chain x → t1 → t2 → y.
fn segment(i: usize) -> Box<dyn Stage> {
    let names = ["x", "t1", "t2", "y"];
    adder(&format!("segment {i}"), names[i], names[i + 1], SIZE, 1)
}

#[test]
fn stages_out_of_order_are_refused_when_built() {
    // 0 then 2: segment 2 reads t2, which only the missing segment 1 writes.
    let error = PipelineBuilder::new()
        .stage(segment(0))
        .stage(segment(2))
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, Error::NoProducer { stage: 1, tensor, written_by: None, .. } if tensor == "t2"),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "pipeline stage 1 (test stage segment 2) reads `t2`, which neither a pipeline input \
         (`x`) nor an earlier stage provides"
    );
    // 2 then 0: the pipeline input is segment 2's, and segment 0 then reads x from nowhere;
    // with the input named, segment 2's t2 is the one from nowhere.
    let two_then_zero = || PipelineBuilder::new().stage(segment(2)).stage(segment(0));
    let error = two_then_zero().build().unwrap_err();
    assert!(
        matches!(&error, Error::NoProducer { stage: 1, tensor, .. } if tensor == "x"),
        "{error}"
    );
    let error = two_then_zero().inputs(["x"]).build().unwrap_err();
    assert!(
        matches!(&error, Error::NoProducer { stage: 0, tensor, .. } if tensor == "t2"),
        "{error}"
    );
    // 1 then 0, inputs named: the message points at the later writer.
    let error = PipelineBuilder::new()
        .stage(segment(1))
        .stage(segment(0))
        .inputs(["x"])
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, Error::NoProducer { stage: 0, tensor, written_by: Some(1), .. } if tensor == "t1"),
        "{error}"
    );
    assert!(error.to_string().contains("stage 1 writes it"), "{error}");
}

#[test]
fn a_tensor_without_producer_is_refused_when_built() {
    let with_bias = FnStage::boxed(
        "with bias",
        &[("t1", SIZE), ("bias", SIZE)],
        &[("y", SIZE)],
        Box::new(|_, _, _| Ok(())),
    );
    let error = PipelineBuilder::new()
        .stage(segment(0))
        .stage(with_bias)
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, Error::NoProducer { stage: 1, tensor, stage_desc, .. }
            if tensor == "bias" && stage_desc == "test stage with bias"),
        "{error}"
    );
}

#[test]
fn a_wrong_tensor_type_or_size_is_refused_when_built() {
    let reads = |spec: TensorSpec| -> Box<dyn Stage> {
        Box::new(FnStage {
            name: "reader".into(),
            inputs: vec![spec],
            outputs: vec![TensorSpec::bytes("y", 1)],
            runs: 0,
            body: Box::new(|_, _, _| Ok(())),
        })
    };
    let as_floats = TensorSpec::new("t1", ElementType::F32, vec![SIZE / 4], SIZE);
    let too_short = TensorSpec::bytes("t1", SIZE / 2);
    for (spec, read) in [
        (as_floats, "F32[4] (16 bytes)"),
        (too_short, "U8[8] (8 bytes)"),
    ] {
        let error = PipelineBuilder::new()
            .stage(segment(0))
            .stage(reads(spec))
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, Error::TensorMismatch { stage: 1, tensor, provided_by: Some(0), .. } if tensor == "t1"),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "pipeline stage 1 (test stage reader) reads `t1` as {read}, but stage 0 provides \
                 it as U8[16] (16 bytes)"
            )
        );
    }
}

#[test]
fn named_inputs_let_a_later_stage_read_a_pipeline_input() {
    let add_offset = FnStage::boxed(
        "add offset",
        &[("t1", SIZE), ("offset", 1)],
        &[("y", SIZE)],
        Box::new(|_, ins, outs| {
            for (o, i) in outs[0].iter_mut().zip(ins[0]) {
                *o = i.wrapping_add(ins[1][0]);
            }
            Ok(())
        }),
    );
    let pipeline = PipelineBuilder::new()
        .stage(segment(0))
        .stage(add_offset)
        .inputs(["x", "offset"])
        .build()
        .unwrap();
    let names: Vec<&str> = pipeline.inputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["x", "offset"]);
    pipeline
        .push(&[("offset", &[4]), ("x", &payload(7, SIZE - 8))])
        .unwrap();
    assert_eq!(
        seq_of(pipeline.pop().unwrap().unwrap().get("y").unwrap(), 5),
        7
    );
}

#[test]
fn stats_count_waiting_and_latency() {
    let pipeline = chain(2).build().unwrap();
    for seq in 0..50 {
        pipeline.push(&[("x", &payload(seq, SIZE - 8))]).unwrap();
        drop(pipeline.pop().unwrap().unwrap());
    }
    let stats = pipeline.stats();
    assert_eq!(stats.stages.len(), 2);
    for stage in &stats.stages {
        assert_eq!(stage.invokes, 50);
        assert!(stage.latency_mean > Duration::ZERO);
        // Each stage waited for every item from the caller, who pushes one at a time.
        assert!(stage.waiting_for_input > Duration::ZERO);
        assert_eq!(stage.queue_depth, 0);
    }
    assert_eq!(stats.output_queue_depth, 0);
}
