//! What the Environment and Promotion reconcilers share about blue-green schemas: reading
//! a revision's objects, mapping the engine's blue/green outcomes to conditions, and
//! copying the live and retained sets into status. Holds no SQL: every query is the
//! engine's ([`BlueGreen`]).

use crate::api::conditions::reasons;
use crate::api::environment::{Environment, EnvironmentStatus, LiveSchema, SchemaSet};
use crate::api::promotion::{ObjectDiff, PromotionDiff};
use crate::engine::Deployer;
use crate::engine::bluegreen::{self, BlueGreen, PromoteOptions, StageOptions};
use crate::project::objects::Objects;
use crate::registry::Registry;

use super::Context;
use super::fetch::{Fetched, relative};
use super::status::Outcome;

/// The blue/green engine on an Environment's connection: serving layers when the
/// Environment has a `schemaSuffix` (it shares its database).
pub fn engine<'c>(ctx: &Context, env: &Environment, db: &'c Deployer) -> BlueGreen<'c> {
    BlueGreen::new(
        db.client(),
        Registry::new(&env.spec.database.registry),
        ctx.committer.clone(),
    )
    .layered(env.spec.schema_suffix.clone())
}

/// How two Environments' databases relate, for a promotion between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Different databases (or unknown yet): stage in the target and swap.
    Separate,
    /// One database, distinct layers: repoint the target's layers at the source's sets
    /// (the source's schema suffix); nothing is rebuilt.
    Layers(String),
    /// One database without distinct layers: their blue-green schemas are the same
    /// schemas, so nothing can be promoted between them.
    Clash,
}

/// Whether `source` and `target` name the same database (their Secrets' redacted
/// targets are equal) and whether they serve distinct layers there.
pub fn sharing(ctx: &Context, source: &Environment, target: &Environment) -> Sharing {
    let same = matches!(
        (super::database::target(ctx, source), super::database::target(ctx, target)),
        (Ok(a), Ok(b)) if a.shown() == b.shown()
    );
    match (&source.spec.schema_suffix, &target.spec.schema_suffix) {
        _ if !same => Sharing::Separate,
        (Some(from), Some(to)) if from != to => Sharing::Layers(from.clone()),
        _ => Sharing::Clash,
    }
}

/// The revision's `objects/`; an invalid one is terminal, named by file and line.
pub fn objects(fetched: &Fetched) -> Result<Objects, Outcome> {
    Objects::load(&fetched.project).map_err(|e| Outcome::Terminal {
        reason: reasons::INVALID_PROJECT,
        message: relative(&e.to_string(), &fetched.dir),
    })
}

/// The outcome a blue/green failure reports: terminal when only new input can help.
pub fn outcome(error: &bluegreen::Error, fetched: &Fetched) -> Outcome {
    let message = relative(&error.to_string(), &fetched.dir);
    Outcome::failed(error.is_terminal(), error.reason(), message)
}

/// Copies the project's live and retained sets into an Environment's status. A database
/// without blue/green state (or a failing read) leaves them empty.
pub async fn report_sets(bg: &BlueGreen<'_>, fetched: &Fetched, status: &mut EnvironmentStatus) {
    let sets = bg.sets(&fetched.project).await.unwrap_or_default();
    status.live = sets
        .live
        .iter()
        .map(|(schema, physical)| LiveSchema {
            schema: sets.served.get(schema).unwrap_or(schema).clone(),
            physical: physical.clone(),
            deployment: sets
                .live_deployments
                .get(schema)
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    status.retained = sets
        .retained
        .into_iter()
        .map(|set| SchemaSet {
            deployment: set.deployment,
            schemas: set.schemas,
        })
        .collect();
}

/// The blue-green schemas whose live objects differ from the revision's (all when
/// nothing is live yet). Empty when the project has none. Reads only.
pub async fn differing(bg: &BlueGreen<'_>, fetched: &Fetched) -> bluegreen::Result<Vec<String>> {
    let objects = Objects::load(&fetched.project)?;
    if objects.schemas.is_empty() {
        return Ok(Vec::new());
    }
    Ok(bg
        .diff_project(&fetched.project, &objects)
        .await?
        .into_iter()
        .filter(|(_, d)| !(d.added.is_empty() && d.changed.is_empty() && d.removed.is_empty()))
        .map(|(schema, _)| schema)
        .collect())
}

/// What an autoDeploy Environment did to follow the project's objects.
pub enum Followed {
    /// Every blue-green schema matches the revision.
    UpToDate,
    /// The changed schemas were staged, verified and swapped in.
    Swapped {
        /// The deployment now live.
        deployment: String,
        /// The logical schemas swapped.
        schemas: Vec<String>,
    },
}

/// Brings an autoDeploy Environment's blue-green schemas to the revision: stages what
/// changed and swaps it in at once (dev and test have no Promotion in between).
pub async fn follow(
    bg: &BlueGreen<'_>,
    fetched: &Fetched,
    objects: &Objects,
    env: &Environment,
) -> bluegreen::Result<Followed> {
    if objects.schemas.is_empty() {
        return Ok(Followed::UpToDate);
    }
    // Read-only first: staging takes the project's lock and writes the registry.
    let diff = bg.diff_project(&fetched.project, objects).await?;
    if diff
        .values()
        .all(|d| d.added.is_empty() && d.changed.is_empty() && d.removed.is_empty())
    {
        return Ok(Followed::UpToDate);
    }
    let staged = bg
        .stage(&fetched.project, objects, &StageOptions::default())
        .await?;
    if staged.up_to_date {
        return Ok(Followed::UpToDate);
    }
    let options = PromoteOptions {
        deployment: Some(staged.deployment.clone()),
        suspended: env.spec.suspend,
        ..PromoteOptions::default()
    };
    let swapped = bg.promote(&fetched.project, objects, &options).await?;
    Ok(Followed::Swapped {
        deployment: swapped.deployment,
        schemas: staged.schemas.into_keys().collect(),
    })
}

/// A promotion's diff for status: pending changes and per-schema object changes, keeping
/// only schemas that differ.
pub fn diff(
    changes: Vec<String>,
    schemas: std::collections::BTreeMap<String, bluegreen::SchemaDiff>,
) -> PromotionDiff {
    PromotionDiff {
        changes,
        schemas: schemas
            .into_iter()
            .filter(|(_, d)| !(d.added.is_empty() && d.changed.is_empty() && d.removed.is_empty()))
            .map(|(schema, d)| {
                (
                    schema,
                    ObjectDiff {
                        added: d.added,
                        changed: d.changed,
                        removed: d.removed,
                    },
                )
            })
            .collect(),
    }
}
