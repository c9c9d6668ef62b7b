//! Contract tests for the CRDs (issue #4): invalid objects are refused at apply, by the
//! schema and its CEL rules, naming the field path; `Promotion.spec.to` is immutable;
//! conditions are a list-map that two field managers can share.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;

/// Applies `yaml` and returns kubectl's error output; panics when it was accepted.
fn refused(env: &Env, yaml: &str) -> String {
    let out = env.run_with(&["apply", "-n", &env.ns, "-f", "-"], yaml);
    assert!(!out.status.success(), "accepted:\n{yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn admit_invalid_objects_are_refused_with_the_field_path() {
    let env = Env::start();
    struct Case {
        name: &'static str,
        yaml: &'static str,
        /// Substrings the refusal must contain (field path and reason).
        want: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "both source kinds",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: both}\nspec:\n  source:\n    configMap: {name: a}\n    git: {url: 'https://example.com/x.git'}\n",
            want: &["spec.source", "exactly one of configMap, git or sourceRef"],
        },
        Case {
            name: "no source kind",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: none}\nspec:\n  source: {}\n",
            want: &["spec.source", "exactly one of configMap, git or sourceRef"],
        },
        Case {
            name: "git and a Flux source",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: gf}\nspec:\n  source:\n    git: {url: 'https://example.com/x.git'}\n    sourceRef: {kind: GitRepository, name: x}\n",
            want: &["spec.source", "exactly one of configMap, git or sourceRef"],
        },
        Case {
            name: "two git refs",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: tworefs}\nspec:\n  source:\n    git: {url: 'https://example.com/x.git', ref: {branch: main, tag: v1}}\n",
            want: &[
                "spec.source.git.ref",
                "exactly one of branch, tag, semver or commit",
            ],
        },
        Case {
            name: "empty git ref",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: noref}\nspec:\n  source:\n    git: {url: 'https://example.com/x.git', ref: {}}\n",
            want: &[
                "spec.source.git.ref",
                "exactly one of branch, tag, semver or commit",
            ],
        },
        Case {
            name: "short commit",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: short}\nspec:\n  source:\n    git: {url: 'https://example.com/x.git', ref: {commit: abc123}}\n",
            want: &["spec.source.git.ref.commit"],
        },
        Case {
            name: "git path leaving the repository",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: dotdot}\nspec:\n  source:\n    git: {url: 'https://example.com/x.git', path: 'db/../../etc'}\n",
            want: &["spec.source.git.path", "must not contain '..'"],
        },
        Case {
            name: "local path as a git url",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: local}\nspec:\n  source:\n    git: {url: 'file:///etc'}\n",
            want: &["spec.source.git.url", "url must be https://"],
        },
        Case {
            name: "missing source",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: missing}\nspec: {}\n",
            want: &["spec.source", "Required value"],
        },
        Case {
            name: "bad interval",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: iv}\nspec:\n  interval: soon\n  source:\n    configMap: {name: a}\n",
            want: &["spec.interval"],
        },
        Case {
            name: "bad engine enum",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: en}\nspec:\n  engine: oracle\n  source:\n    configMap: {name: a}\n",
            want: &["spec.engine", "Unsupported value"],
        },
        Case {
            name: "environment without projectRef",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata: {name: e1}\nspec:\n  database: {secretRef: {name: s}}\n",
            want: &["spec.projectRef", "Required value"],
        },
        Case {
            name: "bad failure mode",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata: {name: e2}\nspec:\n  projectRef: {name: p}\n  database: {secretRef: {name: s}}\n  failureMode: sometimes\n",
            want: &["spec.failureMode", "Unsupported value"],
        },
        Case {
            name: "sslMode libpq does not know",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata: {name: e3}\nspec:\n  projectRef: {name: p}\n  database: {secretRef: {name: s}, sslMode: verify}\n",
            want: &["spec.database.sslMode", "Unsupported value", "verify-full"],
        },
        Case {
            name: "port out of range",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata: {name: e4}\nspec:\n  projectRef: {name: p}\n  database: {secretRef: {name: s}, port: 70000}\n",
            want: &["spec.database.port"],
        },
        Case {
            name: "targetSessionAttrs libpq-only value",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata: {name: e5}\nspec:\n  projectRef: {name: p}\n  database: {secretRef: {name: s}, targetSessionAttrs: primary}\n",
            want: &["spec.database.targetSessionAttrs", "Unsupported value"],
        },
        Case {
            name: "TLS Secret without a name",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata: {name: e6}\nspec:\n  projectRef: {name: p}\n  database: {secretRef: {name: s}, tlsSecretRef: {}}\n",
            want: &["spec.database.tlsSecretRef.name", "Required value"],
        },
        Case {
            name: "promotion from both",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata: {name: p1}\nspec:\n  from: {environment: dev, revision: r}\n  to: {environment: prod}\n",
            want: &["spec.from", "exactly one of environment or revision"],
        },
        Case {
            name: "promotion without to",
            yaml: "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata: {name: p2}\nspec:\n  from: {environment: dev}\n",
            want: &["spec.to", "Required value"],
        },
    ];
    for case in cases {
        let error = refused(&env, case.yaml);
        for want in case.want {
            assert!(
                error.contains(want),
                "{}: {want:?} not in {error}",
                case.name
            );
        }
    }

    // Promotion.spec.to is immutable.
    env.apply("apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata: {name: p3}\nspec:\n  from: {environment: dev}\n  to: {environment: prod}\n");
    let error = refused(
        &env,
        "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata: {name: p3}\nspec:\n  from: {environment: dev}\n  to: {environment: staging}\n",
    );
    assert!(
        error.contains("spec.to") && error.contains("immutable"),
        "{error}"
    );
    // Defaults are filled in by the schema.
    env.apply(&env_yaml("defaults", "shop", "s", false, ""));
    let e = env.get("environment/defaults");
    assert_eq!(e["spec"]["failureMode"], "all");
    assert_eq!(e["spec"]["verify"], true);
    assert_eq!(e["spec"]["interval"], "5m");
    assert_eq!(e["spec"]["database"]["registry"], "sqitch");
}

