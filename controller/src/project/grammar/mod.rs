//! The line grammar of a Sqitch plan (pragmas, change and tag lines, dependency specs,
//! timestamps), finding the match Perl's backtracking regexes find, so every line means
//! what it means to Sqitch.

use super::chars::{is_blank, is_digit, is_punct, is_word};

// === notes and blank lines ===

/// Splits a line into its content and its `# note`, as Sqitch's
/// `s/(?<rspace>[[:blank:]]*)(?:[#][[:blank:]]*(?<note>.*))?$//` does: the note starts at the
/// first `#`, the blanks around it belong to neither side.
pub(super) fn split_note(line: &str) -> (&str, Option<&str>) {
    match line.find('#') {
        Some(hash) => (
            line[..hash].trim_end_matches(is_blank),
            Some(line[hash + 1..].trim_start_matches(is_blank)),
        ),
        None => (line.trim_end_matches(is_blank), None),
    }
}

/// What a line is when it is blank or a comment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Blank<'a> {
    /// Only blanks.
    Empty,
    /// `# …` with at least one character after the `#` (the raw text after `#`).
    Comment(&'a str),
}

/// Sqitch's blank-line test, `\A[[:blank:]]*(?:#[[:blank:]]*(.+)|$)`. NB: a lone `#` is *not*
/// a comment (`.+` needs a character), so Sqitch parses it as a change line and fails.
pub(super) fn blank_line(line: &str) -> Option<Blank<'_>> {
    let rest = line.trim_start_matches(is_blank);
    if rest.is_empty() {
        return Some(Blank::Empty);
    }
    let after = rest.strip_prefix('#')?;
    (!after.is_empty()).then_some(Blank::Comment(after))
}

/// A note as Sqitch keeps it: trimmed of whitespace, with `\\`, `\n` and `\r` unescaped.
/// NB: Sqitch skips this for the note `0`, which Perl treats as false.
pub(super) fn unescape_note(raw: &str) -> String {
    if raw.is_empty() || raw == "0" {
        return raw.to_owned();
    }
    let trimmed = super::chars::trim_space(raw);
    let mut out = String::with_capacity(trimmed.len());
    let mut chars = trimmed.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut look = chars.clone();
        match look.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars = look;
    }
    out
}

// === names ===

/// True when the character at `k` starts a symbolic reference Sqitch forbids inside names:
/// one of `~ / = % ^`, then digits, then the end of the subject or a blank.
fn symbolic_ref_at(c: &[char], k: usize) -> bool {
    if !matches!(c[k], '~' | '/' | '=' | '%' | '^') {
        return false;
    }
    let digits = c[k + 1..].iter().take_while(|&&d| is_digit(d)).count();
    digits > 0 && c.get(k + 1 + digits).is_none_or(|&n| is_blank(n))
}

/// True when `c[k]` may appear in a name at `k`.
fn name_char_at(c: &[char], k: usize) -> bool {
    let ch = c[k];
    !is_blank(ch) && !matches!(ch, ':' | '@' | '#' | '\\') && !symbolic_ref_at(c, k)
}

/// `\b` at `e` in `c`.
fn word_boundary(c: &[char], e: usize) -> bool {
    let before = e > 0 && is_word(c[e - 1]);
    let after = e < c.len() && is_word(c[e]);
    before != after
}

/// The ends (exclusive) at which Sqitch's name regex, started at `start`, can stop, longest
/// first: Perl's backtracking order. Empty when no name starts there.
pub(super) fn name_ends(c: &[char], start: usize) -> impl Iterator<Item = usize> + '_ {
    let max = if start < c.len() && !is_punct(c[start]) {
        (start..c.len())
            .find(|&k| !name_char_at(c, k))
            .unwrap_or(c.len())
    } else {
        start
    };
    (start + 1..=max)
        .rev()
        .filter(move |&e| !is_punct(c[e - 1]) && word_boundary(c, e))
}

/// True when the whole of `c[start..end]` is a name (the regex anchored at both ends, with
/// the rest of `c` still visible to the lookarounds, as in Sqitch).
fn name_spans(c: &[char], start: usize, end: usize) -> bool {
    name_ends(c, start).any(|e| e == end)
}

/// True when `s` as a whole is a valid Sqitch name (change, tag or project).
pub(super) fn is_name(s: &str) -> bool {
    let c: Vec<char> = s.chars().collect();
    name_spans(&c, 0, c.len())
}

