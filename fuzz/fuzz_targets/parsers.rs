//! One file, two parsers: this crate's reader and TFLite's own must read the same model.
//! For every file that passes strict validation, TFLite loads it twice, as given and as this
//! crate's writer writes the model it read (what `Interpreter::new` always hands TFLite), and
//! both interpreters must show the same inputs and outputs (names, types, shapes,
//! quantization) and compute the same outputs from the same inputs. A difference means a
//! construct the two parsers read differently (data in two places, tables they resolve
//! apart); a crash of the as-given load is one that validation did not see.
//!
//! Needs `MULTITPU_TFLITE_LIB` (`scripts/fuzz` sets it from `scripts/fetch-tflite`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use multitpu::Error;
use multitpu::backend::{Interpreter, InterpreterOptions};
use multitpu::model::Model;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    if model.validate().is_err() {
        return;
    }
    // The writer's bytes read back as the same model.
    let written = model.to_bytes().expect("a valid model writes");
    let reread = Model::from_bytes(&written).expect("the writer's bytes read back");
    assert_eq!(
        reread, model,
        "the writer's bytes read back as another model"
    );

    let options = InterpreterOptions::default();
    let rewritten = Interpreter::new(common::runtime(), data.to_vec(), &options);
    let verbatim = Interpreter::new_verbatim(common::runtime(), data.to_vec(), &options);
    let (mut rewritten, mut verbatim) = match (rewritten, verbatim) {
        (Ok(a), Ok(b)) => (a, b),
        // Both refused (an operator version TFLite lacks): the same reading.
        (Err(_), Err(_)) => return,
        // TFLite's flatbuffer verifier refuses the file as given, which this crate's reader
        // takes: TFLite then runs no reading of its own, only the rewritten one, which is
        // what `Interpreter::new` gives it.
        (
            Ok(_),
            Err(Error::Runtime {
                call: "TfLiteModelCreate",
                ..
            }),
        ) => return,
        (a, b) => panic!(
            "TFLite loads one reading and not the other: rewritten {:?}, as given {:?}",
            a.err(),
            b.err()
        ),
    };
    assert_eq!(rewritten.inputs(), verbatim.inputs(), "inputs differ");
    assert_eq!(rewritten.outputs(), verbatim.outputs(), "outputs differ");
    for slot in 0..rewritten.inputs().len() {
        let size = rewritten.inputs()[slot].byte_size;
        let input: Vec<u8> = (0..size)
            .map(|i| data[(i * 13) % data.len()] ^ (i as u8))
            .collect();
        rewritten.set_input(slot, &input).expect("input");
        verbatim.set_input(slot, &input).expect("input");
    }
    match (rewritten.invoke(), verbatim.invoke()) {
        (Ok(()), Ok(())) => {
            for slot in 0..rewritten.outputs().len() {
                assert_eq!(
                    rewritten.output(slot).expect("output"),
                    verbatim.output(slot).expect("output"),
                    "output {slot} differs between the two readings"
                );
            }
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("one reading invokes, the other fails: {a:?} / {b:?}"),
    }
});
