//! The reader: any bytes give a model or an error, never a panic, a hang or an out-of-bounds
//! read; what it gives is usable (sizes, figures, an owned copy).
#![no_main]

use libfuzzer_sys::fuzz_target;
use multitpu::model::Model;
use multitpu::model::figures::op_figures;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    for tensor in &model.tensors {
        let _ = tensor.num_elements();
        let _ = tensor.byte_size();
    }
    for op in 0..model.operators.len() {
        // Figures read shapes and options of operators that were never validated.
        let _ = op_figures(&model, op);
    }
    let owned = model.clone().into_owned();
    assert_eq!(owned.tensors.len(), model.tensors.len());
});
