//! What the fuzz targets that run models share.

use std::sync::OnceLock;

use multitpu::backend::Runtime;

/// The TFLite runtime, loaded once per fuzzing process.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::load().expect("the TFLite runtime: set MULTITPU_TFLITE_LIB"))
}
