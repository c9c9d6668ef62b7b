//! The condition vocabulary shared by every kind: condition types, reasons, and the schema
//! of the `conditions` list.
//!
//! Types only. The helper that writes conditions is `reconcile::status::set_condition`.

/// Condition types. Each says what `True` means; `RECONCILING`, `STALLED`, `BLOCKED` and
/// `ROLLED_BACK` are abnormal-true ("True" means something needs attention or is under way).
pub mod types {
    /// `True`: the object's desired state is realised (kstatus "Current"). The one condition
    /// `kubectl wait --for=condition=Ready` should look at.
    pub const READY: &str = "Ready";
    /// Abnormal-true: work towards the current generation is under way.
    pub const RECONCILING: &str = "Reconciling";
    /// Abnormal-true: no progress is possible until the spec (or the project) changes.
    pub const STALLED: &str = "Stalled";
    /// `True`: the spec and the project it points at passed validation.
    pub const VALIDATED: &str = "Validated";
    /// `True`: the plan up to the wanted revision is deployed in the database.
    pub const DEPLOYED: &str = "Deployed";
    /// `True`: the verify scripts passed after the last deploy.
    pub const VERIFIED: &str = "Verified";
    /// `True` (Promotion): the target received the revision; its staged blue-green
    /// schemas are live.
    pub const PROMOTED: &str = "Promoted";
    /// `True` (Promotion): the revision's changes are deployed in the target and its
    /// changed blue-green schemas are built into staging schemas.
    pub const STAGED: &str = "Staged";
    /// Abnormal-true (Promotion): a guard refused the promotion; the reason names it.
    pub const BLOCKED: &str = "Blocked";
    /// Abnormal-true: a failed deploy was rolled back as the failure mode dictates; the
    /// message lists what was reverted.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// Abnormal-true (Environment): the database differs from what was deployed; the
    /// message and `status.drift` name what differs.
    pub const DRIFTED: &str = "Drifted";
}

