//! `project::Error`: what can be wrong with a project on disk, always naming the file
//! (and the line, where there is one).

use std::path::PathBuf;

/// Everything that can be wrong with a project on disk. Every variant names the file, and
/// the line where there is one, so a user can go straight to it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file's content is invalid at a line (1-based).
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, lowercase, no trailing period.
        message: String,
    },
    /// A file is missing or invalid as a whole (no single line to blame).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Error::Io { path, .. } | Error::Invalid { path, .. } | Error::File { path, .. } => path,
        }
    }

    /// The 1-based line, when the error is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
