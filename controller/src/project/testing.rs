//! Helpers for the project reader's tests: plan text in, a plan or its error out.

use std::path::Path;

use super::{Error, Plan};

/// The header most tests put before their changes.
pub const HEADER: &str = "%project=x\n\n";

/// A change or tag line's usual tail.
pub const TAIL: &str = "2024-01-01T00:00:00Z M <m@x>";

/// Parses plan text as `sqitch.plan`.
pub fn parse(text: &str) -> Result<Plan, Error> {
    super::parse(Path::new("sqitch.plan"), text)
}

/// Parses plan text that must be valid.
pub fn plan(text: &str) -> Plan {
    parse(text).unwrap_or_else(|e| panic!("plan should parse: {e}\n{text}"))
}

/// Parses plan text that must fail; returns the line and the message.
pub fn failure(text: &str) -> (Option<usize>, String) {
    match parse(text) {
        Ok(_) => panic!("plan should fail:\n{text}"),
        Err(e) => {
            assert_eq!(
                e.path(),
                Path::new("sqitch.plan"),
                "errors name the plan file"
            );
            let message = match &e {
                Error::Invalid { message, .. } | Error::File { message, .. } => message.clone(),
                Error::Io { .. } => panic!("unexpected i/o error {e}"),
            };
            (e.line(), message)
        }
    }
}

/// `HEADER` plus `lines`, each completed with `TAIL` where it has a `{}`.
pub fn body(lines: &[&str]) -> String {
    let mut text = HEADER.to_owned();
    for line in lines {
        text.push_str(&line.replace("{}", TAIL));
        text.push('\n');
    }
    text
}
