//! The parent's side against stand-in children: shell scripts that speak (or break) the
//! protocol and end the way a crashing TFLite would. The real child runs in
//! tests/isolation.rs.

use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;

use super::*;
use crate::model::paper;

/// Stand-in children, by name, written once before any of them runs (a script being
/// written while another thread forks can fail to start with ETXTBSY).
const SCRIPTS: &[(&str, &str)] = &[
    (
        "segv",
        "read line\necho 'multitpu-isolated 1'\nprintf 'step\\t1\\tload\\n'\n\
         printf 'step\\t1\\tinvoke\\t0\\n'\nkill -SEGV $$\n",
    ),
    (
        "bad_alloc",
        "echo 'multitpu-isolated 1'\nprintf 'step\\t0\\tload\\n'\n\
         echo \"terminate called after throwing an instance of 'std::bad_alloc'\" >&2\n\
         kill -ABRT $$\n",
    ),
    ("hang", "echo 'multitpu-isolated 1'\nexec sleep 30\n"),
    ("silent_hang", "exec sleep 30\n"),
    ("not_a_child", "echo 'usage: some-program FILE'\nexit 2\n"),
    ("exit_early", "echo 'multitpu-isolated 1'\nexit 0\n"),
    (
        "panic",
        "echo 'multitpu-isolated 1'\necho \"thread 'main' panicked at x.rs:1:1\" >&2\nexit 101\n",
    ),
    (
        "limits",
        "echo 'multitpu-isolated 1'\necho \"as=$(ulimit -v) core=$(ulimit -c)\" >&2\nexit 7\n",
    ),
    (
        "done",
        "cat > /dev/null\necho 'multitpu-isolated 1'\nprintf 'step\\t0\\tload\\n'\necho done\n",
    ),
    (
        "error",
        "cat > /dev/null\necho 'multitpu-isolated 1'\n\
         printf 'error\\truntime\\tTfLiteInterpreterAllocateTensors\\tno room\\\\nat all\\n'\n",
    ),
    (
        "long_line",
        "cat > /dev/null\necho 'multitpu-isolated 1'\n\
         printf 'error\\truntime\\tTfLiteInterpreterAllocateTensors\\t'\n\
         head -c 3000000 /dev/zero | tr '\\0' 'x'\necho\n",
    ),
];

