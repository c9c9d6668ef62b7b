//! A small CEL evaluator for CRD `x-kubernetes-validations`: literals (int, uint, double,
//! string, bool, null, lists, maps), `self`/`oldSelf`, field selection, indexing, `has()`,
//! `! - * / % + - == != < <= > >= in && || ?:`, `size()`, `startsWith`, `endsWith`,
//! `contains`, `matches`, `lowerAscii`, `upperAscii`, `trim`, `int()`, `uint()`, `double()`,
//! `string()`, and the macros `all`, `exists`, `exists_one`, `map`, `filter`. Anything else is
//! reported as unsupported so the caller can log and skip the rule. Pure; no I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// A CEL value.
#[derive(Clone, Debug)]
pub enum Val {
    /// null
    Null,
    /// bool
    Bool(bool),
    /// int
    Int(i64),
    /// uint
    Uint(u64),
    /// double
    Double(f64),
    /// string
    Str(String),
    /// list
    List(Vec<Val>),
    /// map with string keys
    Map(BTreeMap<String, Val>),
}

impl Val {
    fn from_json(v: &Value) -> Val {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Val::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Val::Uint(u)
                } else {
                    Val::Double(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => Val::Str(s.clone()),
            Value::Array(a) => Val::List(a.iter().map(Val::from_json).collect()),
            Value::Object(m) => Val::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Val::from_json(v)))
                    .collect(),
            ),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null_type",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Uint(_) => "uint",
            Val::Double(_) => "double",
            Val::Str(_) => "string",
            Val::List(_) => "list",
            Val::Map(_) => "map",
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Uint(u) => Some(*u as f64),
            Val::Double(d) => Some(*d),
            _ => None,
        }
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::List(a), Val::List(b)) => a == b,
            (Val::Map(a), Val::Map(b)) => a == b,
            (a, b) => match (a.num(), b.num()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            },
        }
    }
}

/// Why evaluation failed.
#[derive(Debug)]
pub enum EvalError {
    /// The expression uses something this evaluator does not implement: skip the rule.
    Unsupported(String),
    /// A real CEL runtime error (no such key, overflow, bad types): the rule fails.
    Runtime(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Unsupported(s) | EvalError::Runtime(s) => f.write_str(s),
        }
    }
}

type R<T> = Result<T, EvalError>;

fn rt<T>(msg: impl Into<String>) -> R<T> {
    Err(EvalError::Runtime(msg.into()))
}

fn unsupported<T>(msg: impl Into<String>) -> R<T> {
    Err(EvalError::Unsupported(msg.into()))
}

// === lexer ===

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
}

const OPS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "?", ":", ".", ",",
    "(", ")", "[", "]", "{", "}",
];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = vec![];
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                // Stop before a method call on a number literal, e.g. `1.size()` is not supported anyway.
                if chars[i] == '.' && !chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                    break;
                }
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if let Some(u) = text.strip_suffix(['u', 'U']) {
                out.push(Tok::Uint(
                    u.parse().map_err(|_| format!("bad uint {text}"))?,
                ));
            } else if let Some(h) = text.strip_prefix("0x") {
                out.push(Tok::Int(
                    i64::from_str_radix(h, 16).map_err(|_| format!("bad int {text}"))?,
                ));
            } else if text.contains('.') || text.contains('e') {
                out.push(Tok::Double(
                    text.parse().map_err(|_| format!("bad double {text}"))?,
                ));
            } else {
                out.push(Tok::Int(
                    text.parse().map_err(|_| format!("bad int {text}"))?,
                ));
            }
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Raw strings: r'...' or r"...".
            if (word == "r" || word == "R")
                && i < chars.len()
                && (chars[i] == '\'' || chars[i] == '"')
            {
                let q = chars[i];
                i += 1;
                let s0 = i;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated string".into());
                }
                out.push(Tok::Str(chars[s0..i].iter().collect()));
                i += 1;
                continue;
            }
            out.push(Tok::Ident(word));
            continue;
        }
        if c == '\'' || c == '"' {
            if chars[i..].starts_with(&[c, c, c]) {
                return Err("triple-quoted strings are not supported".into());
            }
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                if ch == c {
                    break;
                }
                if ch == '\\' {
                    let Some(&e) = chars.get(i) else {
                        return Err("bad escape".into());
                    };
                    i += 1;
                    let unescaped = match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '\\' => '\\',
                        '\'' => '\'',
                        '"' => '"',
                        '.' => {
                            // NB: strictly an invalid escape in CEL; kept so `\.` in a regex works.
                            s.push('\\');
                            '.'
                        }
                        other => return Err(format!("unsupported escape \\{other}")),
                    };
                    s.push(unescaped);
                    continue;
                }
                s.push(ch);
            }
            out.push(Tok::Str(s));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match OPS.iter().find(|op| rest.starts_with(*op)) {
            Some(op) => {
                out.push(Tok::Op(op));
                i += op.len();
            }
            None => return Err(format!("unexpected character {c:?}")),
        }
    }
    Ok(out)
}

