//! Quoting values into SQL text, as psql quotes `:'var'` and `:"var"`.

/// A string literal: a standard one, or an `E''` one when the value holds backslashes.
pub fn quote_literal(value: &str) -> String {
    let doubled = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    }
}

/// A quoted identifier, always quoted so case and any character survive.
pub fn quote_ident(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}
