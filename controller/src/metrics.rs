//! The controller's Prometheus metrics (prometheus-client); the admin port that serves
//! them is [`crate::runtime::admin`].
//!
//! Labels stay bounded: kinds, reasons and results are closed sets. Never names or URLs.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `DatabaseProject`, `Environment` or `Promotion`.
    pub kind: String,
}

/// Labels naming a kind and a failure reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The kind.
    pub kind: String,
    /// The condition reason of the failure.
    pub reason: String,
}

/// Labels naming a promotion result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `succeeded`, `failed` or `blocked` (promotions); `accepted`, `ignored` or
    /// `rejected` (webhooks).
    pub result: String,
}

/// The controller's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Count of reconciles started, by kind.
    pub reconcile_runs: Family<KindLabels, Counter>,
    /// Count of reconciles that failed, by kind and reason.
    pub reconcile_failures: Family<FailureLabels, Counter>,
    /// Reconcile durations, by kind.
    pub reconcile_duration: Family<KindLabels, Histogram>,
    /// Count of changes deployed.
    pub changes_applied: Counter,
    /// Count of deploys refused because another deployer held the project's lock.
    pub lock_waits: Counter,
    /// Time spent connecting and taking the registry lock.
    pub registry_lock_wait: Histogram,
    /// Count of promotions, by result.
    pub promotions: Family<ResultLabels, Counter>,
    /// Count of git ref lookups (one per look at a remote).
    pub git_ref_lookups: Counter,
    /// Count of git packs fetched.
    pub git_fetches: Counter,
    /// Count of webhook requests, by result.
    pub webhook_requests: Family<ResultLabels, Counter>,
    /// Count of drift findings, each counted once, when first found.
    pub drift_findings: Counter,
}

/// Histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

impl Metrics {
    /// Creates the metrics and registers them under the `switchyard` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            reconcile_runs: Family::default(),
            reconcile_failures: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            changes_applied: Counter::default(),
            lock_waits: Counter::default(),
            registry_lock_wait: Histogram::new(BUCKETS),
            promotions: Family::default(),
            git_ref_lookups: Counter::default(),
            git_fetches: Counter::default(),
            webhook_requests: Family::default(),
            drift_findings: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("switchyard");
        r.register(
            "reconcile_runs",
            "Count of reconciles started",
            metrics.reconcile_runs.clone(),
        );
        r.register(
            "reconcile_failures",
            "Count of reconciles that failed, by kind and reason",
            metrics.reconcile_failures.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration in seconds, by kind",
            metrics.reconcile_duration.clone(),
        );
        r.register(
            "changes_applied",
            "Count of changes deployed",
            metrics.changes_applied.clone(),
        );
        r.register(
            "lock_waits",
            "Count of deploys refused because the project's lock was held",
            metrics.lock_waits.clone(),
        );
        r.register(
            "registry_lock_wait_seconds",
            "Time spent connecting to the database and taking the registry lock",
            metrics.registry_lock_wait.clone(),
        );
        r.register(
            "promotions",
            "Count of promotions, by result",
            metrics.promotions.clone(),
        );
        r.register(
            "git_ref_lookups",
            "Count of git ref lookups (one per look at a remote that found nothing new)",
            metrics.git_ref_lookups.clone(),
        );
        r.register(
            "git_fetches",
            "Count of git packs fetched",
            metrics.git_fetches.clone(),
        );
        r.register(
            "webhook_requests",
            "Count of webhook requests, by result (accepted, ignored, rejected)",
            metrics.webhook_requests.clone(),
        );
        r.register(
            "drift_findings",
            "Count of drift findings (an edited deploy script, a changed or unknown blue-green object, an orphaned registry row), each counted once when first found",
            metrics.drift_findings.clone(),
        );
        metrics
    }

    /// Counts what one git source read did on the network.
    pub fn git(&self, ref_lookups: u32, packs: u32) {
        self.git_ref_lookups.inc_by(u64::from(ref_lookups));
        self.git_fetches.inc_by(u64::from(packs));
    }

    /// Counts a webhook request with `result`.
    pub fn webhook(&self, result: &str) {
        self.webhook_requests
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a reconcile of `kind` and returns a guard that observes its duration on drop.
    pub fn reconcile(&self, kind: &str) -> ReconcileTimer {
        let labels = KindLabels {
            kind: kind.to_string(),
        };
        self.reconcile_runs.get_or_create(&labels).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.reconcile_duration.get_or_create(&labels).clone(),
        }
    }

    /// Counts a failure of `kind` with `reason`.
    pub fn failure(&self, kind: &str, reason: &str) {
        self.reconcile_failures
            .get_or_create(&FailureLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
