//! What a deploy does with one database, decided purely from gathered facts (the plan, its
//! workflow files, the registry's rows and workflow states, whether rework is allowed):
//! [`schedule`] gives the ordered [`Step`]s or why the deploy is refused. No I/O.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use crate::api::conditions::reasons::{INVALID_WORKFLOW, REWORK_NOT_ALLOWED};

use super::resolve_local;
use crate::project::{Directive, Project, ScriptKind, WorkflowFile};
use crate::registry::DeployedChange;
use crate::registry::workflow::{EventKind, Record, State, Transition};

/// What [`schedule`] looks at, gathered before anything changes.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The project at the revision to deploy.
    pub project: &'a Project,
    /// The registry's deployed changes, oldest first.
    pub deployed: &'a [DeployedChange],
    /// The recorded workflow states of the project in this database.
    pub records: &'a [Record],
    /// Whether workflow files act here (`allowRework`, `--allow-rework`).
    pub allow_rework: bool,
    /// Only plan changes before this index are deployed (`--to`); at most the plan's length.
    pub end: usize,
}

/// Why a deploy is refused before anything runs. Every variant names the change and the
/// workflow file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Refusal {
    /// A change with workflow files, not deployed here in its original form, where rework
    /// is not allowed.
    #[error(
        "{file}: change {change} is reworked by this file and the database has not deployed it in its original form; workflow files act only where rework is allowed (Environment allowRework, deploy --allow-rework)"
    )]
    ReworkNotAllowed {
        /// The change.
        change: String,
        /// The workflow file, relative to the project.
        file: String,
    },
    /// A change ignored here and not deployed, whose project no longer ignores it.
    #[error(
        "{file}: change {change} is {state} in this database (since {since}) but the project no longer has this file; restore it, or keep it and add {unignore} to deploy {change} again"
    )]
    IgnoreRemoved {
        /// The change.
        change: String,
        /// Ignored or cleaned.
        state: &'static str,
        /// The workflow file that ignored it, relative to the project.
        file: String,
        /// When, RFC 3339.
        since: String,
        /// The unignore file to add.
        unignore: String,
    },
    /// A change to deploy requires a change that is ignored here and not deployed.
    #[error("{file}: change {dependent} requires {change}, which is ignored here and not deployed")]
    RequiresIgnored {
        /// The ignored change.
        change: String,
        /// The workflow file ignoring it.
        file: String,
        /// The change that requires it.
        dependent: String,
    },
    /// A change to clean up is required by a change that stays deployed.
    #[error("{file}: cannot clean up change {change}: {dependent} requires it and stays deployed")]
    RequiredByDeployed {
        /// The change to clean up.
        change: String,
        /// The cleanup file.
        file: String,
        /// The deployed change requiring it.
        dependent: String,
    },
    /// A replace of a deployed change with nothing to undo the deployed version first.
    #[error(
        "{file}: cannot replace change {change}: it is deployed here and {undo}, which would undo it first, does not exist; add a cleanup file beside the replacement"
    )]
    NothingToUndo {
        /// The change.
        change: String,
        /// The replace file.
        file: String,
        /// The revert script looked for.
        undo: String,
    },
}

impl Refusal {
    /// The condition reason: `ReworkNotAllowed`, else `InvalidWorkflow`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::ReworkNotAllowed { .. } => REWORK_NOT_ALLOWED,
            _ => INVALID_WORKFLOW,
        }
    }

    /// The change the refusal is about.
    pub fn change(&self) -> &str {
        match self {
            Refusal::ReworkNotAllowed { change, .. }
            | Refusal::IgnoreRemoved { change, .. }
            | Refusal::RequiresIgnored { change, .. }
            | Refusal::RequiredByDeployed { change, .. }
            | Refusal::NothingToUndo { change, .. } => change,
        }
    }

    /// The workflow file the refusal names, relative to the project.
    pub fn file(&self) -> &str {
        match self {
            Refusal::ReworkNotAllowed { file, .. }
            | Refusal::IgnoreRemoved { file, .. }
            | Refusal::RequiresIgnored { file, .. }
            | Refusal::RequiredByDeployed { file, .. }
            | Refusal::NothingToUndo { file, .. } => file,
        }
    }
}

