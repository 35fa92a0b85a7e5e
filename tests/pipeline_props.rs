//! Property: whatever the shape of the pipeline and wherever a stage fails, every accepted
//! item either comes out, in order and correct, or is reported lost, exactly once; and every
//! item before the failed one comes out before the failure is reported.

mod stages;

use std::collections::BTreeSet;

use multitpu::Error;
use multitpu::backend::Stage;
use multitpu::pipeline::PipelineBuilder;
use proptest::prelude::*;
use stages::{Fault, adder, faulty, payload, seq_of};

const SIZE: usize = 12;

/// Tensor flowing into stage `i`.
fn tensor(i: usize) -> String {
    if i == 0 { "x".into() } else { format!("t{i}") }
}

/// Builds the instances of stage `i`; instance 0 of stage `fault.0` misbehaves on its run
/// `fault.1`.
fn stage(i: usize, replicas: usize, fault: Option<(usize, u64, Fault)>) -> Vec<Box<dyn Stage>> {
    (0..replicas)
        .map(|r| match fault {
            Some((at_stage, run, kind)) if at_stage == i && r == 0 => {
                faulty(&format!("{i}"), &tensor(i), &tensor(i + 1), SIZE, run, kind)
            }
            // The faulty stage copies, so every stage of that index copies too.
            Some((at_stage, ..)) if at_stage == i => {
                adder(&format!("{i}.{r}"), &tensor(i), &tensor(i + 1), SIZE, 0)
            }
            _ => adder(&format!("{i}.{r}"), &tensor(i), &tensor(i + 1), SIZE, 1),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_item_comes_out_in_order_or_is_lost(
        replicas in prop::collection::vec(1usize..4, 1..4),
        queue_capacity in 1usize..3,
        input_capacity in 1usize..4,
        output_capacity in prop::option::of(1usize..3),
        items in 0u64..60,
        fault in prop::option::of((0usize..4, 0u64..30, 0usize..3)),
    ) {
        let stages = replicas.len();
        let fault = fault.map(|(s, run, kind)| {
            let kinds = [Fault::Error, Fault::Panic, Fault::PanicPayloadPanicsOnDrop];
            (s % stages, run, kinds[kind])
        });
        let mut builder = PipelineBuilder::new()
            .queue_capacity(queue_capacity)
            .input_capacity(input_capacity)
            .output_capacity(output_capacity);
        for (i, &r) in replicas.iter().enumerate() {
            builder = builder.replicated_stage(stage(i, r, fault));
        }
        let pipeline = builder.build().unwrap();
        let adds = (0..stages).filter(|&i| fault.is_none_or(|(s, ..)| s != i)).count() as u8;
        let (accepted, came_out, failure) = std::thread::scope(|scope| {
            let producer = scope.spawn(|| {
                let mut accepted = Vec::new();
                for seq in 0..items {
                    match pipeline.push(&[("x", &payload(seq, SIZE - 8))]) {
                        Ok(s) => accepted.push(s),
                        Err(Error::StageFailed { .. }) => break,
                        Err(other) => panic!("push: {other}"),
                    }
                }
                // Closing after a failure reports it; either way the input is closed.
                let _ = pipeline.close();
                accepted
            });
            let mut came_out = Vec::new();
            let mut failure = None;
            for output in &pipeline {
                match output {
                    Ok(output) => {
                        assert_eq!(seq_of(output.tensor(0).unwrap(), adds), output.seq());
                        came_out.push(output.seq());
                    }
                    Err(Error::StageFailed { stage, lost, .. }) => failure = Some((stage, lost)),
                    Err(other) => panic!("pop: {other}"),
                }
            }
            (producer.join().unwrap(), came_out, failure)
        });
        // Instance 0 of the faulty stage runs the items 0, r, 2r, ...: it fails on item
        // r * run if there is one.
        let expected_failure = fault.and_then(|(s, run, _)| {
            let item = replicas[s] as u64 * run;
            (item < items).then_some((s, item))
        });
        prop_assert_eq!(
            failure.as_ref().map(|(stage, _)| *stage),
            expected_failure.map(|(stage, _)| stage)
        );
        let lost = failure.map(|(_, lost)| lost).unwrap_or_default();
        // Delivered before the error: exactly the items before the failed one; lost: the
        // failed one and every later one accepted.
        if let Some((_, item)) = expected_failure {
            prop_assert_eq!(&came_out, &(0..item).collect::<Vec<_>>());
            prop_assert_eq!(&lost, &(item..accepted.len() as u64).collect::<Vec<_>>());
        }
        prop_assert_eq!(came_out.len() + lost.len(), accepted.len(), "popped + lost = pushed");
        prop_assert_eq!(&accepted, &(0..accepted.len() as u64).collect::<Vec<_>>());
        // Outputs come out in order, as a prefix of the accepted items.
        prop_assert_eq!(&came_out, &(0..came_out.len() as u64).collect::<Vec<_>>());
        let out: BTreeSet<u64> = came_out.iter().copied().collect();
        let gone: BTreeSet<u64> = lost.iter().copied().collect();
        prop_assert_eq!(gone.len(), lost.len(), "an item is lost twice");
        prop_assert!(out.is_disjoint(&gone));
        let all: BTreeSet<u64> = out.union(&gone).copied().collect();
        prop_assert_eq!(all, accepted.iter().copied().collect::<BTreeSet<u64>>());
        if expected_failure.is_none() {
            prop_assert_eq!(came_out.len() as u64, items);
        }
    }
}
