//! IAM policy documents: parsed and validated once, evaluated the way AWS does.
//!
//! [`Policy::parse`] checks a document's size, nesting depth and shape (unknown elements,
//! unknown condition operators and malformed values are refused) and compiles it: actions are
//! lowercased, CIDR blocks, numbers and dates parsed, wildcards and policy variables split
//! out. [`authorize`] then evaluates a [`Request`] against identity and resource policies and
//! cannot fail:
//!
//! - a matching `Deny` statement in any policy gives [`Decision::ExplicitDeny`];
//! - otherwise a matching `Allow` statement in any policy gives [`Decision::Allow`];
//! - otherwise [`Decision::ImplicitDeny`].
//!
//! Identity policies apply to the calling user only; an anonymous caller is reached solely by a
//! resource policy whose principal is `"*"` (or `{"AWS": "*"}`).
//!
//! Policy variables (`${aws:username}`, `${aws:userid}`, `${aws:PrincipalAccount}`, any request
//! context key, and the escapes `${*}`, `${?}`, `${$}`) are substituted in `Resource` /
//! `NotResource` and in the values of the `String*` and `Arn*` condition operators of
//! `2012-10-17` documents; `2008-10-17` documents (and documents without `Version`) keep them
//! as literal text. A variable that cannot be resolved never makes a statement apply: the entry
//! holding it matches nothing, and a `NotResource` list or a negated condition operator holding
//! it does not match at all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

/// The longest resource (repository or registry) policy accepted, in characters.
pub const MAX_RESOURCE_POLICY_CHARS: usize = 10_240;
/// The longest identity policy accepted, in characters.
pub const MAX_IDENTITY_POLICY_CHARS: usize = 6_144;
/// The deepest nesting of JSON arrays and objects accepted in a policy document.
pub const MAX_DEPTH: usize = berth_oci::json::MAX_JSON_DEPTH;

const VERSION_2012: &str = "2012-10-17";
const VERSION_2008: &str = "2008-10-17";

// ---- errors ----------------------------------------------------------------------------------

/// Why a policy document is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is empty or only whitespace.
    #[error("the policy document is empty")]
    Empty,
    /// The text is longer than its kind allows.
    #[error("the policy document is {len} characters long; {kind} policies may be at most {max}")]
    TooLong {
        /// The kind of policy being parsed.
        kind: PolicyKind,
        /// The length of the text, in characters.
        len: usize,
        /// The limit for this kind.
        max: usize,
    },
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("the policy document nests arrays and objects more than {max} levels deep")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The text is not JSON.
    #[error("the policy document is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The document has a top-level element other than `Version`, `Id` and `Statement`.
    #[error("unknown policy element {0:?} (expected Version, Id and Statement)")]
    UnknownElement(String),
    /// `Version` is neither `2012-10-17` nor `2008-10-17`.
    #[error("unsupported policy Version {0}; expected \"2012-10-17\" or \"2008-10-17\"")]
    Version(String),
    /// The document as a whole is malformed (not an object, `Statement` missing or empty…).
    #[error("{0}")]
    Malformed(String),
    /// One statement is malformed.
    #[error("{statement}: {message}")]
    Statement {
        /// Which statement: its index in `Statement`, and its `Sid` when it has one.
        statement: String,
        /// What is wrong with it.
        message: String,
    },
}

// ---- public model ----------------------------------------------------------------------------

/// Where a policy is attached, which decides the elements it must and may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Attached to a user: no `Principal`, `Resource` required.
    Identity,
    /// Attached to a repository or the registry: `Principal` required, `Resource` optional.
    Resource,
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyKind::Identity => "identity",
            PolicyKind::Resource => "resource",
        })
    }
}

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An unauthenticated caller.
    Anonymous,
    /// An IAM user of an account.
    User {
        /// The 12-digit account (registry) id.
        account: String,
        /// The user name (which may include a path such as `team/ci`).
        name: String,
    },
}

impl Principal {
    /// The principal's ARN (`arn:aws:iam::{account}:user/{name}`); none for an anonymous caller.
    pub fn arn(&self) -> Option<String> {
        match self {
            Principal::Anonymous => None,
            Principal::User { account, name } => {
                Some(format!("arn:aws:iam::{account}:user/{name}"))
            }
        }
    }
}

/// The request context: condition keys and their values. Keys are case-insensitive.
#[derive(Debug, Clone, Default)]
pub struct Context {
    values: HashMap<String, Vec<String>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// Sets `key` to a single value, replacing any previous values.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_lowercase(), vec![value.into()]);
    }

    /// Sets a multi-valued `key`, replacing any previous values.
    pub fn set_all(&mut self, key: &str, values: Vec<String>) {
        self.values.insert(key.to_lowercase(), values);
    }

    /// The values of `key`, if it is set.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.get_lowercase(&key.to_lowercase())
    }

    fn get_lowercase(&self, key: &str) -> Option<&[String]> {
        self.values.get(key).map(Vec::as_slice)
    }
}

/// One request to authorize.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who makes it.
    pub principal: &'a Principal,
    /// The action, such as `ecr:BatchGetImage`.
    pub action: &'a str,
    /// The resource ARN, or `*` for registry-wide actions.
    pub resource: &'a str,
    /// The condition keys of the request.
    pub context: &'a Context,
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An `Allow` statement matched and no `Deny` statement did.
    Allow,
    /// A `Deny` statement matched.
    ExplicitDeny,
    /// No statement matched.
    ImplicitDeny,
}

/// A parsed, validated and compiled policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    text: String,
    statements: Vec<Statement>,
}

impl Policy {
    /// Parses and validates `text` as a policy of `kind`.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
        if text.trim().is_empty() {
            return Err(PolicyError::Empty);
        }
        let max = match kind {
            PolicyKind::Identity => MAX_IDENTITY_POLICY_CHARS,
            PolicyKind::Resource => MAX_RESOURCE_POLICY_CHARS,
        };
        let len = text.chars().count();
        if len > max {
            return Err(PolicyError::TooLong { kind, len, max });
        }
        check_depth(text)?;
        let doc: Value = serde_json::from_str(text).map_err(PolicyError::Json)?;
        let statements = parse_document(&doc, kind)?;
        Ok(Policy {
            text: text.to_owned(),
            statements,
        })
    }

    /// The document's text, exactly as it was parsed.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Evaluates `req` against the caller's identity policies and the resource's policies.