/// Why [`schedule`] gives no steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Declined {
    /// Deployed row `row` (0-based, oldest first) is not where the plan has it.
    Diverged {
        /// Index into the deployed changes.
        row: usize,
    },
    /// The deploy is refused.
    Refused(Refusal),
}

/// Where a change's registry rows go (see [`crate::registry::Position`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// After everything deployed.
    End,
    /// Right after the deployed change with this id.
    After(String),
    /// This many microseconds before the deployed change with this id.
    Before(String, i32),
}

/// What one step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run `script` (the deploy script, or the `-replace` script in its place) and record
    /// the change deployed at `place`.
    Deploy {
        /// The script to run and hash.
        script: PathBuf,
        /// Where its rows go.
        place: Place,
        /// `Some(i)`: an earlier instance of a reworked change that plan change `i` (the
        /// newest instance, deployed in the same run) supersedes; recorded, not run.
        superseded_by: Option<usize>,
    },
    /// The change is deployed: run `undo`, then `script`, and record a revert and a deploy.
    Replace {
        /// `C-cleanup.sql`, else the change's revert script.
        undo: PathBuf,
        /// `C-replace.sql`.
        script: PathBuf,
    },
    /// The change is deployed: run `script` and record it reverted.
    Cleanup {
        /// `C-cleanup.sql`.
        script: PathBuf,
    },
    /// Only record the step's transition.
    Mark,
}

impl Action {
    /// The word progress and reports use.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Deploy { .. } => "deploy",
            Action::Replace { .. } => "replace",
            Action::Cleanup { .. } => "cleanup",
            Action::Mark => "mark",
        }
    }
}

/// One step of a deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The plan change.
    pub index: usize,
    /// What to do.
    pub action: Action,
    /// The workflow state to record with it, in the same transaction.
    pub transition: Option<Transition>,
}

impl Step {
    /// The word progress and `status` use: `deploy`, `record` (a superseded instance),
    /// `replace`, `cleanup`, `ignore`, `unignore` or `mark`.
    pub fn verb(&self) -> &'static str {
        match (&self.action, &self.transition) {
            (Action::Deploy { superseded_by, .. }, _) if superseded_by.is_some() => "record",
            (Action::Mark, Some(t)) => t.event.map_or("mark", EventKind::as_str),
            (action, _) => action.verb(),
        }
    }
}

/// A deploy, decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Steps in the order they run: cleanups newest first, then the rest in plan order.
    pub steps: Vec<Step>,
    /// Plan changes not deployed here because they are ignored (or cleaned up by this run).
    pub skipped: Vec<usize>,
    /// Plan changes before this index are deployed here or skipped gaps; the others are
    /// not deployed.
    pub prefix: usize,
}

/// Where the registry's deployed changes sit in the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alignment {
    /// Per plan change before [`Alignment::prefix`]: its deployed row, or `None` for a gap
    /// (a change ignored here and not deployed).
    pub rows: Vec<Option<usize>>,
    /// The plan changes up to the newest deployed one.
    pub prefix: usize,
}

impl Alignment {
    /// The deployed row of plan change `index`.
    pub fn row(&self, index: usize) -> Option<usize> {
        self.rows.get(index).copied().flatten()
    }
}

/// Matches deployed rows to plan changes, in order. Between two deployed changes the plan
/// may hold only changes recorded as ignored here; anything else means the plan and the
/// database diverged, at the returned row.
pub fn align(facts: &Facts<'_>) -> Result<Alignment, usize> {
    let plan = &facts.project.plan.changes;
    let ignored: BTreeSet<&str> = facts
        .records
        .iter()
        .filter(|r| r.state.ignores())
        .map(|r| r.change_id.as_str())
        .collect();
    let mut rows = Vec::with_capacity(facts.deployed.len());
    for (r, row) in facts.deployed.iter().enumerate() {
        loop {
            let Some(change) = plan.get(rows.len()) else {
                return Err(r);
            };
            if change.id == row.id {
                rows.push(Some(r));
                break;
            }
            if !ignored.contains(change.id.as_str()) {
                return Err(r);
            }
            rows.push(None);
        }
    }
    let prefix = rows.len();
    Ok(Alignment { rows, prefix })
}

