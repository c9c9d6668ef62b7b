//! Switchyard ships SQL database changes: Sqitch-compatible plans applied with a registry
//! in the target database, blue/green staging of stateless objects, and promotion by an
//! atomic pointer swap.
//!
//! Crate map (data flows one way, top to bottom):
//! - [`project`]: read a project directory: manifest, plan, scripts.
//! - [`registry`]: the registry inside the target database (Sqitch's tables and
//!   switchyard's own).
//! - [`engine`]: what a database can do: deploy, revert, verify.
//! - [`cli`]: the `switchyard` command line.

pub mod cli;
pub mod engine;
pub mod project;
pub mod registry;
