//! Recognising models compiled for the Edge TPU.
//!
//! `edgetpu_compiler` replaces the operators it maps to the device by one custom operator
//! named `edgetpu-custom-op`. Its custom options are a FlexBuffer map whose entry `"4"` holds
//! the device program: a string holding a flatbuffer with the file identifier `DWN1` (bytes
//! 4..8, after its root offset).

use super::flexbuffer::{self, Value};
use super::{BUILTIN_CUSTOM, Model};

/// Custom op name of the operators `edgetpu_compiler` produces.
pub const EDGETPU_CUSTOM_OP: &str = "edgetpu-custom-op";

/// One `edgetpu-custom-op` of a compiled model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTpuProgram {
    /// Index of the operator in execution order.
    pub op: usize,
    /// Size in bytes of the device program (entry `"4"` of the custom options), if found.
    pub program_bytes: Option<usize>,
}

/// The Edge TPU programs of a model, empty when it is not compiled for the Edge TPU.
pub fn programs(model: &Model<'_>) -> Vec<EdgeTpuProgram> {
    model
        .operators
        .iter()
        .enumerate()
        .filter(|(_, op)| {
            op.opcode.builtin == BUILTIN_CUSTOM
                && op.opcode.custom.as_deref() == Some(EDGETPU_CUSTOM_OP)
        })
        .map(|(index, op)| EdgeTpuProgram {
            op: index,
            program_bytes: op
                .custom_options
                .as_deref()
                .and_then(device_program)
                .map(<[u8]>::len),
        })
        .collect()
}

/// The device program (entry `"4"`) of an `edgetpu-custom-op`'s custom options, or `None`
/// when the options are not a FlexBuffer map holding one.
pub fn device_program(custom_options: &[u8]) -> Option<&[u8]> {
    match flexbuffer::root_map(custom_options)?.get("4")? {
        // The compiler stores the program as a string; a blob has the same layout.
        Value::Bytes(program) => Some(program),
        _ => None,
    }
}

/// Whether the model holds at least one `edgetpu-custom-op`.
pub fn is_compiled(model: &Model<'_>) -> bool {
    !programs(model).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::flexbuffer::tests::map;

    #[test]
    fn finds_the_program_under_key_4() {
        const BLOB: u8 = 25;
        const INT: u8 = 1;
        let options = map(&[("4", BLOB, b"DWN1xyz"), ("a", BLOB, &[0xAA])]);
        assert_eq!(device_program(&options), Some(&b"DWN1xyz"[..]));
        assert_eq!(device_program(&map(&[("4", INT, &[3])])), None);
        assert_eq!(device_program(&map(&[("5", BLOB, b"DWN1")])), None);
        assert_eq!(device_program(b"not a flexbuffer"), None);
    }
}
