//! `source::Error`: what fetching and checking a source can fail with, how each failure is
//! reported (`reason`) and whether retrying can help (`is_terminal`).
//!
//! NB: messages carry redacted URLs only (`url::redact`) and never a credential; errors
//! from gitoxide and HTTP clients are passed through `url::scrub` before they land here.

use crate::api::conditions::reasons;

/// Why the files of a revision were refused. Each names the offending path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An entry whose name is `..`, `.`, empty, or holds `/` or NUL, or an absolute path.
    #[error("{path}: path escapes the project directory")]
    PathEscapes {
        /// The entry, relative to the project directory.
        path: String,
    },
    /// A symbolic link pointing outside the project directory, at a directory, or in a loop.
    #[error("{path}: symlink to {target:?} {why}")]
    Symlink {
        /// The link, relative to the project directory.
        path: String,
        /// What it points at, as stored.
        target: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `.git` entry inside the project directory.
    #[error("{path}: a .git entry inside the project directory is not allowed")]
    GitDir {
        /// The entry.
        path: String,
    },
    /// A submodule (gitlink) inside the project directory; submodules are not fetched.
    #[error("{path}: submodules are not fetched; vendor the files instead")]
    Submodule {
        /// The submodule's path.
        path: String,
    },
    /// One file over the per-file limit.
    #[error("{path}: file is {size} bytes, over the limit of {limit} bytes")]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// All files together over the total limit.
    #[error("{path}: the project's files exceed the limit of {limit} bytes in all")]
    TotalTooLarge {
        /// The file that crossed the limit.
        path: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// More files than the limit.
    #[error("{path}: the project has more than {limit} files")]
    TooManyFiles {
        /// The file that crossed the limit.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// An object in the fetched pack is larger than gitoxide may allocate for one object;
    /// refused while the pack streams in, before any tree is read, so the file's name is
    /// not known yet.
    #[error(
        "a file of this revision is over {limit} bytes; refused while fetching, before it was read (the per-file limit is {file_limit} bytes)"
    )]
    ObjectTooLarge {
        /// The allocation limit in bytes.
        limit: u64,
        /// The per-file limit in bytes.
        file_limit: u64,
    },
    /// A SQL, plan or configuration file that is not UTF-8.
    #[error("{path}: not valid UTF-8 (at byte {offset})")]
    NotUtf8 {
        /// The file.
        path: String,
        /// The first invalid byte.
        offset: usize,
    },
}

impl Refusal {
    /// The path the refusal names (none for [`Refusal::ObjectTooLarge`]).
    pub fn path(&self) -> Option<&str> {
        Some(match self {
            Refusal::ObjectTooLarge { .. } => return None,
            Refusal::PathEscapes { path }
            | Refusal::Symlink { path, .. }
            | Refusal::GitDir { path }
            | Refusal::Submodule { path }
            | Refusal::FileTooLarge { path, .. }
            | Refusal::TotalTooLarge { path, .. }
            | Refusal::TooManyFiles { path, .. }
            | Refusal::NotUtf8 { path, .. } => path,
        })
    }
}

