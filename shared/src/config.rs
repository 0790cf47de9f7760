//! The declarative service configuration (JSON), and its validation.
//!
//! A config says how a service runs; the version to run comes from each release. Every save is
//! a new, immutable config version recorded as a `config-saved` event.
//! [`parse_service_config`] returns *every* problem at once, each naming the field.
//!
//! The types accept fields they do not know: configs are stored inside events, and a roller or
//! trail one version behind must still fold a config that a newer one saved. The strictness
//! a person's config needs (a misspelt field is an error, not silently dropped) lives in
//! [`parse_service_config`] instead, which is what the API and the CLI read configs with.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::secrets::SECRETS_NAMESPACE;
use crate::secrets::{looks_like_credential, parse_secret_ref, use_a_reference_instead};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub endpoint: EndpointConfig,
    /// `[registry/]account/name`, without a tag: the tag is the release's version.
    pub image: String,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Environment variables, in clear: they are stored in the log (kept forever) and shown
    /// in configs, events and trail's audit. A value that looks like a credential is refused;
    /// put it in `secrets` instead.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values Elastic Beanstalk fetches from AWS Secrets Manager
    /// or SSM Parameter Store when an instance starts: variable name → the secret's or
    /// parameter's ARN (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf`, optionally
    /// `:JSON_KEY` after it, or `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`). ionroller stores
    /// and shows only these references, never the values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub run_args: Vec<String>,
    pub instances: InstanceConfig,
    #[serde(default = "default_health_check_path")]
    pub health_check_path: String,
    #[serde(default)]
    pub aws: AwsConfig,
    pub rollout: RolloutPolicy,
    /// The notification endpoints (by the names the operator's `--notifications` file gives
    /// them) this service's team asks to hear from; an endpoint marked `when_named` notifies
    /// only the services that name it here. No URL or secret is ever in a config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// How many endpoints one config may name.
pub const MAX_NOTIFY: usize = 8;

