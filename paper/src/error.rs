//! The one error type of the paper's tools.

use std::path::PathBuf;

/// What went wrong in a fit or a reproduction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The library failed: building, reading, planning or running a model.
    #[error(transparent)]
    Library(#[from] multitpu::Error),

    /// A calibration file is malformed; `line` is 1-based (0 for the file as a whole).
    #[error("calibration data {path}, line {line}: {reason}")]
    Calibration {
        /// The file.
        path: PathBuf,
        /// 1-based line, or 0 for the whole file.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// Reading a file or a folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Inputs that cannot be fitted or compared: no points, a cut that fits no model.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was inconsistent.
        what: &'static str,
        /// How.
        reason: String,
    },
}

impl Error {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// The result of the paper's tools.
pub type Result<T> = std::result::Result<T, Error>;
