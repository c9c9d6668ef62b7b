//! Switchyard ships SQL database changes: Sqitch-compatible plans applied with a registry
//! in the target database, blue/green staging of stateless objects, and promotion by an
//! atomic pointer swap.
//!
//! Crate map (data flows one way, top to bottom):
//! - [`source`]: where project files come from: git (gitoxide) and Flux artifacts, cached
//!   on disk and checked before anything reads them.
//! - [`project`]: read a project directory: manifest, plan, scripts.
//! - [`pg`]: what every database-facing part shares: quoting, error text, transactions,
//!   the connection target.
//! - [`registry`]: the registry inside the target database (Sqitch's tables and
//!   switchyard's own).
//! - [`engine`]: what a database can do: deploy, revert, verify.
//! - [`api`]: the custom resource types (types only).
//! - [`reconcile`]: one reconciler per kind: read state, decide, call the engine, write status.
//! - [`cli`]: the `switchyard` command line, including `switchyard controller`.
//! - [`telemetry`], [`metrics`]: logs, traces and the admin port's metrics.

pub mod api;
pub mod cli;
pub mod engine;
#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod pg;
pub mod project;
pub mod reconcile;
pub mod registry;
pub mod runtime;
pub mod source;
pub mod telemetry;