/// Decides a deploy: the steps, in order, or why there are none.
pub fn schedule(facts: &Facts<'_>) -> Result<Schedule, Declined> {
    let alignment = align(facts).map_err(|row| Declined::Diverged { row })?;
    let project = facts.project;
    let plan = &project.plan.changes;
    let end = facts.end.min(plan.len());
    let records: HashMap<&str, &Record> = facts
        .records
        .iter()
        .map(|r| (r.change_id.as_str(), r))
        .collect();
    let mut latest: HashMap<&str, usize> = HashMap::new();
    for (i, change) in plan.iter().enumerate() {
        latest.insert(&change.name, i);
    }
    let directive = |i: usize| {
        let name = plan[i].name.as_str();
        (latest.get(name) == Some(&i))
            .then(|| project.workflow.directive(name))
            .flatten()
    };
    if !facts.allow_rework
        && let Some(refusal) = rework_refusal(facts, &alignment, &records, &directive, end)
    {
        return Err(Declined::Refused(refusal));
    }

    let mut planned = Planned::default();
    for (i, change) in plan.iter().enumerate().take(end) {
        let at = ChangeAt {
            index: i,
            change,
            project,
            deployed: alignment.row(i).map(|r| &facts.deployed[r]),
            record: records.get(change.id.as_str()).copied(),
        };
        // Without rework the files are disregarded: every change they name is deployed here
        // as planned (checked above).
        match directive(i).filter(|_| facts.allow_rework) {
            None => at.as_planned(&mut planned)?,
            Some(Directive::Ignore { ignore }) => at.ignore(ignore, &mut planned),
            Some(Directive::Unignore { unignore, .. }) => at.unignore(unignore, &mut planned),
            Some(d @ Directive::Cleanup { cleanup, .. }) => {
                at.cleanup(cleanup, d.reason(), &mut planned)
            }
            Some(Directive::Replace { replace, cleanup }) => {
                at.replace(replace, cleanup, &mut planned)
            }
        }
    }
    let Planned {
        mut forward,
        mut cleanups,
        skipped,
    } = planned;
    // Cleanups run first, newest first, as a revert would.
    cleanups.reverse();
    let cleaned: BTreeSet<usize> = cleanups.iter().map(|s| s.index).collect();
    check_requires(facts, &alignment, &forward, &skipped, &cleaned, &directive)?;
    place_gap_fills(facts, &alignment, &mut forward, &cleaned);
    supersede(facts, &alignment, &mut forward);
    let mut steps = cleanups;
    steps.extend(forward);
    Ok(Schedule {
        steps,
        skipped,
        prefix: alignment.prefix,
    })
}

/// A deploy's steps as [`schedule`] builds them, change by change.
#[derive(Default)]
struct Planned {
    /// Steps in plan order.
    forward: Vec<Step>,
    /// Cleanups, in plan order (they run first, reversed).
    cleanups: Vec<Step>,
    /// Plan changes not deployed here.
    skipped: Vec<usize>,
}

/// One plan change as the schedule sees it: its registry row and its workflow record here.
struct ChangeAt<'p> {
    index: usize,
    change: &'p crate::project::Change,
    project: &'p Project,
    deployed: Option<&'p DeployedChange>,
    record: Option<&'p Record>,
}

