//! Switchyard ships SQL database changes: Sqitch-compatible plans applied with a registry
//! in the target database, blue/green staging of stateless objects, and promotion by an
//! atomic pointer swap.
//!
//! Crate map (data flows one way, top to bottom: source → project → plan against registry
//! → engine → status):
//! - [`source`]: where project files come from: git (gitoxide), Flux artifacts and
//!   ConfigMaps, cached on disk and checked before anything reads them.
//! - [`project`]: read a project directory: manifest, Sqitch plan, scripts, `objects/`,
//!   development workflow files.
//! - [`pg`]: what every database-facing part shares: quoting, error text, transactions,
//!   the connection target.
//! - [`registry`]: the registry inside the target database (Sqitch's tables and
//!   switchyard's own: locks, deployment runs, schema pointers, workflow states).
//! - [`engine`]: what is done to a database: deploy, revert and verify a plan's changes
//!   ([`engine::changes`]); stage, swap and roll back blue-green schemas
//!   ([`engine::bluegreen`]).
//! - [`api`]: the custom resource types and the condition vocabulary (types only).
//! - [`reconcile`]: one reconciler per kind, in named steps: read state, decide, call the
//!   engine, write status.
//! - [`runtime`]: running the operator: watches, leader election, the admin port, webhooks.
//! - [`cli`]: the `switchyard` command line, the same engine without a cluster.
//! - [`telemetry`], [`metrics`]: logs and the controller's Prometheus metrics.
//!
//! The engine, registry, project and source never import Kubernetes; reconcilers hold no
//! SQL.

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