///
/// Identity policies are ignored for an anonymous caller. Any matching `Deny` wins, then any
/// matching `Allow`; nothing matching is an implicit deny.
pub fn authorize(identity: &[&Policy], resource: &[&Policy], req: &Request<'_>) -> Decision {
    let identity = match req.principal {
        Principal::Anonymous => &[][..],
        Principal::User { .. } => identity,
    };
    let eval = Eval {
        req: *req,
        action: req.action.to_lowercase().chars().collect(),
        resource: req.resource.chars().collect(),
    };
    let mut allowed = false;
    for policy in identity.iter().chain(resource) {
        for statement in &policy.statements {
            if statement.effect == Effect::Allow && allowed {
                continue;
            }
            if statement.applies(&eval) {
                match statement.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Matches `value` against `pattern`, where `*` matches any run of characters (including
/// none) and `?` exactly one. Iterative: linear in the pattern times the value at worst.
pub fn wildcard_match(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let mut pat = Vec::with_capacity(pattern.len());
    push_wild(&mut pat, pattern);
    let value: Vec<char> = value.chars().collect();
    match_toks(&pat, &value, case_insensitive)
}

// ---- evaluation ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// A list of patterns, or (`Not…`) its complement.
#[derive(Debug, Clone)]
struct Element<T> {
    negated: bool,
    items: Vec<T>,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    /// `None` in identity policies: the statement applies to the calling user.
    principals: Option<Element<PrincipalPattern>>,
    /// Lowercased.
    actions: Element<Vec<Tok>>,
    /// `None`: the resource the policy is attached to, whatever it is.
    resources: Option<Element<Template>>,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalPattern {
    /// `"*"`: everyone, anonymous callers included.
    Everyone,
    /// An account: its users, when denying.
    Account(String),
    /// One IAM user.
    User { account: String, name: String },
    /// A principal berth never has (services, roles, federated users…).
    Other,
}

impl PrincipalPattern {
    /// Whether the pattern covers `p`. An account never grants by itself (in AWS it delegates
    /// to the account's identity policies), so it only matches when `allowing` is false.
    fn matches(&self, p: &Principal, allowing: bool) -> bool {
        match (self, p) {
            (PrincipalPattern::Everyone, _) => true,
            (PrincipalPattern::Account(a), Principal::User { account, .. }) => {
                !allowing && a == account
            }
            (
                PrincipalPattern::User { account, name },
                Principal::User {
                    account: pa,
                    name: pn,
                },
            ) => account == pa && name == pn,
            _ => false,
        }
    }
}

/// One request being evaluated, with what every statement needs precomputed.
struct Eval<'a> {
    req: Request<'a>,
    action: Vec<char>,
    resource: Vec<char>,
}

impl<'a> Eval<'a> {
    /// The values of a condition key (lowercased). Keys describing the principal come from the
    /// principal and cannot be supplied by the context.
    fn values(&self, key: &str) -> Option<Cow<'a, [String]>> {
        let principal = self.req.principal;
        let derived = match (key, principal) {
            ("aws:principaltype", Principal::Anonymous) => Some("Anonymous".to_owned()),
            ("aws:principaltype", Principal::User { .. }) => Some("User".to_owned()),
            ("aws:username" | "aws:userid", Principal::User { name, .. }) => Some(name.clone()),
            ("aws:principalaccount", Principal::User { account, .. }) => Some(account.clone()),
            ("aws:principalarn", _) => principal.arn(),
            ("aws:username" | "aws:userid" | "aws:principalaccount", Principal::Anonymous) => None,
            _ => return self.req.context.get_lowercase(key).map(Cow::Borrowed),
        };
        derived.map(|v| Cow::Owned(vec![v]))
    }

    /// The value of a policy variable: only single-valued keys resolve.
    fn variable(&self, name: &str) -> Option<String> {
        match self.values(name)?.as_ref() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }
}

/// Whether some resource and request context could make `policies` allow `action` to
/// `principal`: an `Allow` statement names both (resources and conditions are not looked at).
/// `false` means every request for that action is denied whatever it is about, which lets a
/// server refuse it before reading its body. Identity policies never allow an anonymous caller.
pub fn may_allow(
    identity: &[&Policy],
    resource: &[&Policy],
    principal: &Principal,
    action: &str,
) -> bool {
    let action: Vec<char> = action.to_lowercase().chars().collect();
    let identity = match principal {
        Principal::Anonymous => &[][..],
        Principal::User { .. } => identity,
    };
    identity.iter().chain(resource).any(|p| {
        p.statements.iter().any(|s| {
            s.effect == Effect::Allow && s.principal_applies(principal) && s.action_applies(&action)
        })
    })
}

impl Statement {
    fn principal_applies(&self, principal: &Principal) -> bool {
        match &self.principals {
            None => *principal != Principal::Anonymous,
            Some(el) if !el.negated => {
                let allowing = self.effect == Effect::Allow;
                el.items.iter().any(|p| p.matches(principal, allowing))
            }
            // Only `Principal: "*"` reaches anonymous callers: an Allow with NotPrincipal does
            // not.
            Some(el) => {
                let anonymous_allow =
                    self.effect == Effect::Allow && *principal == Principal::Anonymous;
                !anonymous_allow && !el.items.iter().any(|p| p.matches(principal, false))
            }
        }
    }

    fn action_applies(&self, action: &[char]) -> bool {
        let listed = self
            .actions
            .items
            .iter()
            .any(|p| match_toks(p, action, false));
        listed != self.actions.negated
    }

    fn applies(&self, ev: &Eval<'_>) -> bool {
        if !self.principal_applies(ev.req.principal) || !self.action_applies(&ev.action) {
            return false;
        }
        if let Some(el) = &self.resources
            && !resource_applies(el, ev)
        {
            return false;
        }
        self.conditions.iter().all(|c| c.holds(ev))
    }
}

fn resource_applies(el: &Element<Template>, ev: &Eval<'_>) -> bool {
    if el.negated {
        for t in &el.items {
            match t.pattern(ev) {
                Some(p) if !match_toks(&p, &ev.resource, false) => {}
                _ => return false,
            }
        }
        true
    } else {
        el.items.iter().any(|t| {
            t.pattern(ev)
                .is_some_and(|p| match_toks(&p, &ev.resource, false))
        })
    }
}

// ---- conditions ------------------------------------------------------------------------------

/// How a condition treats multi-valued keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetMode {
    /// No prefix: any value may match.
    Single,
    /// `ForAnyValue:`: at least one value.
    AnyValue,
    /// `ForAllValues:`: every value.
    AllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrMode {
    Exact,
    IgnoreCase,
    Like,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    /// Compares the request's value `x` with the policy's value `p`.
    fn test(self, x: f64, p: f64) -> bool {
        match self {
            Cmp::Eq => x == p,
            Cmp::Lt => x < p,
            Cmp::Le => x <= p,
            Cmp::Gt => x > p,
            Cmp::Ge => x >= p,
        }
    }
}

/// An operator family, before its values are compiled.
#[derive(Debug, Clone, Copy)]
enum Family {
    Str(StrMode),
    Num(Cmp),
    Date(Cmp),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

/// The condition operators: name, family, negated.
const OPERATORS: &[(&str, Family, bool)] = &[
    ("StringEquals", Family::Str(StrMode::Exact), false),
    ("StringNotEquals", Family::Str(StrMode::Exact), true),
    (
        "StringEqualsIgnoreCase",
        Family::Str(StrMode::IgnoreCase),
        false,
    ),
    (
        "StringNotEqualsIgnoreCase",
        Family::Str(StrMode::IgnoreCase),
        true,
    ),
    ("StringLike", Family::Str(StrMode::Like), false),
    ("StringNotLike", Family::Str(StrMode::Like), true),
    ("NumericEquals", Family::Num(Cmp::Eq), false),
    ("NumericNotEquals", Family::Num(Cmp::Eq), true),
    ("NumericLessThan", Family::Num(Cmp::Lt), false),
    ("NumericLessThanEquals", Family::Num(Cmp::Le), false),
    ("NumericGreaterThan", Family::Num(Cmp::Gt), false),
    ("NumericGreaterThanEquals", Family::Num(Cmp::Ge), false),
    ("DateEquals", Family::Date(Cmp::Eq), false),
    ("DateNotEquals", Family::Date(Cmp::Eq), true),
    ("DateLessThan", Family::Date(Cmp::Lt), false),
    ("DateLessThanEquals", Family::Date(Cmp::Le), false),
    ("DateGreaterThan", Family::Date(Cmp::Gt), false),
    ("DateGreaterThanEquals", Family::Date(Cmp::Ge), false),
    ("Bool", Family::Bool, false),
    ("BinaryEquals", Family::Binary, false),
    ("IpAddress", Family::Ip, false),
    ("NotIpAddress", Family::Ip, true),
    ("ArnEquals", Family::Arn, false),
    ("ArnNotEquals", Family::Arn, true),
    ("ArnLike", Family::Arn, false),
    ("ArnNotLike", Family::Arn, true),
    ("Null", Family::Null, false),
];

/// Compiled policy values of one condition.
#[derive(Debug, Clone)]
enum Test {
    Str(StrMode, Vec<Template>),
    Num(Cmp, Vec<f64>),
    Date(Cmp, Vec<f64>),
    Bool(Vec<bool>),
    Binary(Vec<String>),
    Ip(Vec<Cidr>),
    Arn(Vec<Template>),
    /// `true`: the key must be absent; `false`: present.
    Null(Vec<bool>),
}

/// One operator applied to one key.
#[derive(Debug, Clone)]
struct Condition {
    /// Lowercased.
    key: String,
    set: SetMode,
    if_exists: bool,
    negated: bool,
    test: Test,
}

impl Condition {
    fn holds(&self, ev: &Eval<'_>) -> bool {
        let values = ev.values(&self.key);
        let present: &[String] = values.as_deref().unwrap_or(&[]);
        if let Test::Null(expected) = &self.test {
            let absent = present.is_empty();
            return expected.contains(&absent);
        }
        if present.is_empty() {
            if self.if_exists {
                return true;
            }
            return match self.set {
                SetMode::AllValues => true,
                SetMode::AnyValue => false,
                SetMode::Single => self.negated,
            };
        }
        if self.negated && !self.test.resolvable(ev) {
            return false;
        }
        let matches = |v: &String| self.test.matches(v, ev);
        match (self.set, self.negated) {
            (SetMode::Single | SetMode::AnyValue, false) => present.iter().any(matches),
            (SetMode::Single, true) => !present.iter().any(matches),
            (SetMode::AnyValue, true) => present.iter().any(|v| !matches(v)),
            (SetMode::AllValues, false) => present.iter().all(matches),
            (SetMode::AllValues, true) => present.iter().all(|v| !matches(v)),
        }
    }
}

impl Test {
    /// Whether every policy value's variables resolve.
    fn resolvable(&self, ev: &Eval<'_>) -> bool {
        match self {
            Test::Str(_, values) | Test::Arn(values) => values.iter().all(|t| t.resolves(ev)),
            _ => true,
        }
    }

    /// Whether the request value `v` matches any of the policy values (the positive operator).
    fn matches(&self, v: &str, ev: &Eval<'_>) -> bool {
        match self {
            Test::Str(StrMode::Exact, values) => {
                values.iter().any(|t| t.text(ev).is_some_and(|p| p == v))
            }
            Test::Str(StrMode::IgnoreCase, values) => values
                .iter()
                .any(|t| t.text(ev).is_some_and(|p| eq_ignore_case(&p, v))),
            Test::Str(StrMode::Like, values) => {
                let v: Vec<char> = v.chars().collect();
                values
                    .iter()
                    .any(|t| t.pattern(ev).is_some_and(|p| match_toks(&p, &v, false)))
            }
            Test::Num(cmp, values) => {
                parse_number(v).is_some_and(|x| values.iter().any(|&p| cmp.test(x, p)))
            }
            Test::Date(cmp, values) => {
                parse_date(v).is_some_and(|x| values.iter().any(|&p| cmp.test(x, p)))
            }
            Test::Bool(values) => parse_bool(v).is_some_and(|x| values.contains(&x)),
            Test::Binary(values) => values.iter().any(|p| p == v),
            Test::Ip(blocks) => v
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| blocks.iter().any(|b| b.contains(ip))),
            Test::Arn(values) => {
                let v: Vec<char> = v.chars().collect();
                values
                    .iter()
                    .any(|t| t.pattern(ev).is_some_and(|p| arn_like(&p, &v)))
            }
            Test::Null(_) => false,
        }
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// ARN matching: component by component (the sixth, the resource, may contain colons) when
/// the pattern has six components; as a whole otherwise (so `*` matches any ARN).
fn arn_like(pattern: &[Tok], value: &[char]) -> bool {
    let pat = split_arn(pattern, |t| *t == Tok::Lit(':'));
    if pat.len() < 6 {
        return match_toks(pattern, value, false);
    }
    let val = split_arn(value, |c| *c == ':');
    val.len() == 6 && pat.iter().zip(&val).all(|(p, v)| match_toks(p, v, false))
}

/// Splits at the first five separators.
fn split_arn<T>(s: &[T], is_sep: impl Fn(&T) -> bool) -> Vec<&[T]> {
    let mut parts = Vec::with_capacity(6);
    let mut rest = s;
    while parts.len() < 5 {
        let Some(i) = rest.iter().position(&is_sep) else {
            break;
        };
        let (head, tail) = rest.split_at(i);
        parts.push(head);
        rest = tail.get(1..).unwrap_or_default();
    }
    parts.push(rest);
    parts
}

// ---- wildcards and policy variables ----------------------------------------------------------

/// One element of a compiled wildcard pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `*`: any run of characters.
    Any,
    /// `?`: one character.
    One,
}

/// Appends `s` with `*` and `?` as wildcards.
fn push_wild(out: &mut Vec<Tok>, s: &str) {
    out.extend(s.chars().map(|c| match c {
        '*' => Tok::Any,
        '?' => Tok::One,
        c => Tok::Lit(c),
    }));
}

/// Appends `s` literally.
fn push_lit(out: &mut Vec<Tok>, s: &str) {
    out.extend(s.chars().map(Tok::Lit));
}

fn chars_eq(a: char, b: char, case_insensitive: bool) -> bool {
    a == b
        || (case_insensitive
            && (a.eq_ignore_ascii_case(&b)
                || (!a.is_ascii() && a.to_lowercase().eq(b.to_lowercase()))))
}

/// Greedy matching that backtracks only to the last `*` seen: O(pattern × value) at worst.
fn match_toks(pat: &[Tok], val: &[char], case_insensitive: bool) -> bool {
    let (mut p, mut v) = (0, 0);
    // Where to resume after a mismatch: the token after the last `*`, and the value position
    // that `*` currently stops at.
    let mut resume: Option<(usize, usize)> = None;
    while let Some(&c) = val.get(v) {
        match pat.get(p) {
            Some(Tok::Any) => {
                p += 1;
                resume = Some((p, v));
                continue;
            }
            Some(Tok::One) => {
                p += 1;
                v += 1;
                continue;
            }
            Some(&Tok::Lit(l)) if chars_eq(l, c, case_insensitive) => {
                p += 1;
                v += 1;
                continue;
            }
            _ => {}
        }
        match resume {
            Some((rp, rv)) => {
                p = rp;
                v = rv + 1;
                resume = Some((rp, rv + 1));
            }
            None => return false,
        }
    }
    pat.get(p..)
        .unwrap_or_default()
        .iter()
        .all(|t| *t == Tok::Any)
}

/// A piece of a text holding policy variables.
#[derive(Debug, Clone)]
enum Piece {
    /// Policy text: `*` and `?` are wildcards where patterns are expected.
    Text(String),
    /// `${*}`, `${?}` or `${$}`: the character itself, never a wildcard.
    Escaped(char),
    /// `${name}`, the name lowercased.
    Var(String),
}

/// A policy value, as a pattern and as plain text; with variables to resolve per request.
#[derive(Debug, Clone)]
enum Template {
    Static { text: String, toks: Vec<Tok> },
    Dynamic(Vec<Piece>),
}

impl Template {
    /// Compiles `raw`; `${…}` is a variable only when `variables` (a `2012-10-17` document).
    fn parse(raw: &str, variables: bool) -> Result<Template, String> {
        let mut pieces = Vec::new();
        if variables {
            let mut rest = raw;
            while let Some((before, after)) = rest.split_once("${") {
                let Some((name, tail)) = after.split_once('}') else {
                    break;
                };
                if !before.is_empty() {
                    pieces.push(Piece::Text(before.to_owned()));
                }
                pieces.push(match name.trim() {
                    "*" => Piece::Escaped('*'),
                    "?" => Piece::Escaped('?'),
                    "$" => Piece::Escaped('$'),
                    "" => return Err(format!("{raw:?} holds an empty policy variable \"${{}}\"")),
                    name => Piece::Var(name.to_lowercase()),
                });
                rest = tail;
            }
            if !rest.is_empty() {
                pieces.push(Piece::Text(rest.to_owned()));
            }
        } else {
            pieces.push(Piece::Text(raw.to_owned()));
        }
        if pieces.iter().any(|p| matches!(p, Piece::Var(_))) {
            return Ok(Template::Dynamic(pieces));
        }
        let mut text = String::with_capacity(raw.len());
        let mut toks = Vec::with_capacity(raw.len());
        for piece in &pieces {
            match piece {
                Piece::Text(t) => {
                    text.push_str(t);
                    push_wild(&mut toks, t);
                }
                Piece::Escaped(c) => {
                    text.push(*c);
                    toks.push(Tok::Lit(*c));
                }
                Piece::Var(_) => {}
            }
        }
        Ok(Template::Static { text, toks })
    }

    fn resolves(&self, ev: &Eval<'_>) -> bool {
        match self {
            Template::Static { .. } => true,
            Template::Dynamic(pieces) => pieces.iter().all(|p| match p {
                Piece::Var(name) => ev.variable(name).is_some(),
                _ => true,
            }),
        }
    }

    /// The value as plain text (wildcard characters taken literally).
    fn text<'t>(&'t self, ev: &Eval<'_>) -> Option<Cow<'t, str>> {
        match self {
            Template::Static { text, .. } => Some(Cow::Borrowed(text)),
            Template::Dynamic(pieces) => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Escaped(c) => out.push(*c),
                        Piece::Var(name) => out.push_str(&ev.variable(name)?),
                    }
                }
                Some(Cow::Owned(out))
            }
        }
    }

    /// The value as a wildcard pattern; substituted variables are literal.
    fn pattern<'t>(&'t self, ev: &Eval<'_>) -> Option<Cow<'t, [Tok]>> {
        match self {
            Template::Static { toks, .. } => Some(Cow::Borrowed(toks)),
            Template::Dynamic(pieces) => {
                let mut out = Vec::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => push_wild(&mut out, t),
                        Piece::Escaped(c) => out.push(Tok::Lit(*c)),
                        Piece::Var(name) => push_lit(&mut out, &ev.variable(name)?),
                    }
                }
                Some(Cow::Owned(out))
            }
        }
    }
}