impl ChangeAt<'_> {
    fn recorded(&self) -> Option<State> {
        self.record.map(|r| r.state)
    }

    fn transition(
        &self,
        state: State,
        event: Option<EventKind>,
        file: &str,
        reason: &str,
        hash: Option<&str>,
    ) -> Transition {
        Transition {
            change_id: self.change.id.clone(),
            change: self.change.name.clone(),
            state,
            event,
            file: file.to_owned(),
            reason: reason.to_owned(),
            script_hash: hash.map(str::to_owned),
        }
    }

    fn deploy(&self, script: PathBuf, transition: Option<Transition>) -> Step {
        Step {
            index: self.index,
            action: Action::Deploy {
                script,
                place: Place::End,
                superseded_by: None,
            },
            transition,
        }
    }

    fn mark(&self, transition: Transition) -> Step {
        Step {
            index: self.index,
            action: Action::Mark,
            transition: Some(transition),
        }
    }

    /// No workflow file: deployed with its own script unless it is already; an ignore
    /// that was recorded and then removed without an unignore is refused.
    fn as_planned(&self, planned: &mut Planned) -> Result<(), Declined> {
        match (self.deployed, self.record) {
            (None, Some(r)) if r.state.ignores() => {
                return Err(Declined::Refused(ignore_removed(self.project, r)));
            }
            (None, _) => planned.forward.push(self.deploy(
                self.project.script_path(self.change, ScriptKind::Deploy),
                None,
            )),
            (Some(_), _) => {}
        }
        Ok(())
    }

    /// `-ignore`: skipped where not deployed; the state recorded once.
    fn ignore(&self, ignore: &WorkflowFile, planned: &mut Planned) {
        if self.deployed.is_none() {
            planned.skipped.push(self.index);
        }
        if !self.recorded().is_some_and(State::ignores) {
            let t = self.transition(
                State::Ignored,
                Some(EventKind::Ignore),
                &ignore.relative,
                &ignore.reason,
                None,
            );
            planned.forward.push(self.mark(t));
        }
    }

    /// `-unignore`: deployed as planned where it is not; the ignore taken back where it
    /// was recorded.
    fn unignore(&self, unignore: &WorkflowFile, planned: &mut Planned) {
        let unignored = self.recorded().is_some_and(State::ignores).then(|| {
            self.transition(
                State::Deployed,
                Some(EventKind::Unignore),
                &unignore.relative,
                "",
                None,
            )
        });
        match (self.deployed, unignored) {
            (None, transition) => planned.forward.push(self.deploy(
                self.project.script_path(self.change, ScriptKind::Deploy),
                transition,
            )),
            (Some(_), Some(transition)) => planned.forward.push(self.mark(transition)),
            (Some(_), None) => {}
        }
    }

    /// `-cleanup`: undone once where deployed, then ignored; ignored where not deployed.
    fn cleanup(&self, cleanup: &WorkflowFile, reason: &str, planned: &mut Planned) {
        match self.deployed {
            Some(_) if self.recorded() != Some(State::Cleaned) => {
                planned.skipped.push(self.index);
                planned.cleanups.push(Step {
                    index: self.index,
                    action: Action::Cleanup {
                        script: cleanup.path.clone(),
                    },
                    transition: Some(self.transition(
                        State::Cleaned,
                        Some(EventKind::Cleanup),
                        &cleanup.relative,
                        reason,
                        Some(&cleanup.sha1),
                    )),
                });
            }
            // Cleaned here before, and deployed again since by someone else: leave it.
            Some(_) => {}
            None => {
                planned.skipped.push(self.index);
                if !self.recorded().is_some_and(State::ignores) {
                    let t = self.transition(
                        State::Ignored,
                        Some(EventKind::Ignore),
                        &cleanup.relative,
                        reason,
                        None,
                    );
                    planned.forward.push(self.mark(t));
                }
            }
        }
    }

    /// `-replace`: deployed with the replacement where not deployed; where deployed with
    /// other bytes, undone (cleanup or revert script) and deployed again.
    fn replace(
        &self,
        replace: &WorkflowFile,
        cleanup: Option<&WorkflowFile>,
        planned: &mut Planned,
    ) {
        let replaced = self.transition(
            State::Replaced,
            Some(EventKind::Replace),
            &replace.relative,
            "",
            Some(&replace.sha1),
        );
        match self.deployed {
            None => planned
                .forward
                .push(self.deploy(replace.path.clone(), Some(replaced))),
            Some(row) if row.script_hash.as_deref() != Some(replace.sha1.as_str()) => {
                planned.forward.push(Step {
                    index: self.index,
                    action: Action::Replace {
                        undo: cleanup.map_or_else(
                            || self.project.script_path(self.change, ScriptKind::Revert),
                            |c| c.path.clone(),
                        ),
                        script: replace.path.clone(),
                    },
                    transition: Some(replaced),
                });
            }
            // Deployed with these very bytes already: only the state is missing.
            Some(_) if self.recorded() != Some(State::Replaced) => {
                let t = self.transition(
                    State::Replaced,
                    None,
                    &replace.relative,
                    "",
                    Some(&replace.sha1),
                );
                planned.forward.push(self.mark(t));
            }
            Some(_) => {}
        }
    }
}