/// Condition reasons, UpperCamelCase. Events reuse the reason of the condition that changed.
pub mod reasons {
    /// Work on a new generation or revision started.
    pub const PROGRESSING: &str = "Progressing";
    /// Changes are being deployed right now.
    pub const DEPLOYING: &str = "Deploying";
    /// Everything wanted is done.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The database has every change of the wanted revision.
    pub const UP_TO_DATE: &str = "UpToDate";
    /// Changes were deployed in this reconcile.
    pub const DEPLOYED: &str = "Deployed";
    /// A change failed while deploying.
    pub const DEPLOY_FAILED: &str = "DeployFailed";
    /// Verify scripts failed.
    pub const VERIFY_FAILED: &str = "VerifyFailed";
    /// The failure mode reverted changes after a failure.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// A promotion-only Environment has pending changes that wait for a Promotion.
    pub const AWAITING_PROMOTION: &str = "AwaitingPromotion";
    /// `spec.suspend` is true: nothing is done.
    pub const SUSPENDED: &str = "Suspended";
    /// The project source was read and is valid.
    pub const FETCHED: &str = "Fetched";
    /// The project's plan, manifest or scripts are invalid; the message names file and line.
    pub const INVALID_PROJECT: &str = "InvalidProject";
    /// The project source (ConfigMap) could not be read.
    pub const SOURCE_UNAVAILABLE: &str = "SourceUnavailable";
    /// The source spec cannot work (a bad semver range, URL or path); fix the spec.
    pub const INVALID_SOURCE: &str = "InvalidSource";
    /// The git server refused the credentials, or wanted some; the message names the URL.
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// The branch or tag does not exist in the repository (deleted, or no tag matches).
    pub const REF_NOT_FOUND: &str = "RefNotFound";
    /// The source's `path` is not a directory at the revision.
    pub const PATH_NOT_FOUND: &str = "PathNotFound";
    /// The repository or artifact could not be reached or transferred in time.
    pub const FETCH_FAILED: &str = "FetchFailed";
    /// Refused files: a path escaping the project directory (`..`, an outside symlink),
    /// a `.git` entry or a submodule; the message names the file.
    pub const UNSAFE_PATH: &str = "UnsafePath";
    /// Refused files: one over the per-file size limit, all over the total, or too many;
    /// the message names the file.
    pub const SIZE_LIMIT_EXCEEDED: &str = "SizeLimitExceeded";
    /// Refused files: a SQL, plan or config file that is not UTF-8; the message names it.
    pub const INVALID_ENCODING: &str = "InvalidEncoding";
    /// A Flux artifact's digest is not the one its GitRepository announced.
    pub const DIGEST_MISMATCH: &str = "DigestMismatch";
    /// The Flux GitRepository has no artifact yet.
    pub const ARTIFACT_NOT_READY: &str = "ArtifactNotReady";
    /// The controller's source cache on disk could not be read or written.
    pub const CACHE_ERROR: &str = "CacheError";
    /// Event only: a tag now names another commit; the project follows it.
    pub const TAG_MOVED: &str = "TagMoved";
    /// A referenced object (DatabaseProject, Secret, Environment) does not exist.
    pub const NOT_FOUND: &str = "NotFound";
    /// The referenced DatabaseProject is not Ready yet.
    pub const PROJECT_NOT_READY: &str = "ProjectNotReady";
    /// The connection Secret lacks the keys needed to connect.
    pub const INVALID_SECRET: &str = "InvalidSecret";
    /// The database could not be reached.
    pub const CONNECT_FAILED: &str = "ConnectFailed";
    /// Another deployer holds the project's lock in the database.
    pub const LOCKED: &str = "Locked";
    /// The registry and the plan disagree (deployed changes missing from the plan).
    pub const DIVERGED: &str = "Diverged";
    /// The revision reworks changes (development workflow files) that the database has not
    /// deployed as planned, and the Environment does not allow rework. The message names the
    /// change and the file.
    pub const REWORK_NOT_ALLOWED: &str = "ReworkNotAllowed";
    /// The development workflow files contradict what the database recorded (an ignore
    /// removed without an unignore, a cleanup of a change others require).
    pub const INVALID_WORKFLOW: &str = "InvalidWorkflow";
    /// A dependency (requires / conflicts) is not satisfied.
    pub const DEPENDENCY_FAILED: &str = "DependencyFailed";
    /// The engine failed on its own queries.
    pub const DATABASE_ERROR: &str = "DatabaseError";
    /// The Kubernetes API refused or failed a request.
    pub const KUBE_ERROR: &str = "KubeError";
    /// The target received the promoted revision.
    pub const PROMOTED: &str = "Promoted";
    /// The staged blue-green schemas were swapped in.
    pub const SWAP_COMPLETED: &str = "SwapCompleted";
    /// Promotion guard: the source Environment does not exist.
    pub const GUARD_SOURCE_NOT_FOUND: &str = "GuardSourceNotFound";
    /// Promotion guard: the target Environment does not exist.
    pub const GUARD_TARGET_NOT_FOUND: &str = "GuardTargetNotFound";
    /// Promotion guard: another deployer holds the target's lock.
    pub const GUARD_TARGET_LOCKED: &str = "GuardTargetLocked";
    /// Promotion guard: the target is suspended (detached).
    pub const GUARD_TARGET_SUSPENDED: &str = "GuardTargetSuspended";
    /// Promotion guard: the source is not finalized (nothing verified is staged there).
    pub const GUARD_SOURCE_NOT_FINALIZED: &str = "GuardSourceNotFinalized";
    /// Promotion guard: the source is stale against the project's newest revision.
    pub const GUARD_SOURCE_STALE: &str = "GuardSourceStale";
    /// Promotion guard: the selection depends on changed upstream schemas it leaves out
    /// (`includeStaleUpstreams` takes them along).
    pub const GUARD_STALE_UPSTREAMS: &str = "GuardStaleUpstreams";
    /// Promotion guard: a selection covers only part of what changed, without
    /// `allowPartialPromotion`.
    pub const GUARD_PARTIAL_PROMOTION: &str = "GuardPartialPromotion";
    /// Promotion guard: source and target use different DatabaseProjects, or are the same.
    pub const GUARD_PROJECT_MISMATCH: &str = "GuardProjectMismatch";
    /// Promotion guard: the wanted revision is not the project's current content, so it
    /// cannot be deployed.
    pub const GUARD_REVISION_UNAVAILABLE: &str = "GuardRevisionUnavailable";
    /// Promotion guard: source and target are one database but do not serve distinct
    /// layers (each needs its own `schemaSuffix`), so their blue-green schemas would be
    /// the same schemas.
    pub const GUARD_SHARED_DATABASE: &str = "GuardSharedDatabase";
    /// Building or verifying the staging schemas failed; the message names the object's
    /// file and line, and says whether the staging copy was kept.
    pub const STAGE_FAILED: &str = "StageFailed";
    /// The swap kept losing the race for its locks (a long transaction on the live
    /// schemas); it is retried.
    pub const SWAP_TIMEOUT: &str = "SwapTimeout";
    /// The project's `objects/` cannot be staged: an invalid file, a name too long for
    /// PostgreSQL, or an object a layer cannot serve; the message names the file.
    pub const INVALID_OBJECTS: &str = "InvalidObjects";
    /// A schema a layer would take is an ordinary schema that Switchyard does not manage.
    pub const SCHEMA_CONFLICT: &str = "SchemaConflict";
    /// A rollback found no retained set to swap back in.
    pub const NOTHING_TO_ROLL_BACK: &str = "NothingToRollBack";
    /// The plan waits for a person to approve its digest (`spec.approvedPlanDigest`).
    pub const APPROVAL_PENDING: &str = "ApprovalPending";
    /// The approved digest names another plan than the one computed now (a new commit,
    /// another deploy, a hand edit); nothing was changed.
    pub const APPROVAL_STALE: &str = "ApprovalStale";
    /// The database differs from what was deployed into it.
    pub const DRIFT_DETECTED: &str = "DriftDetected";
    /// The database matches what was deployed into it.
    pub const NO_DRIFT: &str = "NoDrift";
    /// The target's database drifted and the Promotion does not set `allowDrift`.
    pub const GUARD_TARGET_DRIFTED: &str = "GuardTargetDrifted";
    /// The object lacks a key it must have (a namespace); nothing can be done with it.
    pub const MISSING_OBJECT_KEY: &str = "MissingObjectKey";

