//! Raw bindings to the TensorFlow Lite C API and libedgetpu's C API, loaded at run time.
