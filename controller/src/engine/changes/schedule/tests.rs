//! The deploy decision (issue #7): plans, workflow files and registry states in, steps or
//! refusals out. No database: deployed rows and workflow records are built by hand.

use std::path::PathBuf;

use super::*;
use crate::project::Project;
use crate::registry::workflow::{EventKind, Record, State};

/// `a`, `b [a]`, `c`, `@v1`, `f`, `@v2`, `f [f@v2]` (f reworked), `g`.
const PLAN: &str = "%project=shop\n\n\
    a 2024-01-01T00:00:01Z Ann <ann@example.com>\n\
    b [a] 2024-01-01T00:00:02Z Ann <ann@example.com>\n\
    c 2024-01-01T00:00:03Z Ann <ann@example.com>\n\
    @v1 2024-01-01T00:00:04Z Ann <ann@example.com>\n\
    f 2024-01-01T00:00:05Z Ann <ann@example.com>\n\
    @v2 2024-01-01T00:00:06Z Ann <ann@example.com>\n\
    f [f@v2] 2024-01-01T00:00:07Z Ann <ann@example.com>\n\
    g 2024-01-01T00:00:08Z Ann <ann@example.com>\n";

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const F1: usize = 3;
const F2: usize = 4;
const G: usize = 5;

struct Fixture {
    dir: tempfile::TempDir,
    project: Project,
}

impl Fixture {
    /// The project with `files` (path, content) added.
    fn new(files: &[(&str, &str)]) -> Fixture {
        Fixture::with_plan(PLAN, files)
    }