    /// Every reason above, for checks that a part only ever reports reasons from here.
    pub const ALL: &[&str] = &[
        PROGRESSING,
        DEPLOYING,
        SUCCEEDED,
        UP_TO_DATE,
        DEPLOYED,
        DEPLOY_FAILED,
        VERIFY_FAILED,
        ROLLED_BACK,
        AWAITING_PROMOTION,
        SUSPENDED,
        FETCHED,
        INVALID_PROJECT,
        SOURCE_UNAVAILABLE,
        INVALID_SOURCE,
        AUTHENTICATION_FAILED,
        REF_NOT_FOUND,
        PATH_NOT_FOUND,
        FETCH_FAILED,
        UNSAFE_PATH,
        SIZE_LIMIT_EXCEEDED,
        INVALID_ENCODING,
        DIGEST_MISMATCH,
        ARTIFACT_NOT_READY,
        CACHE_ERROR,
        TAG_MOVED,
        NOT_FOUND,
        PROJECT_NOT_READY,
        INVALID_SECRET,
        CONNECT_FAILED,
        LOCKED,
        DIVERGED,
        REWORK_NOT_ALLOWED,
        INVALID_WORKFLOW,
        DEPENDENCY_FAILED,
        DATABASE_ERROR,
        KUBE_ERROR,
        PROMOTED,
        SWAP_COMPLETED,
        GUARD_SOURCE_NOT_FOUND,
        GUARD_TARGET_NOT_FOUND,
        GUARD_TARGET_LOCKED,
        GUARD_TARGET_SUSPENDED,
        GUARD_SOURCE_NOT_FINALIZED,
        GUARD_SOURCE_STALE,
        GUARD_STALE_UPSTREAMS,
        GUARD_PARTIAL_PROMOTION,
        GUARD_PROJECT_MISMATCH,
        GUARD_REVISION_UNAVAILABLE,
        GUARD_SHARED_DATABASE,
        STAGE_FAILED,
        SWAP_TIMEOUT,
        INVALID_OBJECTS,
        SCHEMA_CONFLICT,
        NOTHING_TO_ROLL_BACK,
        APPROVAL_PENDING,
        APPROVAL_STALE,
        DRIFT_DETECTED,
        NO_DRIFT,
        GUARD_TARGET_DRIFTED,
        MISSING_OBJECT_KEY,
    ];
}

