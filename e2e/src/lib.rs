//! Test infrastructure for switchyard's end-to-end tests: throwaway servers that tests
//! start for themselves and never leave running.

pub mod apiserver;
pub mod chaos;
pub mod chart;
pub mod controller;
pub mod fuzz;
pub mod git;
pub mod invariants;
pub mod pki;
pub mod postgres;
pub mod reliability;
pub mod tls;
pub mod tools;