/// True when a name could be confused with a change id (`^[0-9a-f]{40}`).
pub(super) fn looks_like_id(name: &str) -> bool {
    name.len() >= 40
        && name.as_bytes()[..40]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True for a full 40-character lower-case hex change id.
pub(super) fn is_id(s: &str) -> bool {
    s.len() == 40 && looks_like_id(s)
}

// === pragmas ===

/// A `%name=value` line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Pragma {
    /// The pragma's name.
    pub name: String,
    /// The value, trailing whitespace removed; `None` for a bare `%name`.
    pub value: Option<String>,
}

/// Parses the content of a header line (note already split off) as a pragma.
pub(super) fn parse_pragma(content: &str) -> Option<Pragma> {
    let c: Vec<char> = content.chars().collect();
    let mut i = c.iter().take_while(|&&ch| is_blank(ch)).count();
    if c.get(i) != Some(&'%') {
        return None;
    }
    i += 1;
    let hspace = c[i..].iter().take_while(|&&ch| is_blank(ch)).count();
    for hs in (0..=hspace).rev() {
        let start = i + hs;
        if start >= c.len() || is_punct(c[start]) {
            continue;
        }
        // `[^P](?:[^[:blank:]=]*?[^P[:blank:]])?`: the optional group first, shortest first.
        let mut ends = Vec::new();
        for e in start + 2..=c.len() {
            if e - 2 > start && (c[e - 2] == '=' || is_blank(c[e - 2])) {
                break;
            }
            if !is_punct(c[e - 1]) && !is_blank(c[e - 1]) {
                ends.push(e);
            }
        }
        ends.push(start + 1);
        for e in ends {
            if let Some(value) = pragma_value(&c, e) {
                let name: String = c[start..e].iter().collect();
                let value = value.map(|v| {
                    let v: String = v.iter().collect();
                    if v.is_empty() || v == "0" {
                        v
                    } else {
                        v.trim_end_matches(char::is_whitespace).to_owned()
                    }
                });
                return Some(Pragma { name, value });
            }
        }
    }
    None
}

/// Matches `(?:[[:blank:]]*=[[:blank:]]*(.+))?\z` at `e`: `Some(None)` for the end of the
/// line, `Some(Some(value))` for `= value`.
fn pragma_value(c: &[char], e: usize) -> Option<Option<&[char]>> {
    let mut j = e + c[e..].iter().take_while(|&&ch| is_blank(ch)).count();
    if c.get(j) == Some(&'=') {
        j += 1;
        let blanks = c[j..].iter().take_while(|&&ch| is_blank(ch)).count();
        if j + blanks < c.len() {
            return Some(Some(&c[j + blanks..]));
        }
        if blanks > 0 {
            // `.+` takes back the last blank.
            return Some(Some(&c[c.len() - 1..]));
        }
    }
    (e == c.len()).then_some(None)
}

// === change and tag lines ===

/// A change or tag line's parts, as Sqitch's line regex captures them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    /// `@name` (a tag) rather than a change.
    pub tag: bool,
    /// The name.
    pub name: &'a str,
    /// The text between `[` and `]`.
    pub dependencies: Option<&'a str>,
    /// The timestamp, when the line has one where Sqitch expects it.
    pub timestamp: Option<&'a str>,
    /// Planner name (as captured: it may keep inner and trailing blanks) and email.
    pub planner: Option<(&'a str, &'a str)>,
}

/// Parses the content of a plan line (note already split off). `None` when Sqitch's regex
/// finds no match at all. `scratch` is reused between lines to spare an allocation.
pub(super) fn parse_entry<'a>(content: &'a str, scratch: &mut Vec<char>) -> Option<Entry<'a>> {
    scratch.clear();
    scratch.extend(content.chars());
    let c = &scratch[..];
    let mut i = c.iter().take_while(|&&ch| is_blank(ch)).count();
    let tag = c.get(i) == Some(&'@');
    if tag {
        i += 1;
    } else if matches!(c.get(i), Some('+' | '-')) {
        // The old `+change` / `-change` operators: parsed and ignored, as by Sqitch.
        i += 1;
        i += c[i..].iter().take_while(|&&ch| is_blank(ch)).count();
    }
    let name_start = i;
    let ends = name_ends(c, name_start);
    for end in ends {
        if let Some(tail) = match_tail(c, end) {
            // Char positions to byte offsets, only for the spans kept.
            let ascii = content.len() == c.len();
            let byte = |at: usize| -> usize {
                if ascii {
                    at
                } else {
                    c[..at].iter().map(|ch| ch.len_utf8()).sum()
                }
            };
            let text = |(a, b): (usize, usize)| &content[byte(a)..byte(b)];
            return Some(Entry {
                tag,
                name: text((name_start, end)),
                dependencies: tail.dependencies.map(text),
                timestamp: tail.timestamp.map(|t| text((t, t + TIMESTAMP_LEN))),
                planner: tail.planner.map(|(n, e)| (text(n), text(e))),
            });
        }
    }
    None
}

