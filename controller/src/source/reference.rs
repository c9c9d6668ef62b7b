//! Git references to follow and the revision strings naming what was fetched. Pure.
//!
//! Revisions are spelled as Flux spells them, so that both tools name a commit the same
//! way: `main@sha1:<commit>` for a branch, `v1.2.0@sha1:<commit>` for a tag (or the tag a
//! semver range chose), `sha1:<commit>` for a commit.

use super::{Error, Result};

/// What to follow in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A branch: `refs/heads/<name>`.
    Branch(String),
    /// A tag: `refs/tags/<name>`, peeled to its commit.
    Tag(String),
    /// The highest tag matching a semver range.
    Semver(String),
    /// A commit id (40 hex digits).
    Commit(String),
    /// A bare name, as `git clone --branch` reads one: the branch or the tag of that name,
    /// whichever the repository has; both at once is ambiguous and refused.
    Name(String),
}

impl Reference {
    /// Builds a reference from the four optional spec fields, exactly one of which may be
    /// set; none means the branch `main`.
    pub fn from_parts(
        branch: Option<&str>,
        tag: Option<&str>,
        semver: Option<&str>,
        commit: Option<&str>,
    ) -> Result<Reference> {
        let set: Vec<Reference> = [
            branch.map(|b| Reference::Branch(b.to_string())),
            tag.map(|t| Reference::Tag(t.to_string())),
            semver.map(|s| Reference::Semver(s.to_string())),
            commit.map(|c| Reference::Commit(c.to_ascii_lowercase())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let reference = match set.len() {
            0 => Reference::Branch("main".into()),
            1 => set
                .into_iter()
                .next()
                .unwrap_or(Reference::Branch("main".into())),
            _ => {
                return Err(Error::InvalidSpec(
                    "ref: exactly one of branch, tag, semver or commit may be set".into(),
                ));
            }
        };
        reference.validate()?;
        Ok(reference)
    }

    /// Parses the CLI's `--ref`: `refs/heads/x`, `refs/tags/x`, a 40-digit commit, a semver
    /// range when it holds an operator (`>=1.0`, `^2`, `~1.2`, `*`), else a bare name that
    /// finds a branch or a tag ([`Reference::Name`]).
    /// `tag:x`, `branch:x`, `semver:x` and `commit:x` say it explicitly.
    pub fn parse_cli(text: &str) -> Result<Reference> {
        let reference = if let Some(b) = text
            .strip_prefix("refs/heads/")
            .or_else(|| text.strip_prefix("branch:"))
        {
            Reference::Branch(b.into())
        } else if let Some(t) = text
            .strip_prefix("refs/tags/")
            .or_else(|| text.strip_prefix("tag:"))
        {
            Reference::Tag(t.into())
        } else if let Some(s) = text.strip_prefix("semver:") {
            Reference::Semver(s.into())
        } else if let Some(c) = text.strip_prefix("commit:") {
            Reference::Commit(c.to_ascii_lowercase())
        } else if is_commit_id(text) {
            Reference::Commit(text.to_ascii_lowercase())
        } else if text.starts_with(['>', '<', '=', '^', '~', '*']) {
            Reference::Semver(text.into())
        } else {
            Reference::Name(text.into())
        };
        reference.validate()?;
        Ok(reference)
    }

    fn validate(&self) -> Result<()> {
        match self {
            Reference::Branch(name) | Reference::Tag(name) | Reference::Name(name) => {
                let bad = name.is_empty()
                    || name.starts_with('-')
                    || name.starts_with('/')
                    || name.ends_with('/')
                    || name.ends_with(".lock")
                    || name.contains("..")
                    || name.contains("//")
                    || name.contains("@{")
                    || name
                        .chars()
                        .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
                if bad {
                    return Err(Error::InvalidSpec(format!(
                        "{self}: not a valid git reference name"
                    )));
                }
            }
            Reference::Semver(range) => {
                semver::VersionReq::parse(range).map_err(|e| {
                    Error::InvalidSpec(format!("semver range {range:?} is invalid: {e}"))
                })?;
            }
            Reference::Commit(id) => {
                if !is_commit_id(id) {
                    return Err(Error::InvalidSpec(format!(
                        "commit {id:?} is not a full 40-digit commit id"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The refspecs that fetch this reference into the cache repository (force, since
    /// branches may be force-pushed and tags moved): every tag for semver, which picks
    /// among them, and both candidates for a bare name.
    pub fn refspecs(&self) -> Vec<String> {
        let branch = |b: &str| format!("+refs/heads/{b}:refs/heads/{b}");
        let tag = |t: &str| format!("+refs/tags/{t}:refs/tags/{t}");
        match self {
            Reference::Branch(b) => vec![branch(b)],
            Reference::Tag(t) => vec![tag(t)],
            Reference::Name(n) => vec![branch(n), tag(n)],
            Reference::Commit(c) => vec![format!("{c}:refs/switchyard/commits/{c}")],
            Reference::Semver(_) => vec!["+refs/tags/*:refs/tags/*".to_string()],
        }
    }

    /// Among the full ref names a repository advertises (`refs/heads/x`, with their
    /// commits), the one this branch, tag or bare name means, as (short name, commit).
    /// A bare name matching both a branch and a tag is refused naming both and `url` (a
    /// redacted URL, for the message).
    pub fn pick<'a>(
        &self,
        advertised: impl IntoIterator<Item = (&'a str, &'a str)>,
        url: &str,
    ) -> Result<Option<(String, String)>> {
        let wanted: Vec<String> = match self {
            Reference::Branch(b) => vec![format!("refs/heads/{b}")],
            Reference::Tag(t) => vec![format!("refs/tags/{t}")],
            Reference::Name(n) => vec![format!("refs/heads/{n}"), format!("refs/tags/{n}")],
            Reference::Semver(_) | Reference::Commit(_) => return Ok(None),
        };
        let mut found: Vec<(&str, &str)> = advertised
            .into_iter()
            .filter(|(name, _)| wanted.iter().any(|w| w == name))
            .collect();
        found.sort();
        found.dedup_by_key(|(name, _)| *name);
        match found.as_slice() {
            [] => Ok(None),
            [(name, commit)] => {
                let short = name
                    .strip_prefix("refs/heads/")
                    .or_else(|| name.strip_prefix("refs/tags/"))
                    .unwrap_or(name);
                Ok(Some((short.to_string(), commit.to_string())))
            }
            _ => Err(Error::InvalidSpec(format!(
                "{self} is ambiguous in {url}: both {} exist; name one of them in full",
                found
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))),
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Branch(b) => write!(f, "branch {b}"),
            Reference::Tag(t) => write!(f, "tag {t}"),
            Reference::Semver(s) => write!(f, "semver {s}"),
            Reference::Commit(c) => write!(f, "commit {c}"),
            Reference::Name(n) => write!(f, "branch or tag {n}"),
        }
    }
}

/// True for 40 hex digits.
pub fn is_commit_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The revision string for `name` (a branch or tag; none for a commit) at `commit`.
pub fn revision(name: Option<&str>, commit: &str) -> String {
    match name {
        Some(name) => format!("{name}@sha1:{commit}"),
        None => format!("sha1:{commit}"),
    }
}

/// The commit a revision names: `main@sha1:<c>`, `sha1:<c>`, or Flux's older `main/<c>`.
pub fn commit_of(revision: &str) -> Option<&str> {
    let tail = match revision.rsplit_once('@') {
        Some((_, tail)) => tail,
        None => revision,
    };
    let id = tail
        .strip_prefix("sha1:")
        .or_else(|| revision.rsplit_once('/').map(|(_, c)| c))?;
    is_commit_id(id).then_some(id)
}

/// The name part of a revision (`main` of `main@sha1:…`), if any.
pub fn name_of(revision: &str) -> Option<&str> {
    revision.rsplit_once("@sha1:").map(|(name, _)| name)
}

/// The highest tag matching `range` among `tags` (names without `refs/tags/`). Tags that
/// are not semver (after an optional `v`) are ignored; prereleases match only when the
/// range names one, as in Cargo and Flux.
pub fn highest_matching<'a>(
    range: &str,
    tags: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let req = semver::VersionReq::parse(range).ok()?;
    tags.into_iter()
        .filter_map(|tag| {
            let version = semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
            req.matches(&version).then_some((version, tag))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, tag)| tag)
}

/// When `old` and `new` name the same tag at different commits: the old commit. Tags are
/// meant never to move, so a move is reported.
pub fn moved_tag<'a>(reference: &Reference, old: &'a str, new: &str) -> Option<&'a str> {
    if !matches!(reference, Reference::Tag(_) | Reference::Semver(_)) {
        return None;
    }
    let (old_name, new_name) = (name_of(old)?, name_of(new)?);
    let (old_commit, new_commit) = (commit_of(old)?, commit_of(new)?);
    (old_name == new_name && old_commit != new_commit).then_some(old_commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "0123456789abcdef0123456789abcdef01234567";
    const D: &str = "89abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn exactly_one_reference_and_main_by_default() {
        assert_eq!(
            Reference::from_parts(None, None, None, None).ok(),
            Some(Reference::Branch("main".into()))
        );
        assert_eq!(
            Reference::from_parts(None, Some("v1"), None, None).ok(),
            Some(Reference::Tag("v1".into()))
        );
        assert!(Reference::from_parts(Some("main"), Some("v1"), None, None).is_err());
        assert!(Reference::from_parts(None, None, Some("not a range"), None).is_err());
        assert!(Reference::from_parts(None, None, None, Some("abc")).is_err());
        assert!(Reference::from_parts(Some("../x"), None, None, None).is_err());
        assert!(Reference::from_parts(Some("-upload-pack=x"), None, None, None).is_err());
    }

    #[test]
    fn cli_refs_are_read_by_their_shape() {
        let cases = [
            ("main", Reference::Name("main".into())),
            ("v1", Reference::Name("v1".into())),
            ("branch:v1", Reference::Branch("v1".into())),
            (
                "refs/heads/release/1",
                Reference::Branch("release/1".into()),
            ),
            ("refs/tags/v1.0", Reference::Tag("v1.0".into())),
            ("tag:v1.0", Reference::Tag("v1.0".into())),
            (">=1.0, <2", Reference::Semver(">=1.0, <2".into())),
            ("semver:1.2", Reference::Semver("1.2".into())),
            (C, Reference::Commit(C.into())),
        ];
        for (text, want) in cases {
            assert_eq!(Reference::parse_cli(text).ok(), Some(want), "{text}");
        }
    }

    #[test]
    fn a_bare_name_finds_a_branch_or_a_tag_and_refuses_both_issue_12() {
        let name = Reference::Name("v1".into());
        let tag_only = [("refs/heads/main", D), ("refs/tags/v1", C)];
        assert_eq!(
            name.pick(tag_only, "u").ok().flatten(),
            Some(("v1".to_string(), C.to_string()))
        );
        let branch_only = [("refs/heads/v1", D), ("refs/tags/v10", C)];
        assert_eq!(
            name.pick(branch_only, "u").ok().flatten(),
            Some(("v1".to_string(), D.to_string()))
        );
        let both = [("refs/heads/v1", D), ("refs/tags/v1", C)];
        let error = name
            .pick(both, "u")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("refs/heads/v1")
                && error.contains("refs/tags/v1")
                && error.contains("ambiguous"),
            "{error}"
        );
        assert_eq!(
            name.pick([("refs/heads/main", D)], "u").ok().flatten(),
            None
        );
        // The explicit forms stay explicit.
        let tag = Reference::Tag("v1".into());
        assert_eq!(
            tag.pick(both, "u").ok().flatten(),
            Some(("v1".to_string(), C.to_string()))
        );
    }

    #[test]
    fn revisions_are_spelled_as_flux_spells_them_and_read_back() {
        assert_eq!(revision(Some("main"), C), format!("main@sha1:{C}"));
        assert_eq!(revision(None, C), format!("sha1:{C}"));
        assert_eq!(commit_of(&format!("main@sha1:{C}")), Some(C));
        assert_eq!(commit_of(&format!("release/1@sha1:{C}")), Some(C));
        assert_eq!(commit_of(&format!("sha1:{C}")), Some(C));
        assert_eq!(
            commit_of(&format!("main/{C}")),
            Some(C),
            "Flux v1beta1 form"
        );
        assert_eq!(commit_of("cm:shop@sha1:abc"), None);
        assert_eq!(name_of(&format!("v1@sha1:{C}")), Some("v1"));
    }

    #[test]
    fn semver_picks_the_highest_matching_tag() {
        let tags = [
            "v1.0.0",
            "v1.2.0",
            "1.3.0",
            "v2.0.0",
            "v1.4.0-rc.1",
            "latest",
        ];
        assert_eq!(highest_matching(">=1.0, <2", tags), Some("1.3.0"));
        assert_eq!(highest_matching("^2", tags), Some("v2.0.0"));
        assert_eq!(highest_matching(">=3", tags), None);
        assert_eq!(
            highest_matching(">=1.4.0-rc.0, <2", tags),
            Some("v1.4.0-rc.1")
        );
    }

    #[test]
    fn a_tag_at_a_new_commit_is_a_move_and_a_branch_is_not() {
        let tag = Reference::Tag("v1".into());
        let (old, new) = (revision(Some("v1"), C), revision(Some("v1"), D));
        assert_eq!(moved_tag(&tag, &old, &new), Some(C));
        assert_eq!(moved_tag(&tag, &old, &old), None);
        assert_eq!(
            moved_tag(&tag, &revision(Some("v0"), C), &new),
            None,
            "another tag is no move"
        );
        let branch = Reference::Branch("v1".into());
        assert_eq!(moved_tag(&branch, &old, &new), None);
    }
}
