//! What to do about an Environment's database, decided purely from gathered facts.

/// What to do about the database, decided from gathered facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Deploy the pending changes.
    Deploy,
    /// Nothing pending.
    UpToDate,
    /// Pending changes wait for a Promotion (autoDeploy is off).
    AwaitPromotion,
    /// This revision already failed for this generation; wait for a new revision, a new
    /// generation, or a requestedAt.
    KeepFailed,
}

/// Facts [`decide`] looks at.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `spec.autoDeploy`.
    pub auto_deploy: bool,
    /// Pending change count.
    pub pending: usize,
    /// The revision at hand.
    pub revision: String,
    /// The revision of the last failure, if the last attempt failed.
    pub failed_revision: Option<String>,
    /// The generation or the requestedAt annotation changed since the failure.
    pub retry_requested: bool,
}

/// Decides what to do with the database.
pub fn decide(f: &Facts) -> Decision {
    if f.pending == 0 {
        Decision::UpToDate
    } else if !f.auto_deploy {
        Decision::AwaitPromotion
    } else if f.failed_revision.as_deref() == Some(f.revision.as_str()) && !f.retry_requested {
        Decision::KeepFailed
    } else {
        Decision::Deploy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_table() {
        struct Case {
            name: &'static str,
            facts: Facts,
            want: Decision,
        }
        let base = Facts {
            auto_deploy: true,
            pending: 3,
            revision: "r2".into(),
            failed_revision: None,
            retry_requested: false,
        };
        let cases = [
            Case {
                name: "nothing pending",
                facts: Facts {
                    pending: 0,
                    ..base.clone()
                },
                want: Decision::UpToDate,
            },
            Case {
                name: "auto deploy deploys",
                facts: base.clone(),
                want: Decision::Deploy,
            },
            Case {
                name: "promotion-only waits",
                facts: Facts {
                    auto_deploy: false,
                    ..base.clone()
                },
                want: Decision::AwaitPromotion,
            },
            Case {
                name: "failed revision is not retried (no hot loop)",
                facts: Facts {
                    failed_revision: Some("r2".into()),
                    ..base.clone()
                },
                want: Decision::KeepFailed,
            },
            Case {
                name: "a new revision heals",
                facts: Facts {
                    failed_revision: Some("r1".into()),
                    ..base.clone()
                },
                want: Decision::Deploy,
            },
            Case {
                name: "requestedAt retries a failed revision",
                facts: Facts {
                    failed_revision: Some("r2".into()),
                    retry_requested: true,
                    ..base.clone()
                },
                want: Decision::Deploy,
            },
        ];
        for case in cases {
            assert_eq!(decide(&case.facts), case.want, "{}", case.name);
        }
    }
}
