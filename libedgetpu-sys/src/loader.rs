//! Opening a shared library and resolving typed symbols, shared by both APIs.

use std::ffi::{CStr, OsString, c_char};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libloading::Library;

use crate::error::{LibraryKind, LoadError};

/// Where to look for a library: the explicit path if given, else the environment variable
/// if set and non-empty, else the platform's default file name.
pub(crate) fn resolve_path(explicit: Option<&Path>, env_var: &str, default: &str) -> PathBuf {
    chosen_path(explicit, env_var).unwrap_or_else(|| PathBuf::from(OsString::from(default)))
}

/// The path the caller chose: the explicit one if given, else the environment variable if
/// set and non-empty.
pub(crate) fn chosen_path(explicit: Option<&Path>, env_var: &str) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    match std::env::var_os(env_var) {
        Some(value) if !value.is_empty() => Some(PathBuf::from(value)),
        _ => None,
    }
}

/// The cache folder of the repository's fetch scripts (`scripts/fetch-tflite`):
/// `$MULTITPU_CACHE`, else `$XDG_CACHE_HOME/multitpu`, else `$HOME/.cache/multitpu`, with
/// `var` reading the environment. `None` when none of them is set.
pub(crate) fn cache_dir(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| {
        var(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    set("MULTITPU_CACHE")
        .or_else(|| set("XDG_CACHE_HOME").map(|dir| dir.join("multitpu")))
        .or_else(|| set("HOME").map(|dir| dir.join(".cache").join("multitpu")))
}

/// Opens the library at `path` (a bare file name goes through the loader's search path).
pub(crate) fn open(library: LibraryKind, path: &Path) -> Result<Library, LoadError> {
    // SAFETY: loading a library runs its initialisers. Both libraries this crate loads
    // (TFLite's C library and libedgetpu) only register static data in their initialisers
    // and have no preconditions on the loading thread. A different library at the same
    // path is the user's explicit choice; its symbols are checked before use.
    unsafe { Library::new(path) }.map_err(|e| LoadError::Open {
        library,
        path: path.to_path_buf(),
        error: e.to_string(),
    })
}

/// Resolves `symbol` as a value of type `T`, which must be the symbol's exact C function
/// pointer type; the caller guarantees that, and keeps `lib` alive as long as the value.
pub(crate) fn symbol<T: Copy>(
    lib: &Library,
    library: LibraryKind,
    path: &Path,
    symbol: &'static str,
) -> Result<T, LoadError> {
    // SAFETY: each call site names a symbol of the C API together with the function
    // pointer type of its C prototype (see the struct field it fills); the copied pointer
    // is stored next to the `Library` and never outlives it.
    unsafe { lib.get::<T>(symbol.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| LoadError::MissingSymbol {
            library,
            path: path.to_path_buf(),
            symbol,
        })
}

/// Calls a library's version function (`TfLiteVersion`, `edgetpu_version`) and copies the
/// string it returns; a NULL result gives an empty string.
pub(crate) fn version_string(version_fn: unsafe extern "C" fn() -> *const c_char) -> String {
    // SAFETY: both version functions take no arguments and return a pointer to a static
    // NUL-terminated string of the still-loaded library (or, handled here, NULL).
    let raw = unsafe { version_fn() };
    if raw.is_null() {
        return String::new();
    }
    // SAFETY: non-NULL, NUL-terminated, static for the library's lifetime.
    unsafe { CStr::from_ptr(raw) }
        .to_string_lossy()
        .into_owned()
}

/// The process-wide instance in `cell`, loading it with `load` on first use. Only a
/// successful load is cached, so a failed attempt can be retried after fixing the
/// environment; if two threads race, either instance is equivalent and one is kept.
pub(crate) fn shared<T>(
    cell: &OnceLock<Arc<T>>,
    load: impl FnOnce() -> Result<T, LoadError>,
) -> Result<Arc<T>, LoadError> {
    if let Some(api) = cell.get() {
        return Ok(Arc::clone(api));
    }
    let api = Arc::new(load()?);
    Ok(Arc::clone(cell.get_or_init(|| api)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_wins() {
        let p = resolve_path(
            Some(Path::new("/a/b.so")),
            "MULTITPU_SYS_TEST_UNSET_VAR",
            "c.so",
        );
        assert_eq!(p, PathBuf::from("/a/b.so"));
    }

    #[test]
    fn cache_dir_follows_the_fetch_scripts() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        const ALL: &[(&str, &str)] = &[
            ("MULTITPU_CACHE", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(cache_dir(env(ALL)), Some(PathBuf::from("/c")));
        assert_eq!(
            cache_dir(env(&[
                ("MULTITPU_CACHE", ""),
                ("XDG_CACHE_HOME", "/x"),
                ("HOME", "/h")
            ])),
            Some(PathBuf::from("/x/multitpu"))
        );
        assert_eq!(
            cache_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/multitpu"))
        );
        assert_eq!(cache_dir(env(&[])), None);
    }

    #[test]
    fn default_name_when_env_unset() {
        let p = resolve_path(None, "MULTITPU_SYS_TEST_UNSET_VAR", "libdefault.so");
        assert_eq!(p, PathBuf::from("libdefault.so"));
    }

    #[test]
    fn missing_file_is_open_error_with_path() {
        let err = open(
            LibraryKind::EdgeTpu,
            Path::new("/nonexistent/dir/libedgetpu.so.1"),
        )
        .expect_err("a missing file cannot load");
        match &err {
            LoadError::Open { library, path, .. } => {
                assert_eq!(*library, LibraryKind::EdgeTpu);
                assert_eq!(path, Path::new("/nonexistent/dir/libedgetpu.so.1"));
            }
            other => panic!("expected LoadError::Open, got {other:?}"),
        }
        assert!(err.to_string().contains("/nonexistent/dir/libedgetpu.so.1"));
    }
}