    fn with_plan(plan: &str, files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("sqitch.conf", "[core]\n\tengine = pg\n");
        write("sqitch.plan", plan);
        for kind in ["deploy", "revert"] {
            for name in ["a", "b", "c", "f", "f@v2", "g"] {
                write(
                    &format!("{kind}/{name}.sql"),
                    &format!("-- {kind} {name}\n"),
                );
            }
        }
        for (path, text) in files {
            write(path, text);
        }
        let project = Project::load(dir.path()).expect("valid project");
        Fixture { dir, project }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn id(&self, index: usize) -> String {
        self.project.plan.changes[index].id.clone()
    }

    /// Registry rows for these plan changes, in this order, with script hash `hash`.
    fn rows(&self, indexes: &[usize]) -> Vec<DeployedChange> {
        indexes
            .iter()
            .map(|&i| {
                let change = &self.project.plan.changes[i];
                DeployedChange {
                    id: change.id.clone(),
                    name: change.name.clone(),
                    script_hash: Some(format!("hash-of-{}", change.name)),
                    note: String::new(),
                    tags: Vec::new(),
                    committed_at: String::new(),
                    committer_name: "T".into(),
                    planned_at: change.planned_at.clone(),
                    planner_name: change.planner_name.clone(),
                    planner_email: change.planner_email.clone(),
                    requires: Vec::new(),
                    conflicts: Vec::new(),
                }
            })
            .collect()
    }

    fn record(&self, index: usize, state: State, file: &str) -> Record {
        let change = &self.project.plan.changes[index];
        Record {
            change_id: change.id.clone(),
            change: change.name.clone(),
            state,
            file: file.into(),
            reason: String::new(),
            script_hash: None,
            revision: Some("r1".into()),
            committer_name: "T".into(),
            committer_email: "t@x".into(),
            changed_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn schedule(
        &self,
        deployed: &[DeployedChange],
        records: &[Record],
        allow_rework: bool,
    ) -> Result<Schedule, Declined> {
        schedule(&Facts {
            project: &self.project,
            deployed,
            records,
            allow_rework,
            end: self.project.plan.changes.len(),
        })
    }
}

/// The steps as `(plan index, verb)`.
fn verbs(schedule: &Schedule) -> Vec<(usize, &'static str)> {
    schedule.steps.iter().map(|s| (s.index, s.verb())).collect()
}

fn refusal(result: Result<Schedule, Declined>) -> Refusal {
    match result {
        Err(Declined::Refused(refusal)) => refusal,
        other => panic!("want a refusal, got {other:?}"),
    }
}

#[test]
fn a_fresh_database_deploys_every_change_and_only_the_newest_version_of_a_reworked_one_runs() {
    let fx = Fixture::new(&[]);
    let schedule = fx.schedule(&[], &[], false).expect("schedule");
    assert_eq!(
        verbs(&schedule),
        [
            (A, "deploy"),
            (B, "deploy"),
            (C, "deploy"),
            (F1, "record"),
            (F2, "deploy"),
            (G, "deploy")
        ]
    );
    let first_f = &schedule.steps[3];
    assert_eq!(
        first_f.action,
        Action::Deploy {
            script: fx.path("deploy/f@v2.sql"),
            place: Place::End,
            superseded_by: Some(F2),
        },
        "the earlier instance is recorded with its own script's hash, superseded by the newest"
    );
}

#[test]
fn a_reworked_change_deployed_before_gets_its_newest_version_deployed_over_it() {
    let fx = Fixture::new(&[]);
    let deployed = fx.rows(&[A, B, C, F1]);
    let schedule = fx.schedule(&deployed, &[], false).expect("schedule");
    assert_eq!(verbs(&schedule), [(F2, "deploy"), (G, "deploy")]);
    assert!(matches!(
        &schedule.steps[0].action,
        Action::Deploy { script, superseded_by: None, .. } if *script == fx.path("deploy/f.sql")
    ));
}

#[test]
fn an_earlier_version_something_in_between_requires_runs() {
    let plan = "%project=shop\n\n\
        f 2024-01-01T00:00:05Z Ann <ann@example.com>\n\
        @v2 2024-01-01T00:00:06Z Ann <ann@example.com>\n\
        g [f] 2024-01-01T00:00:07Z Ann <ann@example.com>\n\
        f [f@v2] 2024-01-01T00:00:08Z Ann <ann@example.com>\n";
    let fx = Fixture::with_plan(plan, &[]);
    let schedule = fx.schedule(&[], &[], false).expect("schedule");
    assert_eq!(
        verbs(&schedule),
        [(0, "deploy"), (1, "deploy"), (2, "deploy")],
        "g requires the first f, so it runs"
    );
}

#[test]
fn without_rework_a_workflow_file_for_a_change_not_deployed_is_refused() {
    let fx = Fixture::new(&[("deploy/c-ignore.sql", "")]);
    let refused = refusal(fx.schedule(&fx.rows(&[A, B]), &[], false));
    assert_eq!(
        refused,
        Refusal::ReworkNotAllowed {
            change: "c".into(),
            file: "deploy/c-ignore.sql".into()
        }
    );
    assert_eq!(refused.reason(), "ReworkNotAllowed");
    assert!(
        refused.to_string().contains("deploy/c-ignore.sql") && refused.to_string().contains("c "),
        "{refused}"
    );
    assert_eq!(
        rework_not_allowed(&fx.project, &fx.rows(&[A, B]), &[]),
        Some(refused),
        "what a Promotion asks"
    );
}

#[test]
fn without_rework_workflow_files_of_changes_deployed_as_planned_are_disregarded() {
    let fx = Fixture::new(&[
        ("deploy/b-ignore.sql", "why"),
        ("deploy/a-replace.sql", "-- new a\n"),
    ]);
    let schedule = fx
        .schedule(&fx.rows(&[A, B, C]), &[], false)
        .expect("schedule");
    assert_eq!(
        verbs(&schedule),
        [(F1, "record"), (F2, "deploy"), (G, "deploy")]
    );
    assert_eq!(
        rework_not_allowed(&fx.project, &fx.rows(&[A, B, C]), &[]),
        None
    );
}

#[test]
fn without_rework_a_change_deployed_in_replaced_form_is_refused() {
    let fx = Fixture::new(&[("deploy/a-replace.sql", "-- new a\n")]);
    let records = [fx.record(A, State::Replaced, "deploy/a-replace.sql")];
    let refused = refusal(fx.schedule(&fx.rows(&[A]), &records, false));
    assert!(matches!(refused, Refusal::ReworkNotAllowed { ref change, .. } if change == "a"));
}

#[test]
fn an_ignore_marks_a_deployed_change_and_skips_one_not_deployed() {
    let fx = Fixture::new(&[
        ("deploy/b-ignore.sql", "wrong types"),
        ("deploy/c-ignore.sql", ""),
    ]);
    let schedule = fx.schedule(&fx.rows(&[A, B]), &[], true).expect("schedule");
    assert_eq!(
        verbs(&schedule),
        [
            (B, "ignore"),
            (C, "ignore"),
            (F1, "record"),
            (F2, "deploy"),
            (G, "deploy")
        ]
    );
    assert_eq!(schedule.skipped, [C], "b stays deployed, c is skipped");
    let t = schedule.steps[0].transition.as_ref().expect("transition");
    assert_eq!(t.state, State::Ignored);
    assert_eq!(t.event, Some(EventKind::Ignore));
    assert_eq!(t.reason, "wrong types");
    assert_eq!(t.file, "deploy/b-ignore.sql");

    // Once recorded, nothing more to do for them.
    let records = [
        fx.record(B, State::Ignored, "deploy/b-ignore.sql"),
        fx.record(C, State::Ignored, "deploy/c-ignore.sql"),
    ];
    let deployed = fx.rows(&[A, B, F1, F2, G]);
    let schedule = fx.schedule(&deployed, &records, true).expect("schedule");
    assert!(schedule.steps.is_empty(), "{:?}", verbs(&schedule));
    assert_eq!(
        schedule.prefix, 6,
        "the gap at c is part of the deployed stretch"
    );
}

#[test]
fn a_gap_without_an_ignore_recorded_is_divergence() {
    let fx = Fixture::new(&[]);
    let deployed = fx.rows(&[A, C]);
    assert_eq!(
        fx.schedule(&deployed, &[], true),
        Err(Declined::Diverged { row: 1 })
    );
    let records = [fx.record(B, State::Cleaned, "deploy/b-cleanup.sql")];
    let alignment = align(&Facts {
        project: &fx.project,
        deployed: &deployed,
        records: &records,
        allow_rework: true,
        end: 6,
    })
    .expect("aligned");
    assert_eq!(alignment.rows, [Some(0), None, Some(1)]);
}

#[test]
fn an_unignore_deploys_into_the_gap_between_its_neighbours() {
    let fx = Fixture::new(&[("deploy/b-ignore.sql", ""), ("deploy/b-unignore.sql", "")]);
    let records = [fx.record(B, State::Ignored, "deploy/b-ignore.sql")];
    let schedule = fx
        .schedule(&fx.rows(&[A, C]), &records, true)
        .expect("schedule");
    assert_eq!(schedule.steps[0].index, B);
    assert_eq!(
        schedule.steps[0].action,
        Action::Deploy {
            script: fx.path("deploy/b.sql"),
            place: Place::After(fx.id(A)),
            superseded_by: None
        }
    );
    let t = schedule.steps[0].transition.as_ref().expect("transition");
    assert_eq!(
        (t.state, t.event),
        (State::Deployed, Some(EventKind::Unignore))
    );
    assert_eq!(t.file, "deploy/b-unignore.sql");
}

#[test]
fn gaps_filled_at_the_start_are_dated_before_the_first_deployed_change() {
    let plan = "%project=shop\n\n\
        a 2024-01-01T00:00:01Z Ann <ann@example.com>\n\
        c 2024-01-01T00:00:03Z Ann <ann@example.com>\n\
        g 2024-01-01T00:00:08Z Ann <ann@example.com>\n";
    let fx = Fixture::with_plan(
        plan,
        &[
            ("deploy/a-replace.sql", "-- a again\n"),
            ("deploy/c-replace.sql", "-- c again\n"),
        ],
    );
    let records = [
        fx.record(0, State::Ignored, "deploy/a-ignore.sql"),
        fx.record(1, State::Ignored, "deploy/c-ignore.sql"),
    ];
    let schedule = fx
        .schedule(&fx.rows(&[2]), &records, true)
        .expect("schedule");
    let places: Vec<&Place> = schedule
        .steps
        .iter()
        .map(|s| match &s.action {
            Action::Deploy { place, .. } => place,
            other => panic!("want deploys, got {other:?}"),
        })
        .collect();
    assert_eq!(
        places,
        [&Place::Before(fx.id(2), 2), &Place::After(fx.id(0))],
        "a goes 2µs before g, c right after a"
    );
}

#[test]
fn cleanups_run_first_newest_first_and_their_changes_are_skipped() {
    let fx = Fixture::new(&[
        ("deploy/b-cleanup.sql", "drop b"),
        ("deploy/c-cleanup.sql", "drop c"),
    ]);
    let schedule = fx
        .schedule(&fx.rows(&[A, B, C]), &[], true)
        .expect("schedule");
    assert_eq!(
        verbs(&schedule)[..2],
        [(C, "cleanup"), (B, "cleanup")],
        "newest first, before the deploys"
    );
    assert_eq!(
        schedule.steps[1].action,
        Action::Cleanup {
            script: fx.path("deploy/b-cleanup.sql")
        }
    );
    let t = schedule.steps[1].transition.as_ref().expect("transition");
    assert_eq!(
        (t.state, t.event),
        (State::Cleaned, Some(EventKind::Cleanup))
    );
    assert_eq!(t.script_hash.as_deref().map(str::len), Some(40));

    // Not deployed here: nothing to clean, only ignored.
    let schedule = fx.schedule(&fx.rows(&[A]), &[], true).expect("schedule");
    assert_eq!(verbs(&schedule)[..2], [(B, "ignore"), (C, "ignore")]);
}

#[test]
fn a_cleanup_of_a_change_a_deployed_one_requires_is_refused() {
    let fx = Fixture::new(&[("deploy/a-cleanup.sql", "drop a")]);
    let refused = refusal(fx.schedule(&fx.rows(&[A, B]), &[], true));
    assert_eq!(
        refused,
        Refusal::RequiredByDeployed {
            change: "a".into(),
            file: "deploy/a-cleanup.sql".into(),
            dependent: "b".into()
        }
    );
}

#[test]
fn a_change_requiring_an_ignored_one_not_deployed_is_refused() {
    let fx = Fixture::new(&[("deploy/a-ignore.sql", "")]);
    let refused = refusal(fx.schedule(&[], &[], true));
    assert_eq!(
        refused,
        Refusal::RequiresIgnored {
            change: "a".into(),
            file: "deploy/a-ignore.sql".into(),
            dependent: "b".into()
        }
    );
}

#[test]
fn a_replace_undoes_a_deployed_change_with_its_cleanup_else_its_revert_script() {
    let fx = Fixture::new(&[("deploy/c-replace.sql", "-- new c\n")]);
    let schedule = fx
        .schedule(&fx.rows(&[A, B, C]), &[], true)
        .expect("schedule");
    assert_eq!(
        schedule.steps[0].action,
        Action::Replace {
            undo: fx.path("revert/c.sql"),
            script: fx.path("deploy/c-replace.sql")
        }
    );
    let t = schedule.steps[0].transition.as_ref().expect("transition");
    assert_eq!(
        (t.state, t.event),
        (State::Replaced, Some(EventKind::Replace))
    );

    let fx = Fixture::new(&[
        ("deploy/c-replace.sql", "-- new c\n"),
        ("deploy/c-cleanup.sql", "-- undo c\n"),
    ]);
    let schedule = fx
        .schedule(&fx.rows(&[A, B, C]), &[], true)
        .expect("schedule");
    assert!(matches!(
        &schedule.steps[0].action,
        Action::Replace { undo, .. } if *undo == fx.path("deploy/c-cleanup.sql")
    ));
}

#[test]
fn a_replace_runs_once_per_replacement_content() {
    let fx = Fixture::new(&[("deploy/c-replace.sql", "-- new c\n")]);
    let sha1 = fx
        .project
        .workflow
        .files("c")
        .and_then(|f| f.get(crate::project::FileKind::Replace))
        .map(|f| f.sha1.clone())
        .expect("replace file");
    let mut deployed = fx.rows(&[A, B, C, F1, F2, G]);
    deployed[C].script_hash = Some(sha1);
    let records = [fx.record(C, State::Replaced, "deploy/c-replace.sql")];
    let schedule = fx.schedule(&deployed, &records, true).expect("schedule");
    assert!(schedule.steps.is_empty(), "{:?}", verbs(&schedule));
}

#[test]
fn a_replace_of_a_change_not_deployed_deploys_the_replacement_in_its_place() {
    let fx = Fixture::new(&[("deploy/c-replace.sql", "-- new c\n")]);
    let schedule = fx.schedule(&fx.rows(&[A, B]), &[], true).expect("schedule");
    assert_eq!(
        schedule.steps[0].action,
        Action::Deploy {
            script: fx.path("deploy/c-replace.sql"),
            place: Place::End,
            superseded_by: None
        }
    );
    assert_eq!(schedule.steps[0].index, C);
}

#[test]
fn an_ignore_recorded_here_outlives_its_file_only_as_a_refusal() {
    let fx = Fixture::new(&[]);
    let records = [fx.record(C, State::Ignored, "deploy/c-ignore.sql")];
    for allow_rework in [true, false] {
        let refused = refusal(fx.schedule(&fx.rows(&[A, B]), &records, allow_rework));
        assert_eq!(refused.reason(), "InvalidWorkflow");
        assert!(
            refused.to_string().contains("deploy/c-unignore.sql"),
            "tells which file to add: {refused}"
        );
        assert_eq!(refused.file(), "deploy/c-ignore.sql");
    }
}

#[test]
fn to_limits_the_changes_looked_at() {
    let fx = Fixture::new(&[("deploy/g-ignore.sql", "")]);
    let schedule = schedule(&Facts {
        project: &fx.project,
        deployed: &[],
        records: &[],
        allow_rework: false,
        end: C + 1,
    })
    .expect("g is beyond --to, so its ignore file does not refuse");
    assert_eq!(
        verbs(&schedule),
        [(A, "deploy"), (B, "deploy"), (C, "deploy")]
    );
}
