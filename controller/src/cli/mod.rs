//! The `switchyard` command line: the same engine as the controller, for people.

use std::process::ExitCode;

/// Parses arguments, runs the command and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