/// Everything fetching a source can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec names something that cannot work (a bad URL, semver range or path).
    #[error("{0}")]
    InvalidSpec(String),
    /// The credentials Secret lacks what the URL needs, or holds something unusable.
    #[error("{0}")]
    InvalidCredentials(String),
    /// The server refused the credentials (or wanted some and none were given).
    #[error("authentication to {url} failed: {message}")]
    AuthenticationFailed {
        /// The redacted URL.
        url: String,
        /// What the server or transport said, scrubbed.
        message: String,
    },
    /// The reference does not exist on the remote (a deleted branch, a missing tag, no tag
    /// matching the range).
    #[error("{reference} not found in {url}")]
    RefNotFound {
        /// The reference, as the spec says it (`branch main`, `tag v1`, `semver >=1`).
        reference: String,
        /// The redacted URL.
        url: String,
    },
    /// `path` is not a directory at that revision.
    #[error("path {path:?} is not a directory at {revision}")]
    PathNotFound {
        /// The spec's path.
        path: String,
        /// The revision.
        revision: String,
    },
    /// The remote could not be reached or the transfer failed.
    #[error("fetching {url}: {message}")]
    Fetch {
        /// The redacted URL.
        url: String,
        /// What failed, scrubbed.
        message: String,
    },
    /// The fetch did not finish within the timeout.
    #[error("fetching {url} took longer than {seconds}s")]
    Timeout {
        /// The redacted URL.
        url: String,
        /// The timeout.
        seconds: u64,
    },
    /// The files at a revision were refused.
    #[error("{revision}: {refusal}")]
    Refused {
        /// The revision.
        revision: String,
        /// What was refused.
        #[source]
        refusal: Refusal,
    },
    /// A downloaded artifact's digest is not the one its source announced.
    #[error("artifact {revision} has digest {actual}, but its source says {expected}; refused")]
    DigestMismatch {
        /// The revision.
        revision: String,
        /// The announced digest.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// A Flux source has no artifact yet, or announced one that is not usable.
    #[error("{0}")]
    ArtifactNotReady(String),
    /// The cache on disk could not be read or written.
    #[error("cache {path}: {source}")]
    Cache {
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The condition and event reason (UpperCamelCase; see `api::conditions::reasons`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => reasons::INVALID_SOURCE,
            Error::InvalidCredentials(_) => reasons::INVALID_SECRET,
            Error::AuthenticationFailed { .. } => reasons::AUTHENTICATION_FAILED,
            Error::RefNotFound { .. } => reasons::REF_NOT_FOUND,
            Error::PathNotFound { .. } => reasons::PATH_NOT_FOUND,
            Error::Fetch { .. } | Error::Timeout { .. } => reasons::FETCH_FAILED,
            Error::Refused { refusal, .. } => match refusal {
                Refusal::FileTooLarge { .. }
                | Refusal::ObjectTooLarge { .. }
                | Refusal::TotalTooLarge { .. }
                | Refusal::TooManyFiles { .. } => reasons::SIZE_LIMIT_EXCEEDED,
                Refusal::NotUtf8 { .. } => reasons::INVALID_ENCODING,
                Refusal::PathEscapes { .. }
                | Refusal::Symlink { .. }
                | Refusal::GitDir { .. }
                | Refusal::Submodule { .. } => reasons::UNSAFE_PATH,
            },
            Error::DigestMismatch { .. } => reasons::DIGEST_MISMATCH,
            Error::ArtifactNotReady(_) => reasons::ARTIFACT_NOT_READY,
            Error::Cache { .. } => reasons::CACHE_ERROR,
        }
    }

    /// Terminal errors need a change (of the spec, the Secret or the repository's content)
    /// before retrying can help: the object is `Stalled`. The rest are retried with backoff.
    ///
    /// NB: a git source is still looked at every interval when stalled, since a push (the
    /// usual fix) changes nothing Kubernetes could watch.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec(_)
                | Error::InvalidCredentials(_)
                | Error::PathNotFound { .. }
                | Error::Refused { .. }
                | Error::DigestMismatch { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_refusals_are_terminal_and_network_failures_are_not() {
        let refused = Error::Refused {
            revision: "main@sha1:ab".into(),
            refusal: Refusal::FileTooLarge {
                path: "deploy/big.sql".into(),
                size: 11,
                limit: 10,
            },
        };
        assert!(refused.is_terminal());
        assert_eq!(refused.reason(), "SizeLimitExceeded");
        assert_eq!(
            refused.to_string(),
            "main@sha1:ab: deploy/big.sql: file is 11 bytes, over the limit of 10 bytes"
        );
        let fetch = Error::Fetch {
            url: "https://host/r".into(),
            message: "connection refused".into(),
        };
        assert!(!fetch.is_terminal());
        assert_eq!(fetch.reason(), "FetchFailed");
    }
}