/// The schema of `status.conditions`: `metav1.Condition` items in a list-map keyed by
/// `type`, so several field managers can each own their conditions under server-side apply.
pub fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The latest observations of the object's state: Ready, Reconciling and Stalled (kstatus), and step conditions.",
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string", "description": "The condition's type, e.g. Ready.", "maxLength": 316},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"], "description": "True, False or Unknown."},
                "reason": {"type": "string", "description": "Why, as an UpperCamelCase word (e.g. DeployFailed).", "maxLength": 1024},
                "message": {"type": "string", "description": "Details for humans.", "maxLength": 32768},
                "lastTransitionTime": {"type": "string", "format": "date-time", "description": "When the status last changed."},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0, "description": "The generation the condition was set for."}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{reasons, types};

    /// `reasons::ALL` lists every reason constant, each once, each UpperCamelCase.
    #[test]
    fn all_lists_every_reason_once() {
        let text = include_str!("conditions.rs");
        let module = &text[text.find("pub mod reasons").unwrap_or(0)..];
        let module = &module[..module.find("pub const ALL").unwrap_or(module.len())];
        let declared: Vec<&str> = module
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .filter_map(|l| l.split_once(": &str = \""))
            .filter_map(|(_, rest)| rest.strip_suffix("\";"))
            .collect();
        let mut all = reasons::ALL.to_vec();
        all.sort_unstable();
        let mut sorted = declared.clone();
        sorted.sort_unstable();
        assert_eq!(all, sorted, "reasons::ALL and the constants differ");
        let mut unique = sorted.clone();
        unique.dedup();
        assert_eq!(unique, sorted, "a reason is declared twice");
        for reason in declared {
            assert!(
                reason.starts_with(|c: char| c.is_ascii_uppercase())
                    && reason.chars().all(|c| c.is_ascii_alphanumeric()),
                "{reason} is not UpperCamelCase"
            );
        }
    }

    /// No part of the crate spells a reason as a literal: each is defined once, above, and
    /// used by name (issue #13). Condition types that double as reasons are left out.
    #[test]
    fn no_reason_is_spelled_outside_this_file() {
        let types = [
            types::READY,
            types::RECONCILING,
            types::STALLED,
            types::VALIDATED,
            types::DEPLOYED,
            types::VERIFIED,
            types::PROMOTED,
            types::STAGED,
            types::BLOCKED,
            types::ROLLED_BACK,
            types::DRIFTED,
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs")
                    || path.ends_with("api/conditions.rs")
                    || path
                        .file_name()
                        .is_some_and(|n| n == "tests.rs" || n == "fixtures.rs")
                    || path.components().any(|c| c.as_os_str() == "tests")
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let product = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (n, line) in product.lines().enumerate() {
                    // Log messages may say what happened in one word.
                    let logged = ["trace!(", "debug!(", "info!(", "warn!(", "error!("];
                    if line.trim_start().starts_with("//")
                        || logged.iter().any(|m| line.contains(m))
                    {
                        continue;
                    }
                    for reason in reasons::ALL.iter().filter(|r| !types.contains(r)) {
                        if line.contains(&format!("\"{reason}\"")) {
                            found.push(format!("{}:{}: {reason}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "reasons spelled as literals:\n{}",
            found.join("\n")
        );
    }
}