// ---- parsing ---------------------------------------------------------------------------------

/// Refuses documents nesting arrays and objects deeper than [`MAX_DEPTH`] before they reach
/// the JSON parser.
fn check_depth(text: &str) -> Result<(), PolicyError> {
    if berth_oci::json::too_deep(text.as_bytes(), MAX_DEPTH) {
        return Err(PolicyError::TooDeep { max: MAX_DEPTH });
    }
    Ok(())
}

fn parse_document(doc: &Value, kind: PolicyKind) -> Result<Vec<Statement>, PolicyError> {
    let malformed = |m: &str| PolicyError::Malformed(m.to_owned());
    let obj = doc
        .as_object()
        .ok_or_else(|| malformed("the policy document must be a JSON object"))?;
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement"))
    {
        return Err(PolicyError::UnknownElement(key.clone()));
    }
    let variables = match obj.get("Version") {
        None => false,
        Some(Value::String(v)) if v == VERSION_2012 => true,
        Some(Value::String(v)) if v == VERSION_2008 => false,
        Some(other) => return Err(PolicyError::Version(other.to_string())),
    };
    if obj.get("Id").is_some_and(|id| !id.is_string()) {
        return Err(malformed("Id must be a string"));
    }
    let shape = "Statement must be an object or a non-empty array of objects";
    let statements: Vec<&Value> = match obj.get("Statement") {
        None => return Err(malformed("the policy document has no Statement")),
        Some(Value::Array(list)) if list.is_empty() => return Err(malformed(shape)),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return Err(malformed(shape)),
    };
    statements
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let label = statement_label(index, value);
            parse_statement(value, kind, variables).map_err(|message| PolicyError::Statement {
                statement: label,
                message,
            })
        })
        .collect()
}

fn statement_label(index: usize, value: &Value) -> String {
    match value.get("Sid").and_then(Value::as_str) {
        Some(sid) if !sid.is_empty() => format!("statement {index} (Sid {sid:?})"),
        _ => format!("statement {index}"),
    }
}

/// At most one of `name` and `Not{name}`: which one, and its value.
fn either<'v>(
    obj: &'v Map<String, Value>,
    name: &str,
    not_name: &str,
) -> Result<Option<(bool, &'v Value)>, String> {
    match (obj.get(name), obj.get(not_name)) {
        (Some(_), Some(_)) => Err(format!("{name} and {not_name} cannot both be present")),
        (Some(v), None) => Ok(Some((false, v))),
        (None, Some(v)) => Ok(Some((true, v))),
        (None, None) => Ok(None),
    }
}

fn element_name(base: &str, negated: bool) -> String {
    if negated {
        format!("Not{base}")
    } else {
        base.to_owned()
    }
}

fn parse_statement(value: &Value, kind: PolicyKind, variables: bool) -> Result<Statement, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| "a statement must be a JSON object".to_owned())?;
    const KEYS: &[&str] = &[
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Principal",
        "NotPrincipal",
        "Condition",
    ];
    if let Some(key) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown element {key:?} (expected Sid, Effect, Action or NotAction, Resource or \
             NotResource, Principal or NotPrincipal, Condition)"
        ));
    }
    if obj.get("Sid").is_some_and(|s| !s.is_string()) {
        return Err("Sid must be a string".to_owned());
    }
    let effect = match obj.get("Effect") {
        None => return Err("Effect is missing".to_owned()),
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => return Err(format!("Effect must be \"Allow\" or \"Deny\", not {other}")),
    };

    let (negated, raw) = either(obj, "Action", "NotAction")?
        .ok_or_else(|| "Action or NotAction is required".to_owned())?;
    let name = element_name("Action", negated);
    let items = string_list(raw)
        .map_err(|m| format!("{name} {m}"))?
        .into_iter()
        .map(|a| parse_action(a).map_err(|m| format!("{name}: {m}")))
        .collect::<Result<_, _>>()?;
    let actions = Element { negated, items };

    let resources = match either(obj, "Resource", "NotResource")? {
        None if kind == PolicyKind::Identity => {
            return Err("Resource or NotResource is required in an identity policy".to_owned());
        }
        None => None,
        Some((negated, raw)) => {
            let name = element_name("Resource", negated);
            let items = string_list(raw)
                .map_err(|m| format!("{name} {m}"))?
                .into_iter()
                .map(|r| parse_resource(r, variables).map_err(|m| format!("{name}: {m}")))
                .collect::<Result<_, _>>()?;
            Some(Element { negated, items })
        }
    };

    let principals = match (either(obj, "Principal", "NotPrincipal")?, kind) {
        (Some((negated, _)), PolicyKind::Identity) => {
            return Err(format!(
                "{} is not allowed in an identity policy: it applies to the user it is \
                 attached to",
                element_name("Principal", negated)
            ));
        }
        (None, PolicyKind::Resource) => {
            return Err("Principal or NotPrincipal is required in a resource policy".to_owned());
        }
        (None, PolicyKind::Identity) => None,
        (Some((negated, raw)), PolicyKind::Resource) => {
            let name = element_name("Principal", negated);
            let items = parse_principal(raw).map_err(|m| format!("{name}: {m}"))?;
            Some(Element { negated, items })
        }
    };

    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c, variables)?,
    };
    Ok(Statement {
        effect,
        principals,
        actions,
        resources,
        conditions,
    })
}

/// A string or a non-empty array of strings.
fn string_list(value: &Value) -> Result<Vec<&str>, String> {
    const SHAPE: &str = "must be a string or a non-empty array of strings";
    match value {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|v| v.as_str().ok_or_else(|| SHAPE.to_owned()))
            .collect(),
        _ => Err(SHAPE.to_owned()),
    }
}

