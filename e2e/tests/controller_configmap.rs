//! A project held in a ConfigMap goes through the same checks as a git tree (issue #13):
//! a path that escapes the project and a file over the controller's size limit are
//! refused with the reasons git sources get, `UnsafePath` and `SizeLimitExceeded`, and
//! the project stalls instead of retrying.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;

/// Applies ConfigMap `name` with flat keys `data` (values are plain text).
fn flat_configmap(env: &Env, name: &str, data: &[(&str, &str)]) {
    let mut yaml = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n");
    for (key, value) in data {
        yaml.push_str(&format!("  {key}: {value:?}\n"));
    }
    env.apply(&yaml);
}

fn stalled_reason(env: &Env, what: &str) -> Option<(String, String)> {
    let obj = env.get(what);
    let stalled = condition(&obj, "Stalled")?;
    (stalled["status"] == "True").then(|| {
        (
            stalled["reason"].as_str().unwrap_or_default().to_string(),
            stalled["message"].as_str().unwrap_or_default().to_string(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_projects_are_refused_for_what_git_trees_are_refused_for() {
    let env = Env::start();
    let plan = "%project=shop\\n\\nusers 2024-01-01T00:00:00Z Ann <ann@example.com>\\n";
    flat_configmap(
        &env,
        "escapes",
        // NB: a key may not start with `..` (Kubernetes refuses it), but may hold one.
        &[
            ("sqitch.plan", plan),
            ("deploy__..__..__x.sql", "select 1;"),
        ],
    );
    flat_configmap(
        &env,
        "too-big",
        &[
            ("sqitch.plan", plan),
            ("deploy__users.sql", &"x".repeat(2048)),
        ],
    );
    env.apply(&project_yaml("escapes", "escapes"));
    env.apply(&project_yaml("too-big", "too-big"));
    let controller = env.controller("c1", &["--max-file-size", "1024"]);

    let (reason, message) = eventually(Duration::from_secs(60), "escapes stalls", || {
        stalled_reason(&env, "databaseproject/escapes")
    });
    assert_eq!(reason, "UnsafePath", "{message}\n{}", controller.log());
    assert!(
        message.contains("deploy/../../x.sql"),
        "names the path: {message}"
    );
    assert!(
        message.contains("ConfigMap escapes"),
        "names the ConfigMap: {message}"
    );

    let (reason, message) = eventually(Duration::from_secs(60), "too-big stalls", || {
        stalled_reason(&env, "databaseproject/too-big")
    });
    assert_eq!(
        reason,
        "SizeLimitExceeded",
        "{message}\n{}",
        controller.log()
    );
    assert!(
        message.contains("deploy/users.sql"),
        "names the file: {message}"
    );
}
