//! Two Environments deploying blue-green schemas into one database must each have their own
//! `schemaSuffix`, or they swap each other's sets in and out for ever (issue #17). The
//! first one keeps the database; the others are refused here, before they stage anything.
//! Holds no SQL: whether two Environments share a database is read from their Secrets
//! ([`super::bluegreen::sharing`]).

use kube::ResourceExt;

use super::Context;
use super::bluegreen::{Sharing, sharing};
use super::status::Outcome;
use crate::api::conditions::reasons;
use crate::api::environment::Environment;
use crate::project::{Project, SchemaMode};

/// Refuses `env`, before it touches the database, when its project has blue-green schemas
/// and an Environment created before it (ties broken by name) deploys into the same
/// database under the same schema names. Reads the Environments from the watch cache, so
/// the check costs no API request.
pub fn refuse_if_claimed(ctx: &Context, env: &Environment, project: &Project) -> Option<Outcome> {
    if !project
        .manifest
        .schemas
        .values()
        .any(|mode| *mode == SchemaMode::BlueGreen)
    {
        return None;
    }
    let ns = env.namespace();
    let key = |e: &Environment| (e.metadata.creation_timestamp.clone(), e.name_any());
    let others = ctx.stores.environments.state();
    let first = others
        .iter()
        .filter(|other| {
            other.namespace() == ns && other.uid() != env.uid() && key(other) < key(env)
        })
        .find(|other| sharing(ctx, env, other) == Sharing::Clash)?;
    Some(Outcome::Terminal {
        reason: reasons::GUARD_SHARED_DATABASE,
        message: format!(
            "Environment {} already deploys blue-green schemas into this database under the same names; \
             give each Environment that shares a database its own spec.schemaSuffix",
            first.name_any()
        ),
    })
}