/// Spans (char ranges) of what follows a name.
struct Tail {
    dependencies: Option<(usize, usize)>,
    timestamp: Option<usize>,
    planner: Option<((usize, usize), (usize, usize))>,
}

/// Blanks at `from` (none past the end).
fn blanks_at(c: &[char], from: usize) -> usize {
    c.get(from..)
        .map_or(0, |s| s.iter().take_while(|&&ch| is_blank(ch)).count())
}

/// Where a greedy `[[:blank:]]*` (`min` 0) or `+` (`min` 1) starting at `from` may end, in
/// the order Perl tries them: all the blanks first, then one fewer at a time.
fn blank_ends(c: &[char], from: usize, min: usize) -> impl Iterator<Item = usize> {
    let n = blanks_at(c, from);
    (min.min(n)..=n).rev().map(move |t| from + t)
}

/// Matches, at `j`, `(?<pspace>[[:blank:]]+)?(?:\[(?<deps>[^]]+)\][[:blank:]]*)?
/// (?:TIMESTAMP[[:blank:]]*)?(?:PLANNER)?$`, trying alternatives in Perl's order.
fn match_tail(c: &[char], j: usize) -> Option<Tail> {
    // `(x+)?`: every way to take one or more blanks, then none.
    let has_blanks = blanks_at(c, j) > 0;
    let pspace = blank_ends(c, j, 1)
        .filter(move |_| has_blanks)
        .chain(std::iter::once(j));
    for k in pspace {
        let deps = (c.get(k) == Some(&'['))
            .then(|| {
                c[k + 1..]
                    .iter()
                    .position(|&ch| ch == ']')
                    .map(|p| k + 1 + p)
            })
            .flatten()
            .filter(|&close| close > k + 1);
        let with_deps = deps
            .into_iter()
            .flat_map(|close| blank_ends(c, close + 1, 0).map(move |m| (Some((k + 1, close)), m)));
        for (dependencies, m) in with_deps.chain(std::iter::once((None, k))) {
            let ts = timestamp_at(c, m).then_some(m);
            let with_ts = ts
                .into_iter()
                .flat_map(|t| blank_ends(c, t + TIMESTAMP_LEN, 0).map(move |n| (Some(t), n)));
            for (timestamp, n) in with_ts.chain(std::iter::once((None, m))) {
                if let Some(planner) = planner_at(c, n) {
                    return Some(Tail {
                        dependencies,
                        timestamp,
                        planner: Some(planner),
                    });
                }
                if n == c.len() {
                    return Some(Tail {
                        dependencies,
                        timestamp,
                        planner: None,
                    });
                }
            }
        }
    }
    None
}

/// `name <email>` up to the end of the line, at `n`: `[^<]+[[:blank:]]+<[^>]+>$`.
fn planner_at(c: &[char], n: usize) -> Option<((usize, usize), (usize, usize))> {
    let lt = n + c.get(n..)?.iter().position(|&ch| ch == '<')?;
    // `[^<]+` gives back exactly one blank to `[[:blank:]]+`.
    if lt < n + 2 || !is_blank(c[lt - 1]) {
        return None;
    }
    let gt = lt + 1 + c[lt + 1..].iter().position(|&ch| ch == '>')?;
    (gt > lt + 1 && gt + 1 == c.len()).then_some(((n, lt - 1), (lt + 1, gt)))
}

const TIMESTAMP_LEN: usize = 20;

/// `YYYY-MM-DDTHH:MM:SSZ` at `m` (digits as Perl's `[[:digit:]]`).
fn timestamp_at(c: &[char], m: usize) -> bool {
    const SHAPE: &[u8; TIMESTAMP_LEN] = b"dddd-dd-ddTdd:dd:ddZ";
    c.get(m..m + TIMESTAMP_LEN).is_some_and(|s| {
        s.iter().zip(SHAPE).all(|(&ch, &want)| {
            if want == b'd' {
                is_digit(ch)
            } else {
                ch == want as char
            }
        })
    })
}

