//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas are safe: only the
//! holder runs reconcilers. Writes carry the Lease's resourceVersion, so two candidates
//! racing for an expired lease cannot both win. The database lock still guards each
//! database on its own.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{debug, info};

/// Competes for and holds one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// What a look at the Lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody (valid) holds it: take it.
    Free,
    /// We hold it: renew.
    Ours,
    /// Someone else holds it until it expires.
    Held,
}

/// Decides from the Lease's fields, at `now`.
pub fn judge(
    spec: Option<&LeaseSpec>,
    identity: &str,
    now: k8s_openapi::jiff::Timestamp,
) -> Verdict {
    let Some(spec) = spec else {
        return Verdict::Free;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Verdict::Free;
    }
    if holder == identity {
        return Verdict::Ours;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(MicroTime(renewed)) => {
            let expires = renewed.as_second() + seconds;
            if now.as_second() > expires {
                Verdict::Free
            } else {
                Verdict::Held
            }
        }
        None => Verdict::Free,
    }
}

impl LeaderElector {
    /// An elector for Lease `namespace/name`, as `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// Tries once to take or renew the lease. `Ok(true)` when we hold it afterwards.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let existing = self.api.get_opt(&self.name).await?;
        let verdict = judge(
            existing.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        if verdict == Verdict::Held {
            return Ok(false);
        }
        let mut lease = existing.clone().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let mut spec = lease.spec.take().unwrap_or_default();
        if verdict == Verdict::Free {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + i32::from(existing.is_some()));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(self.duration.as_secs().max(1) as i32);
        spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(spec);
        let result = if existing.is_some() {
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match result {
            Ok(_) => Ok(true),
            // Someone else wrote first: they won this round.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    info!(identity = %self.identity, lease = %self.name, "Became leader");
                    return;
                }
                Ok(false) if !announced => {
                    info!(identity = %self.identity, lease = %self.name, "Waiting for leadership");
                    announced = true;
                }
                Ok(false) => {}
                Err(error) => debug!(%error, "Leader election attempt failed"),
            }
            tokio::time::sleep(self.duration / 5).await;
        }
    }

    /// Renews the lease until renewing fails for longer than the lease lasts; returns when
    /// leadership is lost.
    pub async fn hold(&self) {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => return,
                Err(error) => {
                    debug!(%error, "Lease renewal failed");
                    if last_ok.elapsed() > self.duration * 2 / 3 {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up so another replica takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn spec(holder: &str, renewed: i64, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(
                Timestamp::from_second(renewed).unwrap_or_default(),
            )),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn judge_table() {
        let at = |s| Timestamp::from_second(s).unwrap_or_default();
        assert_eq!(judge(None, "a", at(100)), Verdict::Free, "no lease");
        assert_eq!(
            judge(Some(&spec("a", 100, 15)), "a", at(200)),
            Verdict::Ours,
            "ours, even expired"
        );
        assert_eq!(
            judge(Some(&spec("b", 100, 15)), "a", at(110)),
            Verdict::Held,
            "held and fresh"
        );
        assert_eq!(
            judge(Some(&spec("b", 100, 15)), "a", at(116)),
            Verdict::Free,
            "expired"
        );
        assert_eq!(
            judge(Some(&spec("", 100, 15)), "a", at(101)),
            Verdict::Free,
            "released"
        );
    }
}
