//! Why a native library could not be loaded, with a hint on how to fix it.

use std::fmt;
use std::path::PathBuf;

/// Which native library a [`LoadError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LibraryKind {
    /// The TensorFlow Lite C library (`libtensorflowlite_c`).
    TfLite,
    /// Coral's Edge TPU runtime (`libedgetpu`).
    EdgeTpu,
}

impl LibraryKind {
    /// A short human name of the library.
    pub fn name(self) -> &'static str {
        match self {
            LibraryKind::TfLite => "the TensorFlow Lite C library",
            LibraryKind::EdgeTpu => "the Edge TPU runtime (libedgetpu)",
        }
    }

    /// What the user can do to make the library loadable.
    pub fn hint(self) -> &'static str {
        match self {
            LibraryKind::TfLite => {
                "give the path of libtensorflowlite_c.so, TFLite 2.x's C library (in \
                 MULTITPU_TFLITE_LIB, or to Runtime::from_path), or put it on the loader's \
                 search path (LD_LIBRARY_PATH / DYLD_LIBRARY_PATH / PATH); in multitpu's \
                 repository, `scripts/fetch-tflite` caches TFLite 2.9's where it is found \
                 without any setting"
            }
            LibraryKind::EdgeTpu => {
                "install Coral's runtime package libedgetpu1-std (or libedgetpu1-max), or set \
                 MULTITPU_EDGETPU_LIB to the path of libedgetpu.so.1"
            }
        }
    }
}

impl fmt::Display for LibraryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Loading a native library failed. Every variant names the library and the file, and its
/// message ends with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The file was not found or the dynamic loader refused it.
    Open {
        /// Which library.
        library: LibraryKind,
        /// The path or file name handed to the loader.
        path: PathBuf,
        /// The loader's own message.
        error: String,
    },
    /// The library loaded but lacks a symbol this crate needs: it is not the expected
    /// library, or a build of it without that part of the API.
    MissingSymbol {
        /// Which library.
        library: LibraryKind,
        /// The file that was loaded.
        path: PathBuf,
        /// The missing symbol.
        symbol: &'static str,
    },
    /// No place tried without an explicit path or environment variable held a loadable
    /// library: the loader's search path, then the fetch script's cache.
    NotFound {
        /// Which library.
        library: LibraryKind,
        /// Each place tried, in order, with why it did not load.
        tried: Vec<(PathBuf, String)>,
    },
    /// The library reports a version this crate does not support.
    BadVersion {
        /// Which library.
        library: LibraryKind,
        /// The file that was loaded.
        path: PathBuf,
        /// The version string the library reported.
        found: String,
        /// The versions this crate accepts.
        required: &'static str,
    },
}

impl LoadError {
    /// The library the error is about.
    pub fn library(&self) -> LibraryKind {
        match self {
            LoadError::Open { library, .. }
            | LoadError::MissingSymbol { library, .. }
            | LoadError::NotFound { library, .. }
            | LoadError::BadVersion { library, .. } => *library,
        }
    }

    /// The path or file name of the library the error is about (for
    /// [`LoadError::NotFound`], the first place tried).
    pub fn path(&self) -> &std::path::Path {
        match self {
            LoadError::Open { path, .. }
            | LoadError::MissingSymbol { path, .. }
            | LoadError::BadVersion { path, .. } => path,
            LoadError::NotFound { tried, .. } => tried
                .first()
                .map_or(std::path::Path::new(""), |(path, _)| path),
        }
    }

    /// Why this one place did not load, without the library's name and the hint.
    pub(crate) fn reason(&self) -> String {
        match self {
            LoadError::Open { error, .. } => error.clone(),
            LoadError::MissingSymbol { symbol, .. } => format!("lacks symbol `{symbol}`"),
            LoadError::BadVersion {
                found, required, ..
            } => {
                format!("version {found}, not {required}")
            }
            LoadError::NotFound { tried, .. } => format!("{} places tried", tried.len()),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Open {
                library,
                path,
                error,
            } => write!(
                f,
                "cannot load {library} from `{}`: {error}; to fix: {}",
                path.display(),
                library.hint()
            ),
            LoadError::MissingSymbol {
                library,
                path,
                symbol,
            } => write!(
                f,
                "`{}` lacks symbol `{symbol}`, so it is not {library} this crate needs; to fix: {}",
                path.display(),
                library.hint()
            ),
            LoadError::NotFound { library, tried } => {
                let places: Vec<String> = tried
                    .iter()
                    .map(|(path, reason)| format!("`{}` ({reason})", path.display()))
                    .collect();
                write!(
                    f,
                    "cannot load {library}: tried {}; to fix: {}",
                    places.join(", then "),
                    library.hint()
                )
            }
            LoadError::BadVersion {
                library,
                path,
                found,
                required,
            } => write!(
                f,
                "`{}` is {library} version {found}, but version {required} is required; to fix: {}",
                path.display(),
                library.hint()
            ),
        }
    }
}

impl std::error::Error for LoadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_path_and_fix() {
        let e = LoadError::Open {
            library: LibraryKind::TfLite,
            path: PathBuf::from("/nowhere/libtensorflowlite_c.so"),
            error: "No such file or directory".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("/nowhere/libtensorflowlite_c.so"), "{msg}");
        assert!(msg.contains("MULTITPU_TFLITE_LIB"), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");

        let e = LoadError::MissingSymbol {
            library: LibraryKind::EdgeTpu,
            path: PathBuf::from("/lib/libedgetpu.so.1"),
            symbol: "edgetpu_list_devices",
        };
        let msg = e.to_string();
        assert!(msg.contains("edgetpu_list_devices"), "{msg}");
        assert!(msg.contains("MULTITPU_EDGETPU_LIB"), "{msg}");
        assert_eq!(e.library(), LibraryKind::EdgeTpu);

        let e = LoadError::BadVersion {
            library: LibraryKind::TfLite,
            path: PathBuf::from("x.so"),
            found: "1.15.0".into(),
            required: "2.x",
        };
        let msg = e.to_string();
        assert!(msg.contains("1.15.0") && msg.contains("2.x"), "{msg}");
        assert_eq!(e.path(), std::path::Path::new("x.so"));
    }
}
