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
    // The guards shared with the CLI (target locked or suspended, source not finalized
    // or stale, partial promotion, stale upstreams, rework) are the engine's:
    // `engine::bluegreen::guards`.
    /// Promotion guard: source and target use different DatabaseProjects, or are the same.
    pub const GUARD_PROJECT_MISMATCH: &str = "GuardProjectMismatch";
    /// Promotion guard: the wanted revision is not the project's current content, so it
    /// cannot be deployed.
    pub const GUARD_REVISION_UNAVAILABLE: &str = "GuardRevisionUnavailable";
    /// Promotion guard: source and target are one database but do not serve distinct
    /// layers (each needs its own `schemaSuffix`), so their blue-green schemas would be
    /// the same schemas.
    pub const GUARD_SHARED_DATABASE: &str = "GuardSharedDatabase";
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
