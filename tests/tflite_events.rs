//! TFLite's own messages become `tracing` events (target `multitpu::tflite`), as well as part
//! of the typed error.
//!
//! A binary of its own, with one test: `tracing` caches per callsite whether anyone listens,
//! and a callsite whose registration another test thread is finishing, with no subscriber
//! there, can cache "never" after this test's scoped subscriber asked for it. With no other
//! thread in the process, nothing can race the capture.

mod common;

use std::sync::{Arc, Mutex};

use multitpu::Error;
use multitpu::backend::{Interpreter, InterpreterOptions};

#[test]
fn a_missing_kernel_is_a_typed_error_and_a_tracing_event() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (result, events) = capture_tflite_events(|| {
        Interpreter::new(
            &runtime,
            common::one_custom_node("plus-one"),
            &InterpreterOptions::default().with_trusted(true),
        )
    });
    let error = result.expect_err("plus-one has no kernel");
    assert!(
        matches!(&error, Error::Runtime { message, .. } if message.contains("plus-one")),
        "{error}"
    );
    assert!(
        events.iter().any(|e| e.contains("plus-one")),
        "TFLite's message reaches tracing: {events:?}"
    );
}

/// Runs `f` with a `tracing` subscriber that records the messages of TFLite's events.
fn capture_tflite_events<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    struct Capture(Arc<Mutex<Vec<String>>>);
    struct Message(String);

    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if event.metadata().target() == "multitpu::tflite" {
                let mut message = Message(String::new());
                event.record(&mut message);
                self.0.lock().unwrap().push(message.0);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let events = Arc::new(Mutex::new(Vec::new()));
    let result = tracing::subscriber::with_default(Capture(Arc::clone(&events)), f);
    let events = events.lock().unwrap().clone();
    (result, events)
}