/// Without rework: the first change (in plan order, before `end`) with workflow files that
/// is not deployed here as planned.
fn rework_refusal<'p>(
    facts: &Facts<'p>,
    alignment: &Alignment,
    records: &HashMap<&str, &Record>,
    directive: &dyn Fn(usize) -> Option<Directive<'p>>,
    end: usize,
) -> Option<Refusal> {
    let plan = &facts.project.plan.changes;
    (0..end).find_map(|i| {
        let d = directive(i)?;
        let replaced = records
            .get(plan[i].id.as_str())
            .is_some_and(|r| r.state == State::Replaced);
        (alignment.row(i).is_none() || replaced).then(|| Refusal::ReworkNotAllowed {
            change: plan[i].name.clone(),
            file: d.file().relative.clone(),
        })
    })
}

/// Does this revision hold changes reworked by workflow files that the database has not
/// deployed in their original form? What a Promotion into an Environment without
/// `allowRework` checks before it deploys anything (its guard `GuardReworkNotAllowed`).
/// `None` when the plan and the database diverged: the deploy itself reports that.
pub fn rework_not_allowed(
    project: &Project,
    deployed: &[DeployedChange],
    records: &[Record],
) -> Option<Refusal> {
    let facts = Facts {
        project,
        deployed,
        records,
        allow_rework: false,
        end: project.plan.changes.len(),
    };
    match schedule(&facts) {
        Err(Declined::Refused(refusal @ Refusal::ReworkNotAllowed { .. })) => Some(refusal),
        _ => None,
    }
}

fn ignore_removed(project: &Project, record: &Record) -> Refusal {
    let dir = project.relative(&project.deploy_dir);
    let ext = &project.extension;
    let name = &record.change;
    Refusal::IgnoreRemoved {
        change: name.clone(),
        state: record.state.as_str(),
        file: record.file.clone(),
        since: record.changed_at.clone(),
        unignore: format!("{dir}/{name}-unignore.{ext}"),
    }
}

/// Changes to deploy must not require a change skipped here; changes that stay deployed
/// must not require a change this run cleans up.
fn check_requires<'p>(
    facts: &Facts<'p>,
    alignment: &Alignment,
    forward: &[Step],
    skipped: &[usize],
    cleaned: &BTreeSet<usize>,
    directive: &dyn Fn(usize) -> Option<Directive<'p>>,
) -> Result<(), Declined> {
    if skipped.is_empty() && cleaned.is_empty() {
        // NB: the common case; resolving every requirement costs a scan of the plan each.
        return Ok(());
    }
    let project = facts.project;
    let plan = &project.plan.changes;
    let skipped: BTreeSet<usize> = skipped.iter().copied().collect();
    let file = |i: usize| {
        directive(i).map_or_else(
            || {
                facts
                    .records
                    .iter()
                    .find(|r| r.change_id == plan[i].id)
                    .map(|r| r.file.clone())
                    .unwrap_or_default()
            },
            |d| d.file().relative.clone(),
        )
    };
    let requirement = |k: usize, of: &BTreeSet<usize>| {
        plan[k]
            .requires
            .iter()
            .filter(|d| d.is_local(&project.plan.project))
            .filter_map(|d| resolve_local(project, d, k))
            .find(|i| of.contains(i))
    };
    for step in forward {
        if matches!(step.action, Action::Deploy { .. })
            && let Some(i) = requirement(step.index, &skipped)
        {
            return Err(Declined::Refused(Refusal::RequiresIgnored {
                change: plan[i].name.clone(),
                file: file(i),
                dependent: plan[step.index].name.clone(),
            }));
        }
    }
    for k in (0..alignment.prefix).filter(|_| !cleaned.is_empty()) {
        if alignment.row(k).is_some()
            && !cleaned.contains(&k)
            && let Some(i) = requirement(k, cleaned)
        {
            return Err(Declined::Refused(Refusal::RequiredByDeployed {
                change: plan[i].name.clone(),
                file: file(i),
                dependent: plan[k].name.clone(),
            }));
        }
    }
    Ok(())
}

