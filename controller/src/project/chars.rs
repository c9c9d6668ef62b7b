//! The character classes Sqitch's plan grammar is written in, as Perl 5.36 applies them to
//! a plan read as UTF-8 (`[[:blank:]]`, `[[:digit:]]`, `\w`, `\s`, Sqitch's punctuation).

/// Perl's `[[:blank:]]` (`\h`) on a character string: horizontal whitespace.
pub(super) fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Sqitch's `$punct`: `[:punct:]` without `_`. NB: the backslash in Sqitch's source escapes
/// the `]` inside the character class, so `\` itself is *not* in the set.
pub(super) fn is_punct(c: char) -> bool {
    matches!(
        c,
        '-' | '!'
            | '"'
            | '#'
            | '$'
            | '%'
            | '&'
            | '\''
            | '('
            | ')'
            | '*'
            | '+'
            | ','
            | '.'
            | '/'
            | ':'
            | ';'
            | '<'
            | '='
            | '>'
            | '?'
            | '@'
            | '['
            | ']'
            | '^'
            | '`'
            | '{'
            | '|'
            | '}'
            | '~'
    )
}

/// Decimal digits (`\p{Nd}`, Perl's `[[:digit:]]`): every block is a run of code points.
const DIGIT_RANGES: &[(u32, u32)] = &[
    (0x30, 0x39),
    (0x660, 0x669),
    (0x6F0, 0x6F9),
    (0x7C0, 0x7C9),
    (0x966, 0x96F),
    (0x9E6, 0x9EF),
    (0xA66, 0xA6F),
    (0xAE6, 0xAEF),
    (0xB66, 0xB6F),
    (0xBE6, 0xBEF),
    (0xC66, 0xC6F),
    (0xCE6, 0xCEF),
    (0xD66, 0xD6F),
    (0xDE6, 0xDEF),
    (0xE50, 0xE59),
    (0xED0, 0xED9),
    (0xF20, 0xF29),
    (0x1040, 0x1049),
    (0x1090, 0x1099),
    (0x17E0, 0x17E9),
    (0x1810, 0x1819),
    (0x1946, 0x194F),
    (0x19D0, 0x19D9),
    (0x1A80, 0x1A89),
    (0x1A90, 0x1A99),
    (0x1B50, 0x1B59),
    (0x1BB0, 0x1BB9),
    (0x1C40, 0x1C49),
    (0x1C50, 0x1C59),
    (0xA620, 0xA629),
    (0xA8D0, 0xA8D9),
    (0xA900, 0xA909),
    (0xA9D0, 0xA9D9),
    (0xA9F0, 0xA9F9),
    (0xAA50, 0xAA59),
    (0xABF0, 0xABF9),
    (0xFF10, 0xFF19),
    (0x104A0, 0x104A9),
    (0x10D30, 0x10D39),
    (0x11066, 0x1106F),
    (0x110F0, 0x110F9),
    (0x11136, 0x1113F),
    (0x111D0, 0x111D9),
    (0x112F0, 0x112F9),
    (0x11450, 0x11459),
    (0x114D0, 0x114D9),
    (0x11650, 0x11659),
    (0x116C0, 0x116C9),
    (0x11730, 0x11739),
    (0x118E0, 0x118E9),
    (0x11950, 0x11959),
    (0x11C50, 0x11C59),
    (0x11D50, 0x11D59),
    (0x11DA0, 0x11DA9),
    (0x16A60, 0x16A69),
    (0x16AC0, 0x16AC9),
    (0x16B50, 0x16B59),
    (0x1D7CE, 0x1D7FF),
    (0x1E140, 0x1E149),
    (0x1E2F0, 0x1E2F9),
    (0x1E950, 0x1E959),
    (0x1FBF0, 0x1FBF9),
];

/// Perl's `[[:digit:]]` on a character string: any decimal digit, not only ASCII.
pub(super) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    let c = c as u32;
    DIGIT_RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Perl's `\w` on a character string (alphabetic, decimal digits, marks, connector
/// punctuation, joiners). Marks are covered for the common combining blocks.
pub(super) fn is_word(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    if c.is_alphabetic() || is_digit(c) {
        return true;
    }
    matches!(
        c as u32,
        0x300..=0x36F
            | 0x483..=0x489
            | 0x591..=0x5BD
            | 0x610..=0x61A
            | 0x64B..=0x65F
            | 0x6D6..=0x6ED
            | 0x1AB0..=0x1AFF
            | 0x1DC0..=0x1DFF
            | 0x200C..=0x200D
            | 0x203F..=0x2040
            | 0x2054
            | 0x20D0..=0x20F0
            | 0x302A..=0x302F
            | 0x3099..=0x309A
            | 0xFE00..=0xFE0F
            | 0xFE20..=0xFE2F
            | 0xFE33..=0xFE34
            | 0xFE4D..=0xFE4F
            | 0xFF3F
            | 0xE0100..=0xE01EF
    )
}

/// Perl's `\s` on a character string: the Unicode `White_Space` property.
pub(super) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Trims `\s` from both ends, as Sqitch trims notes.
pub(super) fn trim_space(s: &str) -> &str {
    s.trim_matches(is_space)
}