/// True when a timestamp appears anywhere in the line (Sqitch then blames the name).
pub(super) fn contains_timestamp(content: &str) -> bool {
    let c: Vec<char> = content.chars().collect();
    (0..c.len()).any(|m| timestamp_at(&c, m))
}

/// Days on which UTC had a leap second (`23:59:60`), per `DateTime::LeapSecond`.
const LEAP_SECOND_DAYS: &[(u32, u32, u32)] = &[
    (1972, 6, 30),
    (1972, 12, 31),
    (1973, 12, 31),
    (1974, 12, 31),
    (1975, 12, 31),
    (1976, 12, 31),
    (1977, 12, 31),
    (1978, 12, 31),
    (1979, 12, 31),
    (1981, 6, 30),
    (1982, 6, 30),
    (1983, 6, 30),
    (1985, 6, 30),
    (1987, 12, 31),
    (1989, 12, 31),
    (1990, 12, 31),
    (1992, 6, 30),
    (1993, 6, 30),
    (1994, 6, 30),
    (1995, 12, 31),
    (1997, 6, 30),
    (1998, 12, 31),
    (2005, 12, 31),
    (2008, 12, 31),
    (2012, 6, 30),
    (2015, 6, 30),
    (2016, 12, 31),
];

/// Checks a `YYYY-MM-DDTHH:MM:SSZ` timestamp the way `DateTime->new` does (Gregorian dates,
/// `23:59:60` only on real leap-second days). Returns what is wrong.
pub(super) fn check_timestamp(ts: &str) -> Result<(), String> {
    if !ts.is_ascii() {
        return Err("timestamps must use ASCII digits".into());
    }
    let num = |a: usize, b: usize| ts[a..b].parse::<u32>().unwrap_or(u32::MAX);
    let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
    let (hour, minute, second) = (num(11, 13), num(14, 16), num(17, 19));
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} is out of range"));
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days).contains(&day) {
        return Err(format!(
            "day {day:02} is out of range for {year:04}-{month:02}"
        ));
    }
    if hour > 23 {
        return Err(format!("hour {hour:02} is out of range"));
    }
    if minute > 59 {
        return Err(format!("minute {minute:02} is out of range"));
    }
    let leap_second = second == 60
        && hour == 23
        && minute == 59
        && LEAP_SECOND_DAYS.contains(&(year, month, day));
    if second > 59 && !leap_second {
        return Err(format!("second {second:02} is out of range"));
    }
    Ok(())
}

// === dependencies ===

/// A parsed `[…]` entry, before Sqitch's "must name something" check.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct DependSpec {
    /// Written with a leading `!`.
    pub conflicts: bool,
    /// `proj:` prefix.
    pub project: Option<String>,
    /// Change name.
    pub change: Option<String>,
    /// Tag name without `@`.
    pub tag: Option<String>,
    /// 40-hex change id.
    pub id: Option<String>,
}

/// Parses one dependency as `App::Sqitch::Plan::Depend->parse` does:
/// `!?(?:project:)?(?:id|change(?:@tag)?|(?:@tag)?)`. `None` when it does not match.
pub(super) fn parse_dependency(s: &str) -> Option<DependSpec> {
    let c: Vec<char> = s.chars().collect();
    let text = |a: usize, b: usize| c[a..b].iter().collect::<String>();
    let mut spec = DependSpec::default();
    let mut i = 0;
    if c.first() == Some(&'!') {
        spec.conflicts = true;
        i = 1;
    }
    if let Some(colon) = c[i..].iter().position(|&ch| ch == ':').map(|p| i + p) {
        // Names cannot hold `:`, so only a project prefix can end here.
        if !name_spans(&c, i, colon) {
            return None;
        }
        spec.project = Some(text(i, colon));
        i = colon + 1;
    }
    let rest = &c[i..];
    if rest.len() == 40 && rest.iter().all(|ch| matches!(ch, '0'..='9' | 'a'..='f')) {
        spec.id = Some(text(i, c.len()));
        return Some(spec);
    }
    match rest.iter().position(|&ch| ch == '@').map(|p| i + p) {
        None if i == c.len() => Some(spec),
        None => name_spans(&c, i, c.len()).then(|| {
            spec.change = Some(text(i, c.len()));
            spec
        }),
        Some(at) => {
            if at > i && !name_spans(&c, i, at) {
                return None;
            }
            if !name_spans(&c, at + 1, c.len()) {
                return None;
            }
            if at > i {
                spec.change = Some(text(i, at));
            }
            spec.tag = Some(text(at + 1, c.len()));
            Some(spec)
        }
    }
}

#[cfg(test)]
mod tests;