/// A notification endpoint's name, as the operator's file gives it and a config's `notify`
/// names it: 1 to 64 lowercase letters, digits, `-`, `_` or `.` (it becomes part of the
/// notifier's stream name).
pub fn valid_endpoint_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn default_health_check_path() -> String {
    "/health".to_string()
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointConfig {
    /// The customer-facing URL, for people; traffic goes through `load_balancer`.
    #[serde(default)]
    pub url: Option<String>,
    pub load_balancer: LoadBalancerConfig,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct LoadBalancerConfig {
    pub kind: LoadBalancerKind,
    /// Classic ELB name, or the ALB listener ARN.
    pub name: String,
}

impl LoadBalancerConfig {
    /// What one service owns when its config names this load balancer: a classic ELB by name
    /// (lower-cased: within one account and region two spellings would be one balancer), an
    /// ALB by listener ARN (which names its account and region).
    pub fn claim_key(&self) -> String {
        match self.kind {
            LoadBalancerKind::Classic => format!("classic/{}", self.name.to_ascii_lowercase()),
            LoadBalancerKind::Alb => format!("alb/{}", self.name),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancerKind {
    /// Register and deregister instances; share = new instances ÷ all registered.
    Classic,
    /// Weighted target groups on one listener: exact percentages.
    Alb,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container: u16,
    pub host: u16,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfig {
    #[serde(rename = "type")]
    pub instance_type: String,
    pub min: u32,
    pub max: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsConfig {
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// A role to assume for this service's account.
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub solution_stack: Option<String>,
    #[serde(default)]
    pub deployment_bucket: Option<String>,
    /// Passed to Elastic Beanstalk as they are.
    #[serde(default)]
    pub option_settings: Vec<OptionSetting>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionSetting {
    pub namespace: String,
    pub option_name: String,
    pub value: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    /// Percent of the new environment's capacity behind the endpoint at each step; the last
    /// must be 100. E.g. `[25, 50, 100]`.
    pub steps: Vec<u8>,
    /// How long to wait after each step but the last.
    #[serde(default = "default_pause")]
    pub pause: Pause,
    /// An optional first step with its own pause.
    #[serde(default)]
    pub canary: Option<CanaryPolicy>,
    /// Before any customer traffic, the new environment waits at its own URL for a promote.
    #[serde(default)]
    pub test_endpoint: bool,
    /// How long the previous environment stays warm for a fast rollback.
    #[serde(default = "default_keep_old_for")]
    pub keep_old_for: HumanDuration,
    /// How long the environment of a rollout that failed (rolled back: an alarm, Red, refused,
    /// aborted) is kept for inspection before it is terminated. It never served, so it is
    /// no rollback target and is not kept warm for `keep_old_for`.
    /// Default: 10 minutes, or `keep_old_for` if that is shorter ([`RolloutPolicy::keep_failed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_failed_for: Option<HumanDuration>,
    /// A stage (launch, a traffic step) that takes longer than this aborts the rollout.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: HumanDuration,
    /// CloudWatch alarms; any in ALARM during a rollout rolls it back.
    #[serde(default)]
    pub alarms: Vec<String>,
    #[serde(default)]
    pub rollback: RollbackMode,
}

impl RolloutPolicy {
    /// How long a failed release's environment is kept: `keep_failed_for`, or by default 10
    /// minutes (long enough to read its logs) but never longer than a good one stays warm.
    pub fn keep_failed(&self) -> Duration {
        self.keep_failed_for
            .map_or(Duration::from_secs(10 * 60).min(self.keep_old_for.0), |d| {
                d.0
            })
    }
}

fn default_pause() -> Pause {
    Pause::For(HumanDuration(Duration::from_secs(60)))
}

fn default_keep_old_for() -> HumanDuration {
    HumanDuration(Duration::from_secs(60 * 60))
}

fn default_progress_deadline() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryPolicy {
    pub percent: u8,
    pub pause: Pause,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// All traffic back to the previous environment in one step.
    #[default]
    Immediate,
    /// Back through the traffic steps in reverse, without pauses.
    Ramp,
}

/// A pause between steps: a duration (`"30s"`, `"5m"`) or `"until_promoted"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    For(HumanDuration),
    UntilPromoted,
}

impl Serialize for Pause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pause::For(d) => d.serialize(s),
            Pause::UntilPromoted => s.serialize_str("until_promoted"),
        }
    }
}

impl<'de> Deserialize<'de> for Pause {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "until_promoted" {
            return Ok(Pause::UntilPromoted);
        }
        parse_duration(&text)
            .map(|d| Pause::For(HumanDuration(d)))
            .map_err(|why| serde::de::Error::custom(format!("{why}, or \"until_promoted\"")))
    }
}

/// A duration written for people: `"90s"`, `"5m"`, `"1h"`, `"1h30m"`, `"0s"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"1h30m"`, `"45s"`, `"2m"`. Whole seconds only.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration; write e.g. \"30s\", \"5m\", \"1h30m\"");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut units_seen = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
        units_seen += 1;
    }
    if !number.is_empty() || units_seen == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// One thing wrong with a config: where, and what is allowed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Longest service name; it becomes part of environment names, which AWS caps at 40.
pub const MAX_SERVICE_NAME: usize = 23;

/// Checks a service name: 2–23 lowercase letters, digits and hyphens, starting with a letter.
pub fn validate_service_name(name: &str) -> Result<(), FieldError> {
    let ok = (2..=MAX_SERVICE_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(FieldError {
            field: "service".into(),
            problem: format!(
                "{name:?} is not a service name: use 2 to {MAX_SERVICE_NAME} lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen"
            ),
        })
    }
}

/// Checks a release version (the image tag): 1–40 of letters, digits, `.`, `_`, `-`.
pub fn validate_version(version: &str) -> Result<(), FieldError> {
    let ok = (1..=40).contains(&version.len())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        && version.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(FieldError {
            field: "version".into(),
            problem: format!("{version:?} is not a version: use 1 to 40 letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes the Docker tag)"),
        })
    }
}

/// The longest reason a command may carry, in characters.
pub const MAX_REASON: usize = 1000;

/// Checks a command's reason, which status and the audit trail show to people: at most
/// [`MAX_REASON`] characters; tabs and newlines are allowed, other control characters and
/// invisible formatting characters (a right-to-left override…) are not.
pub fn validate_reason(reason: &str) -> Result<(), FieldError> {
    let bad = |problem: String| FieldError {
        field: "reason".into(),
        problem,
    };
    if reason.chars().count() > MAX_REASON {
        return Err(bad(format!("must be at most {MAX_REASON} characters")));
    }
    match reason
        .chars()
        .find(|c| is_control_or_format(*c) && !matches!(c, '\t' | '\n'))
    {
        Some(c) => Err(bad(format!(
            "contains U+{:04X}; a reason may hold tabs and newlines, but no other control character and no invisible formatting character (U+200B..U+200F, U+202A..U+202E, U+2066..U+2069, …)",
            c as u32
        ))),
        None => Ok(()),
    }
}

/// Parses and validates a config written by a person, returning every problem found.
///
/// Stricter than the types themselves: a field this version does not know is a problem here
/// (the types ignore it so that stored configs from newer versions still fold). Unknown
/// fields are reported alongside a type error or the validation problems, not instead of them.
pub fn parse_service_config(json: &str) -> Result<ServiceConfig, Vec<FieldError>> {
    // One pass over the raw document first: it reports a syntax error with its line and
    // column (and nothing else: the typed pass would only repeat it), and finds the keys
    // written twice, which serde_json would otherwise resolve silently to the last.
    let duplicates = match duplicate_keys(json) {
        Ok(paths) => paths,
        Err(e) => {
            return Err(vec![FieldError {
                field: "(document)".into(),
                problem: json_syntax_problem(&e),
            }])
        }
    };
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let parsed = {
        let mut on_ignored = |path: serde_ignored::Path| unknown.push(segments(&path));
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize::<_, ServiceConfig>(serde_ignored::Deserializer::new(
            de,
            &mut on_ignored,
        ))
    };
    // The fields each object may hold, read off the parsed config (every field serializes),
    // so that an unknown field's problem can list them (sorted) as serde's own error did.
    let known = parsed
        .as_ref()
        .ok()
        .and_then(|config| serde_json::to_value(config).ok());
    let written_twice = !duplicates.is_empty();
    let mut problems: Vec<FieldError> = duplicates
        .into_iter()
        .map(|field| FieldError {
            field,
            problem: "is written more than once in its object; write each key once (JSON readers disagree on which one counts)".into(),
        })
        .collect();
    problems.extend(
        unknown
            .iter()
            .map(|path| unknown_field(path, known.as_ref())),
    );
    let problems = match parsed {
        Err(e) => {
            let path = e.path().to_string();
            let problem = e.into_inner().to_string();
            // serde refuses a struct field written twice by itself; the key walk above has
            // already named it with its full path.
            if !(written_twice && problem.starts_with("duplicate field")) {
                problems.push(FieldError {
                    field: if path == "." {
                        "(document)".into()
                    } else {
                        path
                    },
                    problem,
                });
            }
            problems
        }
        Ok(config) => {
            problems.extend(config.validate());
            if problems.is_empty() {
                return Ok(config);
            }
            problems
        }
    };
    Err(at_most(problems, MAX_PROBLEMS))
}

/// At most this many problems are reported for one config; a body of thousands of bad
/// entries gets a readable answer, not thousands of lines.
pub const MAX_PROBLEMS: usize = 100;

fn at_most(mut problems: Vec<FieldError>, max: usize) -> Vec<FieldError> {
    if problems.len() > max {
        let more = problems.len() - (max - 1);
        problems.truncate(max - 1);
        problems.push(FieldError {
            field: "(document)".into(),
            problem: format!("{more} more problems not shown"),
        });
    }
    problems
}

/// A JSON syntax error for people: what is wrong, at which line and column.
pub fn json_syntax_problem(e: &serde_json::Error) -> String {
    // serde_json's message already ends with "at line L column C".
    format!("invalid JSON: {e}")
}

/// The paths (`env.FOO`, `rollout.alarms[0].name`) of every key written twice in one object
/// of `json`, or the syntax error that stops reading it.
pub fn duplicate_keys(json: &str) -> Result<Vec<String>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_str(json);
    KeyWalk {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// Walks a JSON document without building it, noting keys seen twice in one object.
struct KeyWalk<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyWalk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyWalk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(KeyWalk {
                path: format!("{}[{i}]", self.path),
                found: &mut *self.found,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let path = if self.path.is_empty() {
                shown(&key)
            } else {
                format!("{}.{}", self.path, shown(&key))
            };
            if !seen.insert(key) {
                self.found.push(path.clone());
            }
            map.next_value_seed(KeyWalk {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

/// `text` with control and format characters written as `\u{202e}`, so that a field name
/// echoed back to a person reads as what it is.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_control_or_format(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode general categories Cc (control: NUL, tab, newline, DEL, C1) and Cf (format:
/// the bidirectional overrides and isolates U+202A..202E, U+2066..2069, marks U+200E/F,
/// zero-width characters, the BOM, tag characters…): characters that are invisible or that
/// make text read differently from what it is.
pub fn is_control_or_format(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        GeneralCategory::Control | GeneralCategory::Format
    )
}

/// One step of a path into a config document.
enum Segment {
    Field(String),
    Index(usize),
}

/// The path serde_ignored reports, root first; `Option` and newtype wrappers are not steps
/// a person sees in the document.
fn segments(path: &serde_ignored::Path) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut steps = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            Path::Root => break,
            Path::Seq { parent, index } => {
                steps.push(Segment::Index(*index));
                parent
            }
            Path::Map { parent, key } => {
                steps.push(Segment::Field(key.clone()));
                parent
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => parent,
        };
    }
    steps.reverse();
    steps
}

/// The problem for a field this version does not know, written like the paths `validate`
/// and serde_path_to_error give (`rollout.steps[1]`).
fn unknown_field(path: &[Segment], known: Option<&serde_json::Value>) -> FieldError {
    let mut field = String::new();
    for step in path {
        match step {
            Segment::Field(key) => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Index(i) => field.push_str(&format!("[{i}]")),
        }
    }
    let name = match path.last() {
        Some(Segment::Field(key)) => key.as_str(),
        _ => field.as_str(),
    };
    let mut problem = format!("unknown field `{name}`");
    let siblings = known.and_then(|mut at| {
        for step in path.get(..path.len().saturating_sub(1))? {
            at = match step {
                Segment::Field(key) => at.get(key)?,
                Segment::Index(i) => at.get(i)?,
            };
        }
        at.as_object()
    });
    if let Some(siblings) = siblings {
        let names: Vec<String> = siblings.keys().map(|k| format!("`{k}`")).collect();
        problem.push_str(&format!(", expected one of {}", names.join(", ")));
    }
    FieldError {
        field: if field.is_empty() {
            "(document)".into()
        } else {
            field
        },
        problem,
    }
}

impl ServiceConfig {
    /// Every problem with an already-parsed config.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, problem: String| {
            problems.push(FieldError {
                field: field.to_string(),
                problem,
            })
        };
        let image_ok = !self.image.is_empty()
            && self.image.len() <= 255
            && !self.image.contains(char::is_whitespace)
            && !self.image.rsplit('/').next().unwrap_or("").contains(':')
            && self.image.contains('/');
        // Control and formatting characters are named by the text rule below.
        if !image_ok && !self.image.chars().any(is_control_or_format) {
            bad("image", format!("\"{}\" must be [registry/]account/name (at most 255 characters) with no tag (the release version is the tag)", shown(&self.image)));
        }
        if self.endpoint.load_balancer.name.trim().is_empty() {
            bad(
                "endpoint.load_balancer.name",
                "must name the endpoint's load balancer".into(),
            );
        }
        for (i, name) in self.notify.iter().take(MAX_LIST).enumerate() {
            if !valid_endpoint_name(name) {
                bad(
                    &format!("notify[{i}]"),
                    "an endpoint name takes 1 to 64 lowercase letters, digits, '-', '_' or '.'"
                        .into(),
                );
            } else if self.notify[..i].contains(name) {
                bad(
                    &format!("notify[{i}]"),
                    "names an endpoint already listed".into(),
                );
            }
        }
        if self.notify.len() > MAX_NOTIFY {
            bad("notify", format!("names at most {MAX_NOTIFY} endpoints"));
        }
        for (i, p) in self.port_mappings.iter().take(MAX_LIST).enumerate() {
            if p.container == 0 || p.host == 0 {
                bad(
                    &format!("port_mappings[{i}]"),
                    "ports must be 1 to 65535".into(),
                );
            }
        }
        for (field, keys) in [("env", &self.env), ("secrets", &self.secrets)] {
            for key in keys.keys() {
                if !valid_env_name(key) {
                    bad(
                        &format!("{field}.{}", shown(key)),
                        format!("variable names use 1 to {MAX_ENV_NAME} ASCII letters, digits and _, not starting with a digit"),
                    );
                }
            }
        }
        // No value is ever repeated in these problems: it may be a credential.
        for (name, value) in &self.env {
            if let Some(found) = looks_like_credential(name, value) {
                bad(
                    &format!("env.{}", shown(name)),
                    format!(
                        "looks like {found}; {}",
                        use_a_reference_instead(&shown(name))
                    ),
                );
            }
        }
        for (i, arg) in self.run_args.iter().take(MAX_LIST).enumerate() {
            if let Some(found) = looks_like_credential(arg, arg) {
                bad(
                    &format!("run_args[{i}]"),
                    format!("looks like {found}; pass it as an environment variable named in \"secrets\" instead (the log keeps every config forever)"),
                );
            }
        }
        for (name, arn) in &self.secrets {
            if let Err(why) = parse_secret_ref(arn) {
                bad(&format!("secrets.{}", shown(name)), why);
            }
            if self.env.contains_key(name) {
                bad(
                    &format!("secrets.{}", shown(name)),
                    "is also set in env; a variable comes either from env or from a secret, not both".into(),
                );
            }
        }
        for (i, o) in self.aws.option_settings.iter().take(MAX_LIST).enumerate() {
            let field = format!("aws.option_settings[{i}].value");
            if o.namespace == SECRETS_NAMESPACE {
                if let Err(why) = parse_secret_ref(&o.value) {
                    bad(&field, why);
                }
            } else if let Some(found) = looks_like_credential(&o.option_name, &o.value) {
                let hint = if o.namespace == ENV_NAMESPACE {
                    use_a_reference_instead(&shown(&o.option_name))
                } else {
                    "the log keeps every config forever; keep credentials in AWS Secrets Manager or SSM Parameter Store".to_string()
                };
                bad(&field, format!("looks like {found}; {hint}"));
            }
            if o.namespace == ENV_NAMESPACE && self.secrets.contains_key(&o.option_name) {
                bad(
                    &format!("aws.option_settings[{i}]"),
                    format!("sets {} in {ENV_NAMESPACE}, which secrets also names; a variable comes either from env or from a secret, not both", shown(&o.option_name)),
                );
            }
        }
        let inst = &self.instances;
        if inst.instance_type.trim().is_empty() {
            bad(
                "instances.type",
                "must name an EC2 instance type, e.g. t3.small".into(),
            );
        }
        if inst.min == 0 {
            bad("instances.min", "must be at least 1".into());
        }
        if inst.max < inst.min {
            bad(
                "instances.max",
                format!("must be at least instances.min ({})", inst.min),
            );
        }
        if inst.max > 100 {
            bad("instances.max", "must be at most 100".into());
        }
        if !self.health_check_path.starts_with('/') {
            bad("health_check_path", "must start with /".into());
        }
        let r = &self.rollout;
        if r.steps.is_empty() {
            bad(
                "rollout.steps",
                "must list at least one step, ending with 100".into(),
            );
        }
        for (i, w) in r.steps.windows(2).take(MAX_LIST).enumerate() {
            if w[1] <= w[0] {
                bad(
                    &format!("rollout.steps[{}]", i + 1),
                    format!("must be greater than the step before ({})", w[0]),
                );
            }
        }
        for (i, s) in r.steps.iter().take(MAX_LIST).enumerate() {
            if *s == 0 || *s > 100 {
                bad(
                    &format!("rollout.steps[{i}]"),
                    "must be 1 to 100 percent".into(),
                );
            }
        }
        if r.steps.last().is_some_and(|s| *s != 100) {
            bad(
                &format!("rollout.steps[{}]", r.steps.len() - 1),
                "the last step must be 100".into(),
            );
        }
        if let Some(c) = &r.canary {
            let first = r.steps.first().copied().unwrap_or(100);
            if c.percent == 0 || c.percent >= first {
                bad(
                    "rollout.canary.percent",
                    format!(
                        "must be 1 to {} (below the first step)",
                        first.saturating_sub(1)
                    ),
                );
            }
        }
        if r.progress_deadline.0 < Duration::from_secs(5) {
            bad("rollout.progress_deadline", "must be at least 5s".into());
        }
        for (i, a) in r.alarms.iter().take(MAX_LIST).enumerate() {
            if a.trim().is_empty() || a.len() > 255 {
                bad(
                    &format!("rollout.alarms[{i}]"),
                    "must be a CloudWatch alarm name (1 to 255 characters)".into(),
                );
            }
        }
        if let Some(url) = &self.endpoint.url {
            let absolute = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !absolute {
                bad(
                    "endpoint.url",
                    format!(
                        "\"{}\" is not an absolute http:// or https:// URL (e.g. https://hello.example.com)",
                        shown(url)
                    ),
                );
            }
        }
        let size = environment_properties_bytes(self);
        if size > ENV_PROPERTIES_MAX_BYTES {
            bad(
                "env",
                format!("the environment variables take {size} bytes as NAME=value (with aws.option_settings in {ENV_NAMESPACE}); Elastic Beanstalk allows {ENV_PROPERTIES_MAX_BYTES} in all"),
            );
        }
        if let Some(role) = &self.aws.role_arn {
            if !role.starts_with("arn:aws") || !role.contains(":role/") {
                bad(
                    "aws.role_arn",
                    format!("{role:?} must be an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME"),
                );
            }
        }
        for (field, len) in [
            ("port_mappings", self.port_mappings.len()),
            ("run_args", self.run_args.len()),
            ("rollout.steps", r.steps.len()),
            ("rollout.alarms", r.alarms.len()),
            ("aws.option_settings", self.aws.option_settings.len()),
            ("secrets", self.secrets.len()),
        ] {
            if len > MAX_LIST {
                let why = if field == "rollout.alarms" {
                    " (CloudWatch's DescribeAlarms takes 100 names per call)"
                } else {
                    ""
                };
                bad(
                    field,
                    format!("has {len} entries; at most {MAX_LIST} are allowed{why}"),
                );
            }
        }
        if let Ok(document) = serde_json::to_value(self) {
            let mut path = String::new();
            text_problems(&document, &mut path, &mut problems);
        }
        problems
    }
}

/// The longest list a config may hold in any field (ports, run arguments, steps, alarms,
/// option settings). Alarms are named in one CloudWatch `DescribeAlarms` call, which takes up
/// to 100 names; traffic steps strictly increase within 1..=100, so 100 is their most too.
pub const MAX_LIST: usize = 100;

/// Elastic Beanstalk's limit on an environment's properties, counted as `NAME=value`
/// (<https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/eb3-setenv.html>: "the total size
/// of all properties cannot exceed 4096 bytes"). One rule on every cloud, so that a config
/// saved against the simulator can also run on AWS.
pub const ENV_PROPERTIES_MAX_BYTES: usize = 4096;

/// The option namespace of Elastic Beanstalk's environment properties: `env` goes there, and
/// `aws.option_settings` may add to it (and override `env`, being applied after it).
pub const ENV_NAMESPACE: &str = "aws:elasticbeanstalk:application:environment";

/// Elastic Beanstalk's longest environment property name.
pub const MAX_ENV_NAME: usize = 128;

/// An environment variable's name, in `env` or `secrets`: 1 to [`MAX_ENV_NAME`] ASCII letters,
/// digits and `_`, not starting with a digit.
pub fn valid_env_name(name: &str) -> bool {
    (1..=MAX_ENV_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The size Elastic Beanstalk counts against [`ENV_PROPERTIES_MAX_BYTES`]: each environment
/// property as `NAME=value`, from `env` and the `aws.option_settings` in [`ENV_NAMESPACE`]
/// (a name set in both counts once, with the option setting's value).
pub fn environment_properties_bytes(config: &ServiceConfig) -> usize {
    let mut properties: BTreeMap<&str, &str> = config
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for o in &config.aws.option_settings {
        if o.namespace == ENV_NAMESPACE {
            properties.insert(&o.option_name, &o.value);
        }
    }
    properties
        .iter()
        .map(|(name, value)| name.len() + 1 + value.len())
        .sum()
}

/// Every string in the config (`document` is its JSON form, so new fields are covered too)
/// holding a control or invisible formatting character: these make what a person reads in a
/// config, a status or an audit row differ from what runs. Tabs are allowed in env values and
/// option setting values only. Lists longer than [`MAX_LIST`] are already refused whole.
fn text_problems(document: &serde_json::Value, path: &mut String, out: &mut Vec<FieldError>) {
    use serde_json::Value;
    match document {
        Value::String(text) => {
            let env_value = path.starts_with("env.")
                || (path.starts_with("aws.option_settings[") && path.ends_with("].value"));
            let found = text
                .chars()
                .find(|c| is_control_or_format(*c) && !(env_value && *c == '\t'));
            let Some(c) = found else { return };
            let what = if c.is_control() {
                "a control character"
            } else {
                "an invisible formatting character, such as a right-to-left override"
            };
            let rule = if env_value {
                "values may hold tabs, but no other control character (NUL, newline, carriage return, …) and no invisible formatting character (U+200B..U+200F, U+202A..U+202E, U+2066..U+2069, …)"
            } else if path.starts_with("run_args[") {
                "each argument must be one line: no newline or other control character, and no invisible formatting character"
            } else {
                "text here may hold no control character (newline, tab, NUL, …) and no invisible formatting character (U+200B..U+200F, U+202A..U+202E, U+2066..U+2069, …)"
            };
            out.push(FieldError {
                field: path.clone(),
                problem: format!("contains U+{:04X}, {what}; {rule}", c as u32),
            });
        }
        Value::Array(items) if items.len() <= MAX_LIST => {
            let len = path.len();
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                text_problems(item, path, out);
                path.truncate(len);
            }
        }
        Value::Object(fields) => {
            let len = path.len();
            for (key, value) in fields {
                if len > 0 {
                    path.push('.');
                }
                path.push_str(&shown(key));
                text_problems(value, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/hello.json");

    #[test]
    fn the_example_config_is_valid() {
        let config = parse_service_config(EXAMPLE).expect("examples/hello.json is valid");
        assert_eq!(config.rollout.steps.last(), Some(&100));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut config = parse_service_config(EXAMPLE).unwrap();
        config.image = "nginx:1.2".into();
        config.instances.min = 0;
        config.rollout.steps = vec![50, 25, 90];
        config.rollout.alarms = vec!["".into()];
        let problems = config.validate();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for want in [
            "image",
            "instances.min",
            "rollout.steps[1]",
            "rollout.steps[2]",
            "rollout.alarms[0]",
        ] {
            assert!(fields.contains(&want), "{want} missing from {problems:?}");
        }
    }

    #[test]
    fn parse_errors_name_the_path() {
        let broken = EXAMPLE.replace("\"min\": 2", "\"min\": \"two\"");
        let problems = parse_service_config(&broken).unwrap_err();
        assert_eq!(problems[0].field, "instances.min", "{problems:?}");
        let unknown = EXAMPLE.replace("\"image\"", "\"imag\"");
        let problems = parse_service_config(&unknown).unwrap_err();
        assert!(problems[0].problem.contains("imag"), "{problems:?}");
    }

    /// A config from a newer version: fields this one does not know, at the top, in a nested
    /// object, in an array element and inside an optional object.
    fn with_future_fields() -> String {
        EXAMPLE
            .replacen('{', "{ \"future_setting\": 3,", 1)
            .replace("\"steps\"", "\"future_setting\": { \"a\": [1] }, \"steps\"")
            .replace("\"host\": 80", "\"host\": 80, \"protocol\": \"udp\"")
            .replace(
                "\"percent\": 10",
                "\"percent\": 10, \"future_setting\": null",
            )
    }

    #[test]
    fn stored_configs_with_unknown_fields_still_decode() {
        let stored: ServiceConfig =
            serde_json::from_str(&with_future_fields()).expect("unknown fields are ignored");
        assert_eq!(Ok(stored), parse_service_config(EXAMPLE));
    }

    #[test]
    fn a_person_s_config_names_every_unknown_field_and_every_other_problem() {
        let config = with_future_fields().replace("\"min\": 2", "\"min\": 0");
        let problems = parse_service_config(&config).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "future_setting",
                "port_mappings[0].protocol",
                "rollout.canary.future_setting",
                "rollout.future_setting",
                "instances.min",
            ],
            "{problems:?}"
        );
        assert!(
            problems[3]
                .problem
                .starts_with("unknown field `future_setting`, expected one of `alarms`, `canary`,"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_misspelt_field_is_named_beside_the_missing_one() {
        let problems = parse_service_config(&EXAMPLE.replace("\"image\"", "\"imag\"")).unwrap_err();
        let found: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.problem.as_str()))
            .collect();
        assert_eq!(found[0], ("imag", "unknown field `imag`"), "{problems:?}");
        assert_eq!(found[1].0, "(document)", "{problems:?}");
        assert!(found[1].1.contains("missing field `image`"), "{problems:?}");
    }

    /// The fields `parse_service_config` names for `json`, or none when it is accepted.
    fn refused(json: &str) -> Vec<String> {
        match parse_service_config(json) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| p.field).collect(),
        }
    }

    /// `text` as a JSON string.
    fn json(text: &str) -> String {
        serde_json::to_string(text).expect("a string serializes")
    }

    fn problem_of(json: &str, field: &str) -> String {
        let problems = parse_service_config(json).expect_err("refused");
        problems
            .into_iter()
            .find(|p| p.field == field)
            .map(|p| p.problem)
            .unwrap_or_else(|| panic!("no problem for {field}"))
    }

    #[test]
    fn a_key_written_twice_is_refused_naming_its_path() {
        let twice = EXAMPLE.replace(
            "\"GREETING\": \"hello\"",
            "\"GREETING\": \"hello\", \"GREETING\": \"bye\"",
        );
        assert_eq!(refused(&twice), ["env.GREETING"]);
        assert!(problem_of(&twice, "env.GREETING").contains("more than once"));
        let nested = EXAMPLE.replace("\"min\": 2", "\"min\": 2, \"min\": 3");
        assert_eq!(refused(&nested), ["instances.min"]);
        let in_a_list = EXAMPLE.replace("\"host\": 80", "\"host\": 80, \"host\": 81");
        assert_eq!(refused(&in_a_list), ["port_mappings[0].host"]);
        let top = EXAMPLE.replacen('{', "{ \"image\": \"example/other\",", 1);
        assert_eq!(refused(&top), ["image"]);
    }

    #[test]
    fn stored_configs_keep_decoding_whatever_the_new_rules_refuse() {
        let stored = EXAMPLE
            .replace("\"GREETING\": \"hello\"", "\"A\": \"1\", \"A\": \"2\"")
            .replace("example/hello", "example/hel\\u202elo")
            .replace("https://hello.example.com", "not a url");
        assert!(parse_service_config(&stored).is_err());
        let config: ServiceConfig = serde_json::from_str(&stored).expect("still decodes");
        assert_eq!(config.env["A"], "2");
    }

    #[test]
    fn invalid_json_names_its_line_and_column() {
        let broken = EXAMPLE.replace("\"min\": 2,", "\"min\": 2,,");
        let problems = parse_service_config(&broken).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "(document)");
        assert!(
            problems[0].problem.contains("line 10 column"),
            "{problems:?}"
        );
        let problems = parse_service_config("{ not json").unwrap_err();
        assert_eq!(problems[0].field, "(document)", "{problems:?}");
        assert!(
            problems[0].problem.contains("line 1 column 3"),
            "{problems:?}"
        );
    }

    #[test]
    fn control_and_bidi_characters_are_refused_in_text_people_read() {
        for c in [
            '\u{202e}', '\u{200f}', '\u{2066}', '\u{2069}', '\u{200b}', '\0', '\n',
        ] {
            let image = EXAMPLE.replace("\"example/hello\"", &json(&format!("example/hel{c}lo")));
            assert_eq!(refused(&image), ["image"], "{c:?}");
            let alarm = EXAMPLE.replace("\"hello-5xx\"", &json(&format!("hello{c}-5xx")));
            assert_eq!(refused(&alarm), ["rollout.alarms[0]"], "{c:?}");
            let key = EXAMPLE.replace("\"GREETING\"", &json(&format!("GREE{c}TING")));
            let fields = refused(&key);
            assert_eq!(fields.len(), 1, "{c:?}: {fields:?}");
            assert!(fields[0].starts_with("env.GREE\\u{"), "{fields:?}");
            assert!(!fields[0].contains(c), "the field is shown escaped");
        }
        assert!(problem_of(
            &EXAMPLE.replace("example/hello", "example/hel\u{202e}lo"),
            "image"
        )
        .contains("U+202E"));
        assert!(validate_version("v1\u{202e}").is_err());
    }

    #[test]
    fn env_values_may_hold_tabs_but_no_other_control_character() {
        let with = |value: &str| EXAMPLE.replace("\"hello\" }", &format!("{} }}", json(value)));
        assert!(refused(&with("a\tb")).is_empty());
        for bad in ["a\0b", "a\nb", "a\rb", "a\u{7f}", "a\u{202e}b"] {
            assert_eq!(refused(&with(bad)), ["env.GREETING"], "{bad:?}");
        }
        assert!(problem_of(&with("a\0b"), "env.GREETING").contains("may hold tabs"));
        let long_key = EXAMPLE.replace("GREETING", &"G".repeat(129));
        assert_eq!(refused(&long_key).len(), 1);
    }

    #[test]
    fn run_args_are_one_line_each() {
        let newline = EXAMPLE.replace("--log-format=json", "--log-format=json\\n--privileged");
        assert_eq!(refused(&newline), ["run_args[0]"]);
        assert!(problem_of(&newline, "run_args[0]").contains("one line"));
    }

    #[test]
    fn the_endpoint_url_is_an_absolute_http_url() {
        for bad in [
            "not a url",
            "/relative",
            "ftp://hello.example.com",
            "https://",
        ] {
            let config = EXAMPLE.replace("https://hello.example.com", bad);
            assert_eq!(refused(&config), ["endpoint.url"], "{bad}");
        }
        let http = EXAMPLE.replace(
            "https://hello.example.com",
            "http://hello.example.com:8080/x",
        );
        assert!(refused(&http).is_empty());
    }

    #[test]
    fn lists_are_capped_naming_the_field_and_the_limit() {
        let names: Vec<String> = (0..10_000).map(|i| format!("\"alarm-{i}\"")).collect();
        let many = EXAMPLE.replace("\"hello-5xx\"", &names.join(", "));
        assert_eq!(refused(&many), ["rollout.alarms"]);
        assert!(problem_of(&many, "rollout.alarms").contains("at most 100"));
        let hundred: Vec<String> = (0..100).map(|i| format!("\"alarm-{i}\"")).collect();
        assert!(refused(&EXAMPLE.replace("\"hello-5xx\"", &hundred.join(", "))).is_empty());
        let args: Vec<String> = (0..101).map(|i| format!("\"--a{i}\"")).collect();
        let many_args = EXAMPLE.replace("\"--log-format=json\"", &args.join(", "));
        assert_eq!(refused(&many_args), ["run_args"]);
        // Thousands of bad entries give a readable answer.
        let bad_alarms: Vec<&str> = vec!["\"\""; 10_000];
        let problems =
            parse_service_config(&EXAMPLE.replace("\"hello-5xx\"", &bad_alarms.join(",")))
                .unwrap_err();
        assert!(problems.len() <= MAX_PROBLEMS, "{}", problems.len());
    }

    #[test]
    fn environment_variables_fit_elastic_beanstalk_s_4096_bytes_on_every_cloud() {
        let with = |value: &str| {
            EXAMPLE.replace(
                "\"GREETING\": \"hello\"",
                &format!("\"BIG\": {}", json(value)),
            )
        };
        assert!(
            refused(&with(&"x".repeat(4092))).is_empty(),
            "BIG=<4092> is 4096"
        );
        assert_eq!(refused(&with(&"x".repeat(4093))), ["env"]);
        assert_eq!(refused(&with(&"x".repeat(5000))), ["env"]);
        // Environment properties set through option settings count too.
        let mut config = parse_service_config(&with(&"x".repeat(4000))).unwrap();
        config.aws.option_settings.push(OptionSetting {
            namespace: ENV_NAMESPACE.into(),
            option_name: "MORE".into(),
            value: "y".repeat(200),
        });
        let fields: Vec<String> = config.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["env"]);
    }

    const DB_SECRET: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:hello/db-AbCd12";

    /// The example with `secrets` beside `env` (a JSON object literal's text).
    fn with_secrets(secrets: &str) -> String {
        EXAMPLE.replace(
            "\"run_args\"",
            &format!("\"secrets\": {secrets},\n  \"run_args\""),
        )
    }

    #[test]
    fn secrets_are_references_by_variable_name() {
        let config = parse_service_config(&with_secrets(&format!(
            "{{ \"DB_PASSWORD\": {}, \"API_KEY\": \"arn:aws:ssm:us-east-1:111122223333:parameter/hello/api-key\" }}",
            json(DB_SECRET)
        )))
        .expect("valid references");
        assert_eq!(config.secrets["DB_PASSWORD"], DB_SECRET);
        assert_eq!(config.secrets.len(), 2);
        for (secrets, field) in [
            ("{ \"DB_PASSWORD\": \"hunter2\" }", "secrets.DB_PASSWORD"),
            (
                "{ \"DB\": \"arn:aws:secretsmanager:us-east-1:111122223333:secret:hello/db\" }",
                "secrets.DB",
            ),
            (
                &format!("{{ \"1DB\": {} }}", json(DB_SECRET)),
                "secrets.1DB",
            ),
            (
                &format!("{{ \"GREETING\": {} }}", json(DB_SECRET)),
                "secrets.GREETING",
            ),
        ] {
            assert_eq!(refused(&with_secrets(secrets)), [field], "{secrets}");
        }
        assert!(problem_of(
            &with_secrets("{ \"GREETING\": \"arn:aws:ssm:us-east-1:111122223333:parameter/g\" }"),
            "secrets.GREETING"
        )
        .contains("also set in env"));
        let many: Vec<String> = (0..101)
            .map(|i| format!("\"S{i}\": {}", json(DB_SECRET)))
            .collect();
        assert_eq!(
            refused(&with_secrets(&format!("{{ {} }}", many.join(", ")))),
            ["secrets"]
        );
    }

    #[test]
    fn a_config_without_secrets_stores_as_it_did() {
        let config = parse_service_config(EXAMPLE).unwrap();
        let stored = serde_json::to_value(&config).unwrap();
        assert!(stored.get("secrets").is_none(), "{stored}");
        assert!(stored.get("notify").is_none(), "{stored}");
    }

    #[test]
    fn notify_names_endpoints_once_each_and_well_formed() {
        let with = |notify: &str| {
            let text = EXAMPLE.replacen('{', &format!("{{ \"notify\": {notify},"), 1);
            match parse_service_config(&text) {
                Ok(_) => Vec::new(),
                Err(problems) => problems.into_iter().map(|p| p.field).collect::<Vec<_>>(),
            }
        };
        assert!(with(r#"["payments-slack", "ops"]"#).is_empty());
        assert_eq!(with(r#"["Payments"]"#), ["notify[0]"]);
        assert_eq!(with(r#"["ops", "ops"]"#), ["notify[1]"]);
        let many: Vec<String> = (0..=MAX_NOTIFY).map(|i| format!("\"e{i}\"")).collect();
        assert_eq!(with(&format!("[{}]", many.join(","))), ["notify"]);
    }

    #[test]
    fn credential_looking_values_are_refused_naming_the_field_without_the_value() {
        let key = "AKIAIOSFODNN7EXAMPLE";
        let in_env = EXAMPLE.replace("\"hello\" }", &format!("{} }}", json(key)));
        assert_eq!(refused(&in_env), ["env.GREETING"]);
        let problem = problem_of(&in_env, "env.GREETING");
        assert!(problem.contains("AWS access key id"), "{problem}");
        assert!(problem.contains("\"secrets\": {\"GREETING\""), "{problem}");
        assert!(!problem.contains(key), "{problem}");
        let in_args = EXAMPLE.replace("--log-format=json", &format!("--token={key}"));
        assert_eq!(refused(&in_args), ["run_args[0]"]);
        let mut config = parse_service_config(EXAMPLE).unwrap();
        config.aws.option_settings = vec![
            OptionSetting {
                namespace: ENV_NAMESPACE.into(),
                option_name: "TOKEN".into(),
                value: "ghp_0123456789abcdefghijABCDEFGHIJ012345".into(),
            },
            OptionSetting {
                namespace: SECRETS_NAMESPACE.into(),
                option_name: "DB".into(),
                value: "not-an-arn".into(),
            },
            OptionSetting {
                namespace: SECRETS_NAMESPACE.into(),
                option_name: "OK".into(),
                value: DB_SECRET.into(),
            },
        ];
        let fields: Vec<String> = config.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "aws.option_settings[0].value",
                "aws.option_settings[1].value"
            ]
        );
    }

    #[test]
    fn stored_configs_with_credentials_or_bad_references_still_decode() {
        let stored = with_secrets("{ \"DB\": \"hunter2\" }")
            .replace("\"hello\" }", "\"AKIAIOSFODNN7EXAMPLE\" }");
        assert!(parse_service_config(&stored).is_err());
        let config: ServiceConfig = serde_json::from_str(&stored).expect("still decodes");
        assert_eq!(config.secrets["DB"], "hunter2");
    }

    #[test]
    fn durations_parse_and_print() {
        for (text, secs) in [
            ("0s", 0),
            ("90s", 90),
            ("5m", 300),
            ("1h30m", 5400),
            ("2h", 7200),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "5", "m", "1d", "1.5s", "-1s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            HumanDuration(Duration::from_secs(5430)).to_string(),
            "1h30m30s"
        );
    }

    #[test]
    fn reasons_are_text_people_can_read_as_written() {
        assert!(validate_reason("bad deploy\n\tsee INC-42").is_ok());
        for bad in ["a\u{202e}b", "a\0b", "a\rb", "\u{2066}x"] {
            assert_eq!(
                validate_reason(bad).map_err(|e| e.field),
                Err("reason".into()),
                "{bad:?}"
            );
        }
        assert!(validate_reason(&"é".repeat(MAX_REASON)).is_ok());
        assert!(validate_reason(&"x".repeat(MAX_REASON + 1)).is_err());
    }

    #[test]
    fn names_and_versions() {
        assert!(validate_service_name("hello").is_ok());
        for bad in ["", "a", "Hello", "1abc", "abc-", "a_b", &"x".repeat(24)] {
            assert!(validate_service_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_version("v1.2.3-rc_1").is_ok());
        for bad in ["", "-v1", "v 1", "v/1", &"1".repeat(41)] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
    }
}

// `Pause` and `HumanDuration` are written by hand as strings (see their serde impls), so their
// schemas are too: the pattern is what `parse_duration` accepts.
#[cfg(feature = "openapi")]
mod schemas {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    const DURATION: &str = "^([0-9]+[hms])+$";

    impl utoipa::PartialSchema for super::HumanDuration {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(DURATION))
                .description(Some(
                    "a duration in whole seconds: \"90s\", \"5m\", \"1h30m\"",
                ))
                .into()
        }
    }
    impl utoipa::ToSchema for super::HumanDuration {}

    impl utoipa::PartialSchema for super::Pause {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^(until_promoted|([0-9]+[hms])+)$"))
                .description(Some("a duration (\"30s\", \"5m\") or \"until_promoted\""))
                .into()
        }
    }
    impl utoipa::ToSchema for super::Pause {}
}
