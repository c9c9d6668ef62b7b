//! What every database-facing part shares: identifier and literal quoting, the text of a
//! database error, which errors a retry can win, one transaction helper, and the
//! connection target (parsed once with libpq's meaning, shown redacted, connected in one
//! place, with TLS).
//!
//! A leaf: it imports nothing else of the crate, and `registry` and `engine` both build on it.

mod conninfo;
mod error;
mod material;
mod params;
mod passfile;
mod quote;
mod settings;
mod target;
mod tls;
mod transaction;

pub use error::{ConnectError, InvalidTarget, db_error_message, is_retryable};
pub use quote::{quote_ident, quote_literal};
pub use target::{Keys, Override, Target};
pub use transaction::{rolled_back, transaction};

/// This host's name, as the registry records it beside a lock or a deployment.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
