//! `switchyard plan`: the project's changes with their ids, tags and dependencies, for
//! people (one line per change) or as JSON for scripts and tests.
//!
//! Pure formatting of a [`Project`] already read; dependencies are shown as Sqitch's
//! `sqitch plan` shows them (`as_string`: the own project's prefix dropped).

use serde_json::{Value, json};

use crate::project::{Change, Project, ScriptKind};

/// Renders the plan. JSON: `{"project", "uri", "changes": [{"name", "id", "tags",
/// "requires", "conflicts", "planner_name", "planner_email", "planned_at", "note", "line",
/// "script"}]}` where `tags` are names without `@`, `conflicts` are without `!` and `script`
/// is the deploy script relative to the project root. Ends with a newline.
pub(crate) fn render(project: &Project, json: bool) -> String {
    if json {
        render_json(project)
    } else {
        render_text(project)
    }
}

fn render_json(project: &Project) -> String {
    let plan = &project.plan;
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .map(|change| {
            json!({
                "name": change.name,
                "id": change.id,
                "tags": change.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                "requires": change.requires.iter().map(|d| d.as_string(&plan.project)).collect::<Vec<_>>(),
                "conflicts": change.conflicts.iter().map(|d| d.as_string(&plan.project)).collect::<Vec<_>>(),
                "planner_name": change.planner_name,
                "planner_email": change.planner_email,
                "planned_at": change.planned_at,
                "note": change.note,
                "line": change.line,
                "script": script(project, change),
            })
        })
        .collect();
    let doc = json!({ "project": plan.project, "uri": plan.uri, "changes": changes });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    out
}

/// One line per change: `name  id7  @tags  requires: a, b  conflicts: c`, names padded so
/// the ids line up.
fn render_text(project: &Project) -> String {
    let plan = &project.plan;
    let width = plan
        .changes
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for change in &plan.changes {
        let mut line = format!(
            "{:<width$}  {}",
            change.name,
            &change.id[..change.id.len().min(7)]
        );
        if !change.tags.is_empty() {
            let tags: Vec<String> = change.tags.iter().map(|t| format!("@{}", t.name)).collect();
            line.push_str(&format!("  {}", tags.join(" ")));
        }
        for (label, deps) in [
            ("requires", &change.requires),
            ("conflicts", &change.conflicts),
        ] {
            if !deps.is_empty() {
                let shown: Vec<String> = deps.iter().map(|d| d.as_string(&plan.project)).collect();
                line.push_str(&format!("  {label}: {}", shown.join(", ")));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The deploy script, relative to the project root when it is inside it.
fn script(project: &Project, change: &Change) -> String {
    let path = project.script_path(change, ScriptKind::Deploy);
    path.strip_prefix(&project.root)
        .unwrap_or(&path)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const PLAN: &str = "%project=shop\n%uri=https://example.com/shop\n\n\
        users 2024-01-01T00:00:00Z Ann <ann@example.com> # the users table\n\
        @v1 2024-01-02T00:00:00Z Ann <ann@example.com>\n\
        orders [users !legacy other:core@v2] 2024-01-03T00:00:00Z Ann <ann@example.com>\n";

    fn project() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("sqitch.conf"), "[core]\n\tengine = pg\n").expect("write");
        std::fs::write(root.join("sqitch.plan"), PLAN).expect("write");
        for kind in ["deploy", "revert", "verify"] {
            std::fs::create_dir(root.join(kind)).expect("mkdir");
            for change in ["users", "orders"] {
                std::fs::write(root.join(kind).join(format!("{change}.sql")), "select 1;\n")
                    .expect("write");
            }
        }
        let mut project = Project::load(root).expect("valid project");
        // Keep paths stable for the assertions after the temp dir is gone.
        project.root = Path::new("/p").to_owned();
        project.deploy_dir = Path::new("/p/deploy").to_owned();
        project
    }

    #[test]
    fn json_lists_changes_with_ids_tags_and_dependencies_as_sqitch_shows_them() {
        let out: Value = serde_json::from_str(&render(&project(), true)).expect("json");
        assert_eq!(out["project"], "shop");
        assert_eq!(out["uri"], "https://example.com/shop");
        let changes = out["changes"].as_array().expect("changes");
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0]["name"], "users");
        assert_eq!(changes[0]["tags"], json!(["v1"]));
        assert_eq!(changes[0]["note"], "the users table");
        assert_eq!(changes[0]["line"], 4);
        assert_eq!(changes[0]["script"], "deploy/users.sql");
        assert_eq!(changes[0]["id"].as_str().map(str::len), Some(40));
        assert_eq!(changes[1]["requires"], json!(["users", "other:core@v2"]));
        assert_eq!(changes[1]["conflicts"], json!(["legacy"]));
        assert_eq!(changes[1]["planner_name"], "Ann");
        assert_eq!(changes[1]["planner_email"], "ann@example.com");
        assert_eq!(changes[1]["planned_at"], "2024-01-03T00:00:00Z");
    }

    #[test]
    fn text_shows_one_aligned_line_per_change() {
        let project = project();
        let out = render(&project, false);
        let users = &project.plan.changes[0].id[..7];
        let orders = &project.plan.changes[1].id[..7];
        assert_eq!(
            out,
            format!(
                "users   {users}  @v1\norders  {orders}  requires: users, other:core@v2  conflicts: legacy\n"
            )
        );
    }
}
