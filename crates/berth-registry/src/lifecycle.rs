//! Amazon ECR lifecycle policies: the policy text, validated with ECR's rules and messages
//! ([`LifecyclePolicy::parse`]), and the expiry plan it gives for one repository snapshot
//! ([`plan`]).
//!
//! # Evaluation, as ECR does it
//!
//! From "How lifecycle policies work" (`LifecyclePolicies.html`) and the worked examples
//! (`lifecycle_policy_examples.html`):
//!
//! * All rules are evaluated together, then applied in priority order (lowest `rulePriority`
//!   first). An image is expired by at most one rule.
//! * A rule *selects* the images its `tagStatus` and tag list match. An image selected by a
//!   higher-priority rule is never expired by a lower-priority one, whether or not the higher rule
//!   expired it; the lower rule still *counts* it ("Rules can never mark images that are marked by
//!   higher priority rules, but can still identify them as if they haven't been expired").
//! * `imageCountMoreThan` N: the selected images, newest push first; all after the first N are
//!   candidates. `sinceImagePushed` N: selected images pushed before `now - N days`.
//!   `sinceImagePulled` N: the same with the last recorded pull (the push if never pulled, or if
//!   pushed again since).
//! * Expiry is ordered by push time, oldest first. Equal push times are ordered by digest (the
//!   greater digest counts as the newer image).
//!
//! # Where berth differs from ECR
//!
//! * Only *roots* are evaluated: images that no image in the snapshot lists as a child and whose
//!   `subject` is absent or not in the snapshot. Platform manifests of an index and referrers
//!   (signatures, SBOMs) are never expired on their own. When a root expires, its *dependents* go
//!   with it: its children (recursively) and the referrers of it and of those children. A
//!   dependent stays if it has tags of its own, if a kept image lists it as a child, or if it
//!   refers to a kept image; and what a staying dependent lists, or what refers to it, stays too.
//!   (ECR only says "If an image is referenced by a manifest list, it cannot be expired or
//!   archived without the manifest list being deleted or archived first.")
//! * `sinceImagePulled` is accepted with the `expire` action. ECR (since the archive storage class
//!   arrived) accepts it only with `transition`; berth has no archive storage class, so
//!   `storageClass`, `targetStorageClass`, `transition` and `sinceImageTransitioned` are refused.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

/// The longest policy text ECR accepts, in characters.
pub const MAX_POLICY_CHARS: usize = 30_720;

/// The deepest nesting of JSON arrays and objects accepted in a policy text (a valid policy
/// needs five levels).
pub const MAX_JSON_DEPTH: usize = berth_oci::json::MAX_JSON_DEPTH;

/// The most `*` wildcards one `tagPatternList` entry may hold.
pub const MAX_WILDCARDS_PER_PATTERN: usize = 4;

const DAY_MS: i64 = 86_400_000;

/// How ECR's answer to an invalid lifecycle policy begins (`InvalidParameterException`).
const PREFIX: &str = "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: \
                      'Lifecycle policy validation failure: ";

/// Why a lifecycle policy text was refused.
///
/// `Display` is the whole message the API answers with (an `InvalidParameterException`), worded
/// as ECR words it where ECR's wording is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The text is longer than [`MAX_POLICY_CHARS`] characters.
    #[error(
        "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: \
         'Member must have length less than or equal to {MAX_POLICY_CHARS}'"
    )]
    TooLong {
        /// The length of the text, in characters.
        chars: usize,
    },
    /// Arrays and objects are nested deeper than [`MAX_JSON_DEPTH`].
    #[error("{PREFIX}JSON is nested deeper than {MAX_JSON_DEPTH} levels.'")]
    TooDeep,
    /// The text is not JSON, or not a JSON object.
    #[error("{PREFIX}Could not map policyString into LifecyclePolicy.'")]
    Malformed,
    /// An object lacks required properties.
    #[error("{PREFIX}object has missing required properties ({})'", json_list(.names))]
    MissingProperties {
        /// The missing property names, sorted.
        names: Vec<String>,
    },
    /// An object has properties the policy grammar does not know.
    #[error(
        "{PREFIX}object instance has properties which are not allowed by the schema: ({})'",
        json_list(.names)
    )]
    UnknownProperties {
        /// The unknown property names, sorted.
        names: Vec<String>,
    },
    /// A value has the wrong JSON type.
    #[error(
        "{PREFIX}instance type ({found}) does not match any allowed primitive type \
         (allowed: [\"{expected}\"])'"
    )]
    WrongType {
        /// The JSON type required.
        expected: &'static str,
        /// The JSON type given.
        found: &'static str,
    },
    /// A string is not one of the values allowed there.
    #[error(
        "{PREFIX}instance value ({value}) not found in enum :(possible values: {})'",
        json_list(.allowed)
    )]
    NotInEnum {
        /// The value given.
        value: String,
        /// The values allowed.
        allowed: &'static [&'static str],
    },
    /// `rulePriority` or `countNumber` is below 1.
    #[error(
        "{PREFIX}numeric instance is lower than the required minimum (minimum: 1, found: {found})'"
    )]
    BelowMinimum {
        /// The number given.
        found: i64,
    },
    /// `rules` is empty.
    #[error(
        "{PREFIX}array is too short: must have at least 1 elements but instance has 0 elements'"
    )]
    NoRules,
    /// `countType`/`countUnit` do not fit together: an unknown `countType`, `countUnit` missing
    /// with `sinceImagePushed`/`sinceImagePulled`, or present with `imageCountMoreThan`.
    #[error("{PREFIX}instance failed to match exactly one schema (matched 0 out of 2)'")]
    CountMismatch,
    /// Two rules share a `rulePriority`.
    #[error("{PREFIX}rulePriority must be unique: {priority} is used by more than one rule.'")]
    DuplicatePriority {
        /// The repeated priority.
        priority: i64,
    },
    /// More than one rule has `tagStatus` `untagged`.
    #[error("{PREFIX}Only one rule can select Untagged images.'")]
    MultipleUntagged,
    /// A rule with `tagStatus` `any` does not have the highest `rulePriority` number.
    #[error("{PREFIX}Rule for tagStatus=ANY must have the lowest priority.'")]
    AnyNotLast,
    /// A `tagged` rule has neither tag list, or an empty one.
    #[error("{PREFIX}Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.'")]
    TagListRequired,
    /// A rule has both `tagPrefixList` and `tagPatternList`.
    #[error("{PREFIX}A rule may specify either tagPatternList or tagPrefixList, but not both.'")]
    BothTagLists,
    /// An `untagged` or `any` rule has a tag list.
    #[error(
        "{PREFIX}The tagPatternList or tagPrefixList parameters may only be used if the \
         tagStatus is tagged.'"
    )]
    TagListNotAllowed,
    /// A `tagPatternList` entry has more than [`MAX_WILDCARDS_PER_PATTERN`] wildcards.
    #[error(
        "{PREFIX}There is a maximum limit of four wildcards (*) per string: {} has {count}.'",
        json_list(std::slice::from_ref(.pattern))
    )]
    TooManyWildcards {
        /// The pattern.
        pattern: String,
        /// How many `*` it holds.
        count: usize,
    },
    /// The policy uses ECR's archive storage class, which berth does not have.
    #[error("{PREFIX}{feature} is not supported: this registry has no archive storage class.'")]
    Unsupported {
        /// What was used, e.g. `action.type "transition"`.
        feature: &'static str,
    },
}

impl LifecycleError {
    /// The AWS error code the API answers with.
    #[must_use]
    pub fn aws_error_code(&self) -> &'static str {
        "InvalidParameterException"
    }
}

/// `["a","b"]`: names as ECR's schema messages list them.
fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| Value::from(s.as_ref()).to_string())
        .collect();
    format!("[{}]", quoted.join(","))
}

/// Which images a rule's `tagStatus` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagStatus {
    /// Images with at least one tag, filtered by the rule's tag list.
    Tagged,
    /// Images without tags.
    Untagged,
    /// Every image.
    Any,
}

/// How a rule picks, among the images it selects, those to expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CountType {
    /// Keep the newest `countNumber` images, expire the rest.
    ImageCountMoreThan,
    /// Expire images pushed more than `countNumber` days ago.
    SinceImagePushed,
    /// Expire images last pulled more than `countNumber` days ago (the push time counts when it is
    /// later, or when the image was never pulled).
    SinceImagePulled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Selection {
    /// Every prefix starts at least one tag.
    Prefixes(Vec<String>),
    /// Every pattern matches at least one whole tag.
    Patterns(Vec<String>),
    Untagged,
    Any,
}

/// One validated rule of a lifecycle policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    priority: i64,
    description: Option<String>,
    selection: Selection,
    count_type: CountType,
    count_number: i64,
}

impl Rule {
    /// `rulePriority`: rules apply from the lowest number up.
    #[must_use]
    pub fn priority(&self) -> i64 {
        self.priority
    }

    /// `description`, when given.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// `selection.tagStatus`.
    #[must_use]
    pub fn tag_status(&self) -> TagStatus {
        match self.selection {
            Selection::Prefixes(_) | Selection::Patterns(_) => TagStatus::Tagged,
            Selection::Untagged => TagStatus::Untagged,
            Selection::Any => TagStatus::Any,
        }
    }