fn parse_action(action: &str) -> Result<Vec<Tok>, String> {
    if action == "*" {
        return Ok(vec![Tok::Any]);
    }
    let valid = action.split_once(':').is_some_and(|(service, name)| {
        !service.is_empty()
            && service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
    });
    if !valid {
        return Err(format!(
            "{action:?} is not \"*\" or an action such as \"ecr:BatchGetImage\""
        ));
    }
    let mut toks = Vec::with_capacity(action.len());
    push_wild(&mut toks, &action.to_ascii_lowercase());
    Ok(toks)
}

fn parse_resource(resource: &str, variables: bool) -> Result<Template, String> {
    let arn = resource.starts_with("arn:") && resource.matches(':').count() >= 5;
    if resource != "*" && !arn {
        return Err(format!("{resource:?} is not \"*\" or an ARN"));
    }
    Template::parse(resource, variables)
}

fn parse_principal(value: &Value) -> Result<Vec<PrincipalPattern>, String> {
    let map = match value {
        Value::String(s) if s == "*" => return Ok(vec![PrincipalPattern::Everyone]),
        Value::Object(map) if !map.is_empty() => map,
        _ => {
            return Err(
                "must be \"*\" or an object such as {\"AWS\": \"arn:aws:iam::123456789012:user/name\"}"
                    .to_owned(),
            );
        }
    };
    let mut patterns = Vec::new();
    for (kind, raw) in map {
        let list = string_list(raw).map_err(|m| format!("{kind} {m}"))?;
        match kind.as_str() {
            "AWS" => {
                for p in list {
                    patterns.push(parse_aws_principal(p)?);
                }
            }
            "Service" | "Federated" | "CanonicalUser" => {
                if list.iter().any(|p| p.is_empty()) {
                    return Err(format!("{kind} principals cannot be empty"));
                }
                patterns.push(PrincipalPattern::Other);
            }
            _ => {
                return Err(format!(
                    "unknown principal type {kind:?} (expected AWS, Service, Federated or \
                     CanonicalUser)"
                ));
            }
        }
    }
    Ok(patterns)
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_aws_principal(p: &str) -> Result<PrincipalPattern, String> {
    if p == "*" {
        return Ok(PrincipalPattern::Everyone);
    }
    if p.contains(['*', '?']) {
        return Err(format!(
            "{p:?}: wildcards are not allowed in principals, except \"*\" on its own"
        ));
    }
    if is_account_id(p) {
        return Ok(PrincipalPattern::Account(p.to_owned()));
    }
    let bad = || {
        format!(
            "{p:?} is not \"*\", a 12-digit account id or an IAM ARN such as \
             \"arn:aws:iam::123456789012:user/name\""
        )
    };
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(bad());
    };
    if *arn != "arn" || partition.is_empty() || !region.is_empty() || !is_account_id(account) {
        return Err(bad());
    }
    let ours = *partition == "aws";
    let named = |prefix: &str| {
        resource
            .strip_prefix(prefix)
            .filter(|name| !name.is_empty())
    };
    match *service {
        "iam" if *resource == "root" && ours => {
            Ok(PrincipalPattern::Account((*account).to_owned()))
        }
        "iam" if *resource == "root" => Ok(PrincipalPattern::Other),
        "iam" => match named("user/") {
            Some(name) if ours => Ok(PrincipalPattern::User {
                account: (*account).to_owned(),
                name: name.to_owned(),
            }),
            Some(_) => Ok(PrincipalPattern::Other),
            None if named("role/").is_some() => Ok(PrincipalPattern::Other),
            None => Err(bad()),
        },
        "sts" if named("assumed-role/").is_some() => Ok(PrincipalPattern::Other),
        _ => Err(bad()),
    }
}

fn parse_conditions(value: &Value, variables: bool) -> Result<Vec<Condition>, String> {
    let ops = value
        .as_object()
        .ok_or_else(|| "Condition must be an object of condition operators".to_owned())?;
    let mut conditions = Vec::new();
    for (operator, block) in ops {
        let (set, family, negated, if_exists) = parse_operator(operator)?;
        let keys = block.as_object().filter(|m| !m.is_empty()).ok_or_else(|| {
            format!("condition operator {operator} must map condition keys to values")
        })?;
        for (key, raw) in keys {
            if key.trim().is_empty() {
                return Err(format!(
                    "condition operator {operator} has an empty condition key"
                ));
            }
            let values = condition_values(raw)
                .and_then(|values| compile_test(family, &values, variables))
                .map_err(|m| format!("condition {operator} {key:?}: {m}"))?;
            conditions.push(Condition {
                key: key.to_lowercase(),
                set,
                if_exists,
                negated,
                test: values,
            });
        }
    }
    Ok(conditions)
}

/// `[ForAnyValue:|ForAllValues:]Operator[IfExists]`, case-insensitively.
fn parse_operator(name: &str) -> Result<(SetMode, Family, bool, bool), String> {
    fn strip_prefix<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
        s.get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(prefix))
            .and_then(|_| s.get(prefix.len()..))
    }
    let (set, rest) = if let Some(rest) = strip_prefix(name, "ForAnyValue:") {
        (SetMode::AnyValue, rest)
    } else if let Some(rest) = strip_prefix(name, "ForAllValues:") {
        (SetMode::AllValues, rest)
    } else {
        (SetMode::Single, name)
    };
    const IF_EXISTS: &str = "IfExists";
    let (base, if_exists) = match rest
        .len()
        .checked_sub(IF_EXISTS.len())
        .and_then(|at| Some((rest.get(..at)?, rest.get(at..)?)))
    {
        Some((base, suffix)) if suffix.eq_ignore_ascii_case(IF_EXISTS) => (base, true),
        _ => (rest, false),
    };
    let Some(&(_, family, negated)) = OPERATORS
        .iter()
        .find(|(op, _, _)| op.eq_ignore_ascii_case(base))
    else {
        return Err(format!("unknown condition operator {name:?}"));
    };
    if matches!(family, Family::Null) && (if_exists || set != SetMode::Single) {
        return Err(format!(
            "condition operator {name:?}: Null takes neither IfExists nor a ForAnyValue/ForAllValues prefix"
        ));
    }
    Ok((set, family, negated, if_exists))
}

/// A condition's values as strings: a string, number or boolean, or a non-empty array of them.
fn condition_values(value: &Value) -> Result<Vec<String>, String> {
    const SHAPE: &str = "values must be strings, numbers or booleans, or a non-empty array of them";
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(SHAPE.to_owned()),
    };
    match value {
        Value::Array(list) if list.is_empty() => Err(SHAPE.to_owned()),
        Value::Array(list) => list.iter().map(scalar).collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

fn compile_test(family: Family, values: &[String], variables: bool) -> Result<Test, String> {
    fn each<T>(values: &[String], f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
        values.iter().map(|v| f(v)).collect()
    }
    let templates = || each(values, |v| Template::parse(v, variables));
    Ok(match family {
        Family::Str(mode) => Test::Str(mode, templates()?),
        Family::Arn => Test::Arn(templates()?),
        Family::Num(cmp) => Test::Num(
            cmp,
            each(values, |v| {
                parse_number(v)
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("{v:?} is not a number"))
            })?,
        ),
        Family::Date(cmp) => Test::Date(
            cmp,
            each(values, |v| {
                parse_date(v).ok_or_else(|| {
                    format!("{v:?} is not a date (ISO 8601, such as 2026-01-01T00:00:00Z, or epoch seconds)")
                })
            })?,
        ),
        Family::Bool => Test::Bool(each(values, bool_value)?),
        Family::Null => Test::Null(each(values, bool_value)?),
        Family::Binary => Test::Binary(values.to_vec()),
        Family::Ip => Test::Ip(each(values, |v| {
            Cidr::parse(v).ok_or_else(|| format!("{v:?} is not an IP address or CIDR block"))
        })?),
    })
}

fn bool_value(v: &str) -> Result<bool, String> {
    parse_bool(v).ok_or_else(|| format!("{v:?} is not \"true\" or \"false\""))
}

// ---- values: booleans, numbers, dates, addresses ---------------------------------------------

fn parse_bool(v: &str) -> Option<bool> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_number(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok()
}

/// An ISO 8601 date or date-time, or epoch seconds, as (possibly fractional) epoch seconds.
fn parse_date(v: &str) -> Option<f64> {
    let v = v.trim();
    if let Some(secs) = parse_number(v) {
        return secs.is_finite().then_some(secs);
    }
    crate::dates::parse_iso8601(v)
}

