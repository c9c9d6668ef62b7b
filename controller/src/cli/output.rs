//! What the CLI prints: short lines for people, one JSON document with `--json`.

use std::io::Write;

use serde_json::json;

use super::CliError;
use crate::engine::{self, DeployReport, RevertReport, Status, VerifyReport};
use crate::registry::Event;

fn print_json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// Prints each change as it starts: `  + [3/120] add_invoices`.
pub struct Progress {
    json: bool,
}

impl Progress {
    /// Silent with `--json` (the document says what happened).
    pub fn new(json: bool) -> Progress {
        Progress { json }
    }

    /// Reports one step.
    pub fn show(&mut self, p: &engine::Progress) {
        if self.json {
            return;
        }
        let sign = if p.operation == "revert" { '-' } else { '+' };
        println!("  {sign} [{}/{}] {}", p.index, p.total, p.change);
    }
}

/// `status`.
pub fn status(status: &Status, json: bool) {
    if json {
        print_json(&serde_json::to_value(status).unwrap_or_default());
        return;
    }
    println!("project: {}", status.project);
    match &status.last_change {
        Some(last) => {
            let tags = if last.tags.is_empty() {
                String::new()
            } else {
                format!(" {}", last.tags.join(" "))
            };
            println!(
                "deployed: {} change(s), last {}{} ({}) at {}",
                status.deployed.len(),
                last.name,
                tags,
                short(&last.id),
                last.committed_at
            );
        }
        None => println!("deployed: nothing"),
    }
    if let Some(holder) = &status.locked_by {
        println!(
            "locked by {} on {} ({} since {})",
            holder.holder, holder.host, holder.operation, holder.started_at
        );
    }
    if !status.diverged.is_empty() {
        println!(
            "diverged: deployed but not in the plan at their position: {}",
            status.diverged.join(", ")
        );
    }
    if status.up_to_date {
        println!("up to date");
    } else if !status.pending.is_empty() {
        println!("pending: {} change(s)", status.pending.len());
        for name in &status.pending {
            println!("  * {name}");
        }
    }
}

/// `log`.
pub fn log(project: &str, events: &[Event], json: bool) {
    if json {
        print_json(&json!({ "project": project, "events": events }));
        return;
    }
    for e in events {
        let tags = if e.tags.is_empty() {
            String::new()
        } else {
            format!(" {}", e.tags.join(" "))
        };
        println!(
            "{} {:<6} {}{} ({}) by {} <{}>",
            e.committed_at,
            e.event,
            e.change,
            tags,
            short(&e.change_id),
            e.committer_name,
            e.committer_email
        );
    }
}

/// `deploy`.
pub fn deploy(report: &DeployReport, json: bool) {
    if json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
    } else if report.up_to_date {
        println!("nothing to deploy: up to date");
    } else {
        let how = if report.log_only {
            "logged (scripts not run)"
        } else {
            "deployed"
        };
        println!("{how} {} change(s)", report.deployed.len());
    }
}

/// `revert`.
pub fn revert(report: &RevertReport, json: bool) {
    if json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
    } else if report.reverted.is_empty() {
        println!("nothing to revert");
    } else {
        println!("reverted {} change(s)", report.reverted.len());
    }
}

/// `verify`.
pub fn verify(report: &VerifyReport, json: bool) {
    if json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    for c in &report.changes {
        println!("  * {} .. {}", c.change, c.result);
    }
    if !report.undeployed.is_empty() {
        println!("undeployed: {}", report.undeployed.join(", "));
    }
    println!("verify successful");
}

/// Any failure: `error: …` on stderr, or a JSON document with the details on stdout.
pub fn error(error: &CliError, json: bool) {
    if !json {
        eprintln!("error: {error}");
        if let CliError::Engine(engine::Error::VerifyFailed { failures }) = error {
            for f in failures {
                eprintln!("  {f}");
            }
        }
        return;
    }
    let mut doc = json!({ "error": error.to_string() });
    if let CliError::Engine(e) = error {
        match e {
            engine::Error::ChangeFailed {
                failure,
                reverted,
                kept,
            } => {
                doc["failure"] = serde_json::to_value(failure).unwrap_or_default();
                doc["reverted"] = json!(reverted);
                doc["kept"] = json!(kept);
            }
            engine::Error::RevertFailed { failure, reverted } => {
                doc["failure"] = serde_json::to_value(failure).unwrap_or_default();
                doc["reverted"] = json!(reverted);
            }
            engine::Error::VerifyFailed { failures } => doc["failures"] = json!(failures),
            engine::Error::Locked { holder, .. } => doc["locked_by"] = json!(holder),
            _ => {}
        }
    }
    print_json(&doc);
}

fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}
