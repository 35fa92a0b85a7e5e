//! Building and dropping pipelines leaks no threads. Alone in its binary, so no other test's
//! threads are counted.

mod stages;

use std::time::{Duration, Instant};

use multitpu::pipeline::PipelineBuilder;
use stages::{adder, payload};

/// Names of this process's threads, from /proc (Linux).
fn thread_names() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

fn stage_threads() -> usize {
    thread_names()
        .iter()
        .filter(|name| name.starts_with("multitpu-stage"))
        .count()
}

#[test]
fn two_hundred_pipelines_leak_no_threads() {
    if !std::path::Path::new("/proc/self/task").exists() {
        eprintln!("no /proc/self/task: skipped");
        return;
    }
    let before = thread_names().len();
    for round in 0..200u64 {
        let pipeline = PipelineBuilder::new()
            .stage(adder("0", "x", "a", 16, 1))
            .replicated_stage(vec![
                adder("1a", "a", "b", 16, 1),
                adder("1b", "a", "b", 16, 1),
            ])
            .stage(adder("2", "b", "y", 16, 1))
            .output_capacity(Some(1))
            .build()
            .unwrap();
        if round == 0 {
            // A new thread names itself once it runs, so count threads, not names, here.
            assert_eq!(thread_names().len(), before + 4, "{:?}", thread_names());
        }
        // Leave a different number of items in flight each round.
        for seq in 0..round % 4 {
            pipeline.push(&[("x", &payload(seq, 8))]).unwrap();
        }
        if round % 3 == 0 {
            pipeline.close().unwrap();
        }
        drop(pipeline);
    }
    // A joined thread can linger in /proc for a moment while the kernel releases it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (stage_threads() > 0 || thread_names().len() > before) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(stage_threads(), 0, "{:?}", thread_names());
    assert_eq!(thread_names().len(), before, "{:?}", thread_names());
}
