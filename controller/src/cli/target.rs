//! Working out the target database and the committer from arguments and the environment.

use crate::pg::Target;
use crate::registry::Committer;

/// The target for `--db` (or `$SWITCHYARD_DB`, which clap already folded in) over the
/// libpq variables and files, as `psql` would read them.
pub fn resolve(db: Option<&str>) -> Result<Target, String> {
    Target::from_libpq_env(db, |name| std::env::var(name).ok()).map_err(|e| e.0)
}

/// Who is deploying: switchyard's variables, else Sqitch's, else the login name.
pub fn committer() -> Committer {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let login = var("USER")
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| "switchyard".into());
    let name = var("SWITCHYARD_USER_NAME")
        .or_else(|| var("SQITCH_FULLNAME"))
        .unwrap_or_else(|| login.clone());
    let email = var("SWITCHYARD_USER_EMAIL")
        .or_else(|| var("SQITCH_EMAIL"))
        .unwrap_or_else(|| {
            format!(
                "{login}@{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "localhost".into())
            )
        });
    Committer { name, email }
}
