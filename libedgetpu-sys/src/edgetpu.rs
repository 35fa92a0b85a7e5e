//! libedgetpu's C API (`edgetpu_c.h`), resolved from `libedgetpu.so.1` at run time.

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libloading::Library;

use crate::error::{LibraryKind, LoadError};
use crate::loader;
use crate::tflite::TfLiteDelegate;

/// Environment variable naming the libedgetpu library to load when no path is given.
pub const EDGETPU_LIB_ENV: &str = "MULTITPU_EDGETPU_LIB";

/// The platform's usual file name of libedgetpu.
pub fn default_edgetpu_library_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libedgetpu.1.dylib"
    } else if cfg!(target_os = "windows") {
        "edgetpu.dll"
    } else {
        "libedgetpu.so.1"
    }
}

/// `enum edgetpu_device_type`, kept as its integer so unknown values are representable.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EdgeTpuDeviceType(pub c_int);

impl EdgeTpuDeviceType {
    /// `EDGETPU_APEX_PCI`: a PCIe (or M.2) Edge TPU.
    pub const APEX_PCI: Self = Self(0);
    /// `EDGETPU_APEX_USB`: a USB Edge TPU (Coral USB Accelerator).
    pub const APEX_USB: Self = Self(1);
}

/// `struct edgetpu_device`: one entry of `edgetpu_list_devices`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EdgeTpuDevice {
    /// The device's bus type.
    pub type_: EdgeTpuDeviceType,
    /// The device path, NUL-terminated, owned by the list.
    pub path: *const c_char,
}

/// `struct edgetpu_option`: one name/value pair for `edgetpu_create_delegate`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EdgeTpuOption {
    /// Option name, e.g. `"Performance"`.
    pub name: *const c_char,
    /// Option value, e.g. `"Max"`.
    pub value: *const c_char,
}

/// libedgetpu's C API, resolved from one loaded library.
///
/// Every pointer is valid only while this struct is alive (it owns the `Library`). Device
/// lists are freed with `free_devices`, delegates with `free_delegate`; a delegate must
/// outlive every interpreter it was added to. With options, `edgetpu_create_delegate`
/// requires a non-NULL device path (the library aborts the process otherwise).
pub struct EdgeTpuApi {
    path: PathBuf,
    version: String,

    /// `struct edgetpu_device* edgetpu_list_devices(size_t* num_devices)`.
    pub list_devices: unsafe extern "C" fn(num_devices: *mut usize) -> *mut EdgeTpuDevice,
    /// `void edgetpu_free_devices(struct edgetpu_device* dev)`.
    pub free_devices: unsafe extern "C" fn(devices: *mut EdgeTpuDevice),
    /// `TfLiteDelegate* edgetpu_create_delegate(enum edgetpu_device_type type,
    /// const char* name, const struct edgetpu_option* options, size_t num_options)`:
    /// NULL on failure.
    pub create_delegate: unsafe extern "C" fn(
        type_: EdgeTpuDeviceType,
        name: *const c_char,
        options: *const EdgeTpuOption,
        num_options: usize,
    ) -> *mut TfLiteDelegate,
    /// `void edgetpu_free_delegate(TfLiteDelegate* delegate)`.
    pub free_delegate: unsafe extern "C" fn(delegate: *mut TfLiteDelegate),
    /// `void edgetpu_verbosity(int verbosity)`: logging level, 0 (quiet) to 10.
    pub verbosity: unsafe extern "C" fn(verbosity: c_int),
    /// `const char* edgetpu_version(void)`.
    pub version_fn: unsafe extern "C" fn() -> *const c_char,

    // Declared last so it is dropped (dlclose) after nothing else can use the pointers.
    _library: Library,
}

impl std::fmt::Debug for EdgeTpuApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeTpuApi")
            .field("path", &self.path)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Arc<EdgeTpuApi>> = OnceLock::new();

impl EdgeTpuApi {
    /// Loads the library: from `path` if given, else from [`EDGETPU_LIB_ENV`] if set, else
    /// [`default_edgetpu_library_name`] through the loader's search path.
    pub fn load(path: Option<&Path>) -> Result<Self, LoadError> {
        let path = loader::resolve_path(path, EDGETPU_LIB_ENV, default_edgetpu_library_name());
        let lib = loader::open(LibraryKind::EdgeTpu, &path)?;
        Self::from_library(lib, path)
    }

    /// The process-wide instance loaded from [`EDGETPU_LIB_ENV`] or the default name.
    /// Only a successful load is cached.
    pub fn shared() -> Result<Arc<Self>, LoadError> {
        loader::shared(&SHARED, || Self::load(None))
    }

    fn from_library(lib: Library, path: PathBuf) -> Result<Self, LoadError> {
        let kind = LibraryKind::EdgeTpu;
        macro_rules! sym {
            ($name:literal) => {
                loader::symbol(&lib, kind, &path, $name)?
            };
        }
        let version_fn: unsafe extern "C" fn() -> *const c_char = sym!("edgetpu_version");
        let version = loader::version_string(version_fn);
        Ok(Self {
            list_devices: sym!("edgetpu_list_devices"),
            free_devices: sym!("edgetpu_free_devices"),
            create_delegate: sym!("edgetpu_create_delegate"),
            free_delegate: sym!("edgetpu_free_delegate"),
            verbosity: sym!("edgetpu_verbosity"),
            version_fn,
            path,
            version,
            _library: lib,
        })
    }

    /// The path or file name the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version string `edgetpu_version()` reported at load.
    pub fn version(&self) -> &str {
        &self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_path_gives_open_error_naming_the_fix() {
        let bad = Path::new("/definitely/not/here/libedgetpu.so.1");
        let err = EdgeTpuApi::load(Some(bad)).expect_err("no library at that path");
        assert!(
            matches!(&err, LoadError::Open { library: LibraryKind::EdgeTpu, path, .. } if path == bad),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("libedgetpu1-std"), "{msg}");
        assert!(msg.contains(EDGETPU_LIB_ENV), "{msg}");
    }

    #[test]
    fn struct_layouts_match_the_c_header() {
        // enum (int) + pointer, padded to pointer alignment.
        assert_eq!(
            std::mem::size_of::<EdgeTpuDevice>(),
            2 * std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<EdgeTpuOption>(),
            2 * std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<EdgeTpuDeviceType>(),
            std::mem::size_of::<c_int>()
        );
    }
}