    /// `selection.countType`.
    #[must_use]
    pub fn count_type(&self) -> CountType {
        self.count_type
    }

    /// `selection.countNumber`: an image count or a number of days.
    #[must_use]
    pub fn count_number(&self) -> i64 {
        self.count_number
    }

    /// Whether the rule's tag selection takes an image with these tags.
    fn selects(&self, tags: &[String]) -> bool {
        match &self.selection {
            Selection::Any => true,
            Selection::Untagged => tags.is_empty(),
            Selection::Prefixes(prefixes) => prefixes
                .iter()
                .all(|p| tags.iter().any(|t| t.starts_with(p.as_str()))),
            Selection::Patterns(patterns) => patterns.iter().all(|p| {
                tags.iter()
                    .any(|t| wildcard_match(p.as_bytes(), t.as_bytes()))
            }),
        }
    }
}

/// Whether `text` matches `pattern` as a whole, `*` standing for any run of bytes (possibly
/// empty). Greedy, backtracking only to the last `*`: O(pattern × text) at worst, no exponential
/// blow-up. Byte-wise matching equals character-wise matching for UTF-8 since the literal parts
/// of the pattern are themselves whole characters.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After a `*`: where the pattern resumes, and where in the text that `*`'s run ends.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, t));
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((rp, rt)) => {
                    // Let the last `*` swallow one more byte and retry from there.
                    p = rp;
                    t = rt + 1;
                    resume = Some((rp, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A parsed and validated lifecycle policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePolicy {
    rules: Vec<Rule>,
}

impl LifecyclePolicy {
    /// Parses and validates a lifecycle policy text (`PutLifecyclePolicy`,
    /// `StartLifecyclePolicyPreview`).
    ///
    /// # Errors
    ///
    /// The first violation found, as [`LifecycleError`]: its `Display` is the message to answer
    /// with.
    pub fn parse(text: &str) -> Result<Self, LifecycleError> {
        if text.len() > MAX_POLICY_CHARS {
            let chars = text.chars().count();
            if chars > MAX_POLICY_CHARS {
                return Err(LifecycleError::TooLong { chars });
            }
        }
        check_depth(text)?;
        let value: Value = serde_json::from_str(text).map_err(|_| LifecycleError::Malformed)?;
        let Value::Object(top) = &value else {
            return Err(LifecycleError::Malformed);
        };
        check_keys(top, &["rules"], &[])?;
        let Some(rules_value) = top.get("rules") else {
            return Err(missing(&["rules"]));
        };
        let Value::Array(items) = rules_value else {
            return Err(wrong_type("array", rules_value));
        };
        if items.is_empty() {
            return Err(LifecycleError::NoRules);
        }

        // The schema first (every rule), then each rule's meaning, then the rules together.
        let raw = items
            .iter()
            .map(RawRule::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules = raw
            .into_iter()
            .map(RawRule::into_rule)
            .collect::<Result<Vec<_>, _>>()?;
        check_together(&rules)?;
        rules.sort_by_key(|r| r.priority);
        Ok(Self { rules })
    }

    /// The rules, in the order they apply (lowest `rulePriority` first).
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// Refuses nesting deeper than [`MAX_JSON_DEPTH`] before the parser recurses into it (the
/// workspace's one depth guard, `berth_oci::json`).
fn check_depth(text: &str) -> Result<(), LifecycleError> {
    if berth_oci::json::too_deep(text.as_bytes(), MAX_JSON_DEPTH) {
        return Err(LifecycleError::TooDeep);
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(expected: &'static str, found: &Value) -> LifecycleError {
    LifecycleError::WrongType {
        expected,
        found: type_name(found),
    }
}

fn missing(names: &[&str]) -> LifecycleError {
    LifecycleError::MissingProperties {
        names: names.iter().map(|&n| n.to_owned()).collect(),
    }
}

/// Required properties present, and nothing beyond `required` and `optional`.
fn check_keys(
    object: &Map<String, Value>,
    required: &[&str],
    optional: &[&str],
) -> Result<(), LifecycleError> {
    let mut absent: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| !object.contains_key(*k))
        .collect();
    if !absent.is_empty() {
        absent.sort_unstable();
        return Err(missing(&absent));
    }
    let mut unknown: Vec<String> = object
        .keys()
        .filter(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(LifecycleError::UnknownProperties { names: unknown });
    }
    Ok(())
}

fn object_of(value: &Value) -> Result<&Map<String, Value>, LifecycleError> {
    value.as_object().ok_or_else(|| wrong_type("object", value))
}

fn string_of(value: &Value) -> Result<&str, LifecycleError> {
    value.as_str().ok_or_else(|| wrong_type("string", value))
}

/// An integer of at least 1.
fn positive_of(value: &Value) -> Result<i64, LifecycleError> {
    let Value::Number(n) = value else {
        return Err(wrong_type("integer", value));
    };
    if let Some(i) = n.as_i64() {
        if i < 1 {
            return Err(LifecycleError::BelowMinimum { found: i });
        }
        return Ok(i);
    }
    if n.is_u64() {
        // An integer beyond i64: no rule needs it, and ECR's own integers are narrower still.
        return Err(LifecycleError::Malformed);
    }
    Err(wrong_type("integer", value))
}

fn strings_of(value: &Value) -> Result<Vec<String>, LifecycleError> {
    let Value::Array(items) = value else {
        return Err(wrong_type("array", value));
    };
    items
        .iter()
        .map(|item| string_of(item).map(str::to_owned))
        .collect()
}

fn member<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a Value, LifecycleError> {
    object.get(key).ok_or_else(|| missing(&[key]))
}

/// A rule that fits the schema, not yet checked for meaning.
struct RawRule {
    priority: i64,
    description: Option<String>,
    tag_status: TagStatus,
    prefixes: Option<Vec<String>>,
    patterns: Option<Vec<String>>,
    count_type: CountType,
    count_number: i64,
}

impl RawRule {
    fn parse(value: &Value) -> Result<Self, LifecycleError> {
        let rule = object_of(value)?;
        check_keys(
            rule,
            &["action", "rulePriority", "selection"],
            &["description"],
        )?;
        let priority = positive_of(member(rule, "rulePriority")?)?;
        let description = rule
            .get("description")
            .map(|d| string_of(d).map(str::to_owned))
            .transpose()?;

        let selection = object_of(member(rule, "selection")?)?;
        if selection.contains_key("storageClass") {
            return Err(LifecycleError::Unsupported {
                feature: "selection.storageClass",
            });
        }
        check_keys(
            selection,
            &["countNumber", "countType", "tagStatus"],
            &["countUnit", "tagPatternList", "tagPrefixList"],
        )?;
        let tag_status = match string_of(member(selection, "tagStatus")?)? {
            "tagged" => TagStatus::Tagged,
            "untagged" => TagStatus::Untagged,
            "any" => TagStatus::Any,
            other => {
                return Err(LifecycleError::NotInEnum {
                    value: other.to_owned(),
                    allowed: &["any", "tagged", "untagged"],
                });
            }
        };
        let prefixes = selection.get("tagPrefixList").map(strings_of).transpose()?;
        let patterns = selection
            .get("tagPatternList")
            .map(strings_of)
            .transpose()?;
        let count_type = match member(selection, "countType")?.as_str() {
            Some("imageCountMoreThan") => CountType::ImageCountMoreThan,
            Some("sinceImagePushed") => CountType::SinceImagePushed,
            Some("sinceImagePulled") => CountType::SinceImagePulled,
            Some("sinceImageTransitioned") => {
                return Err(LifecycleError::Unsupported {
                    feature: "countType \"sinceImageTransitioned\"",
                });
            }
            _ => return Err(LifecycleError::CountMismatch),
        };
        match (count_type, selection.get("countUnit")) {
            (CountType::ImageCountMoreThan, None) => {}
            (CountType::SinceImagePushed | CountType::SinceImagePulled, Some(unit)) => match unit {
                Value::String(s) if s == "days" => {}
                Value::String(s) => {
                    return Err(LifecycleError::NotInEnum {
                        value: s.clone(),
                        allowed: &["days"],
                    });
                }
                _ => return Err(LifecycleError::CountMismatch),
            },
            _ => return Err(LifecycleError::CountMismatch),
        }
        let count_number = positive_of(member(selection, "countNumber")?)?;

        let action = object_of(member(rule, "action")?)?;
        if action.contains_key("targetStorageClass") {
            return Err(LifecycleError::Unsupported {
                feature: "action.targetStorageClass",
            });
        }
        check_keys(action, &["type"], &[])?;
        match string_of(member(action, "type")?)? {
            "expire" => {}
            "transition" => {
                return Err(LifecycleError::Unsupported {
                    feature: "action.type \"transition\"",
                });
            }
            other => {
                return Err(LifecycleError::NotInEnum {
                    value: other.to_owned(),
                    allowed: &["expire"],
                });
            }
        }

        Ok(Self {
            priority,
            description,
            tag_status,
            prefixes,
            patterns,
            count_type,
            count_number,
        })
    }

    fn into_rule(self) -> Result<Rule, LifecycleError> {
        let selection = match (self.tag_status, self.prefixes, self.patterns) {
            (TagStatus::Tagged, Some(_), Some(_)) => return Err(LifecycleError::BothTagLists),
            (TagStatus::Tagged, Some(prefixes), None) if !prefixes.is_empty() => {
                Selection::Prefixes(prefixes)
            }
            (TagStatus::Tagged, None, Some(patterns)) if !patterns.is_empty() => {
                if let Some(p) = patterns
                    .iter()
                    .find(|p| p.matches('*').count() > MAX_WILDCARDS_PER_PATTERN)
                {
                    return Err(LifecycleError::TooManyWildcards {
                        pattern: p.clone(),
                        count: p.matches('*').count(),
                    });
                }
                Selection::Patterns(patterns)
            }
            (TagStatus::Tagged, _, _) => return Err(LifecycleError::TagListRequired),
            (_, Some(_), _) | (_, _, Some(_)) => return Err(LifecycleError::TagListNotAllowed),
            (TagStatus::Untagged, None, None) => Selection::Untagged,
            (TagStatus::Any, None, None) => Selection::Any,
        };
        Ok(Rule {
            priority: self.priority,
            description: self.description,
            selection,
            count_type: self.count_type,
            count_number: self.count_number,
        })
    }
}

/// The checks that look at all rules at once (given in the policy's order).
fn check_together(rules: &[Rule]) -> Result<(), LifecycleError> {
    let mut seen = HashSet::with_capacity(rules.len());
    for rule in rules {
        if !seen.insert(rule.priority) {
            return Err(LifecycleError::DuplicatePriority {
                priority: rule.priority,
            });
        }
    }
    let untagged = rules
        .iter()
        .filter(|r| r.tag_status() == TagStatus::Untagged)
        .count();
    if untagged > 1 {
        return Err(LifecycleError::MultipleUntagged);
    }
    let highest = rules.iter().map(|r| r.priority).max().unwrap_or(0);
    if rules
        .iter()
        .any(|r| r.tag_status() == TagStatus::Any && r.priority != highest)
    {
        return Err(LifecycleError::AnyNotLast);
    }
    Ok(())
}

/// One manifest of the repository, as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotImage {
    /// The manifest digest.
    pub digest: String,
    /// Its tags (empty: untagged).
    pub tags: Vec<String>,
    /// When it was pushed, in milliseconds since the Unix epoch.
    pub pushed_at: i64,
    /// When it was last pulled, in milliseconds since the Unix epoch; `None` if never.
    pub last_pulled_at: Option<i64>,
    /// The digest of the manifest this one refers to (an OCI referrer's `subject`).
    pub subject: Option<String>,
    /// The digests of the manifests an image index lists.
    pub children: Vec<String>,
}

/// One manifest the policy expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedExpiry {
    /// The manifest digest.
    pub digest: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was pushed, in milliseconds since the Unix epoch.
    pub pushed_at: i64,
    /// The `rulePriority` of the rule that expires it; for a dependent shared by several
    /// expiring roots, the highest-priority (lowest-numbered) of their rules.
    pub rule_priority: i64,
    /// `None` for a root a rule expired; for a dependent, the root it is listed under (the last
    /// listed of the expiring roots it depends on, so every parent comes before it).
    pub root: Option<String>,
}

/// What a lifecycle policy expires in a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Roots oldest push first, each immediately followed by its dependents, every manifest after
    /// the manifests that list it or that it refers to: deleting in this order never leaves an
    /// index naming a deleted child.
    pub expiries: Vec<PlannedExpiry>,
}

/// Plans what `policy` expires among `images` at `now_ms` (milliseconds since the Unix epoch).
///
/// A digest listed more than once in `images` counts once (its first occurrence).
#[must_use]
pub fn plan(policy: &LifecyclePolicy, images: &[SnapshotImage], now_ms: i64) -> Plan {
    let graph = Graph::new(images);
    let mut roots: Vec<usize> = (0..images.len()).filter(|&i| graph.is_root(i)).collect();
    // Newest first: the order in which `imageCountMoreThan` keeps images.
    roots.sort_unstable_by(|&a, &b| age(&images[b]).cmp(&age(&images[a])));
    let expired = evaluate(policy.rules(), images, &roots, now_ms);
    let expiring: Vec<usize> = roots
        .iter()
        .rev()
        .copied()
        .filter(|&i| expired[i].is_some())
        .collect();
    graph.expand(images, &expiring, &expired)
}

/// The sort key of push order (ties broken by digest).
fn age(image: &SnapshotImage) -> (i64, &str) {
    (image.pushed_at, image.digest.as_str())
}

/// The rule (priority) that expires each root, per ECR's evaluation.
fn evaluate(
    rules: &[Rule],
    images: &[SnapshotImage],
    roots_newest_first: &[usize],
    now_ms: i64,
) -> Vec<Option<i64>> {
    let mut expired = vec![None; images.len()];
    // Selected by the tag selection of a rule already applied: no later rule may expire it.
    let mut claimed = vec![false; images.len()];
    let mut selected = Vec::with_capacity(roots_newest_first.len());
    for rule in rules {
        selected.clear();
        selected.extend(
            roots_newest_first
                .iter()
                .copied()
                .filter(|&i| rule.selects(&images[i].tags)),
        );
        let keep = usize::try_from(rule.count_number).unwrap_or(usize::MAX);
        let cutoff = now_ms.saturating_sub(rule.count_number.saturating_mul(DAY_MS));
        for (rank, &i) in selected.iter().enumerate() {
            let image = &images[i];
            let candidate = match rule.count_type {
                CountType::ImageCountMoreThan => rank >= keep,
                CountType::SinceImagePushed => image.pushed_at < cutoff,
                CountType::SinceImagePulled => {
                    image
                        .last_pulled_at
                        .unwrap_or(i64::MIN)
                        .max(image.pushed_at)
                        < cutoff
                }
            };
            if candidate && !claimed[i] {
                expired[i] = Some(rule.priority);
            }
        }
        for &i in &selected {
            claimed[i] = true;
        }
    }
    expired
}

/// Who lists whom and who refers to whom, by index into the snapshot.
struct Graph {
    /// The first occurrence of its digest (later duplicates are ignored).
    alive: Vec<bool>,
    /// Children present in the snapshot, distinct, in listed order.
    children: Vec<Vec<usize>>,
    parents: Vec<Vec<usize>>,
    /// The subject, when it is in the snapshot.
    subject: Vec<Option<usize>>,
    /// Referrers, oldest first.
    referrers: Vec<Vec<usize>>,
}

impl Graph {
    fn new(images: &[SnapshotImage]) -> Self {
        let n = images.len();
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
        let mut alive = vec![false; n];
        for (i, image) in images.iter().enumerate() {
            if let Entry::Vacant(slot) = index.entry(image.digest.as_str()) {
                slot.insert(i);
                alive[i] = true;
            }
        }
        let mut children = vec![Vec::new(); n];
        let mut parents = vec![Vec::new(); n];
        let mut subject = vec![None; n];
        let mut referrers = vec![Vec::new(); n];
        // `listed_by[j] == i`: image i already listed child j.
        let mut listed_by = vec![usize::MAX; n];
        for (i, image) in images.iter().enumerate().filter(|&(i, _)| alive[i]) {
            for child in &image.children {
                if let Some(&j) = index.get(child.as_str())
                    && j != i
                    && listed_by[j] != i
                {
                    listed_by[j] = i;
                    children[i].push(j);
                    parents[j].push(i);
                }
            }
            if let Some(s) = &image.subject
                && let Some(&j) = index.get(s.as_str())
                && j != i
            {
                subject[i] = Some(j);
                referrers[j].push(i);
            }
        }
        for list in &mut referrers {
            if list.len() > 1 {
                list.sort_unstable_by(|&a, &b| age(&images[a]).cmp(&age(&images[b])));
            }
        }
        Self {
            alive,
            children,
            parents,
            subject,
            referrers,
        }
    }

    fn is_root(&self, i: usize) -> bool {
        self.alive[i] && self.parents[i].is_empty() && self.subject[i].is_none()
    }

    /// What goes when `i` goes: its children, then its referrers.
    fn dependents(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.children[i].iter().chain(&self.referrers[i]).copied()
    }

    /// The expiring roots (oldest first) with their dependents, in deletion order.
    fn expand(
        &self,
        images: &[SnapshotImage],
        expiring: &[usize],
        expired: &[Option<i64>],
    ) -> Plan {
        let n = images.len();

        // Everything the expiring roots take along, before exceptions.
        let mut reached = vec![false; n];
        let mut stack: Vec<usize> = expiring.to_vec();
        for &r in expiring {
            reached[r] = true;
        }
        while let Some(u) = stack.pop() {
            for v in self.dependents(u) {
                if !reached[v] {
                    reached[v] = true;
                    stack.push(v);
                }
            }
        }

        // The exceptions: a dependent with tags of its own, listed by a kept image or referring
        // to one stays, and so does everything it lists or that refers to it.
        let mut kept = vec![false; n];
        for v in (0..n).filter(|&v| reached[v] && !self.is_root(v)) {
            let stays = !images[v].tags.is_empty()
                || self.parents[v].iter().any(|&p| !reached[p])
                || self.subject[v].is_some_and(|s| !reached[s]);
            if stays {
                kept[v] = true;
                stack.push(v);
            }
        }
        while let Some(u) = stack.pop() {
            for v in self.dependents(u) {
                if reached[v] && !kept[v] {
                    kept[v] = true;
                    stack.push(v);
                }
            }
        }
        let doomed = |v: usize| reached[v] && !kept[v];

        // List each root, then every dependent whose last doomed parent (or subject) has just
        // been listed. `waiting[v]`: edges from doomed manifests into v not yet listed.
        let mut waiting = vec![0usize; n];
        for u in (0..n).filter(|&u| doomed(u)) {
            for v in self.dependents(u).filter(|&v| doomed(v)) {
                waiting[v] += 1;
            }
        }
        let mut rule_of = vec![i64::MAX; n];
        let mut expiries = Vec::new();
        let mut queue = VecDeque::new();
        for &r in expiring {
            let Some(rule) = expired[r] else { continue };
            rule_of[r] = rule;
            expiries.push(entry(&images[r], rule, None));
            queue.push_back(r);
            while let Some(u) = queue.pop_front() {
                for v in self.dependents(u).filter(|&v| doomed(v)) {
                    rule_of[v] = rule_of[v].min(rule_of[u]);
                    match waiting[v] {
                        0 => {}
                        1 => {
                            waiting[v] = 0;
                            expiries.push(entry(&images[v], rule_of[v], Some(&images[r].digest)));
                            queue.push_back(v);
                        }
                        _ => waiting[v] -= 1,
                    }
                }
            }
        }
        Plan { expiries }
    }
}

fn entry(image: &SnapshotImage, rule_priority: i64, root: Option<&String>) -> PlannedExpiry {
    PlannedExpiry {
        digest: image.digest.clone(),
        tags: image.tags.clone(),
        pushed_at: image.pushed_at,
        rule_priority,
        root: root.cloned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::too_many_lines)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_750_000_000_000;
    /// Ages are in minutes before `NOW`.
    const DAY: i64 = 24 * 60;
    const MINUTE_MS: i64 = 60_000;

    /// A test image: `name` becomes the digest `sha256:<name>`.
    #[derive(Clone, Copy)]
    struct Img {
        name: &'static str,
        tags: &'static [&'static str],
        pushed: i64,
        pulled: Option<i64>,
        subject: Option<&'static str>,
        children: &'static [&'static str],
    }

    const IMG: Img = Img {
        name: "",
        tags: &[],
        pushed: 0,
        pulled: None,
        subject: None,
        children: &[],
    };

    fn img(name: &'static str, tags: &'static [&'static str], pushed: i64) -> Img {
        Img {
            name,
            tags,
            pushed,
            ..IMG
        }
    }

    fn digest(name: &str) -> String {
        format!("sha256:{name}")
    }

    fn snapshot(images: &[Img]) -> Vec<SnapshotImage> {
        images
            .iter()
            .map(|i| SnapshotImage {
                digest: digest(i.name),
                tags: i.tags.iter().map(|t| (*t).to_owned()).collect(),
                pushed_at: NOW - i.pushed * MINUTE_MS,
                last_pulled_at: i.pulled.map(|p| NOW - p * MINUTE_MS),
                subject: i.subject.map(digest),
                children: i.children.iter().map(|c| digest(c)).collect(),
            })
            .collect()
    }

    /// The plan as `(name, rule, root name)`, in order.
    fn run(policy: &str, images: &[Img]) -> Vec<(String, i64, Option<String>)> {
        let policy = LifecyclePolicy::parse(policy).unwrap();
        let strip = |d: &str| d.trim_start_matches("sha256:").to_owned();
        plan(&policy, &snapshot(images), NOW)
            .expiries
            .into_iter()
            .map(|e| {
                (
                    strip(&e.digest),
                    e.rule_priority,
                    e.root.as_deref().map(strip),
                )
            })
            .collect()
    }

    /// A rule as JSON: `selection` holds tagStatus, the tag list, the count.
    fn rule(priority: i64, selection: &Value) -> Value {
        json!({
            "rulePriority": priority,
            "description": format!("Rule {priority}"),
            "selection": selection,
            "action": { "type": "expire" }
        })
    }

    fn policy(rules: &[Value]) -> String {
        json!({ "rules": rules }).to_string()
    }

    fn tagged_count(list: &str, tags: &[&str], n: i64) -> Value {
        json!({
            "tagStatus": "tagged",
            list: tags,
            "countType": "imageCountMoreThan",
            "countNumber": n
        })
    }

    fn tagged_days(list: &str, tags: &[&str], count_type: &str, n: i64) -> Value {
        json!({
            "tagStatus": "tagged",
            list: tags,
            "countType": count_type,
            "countUnit": "days",
            "countNumber": n
        })
    }

    fn status_count(status: &str, n: i64) -> Value {
        json!({ "tagStatus": status, "countType": "imageCountMoreThan", "countNumber": n })
    }

    fn status_days(status: &str, count_type: &str, n: i64) -> Value {
        json!({
            "tagStatus": status,
            "countType": count_type,
            "countUnit": "days",
            "countNumber": n
        })
    }

    struct Case {
        name: &'static str,
        policy: String,
        images: Vec<Img>,
        /// `(name, rule priority, root name)`, in plan order.
        expect: Vec<(&'static str, i64, Option<&'static str>)>,
    }

    fn check(cases: Vec<Case>) {
        for case in cases {
            let got = run(&case.policy, &case.images);
            let want: Vec<(String, i64, Option<String>)> = case
                .expect
                .iter()
                .map(|(n, r, root)| ((*n).to_owned(), *r, root.map(str::to_owned)))
                .collect();
            assert_eq!(got, want, "case {}", case.name);
        }
    }

    /// The repository of "Filtering on multiple rules", examples A and B
    /// (`lifecycle_policy_examples.html`).
    fn multiple_rules_repo() -> Vec<Img> {
        vec![
            img("a", &["beta-1", "prod-1"], 10 * DAY),
            img("b", &["beta-2", "prod-2"], 9 * DAY),
            img("c", &["beta-3"], 8 * DAY),
        ]
    }

    /// The repository of "Filtering on multiple tags in a single rule", example A.
    fn multiple_tags_repo() -> Vec<Img> {
        vec![
            img("a", &["alpha-1"], 12 * DAY),
            img("b", &["beta-1"], 11 * DAY),
            img("c", &["alpha-2", "beta-2"], 10 * DAY),
            img("d", &["alpha-3"], 4 * DAY),
            img("e", &["beta-3"], 3 * DAY),
            img("f", &["alpha-4", "beta-4"], 2 * DAY),
        ]
    }

    #[test]
    fn the_documented_examples() {
        check(vec![
            // "Filtering on image age": prod* older than 14 days. The docs give no repository.
            Case {
                name: "docs: filtering on image age",
                policy: policy(&[rule(
                    1,
                    &tagged_days("tagPatternList", &["prod*"], "sinceImagePushed", 14),
                )]),
                images: vec![
                    img("a", &["prod-1"], 20 * DAY),
                    img("b", &["prod-2"], 10 * DAY),
                    img("c", &["dev-1"], 30 * DAY),
                    img("d", &[], 30 * DAY),
                ],
                expect: vec![("a", 1, None)],
            },
            // The older version of the same example: untagged images older than 14 days.
            Case {
                name: "docs (older): untagged older than 14 days",
                policy: policy(&[rule(1, &status_days("untagged", "sinceImagePushed", 14))]),
                images: vec![
                    img("a", &[], 15 * DAY),
                    img("b", &[], 13 * DAY),
                    img("c", &["v1"], 30 * DAY),
                ],
                expect: vec![("a", 1, None)],
            },
            // "Filtering on image count": keep only one untagged image.
            Case {
                name: "docs: filtering on image count",
                policy: policy(&[rule(1, &status_count("untagged", 1))]),
                images: vec![
                    img("a", &[], 3 * DAY),
                    img("b", &[], 2 * DAY),
                    img("c", &[], DAY),
                    img("d", &["v1"], 5 * DAY),
                ],
                expect: vec![("a", 1, None), ("b", 1, None)],
            },
            // "Filtering on multiple rules", example A: "Result: Image A is expired." Rule 2 counts
            // A and B (so only C is kept by count) but cannot expire B, which Rule 1 selected.
            Case {
                name: "docs: multiple rules, example A (tagPatternList)",
                policy: policy(&[
                    rule(1, &tagged_count("tagPatternList", &["prod*"], 1)),
                    rule(2, &tagged_count("tagPatternList", &["beta*"], 1)),
                ]),
                images: multiple_rules_repo(),
                expect: vec![("a", 1, None)],
            },
            Case {
                name: "docs (older): multiple rules, example A (tagPrefixList)",
                policy: policy(&[
                    rule(1, &tagged_count("tagPrefixList", &["prod"], 1)),
                    rule(2, &tagged_count("tagPrefixList", &["beta"], 1)),
                ]),
                images: multiple_rules_repo(),
                expect: vec![("a", 1, None)],
            },
            // Example B: "Result: Images A and B are expired."
            Case {
                name: "docs: multiple rules, example B",
                policy: policy(&[
                    rule(1, &tagged_count("tagPatternList", &["beta*"], 1)),
                    rule(2, &tagged_count("tagPatternList", &["prod*"], 1)),
                ]),
                images: multiple_rules_repo(),
                expect: vec![("a", 1, None), ("b", 1, None)],
            },
            // "Filtering on multiple tags in a single rule", example A:
            // "Result: Image C is expired."
            Case {
                name: "docs: multiple tags, example A (tagPatternList)",
                policy: policy(&[rule(
                    1,
                    &tagged_days(
                        "tagPatternList",
                        &["alpha*", "beta*"],
                        "sinceImagePushed",
                        5,
                    ),
                )]),
                images: multiple_tags_repo(),
                expect: vec![("c", 1, None)],
            },
            Case {
                name: "docs (older): multiple tags, example A (tagPrefixList)",
                policy: policy(&[rule(
                    1,
                    &tagged_days("tagPrefixList", &["alpha", "beta"], "sinceImagePushed", 5),
                )]),
                images: multiple_tags_repo(),
                expect: vec![("c", 1, None)],
            },
            // Example B, "tags are not exclusive": "Result: Images A and B are expired."
            Case {
                name: "docs: multiple tags, example B",
                policy: policy(&[rule(
                    1,
                    &tagged_count("tagPatternList", &["alpha*", "beta*"], 1),
                )]),
                images: vec![
                    img("a", &["alpha-1", "beta-1", "gamma-1"], 10 * DAY),
                    img("b", &["alpha-2", "beta-2"], 9 * DAY),
                    img("c", &["alpha-3", "beta-3", "gamma-2"], 8 * DAY),
                ],
                expect: vec![("a", 1, None), ("b", 1, None)],
            },
            // "Filtering on all images", example A: "Result: Images A, B, and C are expired."
            Case {
                name: "docs: all images, example A",
                policy: policy(&[rule(1, &status_count("any", 1))]),
                images: vec![
                    img("a", &["alpha-1"], 4 * DAY),
                    img("b", &["beta-1"], 3 * DAY),
                    img("c", &[], 2 * DAY),
                    img("d", &["alpha-2"], DAY),
                ],
                expect: vec![("a", 1, None), ("b", 1, None), ("c", 1, None)],
            },
            // Example B: "Result: Images A, B, and D are expired." D and E are both "1 day ago";
            // Rule 3 keeps E as the newest, so the tie goes to the greater digest. E is pushed
            // exactly one day ago and so is not "older than one day" for Rule 2.
            Case {
                name: "docs: all images, example B",
                policy: policy(&[
                    rule(1, &tagged_count("tagPatternList", &["alpha*"], 1)),
                    rule(2, &status_days("untagged", "sinceImagePushed", 1)),
                    rule(3, &status_count("any", 1)),
                ]),
                images: vec![
                    img("a", &["alpha-1", "beta-1"], 4 * DAY),
                    img("b", &[], 3 * DAY),
                    img("c", &["alpha-2"], 2 * DAY),
                    img("d", &["git hash"], DAY),
                    img("e", &[], DAY),
                ],
                expect: vec![("a", 1, None), ("b", 2, None), ("d", 3, None)],
            },
        ]);
    }

    #[test]
    fn selection_and_counting() {
        check(vec![
            Case {
                name: "tagged, untagged and any select different images",
                policy: policy(&[rule(
                    1,
                    &tagged_days("tagPrefixList", &["v"], "sinceImagePushed", 1),
                )]),
                images: vec![
                    img("a", &["v1"], 5 * DAY),
                    img("b", &[], 5 * DAY),
                    img("c", &["x"], 5 * DAY),
                ],
                expect: vec![("a", 1, None)],
            },
            Case {
                name: "untagged ignores tagged images",
                policy: policy(&[rule(1, &status_days("untagged", "sinceImagePushed", 1))]),
                images: vec![img("a", &["v1"], 5 * DAY), img("b", &[], 5 * DAY)],
                expect: vec![("b", 1, None)],
            },
            Case {
                name: "any takes tagged and untagged alike",
                policy: policy(&[rule(1, &status_days("any", "sinceImagePushed", 1))]),
                images: vec![
                    img("a", &["v1"], 5 * DAY),
                    img("b", &[], 4 * DAY),
                    img("c", &[], 0),
                ],
                expect: vec![("a", 1, None), ("b", 1, None)],
            },
            Case {
                name: "every prefix must start some tag (AND)",
                policy: policy(&[rule(
                    1,
                    &tagged_days("tagPrefixList", &["v", "prod"], "sinceImagePushed", 1),
                )]),
                images: vec![
                    img("a", &["v1"], 5 * DAY),
                    img("b", &["prod"], 5 * DAY),
                    img("c", &["v2", "prod-2"], 5 * DAY),
                    img("d", &["xv", "xprod"], 5 * DAY),
                ],
                expect: vec![("c", 1, None)],
            },
            Case {
                name: "every pattern must match a whole tag (AND)",
                policy: policy(&[rule(
                    1,
                    &tagged_days("tagPatternList", &["v*.*.3", "*-rc"], "sinceImagePushed", 1),
                )]),
                images: vec![
                    img("a", &["v1.2.3", "x-rc"], 5 * DAY),
                    img("b", &["v1.2.3"], 5 * DAY),
                    img("c", &["v1.2.3x", "x-rc"], 5 * DAY),
                    img("d", &["v1.2.3-rc"], 5 * DAY),
                ],
                // d: "v1.2.3-rc" does not end in ".3", so the first pattern misses.
                expect: vec![("a", 1, None)],
            },
            Case {
                name: "a pattern without * is an exact tag; a prefix is not",
                policy: policy(&[
                    rule(
                        1,
                        &tagged_days("tagPatternList", &["latest"], "sinceImagePushed", 1),
                    ),
                    rule(
                        2,
                        &tagged_days("tagPrefixList", &["stable"], "sinceImagePushed", 1),
                    ),
                ]),
                images: vec![
                    img("a", &["latest"], 5 * DAY),
                    img("b", &["latest-1"], 5 * DAY),
                    img("c", &["stable-2"], 5 * DAY),
                ],
                expect: vec![("a", 1, None), ("c", 2, None)],
            },
            Case {
                name: "imageCountMoreThan keeps the newest N of the selection",
                policy: policy(&[rule(1, &tagged_count("tagPatternList", &["prod-*"], 2))]),
                images: vec![
                    img("a", &["prod-1"], 4 * DAY),
                    img("b", &["prod-2"], 3 * DAY),
                    img("c", &["dev-3"], 2 * DAY),
                    img("d", &["prod-4"], 2 * DAY),
                    img("e", &["prod-5"], DAY),
                ],
                expect: vec![("a", 1, None), ("b", 1, None)],
            },
            Case {
                name: "sinceImagePushed: exactly N days is kept, a minute more expires",
                policy: policy(&[rule(1, &status_days("any", "sinceImagePushed", 14))]),
                images: vec![img("a", &["x"], 14 * DAY + 1), img("b", &["y"], 14 * DAY)],
                expect: vec![("a", 1, None)],
            },
            Case {
                name: "sinceImagePulled: pull time, push time when never pulled",
                policy: policy(&[rule(1, &status_days("any", "sinceImagePulled", 7))]),
                images: vec![
                    Img {
                        pulled: Some(DAY),
                        ..img("a", &["old-but-used"], 90 * DAY)
                    },
                    Img {
                        pulled: Some(8 * DAY),
                        ..img("b", &["old-unused"], 90 * DAY)
                    },
                    img("c", &["never-pulled-old"], 8 * DAY),
                    img("d", &["never-pulled-new"], 6 * DAY),
                ],
                expect: vec![("b", 1, None), ("c", 1, None)],
            },
            Case {
                name: "sinceImagePushed ignores pulls",
                policy: policy(&[rule(1, &status_days("any", "sinceImagePushed", 7))]),
                images: vec![Img {
                    pulled: Some(0),
                    ..img("a", &["x"], 8 * DAY)
                }],
                expect: vec![("a", 1, None)],
            },
        ]);
    }

    #[test]
    fn priorities_ties_and_order() {
        check(vec![
            Case {
                name: "rules apply by priority, not by position in the text",
                policy: policy(&[
                    rule(20, &tagged_count("tagPatternList", &["beta*"], 1)),
                    rule(3, &tagged_count("tagPatternList", &["prod*"], 1)),
                ]),
                images: multiple_rules_repo(),
                expect: vec![("a", 3, None)],
            },
            Case {
                name: "selected by a higher rule: counted by a lower one, never expired by it",
                policy: policy(&[
                    rule(
                        1,
                        &tagged_days("tagPatternList", &["prod*"], "sinceImagePushed", 30),
                    ),
                    rule(2, &status_count("any", 2)),
                ]),
                images: vec![
                    img("p1", &["prod-1"], 10 * DAY),
                    img("x", &["dev-1"], 4 * DAY),
                    img("y", &["dev-2"], 3 * DAY),
                    img("p2", &["prod-2"], 2 * DAY),
                    img("p3", &["prod-3"], DAY),
                ],
                // Rule 2 keeps p3 and p2 (its newest two) and would expire y, x and p1; p1 was
                // selected by rule 1 (which keeps it, being younger than 30 days).
                expect: vec![("x", 2, None), ("y", 2, None)],
            },
            Case {
                name: "equal push times: the greater digest is the newer",
                policy: policy(&[rule(1, &status_count("any", 1))]),
                images: vec![
                    img("b", &["x"], DAY),
                    img("c", &["y"], DAY),
                    img("a", &["z"], DAY),
                ],
                expect: vec![("a", 1, None), ("b", 1, None)],
            },
            Case {
                name: "expiry is ordered oldest first, whatever the rule",
                policy: policy(&[
                    rule(1, &status_days("untagged", "sinceImagePushed", 1)),
                    rule(
                        2,
                        &tagged_days("tagPrefixList", &["v"], "sinceImagePushed", 1),
                    ),
                ]),
                images: vec![
                    img("a", &[], 3 * DAY),
                    img("b", &["v1"], 9 * DAY),
                    img("c", &["v2"], 2 * DAY),
                    img("d", &[], 5 * DAY),
                ],
                expect: vec![
                    ("b", 2, None),
                    ("d", 1, None),
                    ("a", 1, None),
                    ("c", 2, None),
                ],
            },
        ]);
    }

    #[test]
    fn manifests_go_with_their_roots() {
        let untagged_old = || policy(&[rule(1, &status_days("untagged", "sinceImagePushed", 1))]);
        let v1_goes = || {
            policy(&[
                rule(1, &tagged_count("tagPatternList", &["v*"], 1)),
                rule(2, &status_days("untagged", "sinceImagePushed", 1)),
            ])
        };
        check(vec![
            Case {
                name: "a kept index keeps its untagged children",
                policy: untagged_old(),
                images: vec![
                    Img {
                        children: &["m1", "m2"],
                        ..img("i", &["v1"], 30 * DAY)
                    },
                    img("m1", &[], 30 * DAY),
                    img("m2", &[], 30 * DAY),
                    img("u", &[], 30 * DAY),
                ],
                expect: vec![("u", 1, None)],
            },
            Case {
                name: "an expired index takes its own untagged children and referrers only",
                policy: v1_goes(),
                images: vec![
                    Img {
                        children: &["m", "shared", "named"],
                        ..img("i1", &["v1"], 30 * DAY)
                    },
                    Img {
                        children: &["shared"],
                        ..img("i2", &["v2"], 20 * DAY)
                    },
                    img("m", &[], 30 * DAY),
                    img("shared", &[], 30 * DAY),
                    Img {
                        children: &["under-named"],
                        ..img("named", &["v1-amd64"], 30 * DAY)
                    },
                    img("under-named", &[], 30 * DAY),
                    Img {
                        subject: Some("i1"),
                        ..img("sig", &[], 29 * DAY)
                    },
                ],
                expect: vec![
                    ("i1", 1, None),
                    ("m", 1, Some("i1")),
                    ("sig", 1, Some("i1")),
                ],
            },
            Case {
                name: "a signature of a kept image is kept",
                policy: untagged_old(),
                images: vec![
                    img("x", &["v1"], 30 * DAY),
                    Img {
                        subject: Some("x"),
                        ..img("sig", &[], 30 * DAY)
                    },
                ],
                expect: vec![],
            },
            Case {
                name: "a referrer whose subject is gone is a root",
                policy: untagged_old(),
                images: vec![
                    Img {
                        subject: Some("gone"),
                        ..img("sig", &[], 30 * DAY)
                    },
                    Img {
                        subject: Some("gone"),
                        ..img("fresh", &[], 0)
                    },
                ],
                expect: vec![("sig", 1, None)],
            },
            Case {
                name: "a child shared by two expiring indexes goes once, after both",
                policy: policy(&[
                    rule(
                        1,
                        &tagged_days("tagPrefixList", &["old"], "sinceImagePushed", 1),
                    ),
                    rule(
                        2,
                        &tagged_days("tagPrefixList", &["v"], "sinceImagePushed", 1),
                    ),
                ]),
                images: vec![
                    Img {
                        children: &["own1", "shared"],
                        ..img("i1", &["v1"], 30 * DAY)
                    },
                    Img {
                        children: &["shared", "own2"],
                        ..img("i2", &["old"], 20 * DAY)
                    },
                    img("own1", &[], 30 * DAY),
                    img("shared", &[], 30 * DAY),
                    img("own2", &[], 20 * DAY),
                ],
                expect: vec![
                    ("i1", 2, None),
                    ("own1", 2, Some("i1")),
                    ("i2", 1, None),
                    ("shared", 1, Some("i2")),
                    ("own2", 1, Some("i2")),
                ],
            },
            Case {
                name: "nested indexes and a referrer of a grandchild, parents first",
                policy: v1_goes(),
                images: vec![
                    img("v2", &["v2"], DAY),
                    Img {
                        children: &["j"],
                        ..img("i", &["v1"], 30 * DAY)
                    },
                    Img {
                        children: &["m"],
                        ..img("j", &[], 30 * DAY)
                    },
                    img("m", &[], 30 * DAY),
                    Img {
                        subject: Some("m"),
                        ..img("sbom", &[], 30 * DAY)
                    },
                ],
                expect: vec![
                    ("i", 1, None),
                    ("j", 1, Some("i")),
                    ("m", 1, Some("i")),
                    ("sbom", 1, Some("i")),
                ],
            },
            Case {
                name: "a tagged dependent keeps what it lists, not its subject",
                policy: v1_goes(),
                images: vec![
                    img("v2", &["v2"], DAY),
                    Img {
                        children: &["named", "m"],
                        ..img("i", &["v1"], 30 * DAY)
                    },
                    Img {
                        children: &["leaf"],
                        ..img("named", &["v1-arm64"], 30 * DAY)
                    },
                    img("leaf", &[], 30 * DAY),
                    img("m", &[], 30 * DAY),
                    Img {
                        subject: Some("m"),
                        ..img("signed", &["m.sig"], 30 * DAY)
                    },
                ],
                expect: vec![("i", 1, None), ("m", 1, Some("i"))],
            },
            Case {
                name: "a child listed by a kept non-root stays",
                policy: v1_goes(),
                images: vec![
                    Img {
                        children: &["j"],
                        ..img("keep", &["v2"], DAY)
                    },
                    Img {
                        children: &["m"],
                        ..img("j", &[], DAY)
                    },
                    Img {
                        children: &["m"],
                        ..img("i", &["v1"], 30 * DAY)
                    },
                    img("m", &[], 30 * DAY),
                ],
                expect: vec![("i", 1, None)],
            },
            Case {
                name: "a dependent that refers to a kept image stays",
                policy: v1_goes(),
                images: vec![
                    img("keep", &["v2"], DAY),
                    Img {
                        children: &["att"],
                        ..img("i", &["v1"], 30 * DAY)
                    },
                    Img {
                        subject: Some("keep"),
                        ..img("att", &[], 30 * DAY)
                    },
                ],
                expect: vec![("i", 1, None)],
            },
        ]);
    }

    #[test]
    fn odd_snapshots_are_safe() {
        check(vec![
            Case {
                name: "a repeated digest counts once",
                policy: policy(&[rule(1, &status_days("any", "sinceImagePushed", 1))]),
                images: vec![img("a", &["x"], 5 * DAY), img("a", &["y"], 0)],
                expect: vec![("a", 1, None)],
            },
            Case {
                name: "a cycle below an expiring root is left alone",
                policy: policy(&[rule(1, &status_days("any", "sinceImagePushed", 1))]),
                images: vec![
                    Img {
                        children: &["p", "solo"],
                        ..img("r", &[], 5 * DAY)
                    },
                    Img {
                        children: &["q"],
                        ..img("p", &[], 5 * DAY)
                    },
                    Img {
                        children: &["p"],
                        ..img("q", &[], 5 * DAY)
                    },
                    img("solo", &[], 5 * DAY),
                ],
                expect: vec![("r", 1, None), ("solo", 1, Some("r"))],
            },
            Case {
                name: "a manifest naming itself is still a root",
                policy: policy(&[rule(1, &status_days("any", "sinceImagePushed", 1))]),
                images: vec![Img {
                    children: &["me"],
                    subject: Some("me"),
                    ..img("me", &[], 5 * DAY)
                }],
                expect: vec![("me", 1, None)],
            },
        ]);
        let policy = LifecyclePolicy::parse(&policy(&[rule(1, &status_count("any", 1))])).unwrap();
        assert_eq!(plan(&policy, &[], NOW), Plan::default());
    }

    #[test]
    fn planned_expiries_carry_the_image() {
        let text = policy(&[rule(1, &status_count("any", 1))]);
        let policy = LifecyclePolicy::parse(&text).unwrap();
        let images = snapshot(&[img("a", &["v1", "latest"], 2 * DAY), img("b", &[], DAY)]);
        let got = plan(&policy, &images, NOW);
        assert_eq!(
            got.expiries,
            vec![PlannedExpiry {
                digest: "sha256:a".into(),
                tags: vec!["v1".into(), "latest".into()],
                pushed_at: NOW - 2 * DAY * MINUTE_MS,
                rule_priority: 1,
                root: None,
            }]
        );
    }

    #[test]
    fn wildcards() {
        let cases: &[(&str, &str, bool)] = &[
            ("prod*", "prod", true),
            ("prod*", "prod-1", true),
            ("prod*", "xprod", false),
            ("*prod", "my-prod", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("*test*1*2*3", "my-test-1-2-3", true),
            ("test*1*2*3*", "test123", true),
            ("v*.*.*", "v1.2.3", true),
            ("v*.*.*", "v1.2", false),
            (
                "*a*a*a*a",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                false,
            ),
            ("é*ü", "éxxü", true),
            ("é*ü", "éxxu", false),
        ];
        for &(pattern, text, want) in cases {
            assert_eq!(
                wildcard_match(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern} / {text}"
            );
        }
        // No exponential backtracking: a long non-match is quick.
        let long = "a".repeat(100_000);
        assert!(!wildcard_match(b"*a*a*a*b", long.as_bytes()));
    }

    #[test]
    fn valid_policies_parse() {
        let text = policy(&[
            rule(7, &status_count("any", 10)),
            rule(2, &status_days("untagged", "sinceImagePulled", 3)),
            rule(
                5,
                &tagged_count("tagPatternList", &["*test*1*2*3", "test*1*2*3*"], 1),
            ),
        ]);
        let parsed = LifecyclePolicy::parse(&text).unwrap();
        let summary: Vec<_> = parsed
            .rules()
            .iter()
            .map(|r| {
                (
                    r.priority(),
                    r.description(),
                    r.tag_status(),
                    r.count_type(),
                    r.count_number(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    2,
                    Some("Rule 2"),
                    TagStatus::Untagged,
                    CountType::SinceImagePulled,
                    3
                ),
                (
                    5,
                    Some("Rule 5"),
                    TagStatus::Tagged,
                    CountType::ImageCountMoreThan,
                    1
                ),
                (
                    7,
                    Some("Rule 7"),
                    TagStatus::Any,
                    CountType::ImageCountMoreThan,
                    10
                ),
            ]
        );

        // No description; whitespace padding up to exactly the limit.
        let bare = concat!(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","#,
            r#""countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#
        );
        let bare_policy = LifecyclePolicy::parse(bare).unwrap();
        assert_eq!(bare_policy.rules()[0].description(), None);
        let padded = format!("{bare}{}", " ".repeat(MAX_POLICY_CHARS - bare.len()));
        assert!(LifecyclePolicy::parse(&padded).is_ok());
        // The limit counts characters, not bytes.
        let wide = policy(&[json!({
            "rulePriority": 1,
            "description": "é".repeat(20_000),
            "selection": status_count("any", 1),
            "action": { "type": "expire" }
        })]);
        assert!(wide.len() > MAX_POLICY_CHARS);
        assert!(LifecyclePolicy::parse(&wide).is_ok());
        // Brackets inside strings do not count as nesting.
        let bracketed = policy(&[json!({
            "rulePriority": 1,
            "description": "[".repeat(100),
            "selection": status_count("any", 1),
            "action": { "type": "expire" }
        })]);
        assert!(LifecyclePolicy::parse(&bracketed).is_ok());
    }

    #[test]
    fn invalid_policies_are_refused() {
        use LifecycleError as E;
        let names = |n: &[&str]| n.iter().map(|&s| s.to_owned()).collect::<Vec<_>>();
        let any1 = r#"{"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}"#;
        let expire = r#"{"type": "expire"}"#;
        // A policy of one rule from its parts, as JSON text.
        let one = |priority: &str, selection: &str, action: &str| {
            format!(
                r#"{{"rules": [{{"rulePriority": {priority}, "selection": {selection},
                                 "action": {action}}}]}}"#
            )
        };
        let sel = |selection: &str| one("1", selection, expire);
        let act = |action: &str| one("1", any1, action);
        let two = |a: Value, b: Value| policy(&[rule(1, &a), rule(2, &b)]);
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let long = policy(&[json!({
            "rulePriority": 1,
            "description": "x".repeat(MAX_POLICY_CHARS),
            "selection": status_count("any", 1),
            "action": { "type": "expire" }
        })]);
        let long_chars = long.chars().count();
        let cases: Vec<(&str, String, LifecycleError)> = vec![
            ("not JSON", "{rules: []".into(), E::Malformed),
            ("not an object", "[]".into(), E::Malformed),
            ("empty text", String::new(), E::Malformed),
            (
                "32 levels pass the depth check",
                nested(MAX_JSON_DEPTH),
                E::Malformed,
            ),
            ("33 levels do not", nested(MAX_JSON_DEPTH + 1), E::TooDeep),
            (
                "deep inside a rule",
                format!(r#"{{"rules": [{{"description": {}}}]}}"#, nested(40)),
                E::TooDeep,
            ),
            ("too long", long, E::TooLong { chars: long_chars }),
            (
                "no rules key",
                "{}".into(),
                E::MissingProperties {
                    names: names(&["rules"]),
                },
            ),
            (
                "unknown top-level keys",
                r#"{"x": 1, "rules": [], "a": 2}"#.into(),
                E::UnknownProperties {
                    names: names(&["a", "x"]),
                },
            ),
            (
                "rules not an array",
                r#"{"rules": {}}"#.into(),
                E::WrongType {
                    expected: "array",
                    found: "object",
                },
            ),
            ("empty rules", r#"{"rules": []}"#.into(), E::NoRules),
            (
                "rule not an object",
                r#"{"rules": [1]}"#.into(),
                E::WrongType {
                    expected: "object",
                    found: "integer",
                },
            ),
            (
                "rule without action and selection",
                r#"{"rules": [{"rulePriority": 1}]}"#.into(),
                E::MissingProperties {
                    names: names(&["action", "selection"]),
                },
            ),
            (
                "unknown rule key",
                format!(
                    r#"{{"rules": [{{"rulePriority": 1, "selection": {any1}, "action": {expire},
                                     "enabled": true}}]}}"#
                ),
                E::UnknownProperties {
                    names: names(&["enabled"]),
                },
            ),
            (
                "duplicate priority",
                policy(&[
                    rule(1, &status_count("untagged", 1)),
                    rule(1, &status_count("any", 1)),
                ]),
                E::DuplicatePriority { priority: 1 },
            ),
            (
                "priority 0",
                one("0", any1, expire),
                E::BelowMinimum { found: 0 },
            ),
            (
                "priority as a string",
                one(r#""1""#, any1, expire),
                E::WrongType {
                    expected: "integer",
                    found: "string",
                },
            ),
            (
                "priority beyond i64",
                one(&u64::MAX.to_string(), any1, expire),
                E::Malformed,
            ),
            (
                "description not a string",
                format!(
                    r#"{{"rules": [{{"rulePriority": 1, "description": 5, "selection": {any1},
                                     "action": {expire}}}]}}"#
                ),
                E::WrongType {
                    expected: "string",
                    found: "integer",
                },
            ),
            (
                "two untagged rules",
                two(
                    status_count("untagged", 1),
                    status_days("untagged", "sinceImagePushed", 1),
                ),
                E::MultipleUntagged,
            ),
            (
                "any not last",
                two(status_count("any", 1), status_count("untagged", 1)),
                E::AnyNotLast,
            ),
            (
                "two any rules",
                two(status_count("any", 1), status_count("any", 2)),
                E::AnyNotLast,
            ),
            (
                "both tag lists",
                sel(
                    r#"{"tagStatus": "tagged", "tagPrefixList": ["a"], "tagPatternList": ["a*"],
                        "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ),
                E::BothTagLists,
            ),
            (
                "tagged without a list",
                sel(
                    r#"{"tagStatus": "tagged", "countType": "imageCountMoreThan",
                        "countNumber": 1}"#,
                ),
                E::TagListRequired,
            ),
            (
                "tagged with an empty list",
                sel(r#"{"tagStatus": "tagged", "tagPrefixList": [],
                        "countType": "imageCountMoreThan", "countNumber": 1}"#),
                E::TagListRequired,
            ),
            (
                "untagged with a prefix list",
                sel(r#"{"tagStatus": "untagged", "tagPrefixList": ["a"],
                        "countType": "imageCountMoreThan", "countNumber": 1}"#),
                E::TagListNotAllowed,
            ),
            (
                "any with an empty pattern list",
                sel(r#"{"tagStatus": "any", "tagPatternList": [],
                        "countType": "imageCountMoreThan", "countNumber": 1}"#),
                E::TagListNotAllowed,
            ),
            (
                "five wildcards",
                sel(
                    r#"{"tagStatus": "tagged", "tagPatternList": ["ok*", "test*1*2*3*4*5"],
                        "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ),
                E::TooManyWildcards {
                    pattern: "test*1*2*3*4*5".into(),
                    count: 5,
                },
            ),
            (
                "the docs' invalid pattern",
                sel(
                    r#"{"tagStatus": "tagged", "tagPatternList": ["test*1*2*3*4*5*6"],
                        "countType": "imageCountMoreThan", "countNumber": 1}"#,
                ),
                E::TooManyWildcards {
                    pattern: "test*1*2*3*4*5*6".into(),
                    count: 6,
                },
            ),
            (
                "tag list item not a string",
                sel(r#"{"tagStatus": "tagged", "tagPrefixList": ["a", 1],
                        "countType": "imageCountMoreThan", "countNumber": 1}"#),
                E::WrongType {
                    expected: "string",
                    found: "integer",
                },
            ),
            (
                "countUnit missing",
                sel(r#"{"tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 1}"#),
                E::CountMismatch,
            ),
            (
                "countUnit missing for sinceImagePulled",
                sel(r#"{"tagStatus": "any", "countType": "sinceImagePulled", "countNumber": 1}"#),
                E::CountMismatch,
            ),
            (
                "countUnit with imageCountMoreThan",
                sel(
                    r#"{"tagStatus": "any", "countType": "imageCountMoreThan", "countUnit": "days",
                        "countNumber": 1}"#,
                ),
                E::CountMismatch,
            ),
            (
                "countUnit null",
                sel(
                    r#"{"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": null,
                        "countNumber": 1}"#,
                ),
                E::CountMismatch,
            ),
            (
                "countUnit hours",
                sel(
                    r#"{"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "hours",
                        "countNumber": 1}"#,
                ),
                E::NotInEnum {
                    value: "hours".into(),
                    allowed: &["days"],
                },
            ),
            (
                "unknown countType",
                sel(r#"{"tagStatus": "any", "countType": "imageCountLessThan", "countNumber": 1}"#),
                E::CountMismatch,
            ),
            (
                "countNumber 0",
                sel(r#"{"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 0}"#),
                E::BelowMinimum { found: 0 },
            ),
            (
                "countNumber negative",
                sel(
                    r#"{"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": -3}"#,
                ),
                E::BelowMinimum { found: -3 },
            ),
            (
                "countNumber fractional",
                sel(r#"{"tagStatus": "any", "countType": "imageCountMoreThan",
                        "countNumber": 1.5}"#),
                E::WrongType {
                    expected: "integer",
                    found: "number",
                },
            ),
            (
                "tagStatus in capitals",
                sel(
                    r#"{"tagStatus": "TAGGED", "countType": "imageCountMoreThan",
                        "countNumber": 1}"#,
                ),
                E::NotInEnum {
                    value: "TAGGED".into(),
                    allowed: &["any", "tagged", "untagged"],
                },
            ),
            (
                "selection missing keys",
                sel(r#"{"tagStatus": "any"}"#),
                E::MissingProperties {
                    names: names(&["countNumber", "countType"]),
                },
            ),
            (
                "unknown selection key",
                sel(
                    r#"{"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1,
                        "tagRegex": "x"}"#,
                ),
                E::UnknownProperties {
                    names: names(&["tagRegex"]),
                },
            ),
            (
                "bad action type",
                act(r#"{"type": "delete"}"#),
                E::NotInEnum {
                    value: "delete".into(),
                    allowed: &["expire"],
                },
            ),
            (
                "action without type",
                act("{}"),
                E::MissingProperties {
                    names: names(&["type"]),
                },
            ),
            (
                "unknown action key",
                act(r#"{"type": "expire", "dryRun": true}"#),
                E::UnknownProperties {
                    names: names(&["dryRun"]),
                },
            ),
            (
                "transition",
                act(r#"{"type": "transition"}"#),
                E::Unsupported {
                    feature: "action.type \"transition\"",
                },
            ),
            (
                "targetStorageClass",
                act(r#"{"type": "transition", "targetStorageClass": "archive"}"#),
                E::Unsupported {
                    feature: "action.targetStorageClass",
                },
            ),
            (
                "storageClass",
                sel(
                    r#"{"tagStatus": "any", "storageClass": "archive", "countUnit": "days",
                        "countType": "sinceImageTransitioned", "countNumber": 90}"#,
                ),
                E::Unsupported {
                    feature: "selection.storageClass",
                },
            ),
            (
                "sinceImageTransitioned",
                sel(
                    r#"{"tagStatus": "any", "countType": "sinceImageTransitioned",
                        "countUnit": "days", "countNumber": 90}"#,
                ),
                E::Unsupported {
                    feature: "countType \"sinceImageTransitioned\"",
                },
            ),
        ];
        for (name, text, want) in cases {
            match LifecyclePolicy::parse(&text) {
                Ok(_) => panic!("case {name}: accepted"),
                Err(e) => {
                    assert_eq!(e, want, "case {name}");
                    assert_eq!(e.aws_error_code(), "InvalidParameterException");
                    assert!(
                        e.to_string()
                            .starts_with("Invalid parameter at 'LifecyclePolicyText'")
                    );
                }
            }
        }
    }

    #[test]
    fn error_messages_read_as_ecr_writes_them() {
        let err = |text: &str| LifecyclePolicy::parse(text).unwrap_err().to_string();
        assert_eq!(
            err("nope"),
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: \
             'Lifecycle policy validation failure: \
             Could not map policyString into LifecyclePolicy.'"
        );
        assert_eq!(
            err(&policy(&[
                rule(1, &status_count("untagged", 1)),
                rule(2, &status_count("untagged", 2))
            ])),
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: \
             'Lifecycle policy validation failure: Only one rule can select Untagged images.'"
        );
        assert_eq!(
            err("{}"),
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: \
             'Lifecycle policy validation failure: \
             object has missing required properties ([\"rules\"])'"
        );
        assert_eq!(
            err(&policy(&[rule(1, &status_count("any", 0))])),
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: \
             'Lifecycle policy validation failure: numeric instance is lower than the required \
             minimum (minimum: 1, found: 0)'"
        );
        assert!(
            err(&policy(&[rule(
                1,
                &json!({"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1})
            )]))
            .ends_with("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.'")
        );
        assert!(
            err(&policy(&[
                rule(1, &status_count("any", 1)),
                rule(2, &status_count("untagged", 1))
            ]))
            .ends_with("Rule for tagStatus=ANY must have the lowest priority.'")
        );
        assert!(
            err(&policy(&[rule(
                1,
                &tagged_count("tagPatternList", &["a*b*c*d*e*f"], 1)
            )]))
            .ends_with("four wildcards (*) per string: [\"a*b*c*d*e*f\"] has 5.'")
        );
        assert_eq!(
            LifecycleError::TooLong { chars: 40_000 }.to_string(),
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: \
             'Member must have length less than or equal to 30720'"
        );
    }

    /// `cargo test --release -- --ignored --nocapture` prints the time.
    #[test]
    #[ignore = "timing; run in release"]
    fn plans_100k_images_quickly() {
        let mut images = Vec::with_capacity(110_000);
        let digest_of = |kind: &str, i: usize| format!("sha256:{kind}{i:062x}");
        for i in 0..100_000usize {
            let age = i64::try_from(i).unwrap() * 7 * MINUTE_MS;
            let tags = match i % 10 {
                0 => vec![],
                1..=4 => vec![format!("v{}.{}.{}", i % 7, i % 13, i)],
                5..=8 => vec![format!("prod-{i}")],
                _ => vec![
                    format!("v1.{i}.0"),
                    format!("prod-{i}"),
                    "candidate-1".to_owned(),
                ],
            };
            let mut image = SnapshotImage {
                digest: digest_of("aa", i),
                tags,
                pushed_at: NOW - age,
                last_pulled_at: (i % 3 == 0).then(|| NOW - age / 2),
                ..SnapshotImage::default()
            };
            if i % 50 == 1 {
                // An index with two platform manifests.
                for k in 0..2 {
                    let child = digest_of(if k == 0 { "bb" } else { "cc" }, i);
                    image.children.push(child.clone());
                    images.push(SnapshotImage {
                        digest: child,
                        pushed_at: NOW - age,
                        ..SnapshotImage::default()
                    });
                }
            }
            if i % 100 == 2 {
                images.push(SnapshotImage {
                    digest: digest_of("dd", i),
                    pushed_at: NOW - age,
                    subject: Some(image.digest.clone()),
                    ..SnapshotImage::default()
                });
            }
            images.push(image);
        }
        let text = policy(&[
            rule(1, &tagged_count("tagPrefixList", &["prod-"], 5_000)),
            rule(
                2,
                &tagged_days("tagPatternList", &["v*.*.*"], "sinceImagePushed", 200),
            ),
            rule(3, &status_days("untagged", "sinceImagePushed", 30)),
            rule(
                4,
                &tagged_days(
                    "tagPatternList",
                    &["*-1*", "candidate-*"],
                    "sinceImagePulled",
                    90,
                ),
            ),
            rule(5, &status_count("any", 60_000)),
        ]);
        let policy = LifecyclePolicy::parse(&text).unwrap();
        let start = std::time::Instant::now();
        let planned = plan(&policy, &images, NOW);
        let elapsed = start.elapsed();
        println!(
            "plan over {} images ({} rules): {} expiries in {elapsed:?}",
            images.len(),
            policy.rules().len(),
            planned.expiries.len()
        );
        assert!(!planned.expiries.is_empty());
    }
}
