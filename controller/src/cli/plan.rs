//! `switchyard plan` output (being written).

pub(crate) fn render(project: &crate::project::Project, _json: bool) -> String {
    format!("{}\n", project.name())
}