/// Dates changes deployed into gaps between their neighbours: right after the closest
/// change before them that is (or by then will be) deployed, else enough microseconds
/// before the next deployed change for every gap filled ahead of it.
fn place_gap_fills(
    facts: &Facts<'_>,
    alignment: &Alignment,
    forward: &mut [Step],
    cleaned: &BTreeSet<usize>,
) {
    let plan = &facts.project.plan.changes;
    let stays = |i: usize| alignment.row(i).is_some() && !cleaned.contains(&i);
    let fills: BTreeSet<usize> = forward
        .iter()
        .filter(|s| s.index < alignment.prefix && matches!(s.action, Action::Deploy { .. }))
        .map(|s| s.index)
        .collect();
    for step in forward.iter_mut() {
        let i = step.index;
        let Action::Deploy { place, .. } = &mut step.action else {
            continue;
        };
        if !fills.contains(&i) {
            continue;
        }
        let Some(next) = (i + 1..alignment.prefix).find(|&j| stays(j)) else {
            continue;
        };
        let previous = (0..i).rev().find(|&j| stays(j) || fills.contains(&j));
        *place = match previous {
            Some(j) => Place::After(plan[j].id.clone()),
            None => {
                let ahead = fills.range(i..next).count();
                Place::Before(plan[next].id.clone(), ahead as i32)
            }
        };
    }
}

/// Marks earlier instances of reworked changes that the same run deploys again, newer, as
/// superseded: recorded, not run. Only where every change between them is deployed by this
/// run too (a fresh stretch of plan) and none of them requires the earlier instance.
fn supersede(facts: &Facts<'_>, alignment: &Alignment, forward: &mut [Step]) {
    let project = facts.project;
    let plan = &project.plan.changes;
    let deploys: HashMap<usize, usize> = forward
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.action, Action::Deploy { .. }))
        .map(|(at, s)| (s.index, at))
        .collect();
    let plain: BTreeSet<usize> = forward
        .iter()
        .filter(|s| matches!(s.action, Action::Deploy { .. }) && s.transition.is_none())
        .map(|s| s.index)
        .collect();
    let mut superseded = Vec::new();
    for i in alignment.prefix..plan.len() {
        if !plan[i].is_reworked() || !plain.contains(&i) {
            continue;
        }
        // The newest instance, and every change from here to it, deployed by this run.
        let Some(newest) = (i + 1..plan.len())
            .rev()
            .find(|&j| plan[j].name == plan[i].name)
        else {
            continue;
        };
        if !(i + 1..=newest).all(|k| deploys.contains_key(&k)) {
            continue;
        }
        let needed = (i + 1..newest).any(|k| {
            plan[k].name != plan[i].name
                && plan[k]
                    .requires
                    .iter()
                    .filter(|d| d.is_local(&project.plan.project))
                    .any(|d| resolve_local(project, d, k) == Some(i))
        });
        if !needed {
            superseded.push((deploys[&i], newest));
        }
    }
    for (at, newest) in superseded {
        if let Action::Deploy { superseded_by, .. } = &mut forward[at].action {
            *superseded_by = Some(newest);
        }
    }
}

#[cfg(test)]
mod tests;