/// Issue #6 replaced "unsupported until #6": an unreachable repository is a transient
/// failure, retried (Reconciling), never Stalled.
#[test]
fn an_unreachable_git_source_is_retried_not_stalled() {
    let env = Env::start();
    let port = free_port();
    env.apply(&format!("apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {{name: g}}\nspec:\n  source:\n    git: {{url: 'git://127.0.0.1:{port}/shop.git', ref: {{branch: main}}}}\n"));
    let c = env.controller("c", &[]);
    let ready = eventually(Duration::from_secs(30), "FetchFailed", || {
        let dp = env.get("databaseproject/g");
        let ready = condition(&dp, "Ready")?.clone();
        (ready["reason"] == "FetchFailed").then_some(ready)
    });
    assert_eq!(ready["status"], "False", "{}", c.log());
    let dp = env.get("databaseproject/g");
    assert!(condition(&dp, "Stalled").is_none(), "{dp}");
    assert_eq!(condition(&dp, "Reconciling").unwrap()["status"], "True");
    // The old string form of `ref` is refused by the schema.
    let out = env.run_with(
        &["apply", "-n", &env.ns, "-f", "-"],
        "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata: {name: old}\nspec:\n  source:\n    git: {url: 'https://example.com/shop.git', ref: main}\n",
    );
    assert!(!out.status.success(), "ref: main is no longer a valid spec");
}

#[test]
fn conditions_are_a_list_map_shared_by_two_field_managers() {
    let env = Env::start();
    env.apply(&env_yaml("shared", "shop", "s", false, ""));
    let status = |manager: &str, ty: &str| {
        let body = format!(
            "{{\"apiVersion\":\"switchyard.dev/v1alpha1\",\"kind\":\"Environment\",\"metadata\":{{\"name\":\"shared\"}},\"status\":{{\"conditions\":[{{\"type\":\"{ty}\",\"status\":\"True\",\"reason\":\"Test\",\"message\":\"m\",\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"}}]}}}}"
        );
        let fm = format!("--field-manager={manager}");
        let out = env.run_with(
            &[
                "apply",
                "-n",
                &env.ns,
                "--server-side",
                "--subresource=status",
                &fm,
                "-f",
                "-",
            ],
            &body,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    status("switchyard", "Ready");
    status("someone-else", "Custom");
    let e = env.get("environment/shared");
    let types: Vec<&str> = e["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 2, "both managers' conditions stay: {types:?}");
}

#[test]
fn controller_exits_with_an_install_hint_when_the_crds_are_missing() {
    let srv = e2e::apiserver::ApiServer::start().unwrap();
    let out = std::process::Command::new(e2e::tools::switchyard_bin())
        .args([
            "controller",
            "--admin-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", srv.kubeconfig())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("databaseprojects.switchyard.dev")
            && stderr.contains("kubectl apply -k config/crd"),
        "{stderr}"
    );
    // JSON logs: every log line is an object.
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}
