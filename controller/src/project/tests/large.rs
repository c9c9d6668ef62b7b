//! A generated 10,000-change plan: parsed and validated correctly, with nothing quadratic
//! in the way (no timing asserts; `cargo test --release` shows the time with --nocapture).

use std::collections::HashSet;
use std::fmt::Write;

use super::plan;

/// 10,000 changes: each requires the one planned before it, a tag every 100 changes, a change@tag
/// dependency after each tag, and `c50` reworked in every section.
fn generated() -> String {
    let mut text =
        String::from("%syntax-version=1.0.0\n%project=big\n%uri=https://example.com/big\n\n");
    let mut previous = String::new();
    for i in 0..10_000 {
        let mut deps = Vec::new();
        if i > 0 {
            deps.push(previous.clone());
        }
        if i >= 100 && i % 100 == 1 {
            deps.push(format!("c{}@t{}", i - 2, i / 100 - 1));
            deps.push(format!("!other:c{i}"));
        }
        let deps = if deps.is_empty() {
            String::new()
        } else {
            format!("[{}] ", deps.join(" "))
        };
        // The 50th change of every section reworks `c50`.
        let name = if i % 100 == 50 {
            "c50".to_owned()
        } else {
            format!("c{i}")
        };
        let _ = writeln!(
            text,
            "{name} {deps}2024-01-01T00:00:00Z Planner <p@example.com> # change {i}"
        );
        previous = name;
        if i % 100 == 99 {
            let _ = writeln!(
                text,
                "@t{} 2024-01-02T00:00:00Z Planner <p@example.com>",
                i / 100
            );
        }
    }
    text
}

#[test]
fn a_ten_thousand_change_plan_parses_and_validates() {
    let text = generated();
    let started = std::time::Instant::now();
    let plan = plan(&text);
    println!("parsed 10,000 changes in {:?}", started.elapsed());
    assert_eq!(plan.changes.len(), 10_000);
    assert_eq!(
        plan.changes.iter().map(|c| c.tags.len()).sum::<usize>(),
        100
    );
    let ids: HashSet<&str> = plan.changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 10_000, "ids are unique");
    let reworked = plan.changes.iter().filter(|c| c.is_reworked()).count();
    assert_eq!(reworked, 99);
    assert_eq!(plan.changes[50].script_file, "c50@t0.sql");
    assert_eq!(plan.changes[150].name, "c50");
    assert_eq!(
        plan.changes[150].parent.as_deref(),
        Some(plan.changes[50].id.as_str())
    );
    assert_eq!(plan.find("@t99"), Some(9_999));
    assert_eq!(plan.find("c50@t0"), Some(50));
    assert_eq!(plan.changes[9_999].line, 10_000 + 99 + 4);
}
