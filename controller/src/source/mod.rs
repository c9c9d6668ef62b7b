//! Where project files come from: git repositories, Flux artifacts and ConfigMaps, fetched
//! into an on-disk cache and checked before anything reads them.
//! Never imports `kube`: callers hand it plain requests and get back an [`Artifact`], a
//! directory that [`Project::load`](crate::project::Project::load) reads.

pub mod auth;
pub mod configmap;
mod error;
pub mod flux;
pub mod git;
pub mod reference;
pub mod tree;
pub mod url;
pub mod webhook;

pub use auth::Credentials;
pub use configmap::ConfigMapCache;
pub use error::{Error, Refusal, Result};
pub use git::{GitCache, GitRequest, Stats};
pub use reference::Reference;
pub use tree::Limits;

use std::path::PathBuf;

/// A checked project tree on disk, at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The revision, as Flux names them: `main@sha1:<commit>`, `v1.2.0@sha1:<commit>`, or
    /// `sha1:<commit>` for a commit reference.
    pub revision: String,
    /// `sha256:<hex>` over the files (paths and contents), or the Flux artifact's digest.
    pub digest: String,
    /// The directory holding the project (the reference's `path` applied). Read only.
    pub dir: PathBuf,
}

/// Installs rustls' ring provider (the one kube uses) as the process default, once.
/// Every HTTP client here is built after this.
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // NB: fails only when another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
