//! The custom resource types, group `switchyard.dev`, version `v1alpha1`: one file per kind
//! and the condition vocabulary.
//!
//! Types only: this module imports kube-derive, schemars, serde and k8s-openapi and nothing
//! of the rest of the crate, so it can become its own crate. `///` docs here are user
//! documentation: they become the CRD descriptions that `kubectl explain` shows.

pub mod conditions;
pub mod database_project;
pub mod environment;
pub mod promotion;
pub mod review;

pub use database_project::{DatabaseProject, DatabaseProjectSpec, DatabaseProjectStatus};
pub use environment::{Environment, EnvironmentSpec, EnvironmentStatus};
pub use promotion::{Promotion, PromotionSpec, PromotionStatus};

/// The finalizer every kind carries while the controller holds something for it.
pub const FINALIZER: &str = "switchyard.dev/finalizer";
/// Set this annotation to any new value (e.g. a timestamp) to force a reconcile; the value is
/// echoed in `status.lastHandledReconcileAt`.
pub const REQUESTED_AT: &str = "switchyard.dev/requestedAt";
/// The field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "switchyard";

/// All CRDs, in a stable order.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![DatabaseProject::crd(), Environment::crd(), Promotion::crd()]
}
