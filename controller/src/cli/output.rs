//! What the CLI prints: short lines for people, one JSON document with `--json`.

use std::io::Write;

use serde_json::json;

use super::CliError;
use crate::engine::{self, DeployReport, RevertReport, Status, VerifyReport};
use crate::registry::Event;
use crate::registry::workflow::WorkflowEvent;

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
        let (sign, note) = match p.operation {
            "revert" => ('-', ""),
            "cleanup" => ('-', " (cleanup)"),
            "replace" => ('~', " (replace)"),
            "record" => ('+', " (recorded, superseded by its newest version)"),
            "ignore" => ('=', " (ignored)"),
            "unignore" => ('=', " (unignored)"),
            "mark" => ('=', " (state recorded)"),
            _ => ('+', ""),
        };
        println!("  {sign} [{}/{}] {}{note}", p.index, p.total, p.change);
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
    for change in status.reworked() {
        let state = change.workflow.map_or("-", |s| s.as_str());
        let reason = if change.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", one_line(&change.reason))
        };
        println!(
            "workflow: {} {state} by {} since {}{reason}",
            change.name,
            change.file.as_deref().unwrap_or("?"),
            change.since.as_deref().unwrap_or("?")
        );
    }
    if let Some(refused) = &status.refused {
        println!("refused ({}): {refused}", refused.reason());
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
        for change in status.changes.iter().filter(|c| c.next.is_some()) {
            match change.next {
                Some("deploy") | None => println!("  * {}", change.name),
                Some(next) => println!("  * {} ({next})", change.name),
            }
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `log`: Sqitch's events, and switchyard's workflow events among them by time.
pub fn log(project: &str, events: &[Event], workflow: &[WorkflowEvent], json: bool) {
    if json {
        print_json(&json!({ "project": project, "events": events, "workflow": workflow }));
        return;
    }
    // Both lists are newest first. A workflow event is written after the Sqitch events of
    // its step, so at the same second it goes first.
    let mut workflow = workflow.iter().peekable();
    for e in events {
        while let Some(w) = workflow.next_if(|w| w.committed_at >= e.committed_at) {
            workflow_line(w);
        }
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
    for w in workflow {
        workflow_line(w);
    }
}

fn workflow_line(w: &WorkflowEvent) {
    let reason = if w.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", one_line(&w.reason))
    };
    println!(
        "{} {:<6} {} ({}) by {} <{}> [{}{reason}]",
        w.committed_at,
        w.event,
        w.change,
        short(&w.change_id),
        w.committer_name,
        w.committer_email,
        w.file
    );
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
        let others = [
            &report.ignored,
            &report.unignored,
            &report.cleaned,
            &report.replaced,
        ];
        if !report.deployed.is_empty() || others.iter().all(|names| names.is_empty()) {
            println!("{how} {} change(s)", report.deployed.len());
        }
        for (what, names) in [
            ("recorded without running (superseded)", &report.superseded),
            ("ignored", &report.ignored),
            ("unignored", &report.unignored),
            ("cleaned up", &report.cleaned),
            ("replaced", &report.replaced),
        ] {
            if !names.is_empty() {
                println!("{what}: {}", names.join(", "));
            }
        }
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
            engine::Error::Refused(refusal) => doc["refused"] = json!(refusal),
            _ => {}
        }
    }
    print_json(&doc);
}

fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}
