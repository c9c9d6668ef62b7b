//! Test infrastructure for switchyard's end-to-end tests: throwaway servers that tests
//! start for themselves and never leave running.

pub mod apiserver;
pub mod controller;
pub mod git;
pub mod pki;
pub mod postgres;
pub mod tls;
pub mod tools;