fn script(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("multitpu-isolate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, body) in SCRIPTS {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    });
    dir.join(name)
}

fn models() -> Vec<NamedModel> {
    let bytes = paper::fc(100).unwrap().to_bytes().unwrap();
    vec![
        NamedModel::new("the whole model", bytes.clone()),
        NamedModel {
            name: "seg/m_segment_0_of_2.tflite".to_owned(),
            path: Some(PathBuf::from("seg/m_segment_0_of_2.tflite")),
            bytes: Arc::from(bytes),
        },
    ]
}

fn run(isolation: Isolation, name: &str) -> Result<Message> {
    let models = models();
    let models: Vec<&NamedModel> = models.iter().collect();
    isolation.with_program(script(name)).run(
        JobKind::Check,
        Path::new("/nonexistent/libtensorflowlite_c.so"),
        &models,
        1,
        0,
    )
}

fn isolated(result: Result<Message>) -> (String, Option<PathBuf>, ChildExit, String) {
    match result {
        Err(Error::Isolated {
            what,
            path,
            reason,
            stderr,
        }) => (what, path, reason, stderr),
        Err(other) => panic!("expected Error::Isolated, got {other}"),
        Ok(message) => panic!("expected Error::Isolated, got {}", message.line()),
    }
}

#[test]
fn a_crash_names_the_model_and_step() {
    let error = run(Isolation::new(), "segv").unwrap_err();
    let text = error.to_string();
    let (what, path, reason, _) = isolated(Err(error));
    assert_eq!(reason, ChildExit::Signal(11));
    assert_eq!(what, "invoking seg/m_segment_0_of_2.tflite (trial 0)");
    assert_eq!(path, Some(PathBuf::from("seg/m_segment_0_of_2.tflite")));
    assert_eq!(
        text,
        "the isolated child died invoking seg/m_segment_0_of_2.tflite (trial 0): \
         killed by signal 11 (SIGSEGV)"
    );
}

#[test]
fn an_abort_on_a_failed_allocation_is_out_of_memory() {
    let (what, path, reason, stderr) = isolated(run(Isolation::new(), "bad_alloc"));
    assert_eq!(
        reason,
        ChildExit::OutOfMemory {
            limit: Some(Isolation::DEFAULT_MEMORY_LIMIT)
        }
    );
    assert_eq!(what, "loading the whole model");
    assert_eq!(path, None);
    assert!(stderr.contains("std::bad_alloc"), "{stderr}");
}

#[test]
fn a_hang_is_killed_at_the_time_limit() {
    for name in ["hang", "silent_hang"] {
        let start = Instant::now();
        let timeout = Duration::from_millis(300);
        let (what, _, reason, _) = isolated(run(Isolation::new().with_timeout(timeout), name));
        assert_eq!(reason, ChildExit::Timeout(timeout), "{name}");
        assert_eq!(what, "starting");
        assert!(start.elapsed() < Duration::from_secs(10), "{name}");
    }
}

#[test]
fn a_program_that_does_not_speak_the_protocol_is_no_answer() {
    for name in ["not_a_child", "exit_early"] {
        let (_, _, reason, _) = isolated(run(Isolation::new(), name));
        let expected = if name == "exit_early" {
            ChildExit::Exited(0)
        } else {
            ChildExit::NoAnswer
        };
        assert_eq!(reason, expected, "{name}");
    }
    let program = Isolation::new().with_program("/nonexistent/program");
    let models = models();
    let error = program
        .run(JobKind::Check, Path::new(""), &[&models[0]], 1, 0)
        .unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
}

#[test]
fn a_panic_is_reported_as_one() {
    let (_, _, reason, stderr) = isolated(run(Isolation::new(), "panic"));
    assert_eq!(reason, ChildExit::Panicked);
    assert!(stderr.contains("panicked at"));
}

#[test]
fn the_child_starts_with_its_limits() {
    let limit = 300 << 20;
    let (_, _, reason, stderr) = isolated(run(
        Isolation::new().with_memory_limit(Some(limit)),
        "limits",
    ));
    assert_eq!(reason, ChildExit::Exited(7));
    assert_eq!(stderr.trim(), format!("as={} core=0", limit >> 10));
    let (_, _, _, stderr) = isolated(run(Isolation::new().with_memory_limit(None), "limits"));
    assert_eq!(stderr.trim(), "as=unlimited core=0");
}

#[test]
fn results_and_errors_come_back() {
    assert!(matches!(run(Isolation::new(), "done"), Ok(Message::Done)));
    match run(Isolation::new(), "error") {
        Err(Error::Runtime { call, message }) => {
            assert_eq!(call, "TfLiteInterpreterAllocateTensors");
            assert_eq!(message, "no room\nat all");
        }
        other => panic!(
            "expected a runtime error, got {:?}",
            other.map(|m| m.line())
        ),
    }
}

#[test]
fn invalid_models_are_refused_before_any_child() {
    let mut model = paper::fc(100).unwrap();
    model.tensors[1].shape[0] = -1;
    let model = NamedModel::new("broken", model.to_bytes().unwrap());
    // The program does not exist: reaching it would be an Io error.
    let error = Isolation::new()
        .with_program("/nonexistent/program")
        .run(JobKind::Check, Path::new(""), &[&model], 1, 0)
        .unwrap_err();
    assert!(matches!(error, Error::InvalidModel { .. }), "{error}");
}

/// A line of several MiB (a long TFLite message) is read whole, not taken for a child that
/// does not speak the protocol.
#[test]
fn protocol_lines_of_any_length_are_read_whole() {
    match run(Isolation::new(), "long_line") {
        Err(Error::Runtime { message, .. }) => {
            assert_eq!(message.len(), 3_000_000);
            assert!(message.bytes().all(|b| b == b'x'));
        }
        other => panic!("{:?}", other.map(|m| m.line())),
    }
}