// === parser ===

#[derive(Clone, Debug)]
enum Expr {
    Lit(Val),
    Ident(String),
    Select(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(Option<Box<Expr>>, String, Vec<Expr>),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(format!("expected {op:?} at token {}", self.pos))
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let c = self.or()?;
        if self.eat("?") {
            let a = self.expr()?;
            self.expect(":")?;
            let b = self.expr()?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.eat("||") {
            l = Expr::Bin("||", Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.rel()?;
        while self.eat("&&") {
            l = Expr::Bin("&&", Box::new(l), Box::new(self.rel()?));
        }
        Ok(l)
    }

    fn rel(&mut self) -> Result<Expr, String> {
        let mut l = self.add()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(o)) if ["==", "!=", "<", "<=", ">", ">="].contains(o) => *o,
                Some(Tok::Ident(w)) if w == "in" => "in",
                _ => return Ok(l),
            };
            self.pos += 1;
            l = Expr::Bin(op, Box::new(l), Box::new(self.add()?));
        }
    }

    fn add(&mut self) -> Result<Expr, String> {
        let mut l = self.mul()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(o)) if *o == "+" || *o == "-" => *o,
                _ => return Ok(l),
            };
            self.pos += 1;
            l = Expr::Bin(op, Box::new(l), Box::new(self.mul()?));
        }
    }

    fn mul(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(o)) if ["*", "/", "%"].contains(o) => *o,
                _ => return Ok(l),
            };
            self.pos += 1;
            l = Expr::Bin(op, Box::new(l), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.member()
    }

    fn args(&mut self, close: &str) -> Result<Vec<Expr>, String> {
        let mut args = vec![];
        if self.eat(close) {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(close) {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn member(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Tok::Ident(name)) = self.peek().cloned() else {
                    return Err("expected field name".into());
                };
                self.pos += 1;
                if self.eat("(") {
                    let args = self.args(")")?;
                    e = Expr::Call(Some(Box::new(e)), name, args);
                } else {
                    e = Expr::Select(Box::new(e), name);
                }
            } else if self.eat("[") {
                let i = self.expr()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(i));
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(t) = self.peek().cloned() else {
            return Err("unexpected end of expression".into());
        };
        self.pos += 1;
        Ok(match t {
            Tok::Int(i) => Expr::Lit(Val::Int(i)),
            Tok::Uint(u) => Expr::Lit(Val::Uint(u)),
            Tok::Double(d) => Expr::Lit(Val::Double(d)),
            Tok::Str(s) => Expr::Lit(Val::Str(s)),
            Tok::Ident(w) => match w.as_str() {
                "true" => Expr::Lit(Val::Bool(true)),
                "false" => Expr::Lit(Val::Bool(false)),
                "null" => Expr::Lit(Val::Null),
                _ if self.eat("(") => Expr::Call(None, w, self.args(")")?),
                _ => Expr::Ident(w),
            },
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                e
            }
            Tok::Op("[") => Expr::List(self.args("]")?),
            Tok::Op("{") => {
                let mut entries = vec![];
                if !self.eat("}") {
                    loop {
                        let k = self.expr()?;
                        self.expect(":")?;
                        let v = self.expr()?;
                        entries.push((k, v));
                        if self.eat("}") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Expr::Map(entries)
            }
            other => return Err(format!("unexpected token {other:?}")),
        })
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Program {
    expr: Expr,
    old_self: bool,
}

fn mentions(e: &Expr, name: &str) -> bool {
    match e {
        Expr::Lit(_) => false,
        Expr::Ident(n) => n == name,
        Expr::Select(a, _) | Expr::Not(a) | Expr::Neg(a) => mentions(a, name),
        Expr::Index(a, b) | Expr::Bin(_, a, b) => mentions(a, name) || mentions(b, name),
        Expr::Call(t, _, args) => {
            t.as_ref().is_some_and(|t| mentions(t, name)) || args.iter().any(|a| mentions(a, name))
        }
        Expr::List(items) => items.iter().any(|a| mentions(a, name)),
        Expr::Map(entries) => entries
            .iter()
            .any(|(k, v)| mentions(k, name) || mentions(v, name)),
        Expr::Cond(a, b, c) => mentions(a, name) || mentions(b, name) || mentions(c, name),
    }
}

impl Program {
    /// Parses a rule; an error means the syntax is outside the supported subset.
    pub fn compile(src: &str) -> Result<Self, String> {
        let toks = lex(src)?;
        let mut p = Parser { toks, pos: 0 };
        let expr = p.expr()?;
        if p.pos != p.toks.len() {
            return Err(format!("unexpected trailing input at token {}", p.pos));
        }
        let old_self = mentions(&expr, "oldSelf");
        Ok(Self { expr, old_self })
    }

    /// Whether this is a transition rule.
    pub fn uses_old_self(&self) -> bool {
        self.old_self
    }

    /// Evaluates with `self` (and `oldSelf`).
    pub fn eval(&self, this: &Value, old: Option<&Value>) -> R<Val> {
        let mut env = vec![("self".to_string(), Val::from_json(this))];
        if let Some(o) = old {
            env.push(("oldSelf".to_string(), Val::from_json(o)));
        }
        eval(&self.expr, &mut env)
    }
}

type Env = Vec<(String, Val)>;

fn lookup(env: &Env, name: &str) -> R<Val> {
    match env.iter().rev().find(|(n, _)| n == name) {
        Some((_, v)) => Ok(v.clone()),
        None => unsupported(format!("undeclared reference to '{name}'")),
    }
}

fn as_bool(v: R<Val>) -> R<bool> {
    match v? {
        Val::Bool(b) => Ok(b),
        other => rt(format!(
            "no such overload: expected bool, got {}",
            other.type_name()
        )),
    }
}

fn eval(e: &Expr, env: &mut Env) -> R<Val> {
    match e {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Ident(n) => lookup(env, n),
        Expr::Select(target, field) => match eval(target, env)? {
            Val::Map(m) => m
                .get(field)
                .cloned()
                .map_or_else(|| rt(format!("no such key: {field}")), Ok),
            other => rt(format!("no such key: {field} (on {})", other.type_name())),
        },
        Expr::Index(target, idx) => {
            let t = eval(target, env)?;
            let i = eval(idx, env)?;
            match (t, i) {
                (Val::List(l), Val::Int(i)) => usize::try_from(i)
                    .ok()
                    .and_then(|i| l.get(i).cloned())
                    .map_or_else(|| rt(format!("index out of bounds: {i}")), Ok),
                (Val::Map(m), Val::Str(k)) => m
                    .get(&k)
                    .cloned()
                    .map_or_else(|| rt(format!("no such key: {k}")), Ok),
                (t, i) => rt(format!(
                    "no such overload: {}[{}]",
                    t.type_name(),
                    i.type_name()
                )),
            }
        }
        Expr::List(items) => Ok(Val::List(
            items.iter().map(|i| eval(i, env)).collect::<R<_>>()?,
        )),
        Expr::Map(entries) => {
            let mut m = BTreeMap::new();
            for (k, v) in entries {
                match eval(k, env)? {
                    Val::Str(k) => {
                        m.insert(k, eval(v, env)?);
                    }
                    other => return unsupported(format!("map keys of type {}", other.type_name())),
                }
            }
            Ok(Val::Map(m))
        }
        Expr::Not(a) => Ok(Val::Bool(!as_bool(eval(a, env))?)),
        Expr::Neg(a) => match eval(a, env)? {
            Val::Int(i) => i
                .checked_neg()
                .map(Val::Int)
                .map_or_else(|| rt("int overflow"), Ok),
            Val::Double(d) => Ok(Val::Double(-d)),
            other => rt(format!("no such overload: -{}", other.type_name())),
        },
        Expr::Cond(c, a, b) => {
            if as_bool(eval(c, env))? {
                eval(a, env)
            } else {
                eval(b, env)
            }
        }
        Expr::Bin("&&", a, b) => {
            let l = as_bool(eval(a, env));
            if matches!(l, Ok(false)) {
                return Ok(Val::Bool(false));
            }
            let r = as_bool(eval(b, env));
            match (l, r) {
                (_, Ok(false)) => Ok(Val::Bool(false)),
                (Ok(true), Ok(true)) => Ok(Val::Bool(true)),
                (Err(e), _) | (_, Err(e)) => Err(e),
                _ => Ok(Val::Bool(false)),
            }
        }
        Expr::Bin("||", a, b) => {
            let l = as_bool(eval(a, env));
            if matches!(l, Ok(true)) {
                return Ok(Val::Bool(true));
            }
            let r = as_bool(eval(b, env));
            match (l, r) {
                (_, Ok(true)) => Ok(Val::Bool(true)),
                (Ok(false), Ok(false)) => Ok(Val::Bool(false)),
                (Err(e), _) | (_, Err(e)) => Err(e),
                _ => Ok(Val::Bool(false)),
            }
        }
        Expr::Bin(op, a, b) => {
            let l = eval(a, env)?;
            let r = eval(b, env)?;
            binary(op, l, r)
        }
        Expr::Call(target, name, args) => call(target.as_deref(), name, args, env),
    }
}

fn compare(l: &Val, r: &Val) -> R<std::cmp::Ordering> {
    match (l, r) {
        (Val::Str(a), Val::Str(b)) => Ok(a.cmp(b)),
        (Val::Bool(a), Val::Bool(b)) => Ok(a.cmp(b)),
        (Val::Int(a), Val::Int(b)) => Ok(a.cmp(b)),
        (Val::Uint(a), Val::Uint(b)) => Ok(a.cmp(b)),
        (a, b) => match (a.num(), b.num()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).map_or_else(|| rt("NaN comparison"), Ok),
            _ => rt(format!(
                "no such overload: {} < {}",
                a.type_name(),
                b.type_name()
            )),
        },
    }
}

fn binary(op: &str, l: Val, r: Val) -> R<Val> {
    use std::cmp::Ordering::*;
    Ok(match op {
        "==" => Val::Bool(l == r),
        "!=" => Val::Bool(l != r),
        "<" => Val::Bool(compare(&l, &r)? == Less),
        "<=" => Val::Bool(compare(&l, &r)? != Greater),
        ">" => Val::Bool(compare(&l, &r)? == Greater),
        ">=" => Val::Bool(compare(&l, &r)? != Less),
        "in" => match r {
            Val::List(items) => Val::Bool(items.contains(&l)),
            Val::Map(m) => match l {
                Val::Str(k) => Val::Bool(m.contains_key(&k)),
                _ => Val::Bool(false),
            },
            other => return rt(format!("no such overload: in {}", other.type_name())),
        },
        "+" => match (l, r) {
            (Val::Int(a), Val::Int(b)) => Val::Int(
                a.checked_add(b)
                    .ok_or_else(|| EvalError::Runtime("int overflow".into()))?,
            ),
            (Val::Uint(a), Val::Uint(b)) => Val::Uint(
                a.checked_add(b)
                    .ok_or_else(|| EvalError::Runtime("uint overflow".into()))?,
            ),
            (Val::Double(a), Val::Double(b)) => Val::Double(a + b),
            (Val::Str(a), Val::Str(b)) => Val::Str(a + &b),
            (Val::List(mut a), Val::List(b)) => {
                a.extend(b);
                Val::List(a)
            }
            (a, b) => {
                return rt(format!(
                    "no such overload: {} + {}",
                    a.type_name(),
                    b.type_name()
                ));
            }
        },
        "-" | "*" | "/" | "%" => match (l, r) {
            (Val::Int(a), Val::Int(b)) => {
                let v = match op {
                    "-" => a.checked_sub(b),
                    "*" => a.checked_mul(b),
                    "/" => a.checked_div(b),
                    _ => a.checked_rem(b),
                };
                Val::Int(v.ok_or_else(|| {
                    EvalError::Runtime(
                        if b == 0 {
                            "division by zero"
                        } else {
                            "int overflow"
                        }
                        .into(),
                    )
                })?)
            }
            (Val::Uint(a), Val::Uint(b)) => {
                let v = match op {
                    "-" => a.checked_sub(b),
                    "*" => a.checked_mul(b),
                    "/" => a.checked_div(b),
                    _ => a.checked_rem(b),
                };
                Val::Uint(v.ok_or_else(|| EvalError::Runtime("uint overflow".into()))?)
            }
            (Val::Double(a), Val::Double(b)) => Val::Double(match op {
                "-" => a - b,
                "*" => a * b,
                "/" => a / b,
                _ => return rt("no such overload: double % double"),
            }),
            (a, b) => {
                return rt(format!(
                    "no such overload: {} {op} {}",
                    a.type_name(),
                    b.type_name()
                ));
            }
        },
        other => return unsupported(format!("operator {other}")),
    })
}

fn macro_var(args: &[Expr]) -> R<String> {
    match args.first() {
        Some(Expr::Ident(v)) => Ok(v.clone()),
        _ => unsupported("macro variable must be an identifier"),
    }
}

fn call(target: Option<&Expr>, name: &str, args: &[Expr], env: &mut Env) -> R<Val> {
    // has() looks at presence without evaluating the last selection.
    if name == "has" && target.is_none() {
        let [Expr::Select(obj, field)] = args else {
            return unsupported("has() takes a field selection");
        };
        return match eval(obj, env)? {
            Val::Map(m) => Ok(Val::Bool(m.contains_key(field))),
            other => rt(format!(
                "invalid type for field selection: {}",
                other.type_name()
            )),
        };
    }
    if let (Some(t), "all" | "exists" | "exists_one" | "map" | "filter") = (target, name) {
        if args.len() != 2 {
            return unsupported(format!("{name} with {} arguments", args.len()));
        }
        let var = macro_var(args)?;
        let items: Vec<Val> = match eval(t, env)? {
            Val::List(l) => l,
            Val::Map(m) => m.into_keys().map(Val::Str).collect(),
            other => return rt(format!("no such overload: {}.{name}", other.type_name())),
        };
        let mut results = vec![];
        for item in items {
            env.push((var.clone(), item.clone()));
            let r = eval(&args[1], env);
            env.pop();
            results.push((item, r));
        }
        return match name {
            "all" => {
                let mut err = None;
                for (_, r) in results {
                    match as_bool(r) {
                        Ok(false) => return Ok(Val::Bool(false)),
                        Ok(true) => {}
                        Err(e) => err = Some(e),
                    }
                }
                err.map_or(Ok(Val::Bool(true)), Err)
            }
            "exists" => {
                let mut err = None;
                for (_, r) in results {
                    match as_bool(r) {
                        Ok(true) => return Ok(Val::Bool(true)),
                        Ok(false) => {}
                        Err(e) => err = Some(e),
                    }
                }
                err.map_or(Ok(Val::Bool(false)), Err)
            }
            "exists_one" => {
                let mut n = 0;
                for (_, r) in results {
                    if as_bool(r)? {
                        n += 1;
                    }
                }
                Ok(Val::Bool(n == 1))
            }
            "map" => Ok(Val::List(
                results.into_iter().map(|(_, r)| r).collect::<R<_>>()?,
            )),
            _ => {
                let mut out = vec![];
                for (item, r) in results {
                    if as_bool(r)? {
                        out.push(item);
                    }
                }
                Ok(Val::List(out))
            }
        };
    }
    let recv = match target {
        Some(t) => Some(eval(t, env)?),
        None => None,
    };
    let mut vals = vec![];
    for a in args {
        vals.push(eval(a, env)?);
    }
    let (this, rest): (Val, &[Val]) = match recv {
        Some(r) => (r, &vals[..]),
        None => match vals.split_first() {
            Some((f, rest)) => (f.clone(), rest),
            None => return unsupported(format!("function {name}()")),
        },
    };
    match (name, &this, rest) {
        ("size", Val::Str(s), []) => Ok(Val::Int(s.chars().count() as i64)),
        ("size", Val::List(l), []) => Ok(Val::Int(l.len() as i64)),
        ("size", Val::Map(m), []) => Ok(Val::Int(m.len() as i64)),
        ("startsWith", Val::Str(s), [Val::Str(p)]) => Ok(Val::Bool(s.starts_with(p.as_str()))),
        ("endsWith", Val::Str(s), [Val::Str(p)]) => Ok(Val::Bool(s.ends_with(p.as_str()))),
        ("contains", Val::Str(s), [Val::Str(p)]) => Ok(Val::Bool(s.contains(p.as_str()))),
        ("matches", Val::Str(s), [Val::Str(p)]) => match regex::Regex::new(p) {
            Ok(re) => Ok(Val::Bool(re.is_match(s))),
            Err(e) => rt(format!("invalid regex: {e}")),
        },
        ("lowerAscii", Val::Str(s), []) => Ok(Val::Str(s.to_ascii_lowercase())),
        ("upperAscii", Val::Str(s), []) => Ok(Val::Str(s.to_ascii_uppercase())),
        ("trim", Val::Str(s), []) => Ok(Val::Str(s.trim().to_string())),
        ("int", v, []) => match v {
            Val::Int(i) => Ok(Val::Int(*i)),
            Val::Uint(u) => i64::try_from(*u)
                .map(Val::Int)
                .map_err(|_| EvalError::Runtime("int overflow".into())),
            Val::Double(d) => Ok(Val::Int(*d as i64)),
            Val::Str(s) => s
                .parse()
                .map(Val::Int)
                .map_err(|_| EvalError::Runtime(format!("cannot convert {s:?} to int"))),
            other => rt(format!("no such overload: int({})", other.type_name())),
        },
        ("uint", v, []) => match v {
            Val::Int(i) => u64::try_from(*i)
                .map(Val::Uint)
                .map_err(|_| EvalError::Runtime("uint overflow".into())),
            Val::Uint(u) => Ok(Val::Uint(*u)),
            Val::Str(s) => s
                .parse()
                .map(Val::Uint)
                .map_err(|_| EvalError::Runtime(format!("cannot convert {s:?} to uint"))),
            other => rt(format!("no such overload: uint({})", other.type_name())),
        },
        ("double", v, []) => match v.num() {
            Some(d) => Ok(Val::Double(d)),
            None => match v {
                Val::Str(s) => s
                    .parse()
                    .map(Val::Double)
                    .map_err(|_| EvalError::Runtime(format!("cannot convert {s:?} to double"))),
                other => rt(format!("no such overload: double({})", other.type_name())),
            },
        },
        ("string", v, []) => Ok(Val::Str(match v {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Uint(u) => u.to_string(),
            Val::Double(d) => d.to_string(),
            Val::Bool(b) => b.to_string(),
            other => return rt(format!("no such overload: string({})", other.type_name())),
        })),
        ("dyn", v, []) => Ok(v.clone()),
        _ => unsupported(format!(
            "function {name} on {} with {} arguments",
            this.type_name(),
            rest.len()
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(rule: &str, this: Value, old: Option<Value>) -> R<Val> {
        Program::compile(rule)
            .map_err(EvalError::Unsupported)?
            .eval(&this, old.as_ref())
    }

    fn truth(rule: &str, this: Value) -> bool {
        matches!(run(rule, this, None), Ok(Val::Bool(true)))
    }

    #[test]
    fn rules_from_the_issue() {
        let git = json!({"git": {"url": "x"}, "b": "x", "x": "abc", "items": [1, 2]});
        assert!(truth("has(self.git) != has(self.configMap)", git.clone()));
        assert!(truth(
            "(has(self.git) ? 1 : 0) + (has(self.configMap) ? 1 : 0) == 1",
            git.clone()
        ));
        assert!(truth("self.x.size() > 0", git.clone()));
        assert!(truth("self.x.startsWith('ab')", git.clone()));
        assert!(truth("!has(self.a) || self.b == 'x'", git.clone()));
        assert!(truth("self.x.matches('^[a-c]+$')", git.clone()));
        assert!(truth("2 in self.items && !(3 in self.items)", git.clone()));
        assert!(truth(
            "self.items.all(i, i > 0) && self.items.exists(i, i == 2)",
            git.clone()
        ));
        assert!(truth("self.x in ['abc', 'def'] && size(self.x) == 3", git));
        assert!(!truth(
            "has(self.a) != has(self.b)",
            json!({"a": 1, "b": 2})
        ));
        assert!(matches!(
            run("self == oldSelf", json!(1), Some(json!(1))),
            Ok(Val::Bool(true))
        ));
        assert!(matches!(
            run("self == oldSelf", json!("a"), Some(json!("b"))),
            Ok(Val::Bool(false))
        ));
    }

    #[test]
    fn missing_field_is_a_runtime_error_and_unknown_function_unsupported() {
        assert!(matches!(
            run("self.nope == 1", json!({}), None),
            Err(EvalError::Runtime(_))
        ));
        assert!(matches!(
            run("self.quantity()", json!({}), None),
            Err(EvalError::Unsupported(_))
        ));
        assert!(Program::compile("self.a ==").is_err());
    }
}