/// An address block: `203.0.113.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&p| p <= max)?
            }
            Some(_) => return None,
        };
        Some(Cidr { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "123456789012";
    const REPO: &str = "arn:aws:ecr:us-east-1:123456789012:repository/app/web";

    fn user(name: &str) -> Principal {
        Principal::User {
            account: ACCOUNT.into(),
            name: name.into(),
        }
    }

    fn identity(text: &str) -> Policy {
        Policy::parse(text, PolicyKind::Identity).unwrap()
    }

    fn resource(text: &str) -> Policy {
        Policy::parse(text, PolicyKind::Resource).unwrap()
    }

    fn decide(
        ids: &[&Policy],
        res: &[&Policy],
        principal: &Principal,
        action: &str,
        target: &str,
        context: &Context,
    ) -> Decision {
        let req = Request {
            principal,
            action,
            resource: target,
            context,
        };
        authorize(ids, res, &req)
    }

    /// A one-statement identity policy, `Effect` and `Resource` filled in, around `body`.
    fn allow(body: &str) -> Policy {
        identity(&format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow",{body}}}}}"#
        ))
    }

    #[test]
    fn may_allow_looks_at_principal_and_action_only() {
        let scoped = allow(
            r#""Action":"ecr:UploadLayerPart","Resource":"arn:aws:ecr:*:*:repository/team/*","Condition":{"StringEquals":{"aws:SourceIp":"10.0.0.1"}}"#,
        );
        let alice = user("alice");
        assert!(may_allow(&[&scoped], &[], &alice, "ecr:UploadLayerPart"));
        assert!(!may_allow(&[&scoped], &[], &alice, "ecr:PutImage"));
        assert!(!may_allow(&[], &[], &alice, "ecr:UploadLayerPart"));
        assert!(!may_allow(
            &[&scoped],
            &[],
            &Principal::Anonymous,
            "ecr:UploadLayerPart"
        ));
        let repo_policy = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":["ecr:Put*"]}]}"#,
        );
        assert!(may_allow(
            &[],
            &[&repo_policy],
            &user("bob"),
            "ecr:PutImage"
        ));
        assert!(!may_allow(&[], &[&repo_policy], &alice, "ecr:PutImage"));
        let not_action = allow(r#""NotAction":"ecr:PutImage","Resource":"*""#);
        assert!(!may_allow(&[&not_action], &[], &alice, "ecr:PutImage"));
        assert!(may_allow(
            &[&not_action],
            &[],
            &alice,
            "ecr:UploadLayerPart"
        ));
    }

    /// Whether `condition` holds for alice with `context`.
    fn holds(condition: &str, context: &Context) -> bool {
        let p = allow(&format!(
            r#""Action":"*","Resource":"*","Condition":{condition}"#
        ));
        decide(
            &[&p],
            &[],
            &user("alice"),
            "ecr:BatchGetImage",
            REPO,
            context,
        ) == Decision::Allow
    }

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        let mut c = Context::new();
        for (k, v) in pairs {
            c.set(k, *v);
        }
        c
    }

    fn parse_err(text: &str, kind: PolicyKind) -> String {
        Policy::parse(text, kind).unwrap_err().to_string()
    }

    const ALLOW_ALL: &str =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

    // ---- decisions ---------------------------------------------------------------------------

    #[test]
    fn explicit_deny_in_resource_policy_beats_identity_allow() {
        let id = identity(ALLOW_ALL);
        let res = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:BatchGetImage"}]}"#,
        );
        let c = Context::new();
        let alice = user("alice");
        assert_eq!(
            decide(&[&id], &[&res], &alice, "ecr:BatchGetImage", REPO, &c),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&id], &[&res], &alice, "ecr:PutImage", REPO, &c),
            Decision::Allow
        );
    }

    #[test]
    fn explicit_deny_in_identity_policy_beats_resource_allow() {
        let id = identity(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ecr:PutImage","Resource":"*"}]}"#,
        );
        let res = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"ecr:*"}]}"#,
        );
        let c = Context::new();
        let alice = user("alice");
        assert_eq!(
            decide(&[&id], &[&res], &alice, "ecr:PutImage", REPO, &c),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&id], &[&res], &alice, "ecr:BatchGetImage", REPO, &c),
            Decision::Allow
        );
        // Deny found after an allow in the same policy still wins.
        let both = identity(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"ecr:PutImage","Resource":"*"}]}"#,
        );
        assert_eq!(
            decide(&[&both], &[], &alice, "ecr:PutImage", REPO, &c),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn nothing_matching_is_an_implicit_deny() {
        let c = Context::new();
        let alice = user("alice");
        assert_eq!(
            decide(&[], &[], &alice, "ecr:PutImage", REPO, &c),
            Decision::ImplicitDeny
        );
        let id = identity(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:BatchGetImage","Resource":"*"}]}"#,
        );
        assert_eq!(
            decide(&[&id], &[], &alice, "ecr:PutImage", REPO, &c),
            Decision::ImplicitDeny
        );
        let res = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"ecr:*"}]}"#,
        );
        assert_eq!(
            decide(&[], &[&res], &alice, "ecr:PutImage", REPO, &c),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(&[], &[&res], &user("bob"), "ecr:PutImage", REPO, &c),
            Decision::Allow
        );
    }

    #[test]
    fn anonymous_is_reached_only_by_a_star_principal() {
        let c = Context::new();
        let anon = Principal::Anonymous;
        // Identity policies never apply to anonymous callers.
        let id = identity(ALLOW_ALL);
        assert_eq!(
            decide(&[&id], &[], &anon, "ecr:BatchGetImage", REPO, &c),
            Decision::ImplicitDeny
        );
        for principal in [r#""*""#, r#"{"AWS":"*"}"#, r#"{"AWS":["*"]}"#] {
            let res = resource(&format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":"ecr:BatchGetImage"}}]}}"#
            ));
            assert_eq!(
                decide(&[], &[&res], &anon, "ecr:BatchGetImage", REPO, &c),
                Decision::Allow,
                "{principal}"
            );
            assert_eq!(
                decide(&[], &[&res], &anon, "ecr:PutImage", REPO, &c),
                Decision::ImplicitDeny
            );
        }
        for principal in [
            r#"{"AWS":"123456789012"}"#,
            r#"{"AWS":"arn:aws:iam::123456789012:root"}"#,
            r#"{"AWS":"arn:aws:iam::123456789012:user/alice"}"#,
            r#"{"Service":"ecr.amazonaws.com"}"#,
        ] {
            let res = resource(&format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":"*"}}]}}"#
            ));
            assert_eq!(
                decide(&[], &[&res], &anon, "ecr:BatchGetImage", REPO, &c),
                Decision::ImplicitDeny,
                "{principal}"
            );
        }
        // An Allow with NotPrincipal does not reach anonymous callers either.
        let res = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"*"}]}"#,
        );
        assert_eq!(
            decide(&[], &[&res], &anon, "ecr:BatchGetImage", REPO, &c),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(&[], &[&res], &user("alice"), "ecr:BatchGetImage", REPO, &c),
            Decision::Allow
        );
        assert_eq!(
            decide(&[], &[&res], &user("bob"), "ecr:BatchGetImage", REPO, &c),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn account_principal_never_grants_but_denies_all_its_users() {
        let c = Context::new();
        let alice = user("alice");
        for account in [r#""123456789012""#, r#""arn:aws:iam::123456789012:root""#] {
            let grant = resource(&format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":{account}}},"Action":"*"}}]}}"#
            ));
            assert_eq!(
                decide(&[], &[&grant], &alice, "ecr:PutImage", REPO, &c),
                Decision::ImplicitDeny,
                "{account}"
            );
            let deny = resource(&format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":{{"AWS":{account}}},"Action":"*"}}]}}"#
            ));
            let id = identity(ALLOW_ALL);
            for who in [user("alice"), user("bob")] {
                assert_eq!(
                    decide(&[&id], &[&deny], &who, "ecr:PutImage", REPO, &c),
                    Decision::ExplicitDeny
                );
            }
            let other = Principal::User {
                account: "210987654321".into(),
                name: "alice".into(),
            };
            assert_eq!(
                decide(&[&id], &[&deny], &other, "ecr:PutImage", REPO, &c),
                Decision::Allow
            );
            // Not anonymous callers: they belong to no account.
            let public = resource(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*"}]}"#,
            );
            assert_eq!(
                decide(
                    &[],
                    &[&deny, &public],
                    &Principal::Anonymous,
                    "ecr:PutImage",
                    REPO,
                    &c
                ),
                Decision::Allow
            );
        }
    }

    #[test]
    fn user_principals_match_their_exact_arn() {
        let c = Context::new();
        let res = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:user/team/ci","arn:aws:iam::123456789012:user/bob"]},"Action":"*"}]}"#,
        );
        for (who, expected) in [
            ("team/ci", Decision::Allow),
            ("bob", Decision::Allow),
            ("ci", Decision::ImplicitDeny),
            ("Bob", Decision::ImplicitDeny),
        ] {
            assert_eq!(
                decide(&[], &[&res], &user(who), "ecr:PutImage", REPO, &c),
                expected,
                "{who}"
            );
        }
        assert_eq!(
            user("team/ci").arn().as_deref(),
            Some("arn:aws:iam::123456789012:user/team/ci")
        );
        assert_eq!(Principal::Anonymous.arn(), None);
    }

    #[test]
    fn not_action_applies_to_every_other_action() {
        let c = Context::new();
        let alice = user("alice");
        let p = allow(r#""NotAction":["ecr:Delete*","ecr:PutImage"],"Resource":"*""#);
        assert_eq!(
            decide(&[&p], &[], &alice, "ecr:BatchGetImage", REPO, &c),
            Decision::Allow
        );
        assert_eq!(
            decide(&[&p], &[], &alice, "ecr:DeleteRepository", REPO, &c),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(&[&p], &[], &alice, "ecr:putimage", REPO, &c),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn not_resource_applies_to_every_other_resource() {
        let c = Context::new();
        let alice = user("alice");
        let id = identity(ALLOW_ALL);
        let deny = identity(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","NotResource":"arn:aws:ecr:us-east-1:123456789012:repository/app/*"}]}"#,
        );
        assert_eq!(
            decide(&[&id, &deny], &[], &alice, "ecr:PutImage", REPO, &c),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &[&id, &deny],
                &[],
                &alice,
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:123456789012:repository/other",
                &c
            ),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn not_principal_applies_to_everyone_else() {
        let c = Context::new();
        let id = identity(ALLOW_ALL);
        let deny = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"ecr:PutImage"}]}"#,
        );
        assert_eq!(
            decide(&[&id], &[&deny], &user("alice"), "ecr:PutImage", REPO, &c),
            Decision::Allow
        );
        assert_eq!(
            decide(&[&id], &[&deny], &user("bob"), "ecr:PutImage", REPO, &c),
            Decision::ExplicitDeny
        );
        let public = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*"}]}"#,
        );
        assert_eq!(
            decide(
                &[],
                &[&deny, &public],
                &Principal::Anonymous,
                "ecr:PutImage",
                REPO,
                &c
            ),
            Decision::ExplicitDeny
        );
        // An account in NotPrincipal exempts all its users.
        let deny_outsiders = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"123456789012"},"Action":"*"}]}"#,
        );
        assert_eq!(
            decide(
                &[&id],
                &[&deny_outsiders],
                &user("bob"),
                "ecr:PutImage",
                REPO,
                &c
            ),
            Decision::Allow
        );
        let outsider = Principal::User {
            account: "210987654321".into(),
            name: "bob".into(),
        };
        assert_eq!(
            decide(
                &[&id],
                &[&deny_outsiders],
                &outsider,
                "ecr:PutImage",
                REPO,
                &c
            ),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn action_wildcards_are_case_insensitive() {
        let c = Context::new();
        let alice = user("alice");
        let p = allow(r#""Action":["ecr:batch*","ECR:Get*","ecr:Describe?mages"],"Resource":"*""#);
        for (action, expected) in [
            ("ecr:BatchGetImage", Decision::Allow),
            ("ecr:BATCHCHECKLAYERAVAILABILITY", Decision::Allow),
            ("ecr:GetDownloadUrlForLayer", Decision::Allow),
            ("ecr:DescribeImages", Decision::Allow),
            ("ecr:DescribeImageScanFindings", Decision::ImplicitDeny),
            ("ecr:PutImage", Decision::ImplicitDeny),
            ("s3:GetObject", Decision::ImplicitDeny),
        ] {
            assert_eq!(
                decide(&[&p], &[], &alice, action, REPO, &c),
                expected,
                "{action}"
            );
        }
    }

    #[test]
    fn resource_wildcards_are_case_sensitive() {
        let c = Context::new();
        let alice = user("alice");
        let p = allow(
            r#""Action":"*","Resource":"arn:aws:ecr:us-east-1:123456789012:repository/app/*""#,
        );
        for (target, expected) in [
            (REPO, Decision::Allow),
            (
                "arn:aws:ecr:us-east-1:123456789012:repository/app/",
                Decision::Allow,
            ),
            (
                "arn:aws:ecr:us-east-1:123456789012:repository/App/web",
                Decision::ImplicitDeny,
            ),
            (
                "arn:aws:ecr:us-east-1:123456789012:repository/apps",
                Decision::ImplicitDeny,
            ),
            ("*", Decision::ImplicitDeny),
        ] {
            assert_eq!(
                decide(&[&p], &[], &alice, "ecr:PutImage", target, &c),
                expected,
                "{target}"
            );
        }
        // A resource policy without Resource covers whatever it is attached to.
        let res = resource(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"*"}}"#,
        );
        assert_eq!(
            decide(&[], &[&res], &alice, "ecr:PutImage", "anything", &c),
            Decision::Allow
        );
    }

    #[test]
    fn username_variable_is_substituted_only_in_2012_documents() {
        let c = Context::new();
        let stmt = r#""Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:aws:ecr:us-east-1:123456789012:repository/${aws:username}/*"}]"#;
        let modern = identity(&format!(r#"{{"Version":"2012-10-17",{stmt}}}"#));
        let old = identity(&format!(r#"{{"Version":"2008-10-17",{stmt}}}"#));
        let unversioned = identity(&format!("{{{stmt}}}"));
        let alices = "arn:aws:ecr:us-east-1:123456789012:repository/alice/web";
        let literal = "arn:aws:ecr:us-east-1:123456789012:repository/${aws:username}/web";
        let alice = user("alice");
        assert_eq!(
            decide(&[&modern], &[], &alice, "ecr:PutImage", alices, &c),
            Decision::Allow
        );
        assert_eq!(
            decide(&[&modern], &[], &user("bob"), "ecr:PutImage", alices, &c),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(&[&modern], &[], &alice, "ecr:PutImage", literal, &c),
            Decision::ImplicitDeny
        );
        for p in [&old, &unversioned] {
            assert_eq!(
                decide(&[p], &[], &alice, "ecr:PutImage", alices, &c),
                Decision::ImplicitDeny
            );
            assert_eq!(
                decide(&[p], &[], &alice, "ecr:PutImage", literal, &c),
                Decision::Allow
            );
        }
        // A substituted value is literal: a user named `*` gets only the repository `*`.
        let star = user("*");
        assert_eq!(
            decide(&[&modern], &[], &star, "ecr:PutImage", alices, &c),
            Decision::ImplicitDeny
        );
        // Escapes.
        let escaped = allow(
            r#""Action":"*","Resource":"arn:aws:ecr:us-east-1:123456789012:repository/${*}${$}${?}""#,
        );
        assert_eq!(
            decide(
                &[&escaped],
                &[],
                &alice,
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:123456789012:repository/*$?",
                &c
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &[&escaped],
                &[],
                &alice,
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:123456789012:repository/x$y",
                &c
            ),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn unresolvable_variables_never_make_a_statement_apply() {
        let anon = Principal::Anonymous;
        let c = ctx(&[("team", "web")]);
        let res = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":["arn:aws:ecr:us-east-1:123456789012:repository/${aws:username}/*","arn:aws:ecr:us-east-1:123456789012:repository/${Team}"]}]}"#,
        );
        assert_eq!(
            decide(&[], &[&res], &anon, "ecr:PutImage", REPO, &c),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(
                &[],
                &[&res],
                &anon,
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:123456789012:repository/web",
                &c
            ),
            Decision::Allow
        );
        let not_res = resource(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","NotResource":"arn:aws:ecr:us-east-1:123456789012:repository/${aws:username}"}]}"#,
        );
        assert_eq!(
            decide(&[], &[&not_res], &anon, "ecr:PutImage", REPO, &c),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(&[], &[&not_res], &user("alice"), "ecr:PutImage", REPO, &c),
            Decision::Allow
        );
        // Negated operators with an unresolvable value do not hold.
        assert!(!holds(
            r#"{"StringNotEquals":{"aws:SourceVpc":"${missing}"}}"#,
            &ctx(&[("aws:SourceVpc", "vpc-1")])
        ));
    }

    // ---- conditions --------------------------------------------------------------------------

    #[test]
    fn string_conditions() {
        let c = ctx(&[("ecr:ResourceTag/Team", "Web"), ("s", "app/web-1")]);
        assert!(holds(
            r#"{"StringEquals":{"ecr:resourcetag/team":"Web"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"StringEquals":{"ecr:ResourceTag/Team":"web"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"StringEquals":{"ecr:ResourceTag/Team":["x","Web"]}}"#,
            &c
        ));
        assert!(holds(
            r#"{"StringEqualsIgnoreCase":{"ecr:ResourceTag/Team":"wEB"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"StringNotEqualsIgnoreCase":{"ecr:ResourceTag/Team":"wEB"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"StringNotEquals":{"ecr:ResourceTag/Team":["a","b"]}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"StringNotEquals":{"ecr:ResourceTag/Team":["a","Web"]}}"#,
            &c
        ));
        assert!(holds(r#"{"StringLike":{"s":"app/*-?"}}"#, &c));
        assert!(!holds(r#"{"StringLike":{"s":"App/*"}}"#, &c));
        assert!(holds(r#"{"StringNotLike":{"s":"other/*"}}"#, &c));
        assert!(!holds(r#"{"StringNotLike":{"s":["other/*","app/*"]}}"#, &c));
        // Keys AND within an operator, operators AND together.
        assert!(!holds(
            r#"{"StringEquals":{"ecr:ResourceTag/Team":"Web","s":"nope"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"StringEquals":{"ecr:ResourceTag/Team":"Web"},"StringLike":{"s":"nope*"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"StringEquals":{"ecr:ResourceTag/Team":"Web"},"StringLike":{"s":"app*"}}"#,
            &c
        ));
        // Numbers and booleans in the policy compare as their text.
        assert!(holds(r#"{"StringEquals":{"n":10}}"#, &ctx(&[("n", "10")])));
        assert!(holds(
            r#"{"StringEquals":{"b":[false, true]}}"#,
            &ctx(&[("b", "true")])
        ));
    }

    #[test]
    fn string_conditions_substitute_variables() {
        let c = ctx(&[("owner", "alice"), ("path", "alice/x")]);
        assert!(holds(r#"{"StringEquals":{"owner":"${aws:username}"}}"#, &c));
        assert!(holds(r#"{"StringLike":{"path":"${aws:username}/*"}}"#, &c));
        assert!(holds(
            r#"{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:user/${aws:userid}"}}"#,
            &c
        ));
        let bob = ctx(&[("owner", "bob")]);
        assert!(!holds(
            r#"{"StringEquals":{"owner":"${aws:username}"}}"#,
            &bob
        ));
        // Principal keys cannot be forged through the context.
        let forged = ctx(&[("aws:username", "mallory")]);
        assert!(!holds(
            r#"{"StringEquals":{"aws:username":"mallory"}}"#,
            &forged
        ));
        assert!(holds(
            r#"{"StringEquals":{"aws:username":"alice"}}"#,
            &forged
        ));
    }

    #[test]
    fn missing_keys_fail_positive_operators_and_pass_negated_ones() {
        let c = Context::new();
        for positive in [
            r#"{"StringEquals":{"k":"v"}}"#,
            r#"{"StringLike":{"k":"*"}}"#,
            r#"{"NumericLessThan":{"k":"5"}}"#,
            r#"{"DateGreaterThan":{"k":"2020-01-01"}}"#,
            r#"{"Bool":{"k":"false"}}"#,
            r#"{"BinaryEquals":{"k":"QUJD"}}"#,
            r#"{"IpAddress":{"k":"0.0.0.0/0"}}"#,
            r#"{"ArnLike":{"k":"*"}}"#,
            r#"{"ForAnyValue:StringEquals":{"k":"v"}}"#,
            r#"{"ForAnyValue:StringNotEquals":{"k":"v"}}"#,
        ] {
            assert!(!holds(positive, &c), "{positive}");
        }
        for negated in [
            r#"{"StringNotEquals":{"k":"v"}}"#,
            r#"{"StringNotEqualsIgnoreCase":{"k":"v"}}"#,
            r#"{"StringNotLike":{"k":"*"}}"#,
            r#"{"NumericNotEquals":{"k":"5"}}"#,
            r#"{"DateNotEquals":{"k":"2020-01-01"}}"#,
            r#"{"NotIpAddress":{"k":"10.0.0.0/8"}}"#,
            r#"{"ArnNotEquals":{"k":"arn:aws:iam::123456789012:root"}}"#,
            r#"{"ArnNotLike":{"k":"*"}}"#,
            r#"{"ForAllValues:StringEquals":{"k":"v"}}"#,
        ] {
            assert!(holds(negated, &c), "{negated}");
        }
        // An empty multi-valued key counts as missing.
        let mut empty = Context::new();
        empty.set_all("k", Vec::new());
        assert!(!holds(r#"{"StringEquals":{"k":"v"}}"#, &empty));
        assert!(holds(r#"{"Null":{"k":"true"}}"#, &empty));
    }

    #[test]
    fn if_exists_passes_when_the_key_is_missing_only() {
        let missing = Context::new();
        let present = ctx(&[("k", "other")]);
        for op in [
            r#"{"StringEqualsIfExists":{"k":"v"}}"#,
            r#"{"NumericGreaterThanIfExists":{"k":"5"}}"#,
            r#"{"BoolIfExists":{"k":"true"}}"#,
            r#"{"ForAnyValue:StringLikeIfExists":{"k":"v*"}}"#,
        ] {
            assert!(holds(op, &missing), "{op}");
            assert!(!holds(op, &present), "{op}");
        }
        assert!(holds(r#"{"StringEqualsIfExists":{"k":"other"}}"#, &present));
        assert!(holds(r#"{"StringNotEqualsIfExists":{"k":"v"}}"#, &present));
        assert!(!holds(
            r#"{"StringNotEqualsIfExists":{"k":"other"}}"#,
            &present
        ));
    }

    #[test]
    fn multi_valued_keys_and_set_operators() {
        let mut c = Context::new();
        c.set_all("tags", vec!["team".into(), "env".into()]);
        // No prefix: any value.
        assert!(holds(r#"{"StringEquals":{"tags":"env"}}"#, &c));
        assert!(!holds(r#"{"StringNotEquals":{"tags":"env"}}"#, &c));
        assert!(holds(
            r#"{"ForAnyValue:StringEquals":{"tags":["env","x"]}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"ForAnyValue:StringEquals":{"tags":["x","y"]}}"#,
            &c
        ));
        assert!(holds(
            r#"{"ForAllValues:StringEquals":{"tags":["env","team","x"]}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"ForAllValues:StringEquals":{"tags":["env"]}}"#,
            &c
        ));
        assert!(holds(r#"{"ForAllValues:StringLike":{"tags":["*e*"]}}"#, &c));
        // Negated operators with a set prefix.
        assert!(holds(
            r#"{"ForAnyValue:StringNotEquals":{"tags":"env"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"ForAnyValue:StringNotEquals":{"tags":["env","team"]}}"#,
            &c
        ));
        assert!(holds(
            r#"{"ForAllValues:StringNotEquals":{"tags":["x"]}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"ForAllValues:StringNotEquals":{"tags":["team"]}}"#,
            &c
        ));
        // Missing key: ForAllValues holds, ForAnyValue does not.
        let none = Context::new();
        assert!(holds(
            r#"{"ForAllValues:StringEquals":{"tags":"x"}}"#,
            &none
        ));
        assert!(!holds(
            r#"{"ForAnyValue:StringEquals":{"tags":"x"}}"#,
            &none
        ));
    }

    #[test]
    fn null_condition() {
        let c = ctx(&[("aws:TokenIssueTime", "2026-01-01T00:00:00Z")]);
        assert!(holds(r#"{"Null":{"aws:MultiFactorAuthAge":"true"}}"#, &c));
        assert!(!holds(r#"{"Null":{"aws:MultiFactorAuthAge":false}}"#, &c));
        assert!(holds(r#"{"Null":{"aws:TokenIssueTime":"FALSE"}}"#, &c));
        assert!(!holds(r#"{"Null":{"aws:TokenIssueTime":true}}"#, &c));
        assert!(holds(
            r#"{"Null":{"aws:TokenIssueTime":["true","false"]}}"#,
            &c
        ));
    }

    #[test]
    fn numeric_conditions_with_epoch_time() {
        let c = ctx(&[("aws:EpochTime", "1795342272"), ("bad", "ten")]);
        assert!(holds(
            r#"{"NumericGreaterThan":{"aws:EpochTime":"1700000000"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"NumericGreaterThanEquals":{"aws:EpochTime":1795342272}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"NumericGreaterThan":{"aws:EpochTime":1795342272}}"#,
            &c
        ));
        assert!(holds(
            r#"{"NumericLessThan":{"aws:EpochTime":"1.8e9"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"NumericLessThanEquals":{"aws:EpochTime":1795342272.0}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"NumericLessThan":{"aws:EpochTime":"1795342272"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"NumericEquals":{"aws:EpochTime":["1","1795342272"]}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"NumericNotEquals":{"aws:EpochTime":"1795342272"}}"#,
            &c
        ));
        assert!(holds(r#"{"NumericNotEquals":{"aws:EpochTime":"1"}}"#, &c));
        assert!(!holds(r#"{"NumericEquals":{"bad":"10"}}"#, &c));
        assert!(!holds(r#"{"NumericLessThan":{"bad":"10"}}"#, &c));
    }

    #[test]
    fn date_conditions_with_current_time() {
        let c = ctx(&[
            ("aws:CurrentTime", "2026-11-22T10:11:12Z"),
            ("aws:EpochTime", "1795342272"),
        ]);
        assert!(holds(
            r#"{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"DateLessThan":{"aws:CurrentTime":"2027-01-01"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"DateLessThan":{"aws:CurrentTime":"2026-11-22T10:11:11.5Z"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"DateEquals":{"aws:CurrentTime":"2026-11-22T12:11:12+02:00"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"DateLessThanEquals":{"aws:CurrentTime":"2026-11-22T05:11:12-0500"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"DateNotEquals":{"aws:CurrentTime":"2026-11-22T10:11:12.000Z"}}"#,
            &c
        ));
        // Epoch seconds, on either side.
        assert!(holds(
            r#"{"DateEquals":{"aws:CurrentTime":1795342272}}"#,
            &c
        ));
        assert!(holds(
            r#"{"DateGreaterThan":{"aws:EpochTime":"2026-01-01T00:00:00Z"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"DateGreaterThan":{"k":"2020-01-01"}}"#,
            &ctx(&[("k", "soon")])
        ));
    }

    #[test]
    fn dates_are_iso8601_or_epoch_seconds() {
        // The ISO 8601 forms themselves are tested in `dates`.
        assert_eq!(parse_date("1970-01-02"), Some(86_400.0));
        assert_eq!(parse_date(" 1970-01-01T00:00:01Z "), Some(1.0));
        assert_eq!(parse_date(" 42 "), Some(42.0));
        assert_eq!(parse_date("-1.5"), Some(-1.5));
        for bad in ["tomorrow", "NaN", "inf", "", "2023-02-29"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn bool_and_binary_conditions() {
        let c = ctx(&[("aws:SecureTransport", "TRUE"), ("bin", "QUJD")]);
        assert!(holds(r#"{"Bool":{"aws:SecureTransport":"true"}}"#, &c));
        assert!(holds(r#"{"Bool":{"aws:SecureTransport":true}}"#, &c));
        assert!(!holds(r#"{"Bool":{"aws:SecureTransport":"false"}}"#, &c));
        assert!(!holds(r#"{"Bool":{"x":"false"}}"#, &ctx(&[("x", "no")])));
        assert!(holds(r#"{"BinaryEquals":{"bin":"QUJD"}}"#, &c));
        assert!(!holds(r#"{"BinaryEquals":{"bin":"qujd"}}"#, &c));
    }

    #[test]
    fn ip_address_conditions() {
        let v4 = ctx(&[("aws:SourceIp", "203.0.113.77")]);
        let v6 = ctx(&[("aws:SourceIp", "2001:db8:1::5")]);
        let mapped = ctx(&[("aws:SourceIp", "::ffff:203.0.113.9")]);
        assert!(holds(
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
            &v4
        ));
        assert!(holds(
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.77"}}"#,
            &v4
        ));
        assert!(!holds(
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.76/32"}}"#,
            &v4
        ));
        assert!(!holds(
            r#"{"IpAddress":{"aws:SourceIp":"203.0.112.0/24"}}"#,
            &v4
        ));
        assert!(holds(
            r#"{"IpAddress":{"aws:SourceIp":"203.0.112.0/23"}}"#,
            &v4
        ));
        assert!(holds(r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#, &v4));
        assert!(!holds(r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#, &v6));
        assert!(holds(
            r#"{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]}}"#,
            &v6
        ));
        assert!(!holds(
            r#"{"IpAddress":{"aws:SourceIp":"2001:db9::/32"}}"#,
            &v6
        ));
        assert!(holds(r#"{"IpAddress":{"aws:SourceIp":"::/0"}}"#, &v6));
        assert!(holds(
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
            &mapped
        ));
        assert!(holds(
            r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &v4
        ));
        assert!(!holds(
            r#"{"NotIpAddress":{"aws:SourceIp":"203.0.0.0/16"}}"#,
            &v4
        ));
        assert!(!holds(
            r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#,
            &ctx(&[("aws:SourceIp", "not-an-ip")])
        ));
    }

    #[test]
    fn arn_conditions() {
        let c = ctx(&[(
            "aws:SourceArn",
            "arn:aws:ecr:us-east-1:123456789012:repository/a:b",
        )]);
        assert!(holds(
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:ecr:*:123456789012:repository/*"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:ecr:us-east-1:123456789012:repository/a:b"}}"#,
            &c
        ));
        // A wildcard does not cross components.
        assert!(!holds(
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:*:*:repository/*:*"}}"#,
            &c
        ));
        assert!(wildcard_match(
            "arn:aws:*:*:repository/*:*",
            "arn:aws:ecr:us-east-1:123456789012:repository/a:b",
            false
        ));
        assert!(holds(
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:*:*:*:*"}}"#,
            &c
        ));
        assert!(holds(r#"{"ArnLike":{"aws:SourceArn":"*"}}"#, &c));
        assert!(!holds(
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:ECR:*:123456789012:repository/*"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"ArnNotLike":{"aws:SourceArn":"arn:aws:ecr:*:210987654321:*"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"ArnNotEquals":{"aws:SourceArn":"arn:aws:ecr:us-east-1:*:repository/a:b"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"ArnLike":{"k":"arn:aws:ecr:*:*:*:*"}}"#,
            &ctx(&[("k", "not:an:arn")])
        ));
        assert!(holds(
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::*:user/${aws:username}"}}"#,
            &Context::new()
        ));
    }

    // ---- parsing -----------------------------------------------------------------------------

    #[test]
    fn parses_valid_documents_and_keeps_their_text() {
        let text = "{ \"Statement\" : {\"Sid\":\"x\",\"Effect\":\"Allow\",\"Action\":\"ecr:*\",\"Resource\":\"*\"} }\n";
        let p = identity(text);
        assert_eq!(p.text(), text);
        resource(
            r#"{"Version":"2008-10-17","Id":"repo","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:root","arn:aws:iam::123456789012:role/r"],"Service":["ecr.amazonaws.com"],"Federated":"x"},"Action":["*","s3:Get?bject"],"Condition":{}}]}"#,
        );
        resource(
            r#"{"Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws-cn:iam::123456789012:user/a"},"NotAction":"ecr:Put*","NotResource":["*"]}]}"#,
        );
    }

    #[test]
    fn refuses_bad_documents() {
        use PolicyKind::{Identity, Resource};
        let cases: &[(&str, PolicyKind, &str)] = &[
            ("", Resource, "empty"),
            ("  \n", Identity, "empty"),
            ("{", Resource, "not valid JSON"),
            ("[]", Resource, "must be a JSON object"),
            (r#"{"Statement":[]}"#, Resource, "non-empty array"),
            (r#"{"Version":"2012-10-17"}"#, Resource, "no Statement"),
            (
                r#"{"Version":"2013-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"*"}}"#,
                Resource,
                "unsupported policy Version \"2013-01-01\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*"},"Extra":1}"#,
                Resource,
                "unknown policy element \"Extra\"",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*"},{"Sid":"s2","Effect":"Perhaps","Principal":"*","Action":"*"}]}"#,
                Resource,
                "statement 1 (Sid \"s2\"): Effect must be \"Allow\" or \"Deny\"",
            ),
            (
                r#"{"Statement":{"Principal":"*","Action":"*"}}"#,
                Resource,
                "statement 0: Effect is missing",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Actions":"*"}}"#,
                Resource,
                "statement 0: unknown element \"Actions\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#,
                Identity,
                "Principal is not allowed in an identity policy",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","NotPrincipal":"*","Action":"*","Resource":"*"}}"#,
                Identity,
                "NotPrincipal is not allowed in an identity policy",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#,
                Resource,
                "Principal or NotPrincipal is required",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#,
                Identity,
                "Resource or NotResource is required",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*"}}"#,
                Resource,
                "Action or NotAction is required",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","NotAction":"*"}}"#,
                Resource,
                "Action and NotAction cannot both be present",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*","NotResource":"*"}}"#,
                Resource,
                "Resource and NotResource cannot both be present",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr"}}"#,
                Resource,
                "Action: \"ecr\" is not",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","NotAction":["ecr:Get-Thing"]}}"#,
                Resource,
                "NotAction: \"ecr:Get-Thing\" is not",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":[]}}"#,
                Resource,
                "Action must be a string or a non-empty array of strings",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"repository/app"}}"#,
                Identity,
                "Resource: \"repository/app\" is not \"*\" or an ARN",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/*"},"Action":"*"}}"#,
                Resource,
                "wildcards are not allowed in principals",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"*"}}"#,
                Resource,
                "\"alice\" is not",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"Users":"x"},"Action":"*"}}"#,
                Resource,
                "unknown principal type \"Users\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"alice","Action":"*"}}"#,
                Resource,
                "Principal: must be \"*\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEqual":{"k":"v"}}}}"#,
                Resource,
                "unknown condition operator \"StringEqual\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"ForSomeValues:StringEquals":{"k":"v"}}}}"#,
                Resource,
                "unknown condition operator \"ForSomeValues:StringEquals\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"NullIfExists":{"k":"true"}}}}"#,
                Resource,
                "Null takes neither IfExists",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"Null":{"k":"maybe"}}}}"#,
                Resource,
                "condition Null \"k\": \"maybe\" is not \"true\" or \"false\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}}}"#,
                Resource,
                "condition IpAddress \"aws:SourceIp\": \"10.0.0.0/33\" is not an IP address or CIDR block",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","10.0.0.300"]}}}}"#,
                Resource,
                "\"10.0.0.300\" is not an IP address",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2026-02-30T00:00:00Z"}}}}"#,
                Resource,
                "condition DateLessThan \"aws:CurrentTime\": \"2026-02-30T00:00:00Z\" is not a date",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"NumericLessThan":{"n":"ten"}}}}"#,
                Resource,
                "\"ten\" is not a number",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"Bool":{"aws:SecureTransport":"yes"}}}}"#,
                Resource,
                "\"yes\" is not \"true\" or \"false\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{"k":{"a":"b"}}}}}"#,
                Resource,
                "values must be strings, numbers or booleans",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{}}}}"#,
                Resource,
                "must map condition keys to values",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{"k":"${}"}}}}"#,
                Resource,
                "empty policy variable",
            ),
        ];
        for (text, kind, expected) in cases {
            let err = parse_err(text, *kind);
            assert!(
                err.contains(expected),
                "{text}\n  gave: {err}\n  want: {expected}"
            );
        }
    }

    #[test]
    fn refuses_documents_that_are_too_long() {
        let body = r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;
        let padded = |len: usize| format!("{body}{}", " ".repeat(len - body.len()));
        Policy::parse(&padded(MAX_IDENTITY_POLICY_CHARS), PolicyKind::Identity).unwrap();
        let err = Policy::parse(&padded(MAX_IDENTITY_POLICY_CHARS + 1), PolicyKind::Identity)
            .unwrap_err();
        assert!(
            matches!(
                err,
                PolicyError::TooLong {
                    len: 6145,
                    max: 6144,
                    ..
                }
            ),
            "{err}"
        );
        let res = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*"}}"#;
        let padded = |len: usize| format!("{res}{}", " ".repeat(len - res.len()));
        Policy::parse(&padded(MAX_RESOURCE_POLICY_CHARS), PolicyKind::Resource).unwrap();
        let err = parse_err(&padded(MAX_RESOURCE_POLICY_CHARS + 1), PolicyKind::Resource);
        assert!(err.contains("10241 characters long"), "{err}");
    }

    #[test]
    fn refuses_documents_that_are_too_deep() {
        let deep = format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"*","Condition":{{"StringEquals":{{"k":{}"v"{}}}}}}}}}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        let err = Policy::parse(&deep, PolicyKind::Resource).unwrap_err();
        assert!(matches!(err, PolicyError::TooDeep { max: 32 }), "{err}");
        // Brackets inside strings do not count.
        let quoted = format!(
            r#"{{"Statement":{{"Sid":"{}\"{}","Effect":"Allow","Principal":"*","Action":"*"}}}}"#,
            "[{".repeat(50),
            "[".repeat(50)
        );
        resource(&quoted);
        // Far deeper than serde_json's own limit: refused before parsing.
        let abyss = "[".repeat(100_000);
        let err = Policy::parse(&abyss, PolicyKind::Resource).unwrap_err();
        assert!(matches!(err, PolicyError::TooLong { .. }), "{err}");
        let err = Policy::parse(&"[".repeat(5_000), PolicyKind::Resource).unwrap_err();
        assert!(matches!(err, PolicyError::TooDeep { .. }), "{err}");
    }

    #[test]
    fn operators_accept_prefixes_and_suffixes() {
        for op in [
            "ForAnyValue:StringLike",
            "ForAllValues:StringEqualsIgnoreCase",
            "StringNotEqualsIfExists",
            "ForAllValues:ArnNotLikeIfExists",
            "NotIpAddressIfExists",
            "DateGreaterThanEqualsIfExists",
        ] {
            let text = format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"*","Condition":{{"{op}":{{"k":"arn:aws:ecr:*:*:*:*"}}}}}}}}"#
            );
            let result = Policy::parse(&text, PolicyKind::Resource);
            if op.starts_with("NotIp") {
                assert!(result.unwrap_err().to_string().contains("CIDR"), "{op}");
            } else if op.starts_with("Date") {
                assert!(result.unwrap_err().to_string().contains("date"), "{op}");
            } else {
                result.unwrap();
            }
        }
        assert!(matches!(
            parse_operator("ForAllValues:NumericLessThanIfExists"),
            Ok((SetMode::AllValues, Family::Num(Cmp::Lt), false, true))
        ));
        assert!(matches!(
            parse_operator("StringNotLike"),
            Ok((SetMode::Single, Family::Str(StrMode::Like), true, false))
        ));
        assert!(parse_operator("IfExists").is_err());
    }

    #[test]
    fn context_keys_are_case_insensitive() {
        let mut c = Context::new();
        c.set("aws:SourceIp", "10.0.0.1");
        assert_eq!(c.get("AWS:SOURCEIP"), Some(&["10.0.0.1".to_owned()][..]));
        c.set("AWS:sourceip", "10.0.0.2");
        assert_eq!(c.get("aws:SourceIp"), Some(&["10.0.0.2".to_owned()][..]));
        c.set_all("Tags", vec!["a".into(), "b".into()]);
        assert_eq!(c.get("tags").map(<[String]>::len), Some(2));
        c.set("tags", "c");
        assert_eq!(c.get("TAGS"), Some(&["c".to_owned()][..]));
        assert_eq!(c.get("missing"), None);
    }

    // ---- wildcards ---------------------------------------------------------------------------

    #[test]
    fn wildcard_match_edge_cases() {
        assert!(wildcard_match("*", "", false));
        assert!(wildcard_match("*", "anything at all", false));
        assert!(wildcard_match("", "", false));
        assert!(!wildcard_match("", "a", false));
        assert!(!wildcard_match("a", "", false));
        assert!(wildcard_match("**", "", false));
        assert!(wildcard_match("a*b*c", "abc", false));
        assert!(wildcard_match("a*b*c", "aXXbYYc", false));
        assert!(wildcard_match("a*b*c", "abcbc", false));
        assert!(!wildcard_match("a*b*c", "abcb", false));
        assert!(!wildcard_match("a*b*c", "acb", false));
        assert!(wildcard_match("?", "x", false));
        assert!(wildcard_match("?", "é", false));
        assert!(!wildcard_match("?", "", false));
        assert!(!wildcard_match("?", "xy", false));
        assert!(wildcard_match("v?.*", "v1.2.3", false));
        assert!(wildcard_match("*-rc?", "1.0-rc1", false));
        assert!(!wildcard_match("ABC", "abc", false));
        assert!(wildcard_match("ABC*", "abcd", true));
        assert!(wildcard_match("Ä*", "äb", true));
        assert!(!wildcard_match("latest", "latest-1", false));
        assert!(wildcard_match("*latest", "latest", false));
    }

    #[test]
    fn wildcard_match_is_not_exponential() {
        let value = "a".repeat(50_000);
        let start = std::time::Instant::now();
        assert!(!wildcard_match("a*a*a*a*a*b", &value, false));
        assert!(wildcard_match("a*a*a*a*a*", &value, false));
        assert!(!wildcard_match("*a*a*a*a*a*a*a*a*a*a*b", &value, true));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn cidr_parsing_and_masks() {
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains("10.1.255.255".parse().unwrap()));
        assert!(!block.contains("10.2.0.0".parse().unwrap()));
        let host = Cidr::parse("2001:db8::1").unwrap();
        assert_eq!(host.prefix, 128);
        assert!(host.contains("2001:db8::1".parse().unwrap()));
        assert!(!host.contains("2001:db8::2".parse().unwrap()));
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "::/129",
            "10.0.0/8",
            "x/8",
            "",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
