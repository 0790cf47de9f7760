//! A config checked against Elastic Beanstalk itself when it is saved (`Cloud::validate_config`):
//! the solution stack must be one EB offers (`ListAvailableSolutionStacks`) and a Docker one,
//! and every option setting the driver would send must be one EB describes for that stack, with
//! a value its description allows (`DescribeConfigurationOptions`). Each problem names the
//! config field it comes from.
//!
//! Why not `ValidateConfigurationSettings`: it checks settings against an existing application
//! *and* a configuration template or environment. At save time the service's application may not
//! exist yet (the first release creates it), and making a template just to check a config would
//! leave things behind in the account. `DescribeConfigurationOptions` on the solution stack
//! answers the same questions (which namespaces and names exist, which values they take) without
//! creating anything, and its answer depends only on (region, stack), so it is cached.
//!
//! The whole stack is described once (no `Options` filter) rather than only the options a config
//! sets: one cached answer then serves every config on that stack, and an option EB does not
//! know is simply absent from it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_elasticbeanstalk::types::{
    ConfigurationOptionDescription, ConfigurationOptionValueType,
};
use ionroller_shared::cloud::CloudError;
use ionroller_shared::config::{FieldError, ServiceConfig};

use crate::clients::Clients;
use crate::error::classify;
use crate::spec::{option_settings, DEFAULT_SOLUTION_STACK};
use crate::state::DriverState;

/// How long EB's answers are reused: stacks and their options change with platform releases
/// (weeks apart), and a config save should not cost two API calls every time.
pub const CACHE_FOR: Duration = Duration::from_secs(5 * 60);

/// Namespaces whose option names are the user's own (environment properties, secrets, static
/// file paths): EB describes none of them for a stack, so only the namespace is checked.
pub const FREE_FORM_NAMESPACES: &[&str] = &[
    "aws:elasticbeanstalk:application:environment",
    "aws:elasticbeanstalk:application:environmentsecrets",
    "aws:elasticbeanstalk:environment:proxy:staticfiles",
];

/// One option as EB describes it (a `ConfigurationOptionDescription`), reduced to what a
/// value is checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptionSpec {
    pub namespace: String,
    pub name: String,
    /// `List`: the value is comma-separated items, each checked.
    pub list: bool,
    /// `ValueOptions`: if not empty, the value (or each item) must be one of these.
    pub values: Vec<String>,
    pub min: Option<i32>,
    pub max: Option<i32>,
    pub max_length: Option<i32>,
    /// `Regex`: (pattern, label); the whole value must match.
    pub regex: Option<(String, String)>,
}

impl OptionSpec {
    fn from_sdk(d: &ConfigurationOptionDescription) -> Option<OptionSpec> {
        Some(OptionSpec {
            namespace: d.namespace()?.to_string(),
            name: d.name()?.to_string(),
            list: d.value_type() == Some(&ConfigurationOptionValueType::List),
            values: d.value_options().to_vec(),
            min: d.min_value(),
            max: d.max_value(),
            max_length: d.max_length(),
            regex: d.regex().and_then(|r| {
                Some((
                    r.pattern()?.to_string(),
                    r.label().unwrap_or("the pattern").to_string(),
                ))
            }),
        })
    }
}

/// EB's answers, per region (stacks) and per (region, stack) (options), each for [`CACHE_FOR`].
#[derive(Default)]
pub struct ValidationCache {
    /// Region → the solution stacks EB offers there.
    stacks: Cached<String, Vec<String>>,
    /// (region, stack) → EB's description of the stack's options.
    options: Cached<(String, String), Vec<OptionSpec>>,
}

/// Answers and when they were fetched.
type Cached<K, V> = Mutex<HashMap<K, (Instant, Arc<V>)>>;

fn cached<K: std::hash::Hash + Eq, V>(map: &Cached<K, V>, key: &K) -> Option<Arc<V>> {
    let map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.get(key)
        .filter(|(at, _)| at.elapsed() < CACHE_FOR)
        .map(|(_, v)| v.clone())
}

fn remember<K: std::hash::Hash + Eq, V>(map: &Cached<K, V>, key: K, value: Arc<V>) {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.insert(key, (Instant::now(), value));
}

/// Checks `config` against EB in the clients' region. `Err` only when EB could not be asked.
pub async fn validate(
    state: &DriverState,
    cache: &ValidationCache,
    clients: &Clients,
    config: &ServiceConfig,
) -> Result<Vec<FieldError>, CloudError> {
    let region = clients
        .eb
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let offered = match cached(&cache.stacks, &region) {
        Some(stacks) => stacks,
        None => {
            state.call(clients, "ListAvailableSolutionStacks").await;
            let out = clients
                .eb
                .list_available_solution_stacks()
                .send()
                .await
                .map_err(|e| classify("ListAvailableSolutionStacks", e))?;
            let stacks = Arc::new(out.solution_stacks().to_vec());
            remember(&cache.stacks, region.clone(), stacks.clone());
            stacks
        }
    };
    let mut problems = Vec::new();
    // Options are checked against the config's stack, or, when EB refuses that, against the
    // stack it is told to use instead, so that every problem is reported at once.
    let stack = match check_stack(config, &offered) {
        Ok(stack) => Some(stack.to_string()),
        Err(problem) => {
            problems.push(problem);
            newest_docker_stack(&offered).map(str::to_string)
        }
    };
    let Some(stack) = stack else {
        return Ok(problems);
    };
    let key = (region, stack);
    let described = match cached(&cache.options, &key) {
        Some(options) => options,
        None => {
            state.call(clients, "DescribeConfigurationOptions").await;
            let out = clients
                .eb
                .describe_configuration_options()
                .solution_stack_name(&key.1)
                .send()
                .await
                .map_err(|e| classify("DescribeConfigurationOptions", e))?;
            let options = Arc::new(
                out.options()
                    .iter()
                    .filter_map(OptionSpec::from_sdk)
                    .collect::<Vec<_>>(),
            );
            remember(&cache.options, key.clone(), options.clone());
            options
        }
    };
    problems.extend(check_options(config, &key.1, &described));
    Ok(problems)
}

/// The config's solution stack (or the driver's default), if EB offers it and it runs Docker;
/// else the problem, naming `aws.solution_stack` and the newest Docker stack EB offers.
pub fn check_stack<'a>(
    config: &'a ServiceConfig,
    offered: &[String],
) -> Result<&'a str, FieldError> {
    let named = config.aws.solution_stack.as_deref();
    let stack = named.unwrap_or(DEFAULT_SOLUTION_STACK);
    let instead = match newest_docker_stack(offered) {
        Some(newest) => format!("use \"{newest}\", the newest Docker stack it offers"),
        None => "it offers no Docker stack in this region".to_string(),
    };
    let problem = if !offered.iter().any(|s| s == stack) {
        match named {
            Some(_) => format!("Elastic Beanstalk does not offer the solution stack \"{stack}\" (retired, or misspelt); {instead}"),
            None => format!("unset, so the default \"{stack}\" would be used, which Elastic Beanstalk no longer offers; {instead}"),
        }
    } else if !is_docker(stack) {
        format!("\"{stack}\" does not run Docker, and ionroller deploys Docker images; {instead}")
    } else {
        return Ok(stack);
    };
    Err(FieldError {
        field: "aws.solution_stack".into(),
        problem,
    })
}

/// A single-container Docker stack (what a v1 Dockerrun bundle needs): "... running Docker".
fn is_docker(stack: &str) -> bool {
    stack.ends_with(" running Docker")
}

/// The newest Docker stack of those offered: by the numbers in its name ("Amazon Linux 2023"
/// after "Amazon Linux 2", then v4.6.0 after v4.2.0); among equals, the first listed (EB lists
/// newest first).
pub fn newest_docker_stack(offered: &[String]) -> Option<&str> {
    fn key(stack: &str) -> Vec<u64> {
        stack
            .split_whitespace()
            .filter(|word| *word != "64bit")
            .flat_map(|word| word.trim_start_matches('v').split('.'))
            .filter_map(|part| part.parse::<u64>().ok())
            .collect()
    }
    let mut best: Option<&str> = None;
    for stack in offered.iter().filter(|s| is_docker(s)) {
        if best.is_none_or(|b| key(stack) > key(b)) {
            best = Some(stack);
        }
    }
    best
}

/// Every option setting the driver would send for `config` (see [`option_settings`]) checked
/// against EB's description of `stack`'s options, each problem naming the config field the
/// setting comes from.
pub fn check_options(
    config: &ServiceConfig,
    stack: &str,
    described: &[OptionSpec],
) -> Vec<FieldError> {
    let mut by_namespace: HashMap<&str, HashMap<&str, &OptionSpec>> = HashMap::new();
    for spec in described {
        by_namespace
            .entry(spec.namespace.as_str())
            .or_default()
            .insert(spec.name.as_str(), spec);
    }
    let mut problems = Vec::new();
    for (field, (namespace, name, value)) in settings_by_field(config) {
        let problem = if FREE_FORM_NAMESPACES.contains(&namespace.as_str()) {
            None
        } else if let Some(names) = by_namespace.get(namespace.as_str()) {
            match names.get(name.as_str()) {
                Some(spec) => value_problem(spec, &value),
                None => {
                    let known: BTreeSet<&str> = names.keys().copied().collect();
                    Some(format!(
                        "Elastic Beanstalk has no option \"{name}\" in namespace \"{namespace}\"; it has {}",
                        known.into_iter().collect::<Vec<_>>().join(", ")
                    ))
                }
            }
        } else {
            let known: BTreeSet<&str> = by_namespace
                .keys()
                .copied()
                .chain(FREE_FORM_NAMESPACES.iter().copied())
                .collect();
            Some(format!(
                "Elastic Beanstalk has no option namespace \"{namespace}\" for \"{stack}\"; its namespaces are {}",
                known.into_iter().collect::<Vec<_>>().join(", ")
            ))
        };
        if let Some(problem) = problem {
            problems.push(FieldError { field, problem });
        }
    }
    problems
}

/// The settings [`option_settings`] makes, each with the config field it comes from: a raw
/// `aws.option_settings[i]` where one names the option (it wins), else the field the driver
/// derives it from. Environment variables are left out (their namespace is free-form, and their
/// size is `spec::check_config`'s).
fn settings_by_field(config: &ServiceConfig) -> Vec<(String, (String, String, String))> {
    let derived = [
        (
            "aws:autoscaling:launchconfiguration",
            "InstanceType",
            "instances.type",
        ),
        ("aws:autoscaling:asg", "MinSize", "instances.min"),
        ("aws:autoscaling:asg", "MaxSize", "instances.max"),
        (
            "aws:elasticbeanstalk:application",
            "Application Healthcheck URL",
            "health_check_path",
        ),
    ];
    let raw = &config.aws.option_settings;
    let mut out = Vec::new();
    for (namespace, name, value) in option_settings(config) {
        let overridden = raw
            .iter()
            .any(|o| o.namespace == namespace && o.option_name == name);
        if let Some((_, _, field)) = derived
            .iter()
            .find(|(ns, n, _)| *ns == namespace && *n == name)
        {
            if !overridden {
                out.push((field.to_string(), (namespace, name, value)));
            }
        }
    }
    for (i, o) in raw.iter().enumerate() {
        out.push((
            format!("aws.option_settings[{i}]"),
            (o.namespace.clone(), o.option_name.clone(), o.value.clone()),
        ));
    }
    out
}

/// Why `value` breaks `spec`, or `None`. `MinValue`/`MaxValue` are taken as inclusive bounds
/// (EB's own `MinSize` has `MinValue` 1 and accepts 1, whatever the reference's "greater than"
/// says); a pattern EB gives that this regex engine cannot read is left to EB's own check at
/// launch.
pub fn value_problem(spec: &OptionSpec, value: &str) -> Option<String> {
    let what = format!("{} {}", spec.namespace, spec.name);
    if !spec.values.is_empty() && !value.is_empty() {
        let items: Vec<&str> = if spec.list {
            value.split(',').map(str::trim).collect()
        } else {
            vec![value]
        };
        if let Some(bad) = items.iter().find(|v| !spec.values.iter().any(|a| a == *v)) {
            return Some(not_one_of(&what, bad, &spec.values));
        }
    }
    if spec.min.is_some() || spec.max.is_some() {
        let range = match (spec.min, spec.max) {
            (Some(lo), Some(hi)) => format!("from {lo} to {hi}"),
            (Some(lo), None) => format!("of at least {lo}"),
            (None, Some(hi)) => format!("of at most {hi}"),
            (None, None) => String::new(),
        };
        let ok = value.parse::<i64>().is_ok_and(|n| {
            spec.min.is_none_or(|lo| n >= i64::from(lo))
                && spec.max.is_none_or(|hi| n <= i64::from(hi))
        });
        if !ok {
            return Some(format!(
                "{value:?}: Elastic Beanstalk takes an integer {range} for {what}"
            ));
        }
    }
    if let Some(max) = spec.max_length {
        if value.chars().count() > usize::try_from(max).unwrap_or(0) {
            return Some(format!(
                "{what} takes at most {max} characters; this value has {}",
                value.chars().count()
            ));
        }
    }
    if let Some((pattern, label)) = &spec.regex {
        if !value.is_empty() {
            if let Ok(re) = regex_lite::Regex::new(&format!("^(?:{pattern})$")) {
                if !re.is_match(value) {
                    return Some(format!(
                        "{value:?}: {what} must be {label} (pattern {pattern})"
                    ));
                }
            }
        }
    }
    None
}

/// "not one of" with what is allowed: the value meant, if only its spelling is off ("t3 small"
/// for "t3.small"), and the allowed values that start alike (all of them if none does), at most
/// a dozen.
fn not_one_of(what: &str, value: &str, allowed: &[String]) -> String {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let mut text = format!("{value:?} is not a value Elastic Beanstalk offers for {what}");
    if let Some(meant) = allowed.iter().find(|a| squash(a) == squash(value)) {
        text.push_str(&format!("; did you mean {meant:?}?"));
        return text;
    }
    let start: String = squash(value).chars().take(2).collect();
    let alike: Vec<&String> = allowed
        .iter()
        .filter(|a| !start.is_empty() && squash(a).starts_with(&start))
        .collect();
    let shown: Vec<&String> = if alike.is_empty() {
        allowed.iter().collect()
    } else {
        alike
    };
    let list: Vec<&str> = shown.iter().take(12).map(|s| s.as_str()).collect();
    text.push_str(&format!("; it offers {}", list.join(", ")));
    if shown.len() > list.len() {
        text.push_str(&format!(" and {} more", shown.len() - list.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ionroller_shared::config::OptionSetting;

    fn example() -> ServiceConfig {
        serde_json::from_str(include_str!("../../../examples/hello.json")).expect("example parses")
    }

    fn spec(namespace: &str, name: &str) -> OptionSpec {
        OptionSpec {
            namespace: namespace.into(),
            name: name.into(),
            ..OptionSpec::default()
        }
    }

    fn described() -> Vec<OptionSpec> {
        vec![
            OptionSpec {
                values: vec!["t3.micro".into(), "t3.small".into(), "m5.large".into()],
                ..spec("aws:autoscaling:launchconfiguration", "InstanceType")
            },
            spec("aws:autoscaling:launchconfiguration", "IamInstanceProfile"),
            OptionSpec {
                min: Some(1),
                max: Some(10000),
                ..spec("aws:autoscaling:asg", "MinSize")
            },
            OptionSpec {
                min: Some(1),
                max: Some(10000),
                ..spec("aws:autoscaling:asg", "MaxSize")
            },
            OptionSpec {
                max_length: Some(255),
                ..spec(
                    "aws:elasticbeanstalk:application",
                    "Application Healthcheck URL",
                )
            },
            OptionSpec {
                regex: Some(("vpc-[0-9a-f]{8,17}".into(), "a VPC id".into())),
                ..spec("aws:ec2:vpc", "VPCId")
            },
            OptionSpec {
                list: true,
                values: vec!["x86_64".into(), "arm64".into()],
                ..spec("aws:ec2:instances", "SupportedArchitectures")
            },
        ]
    }

    fn fields(problems: &[FieldError]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    fn raw(namespace: &str, name: &str, value: &str) -> OptionSetting {
        OptionSetting {
            namespace: namespace.into(),
            option_name: name.into(),
            value: value.into(),
        }
    }

    const STACK: &str = "64bit Amazon Linux 2023 v4.6.0 running Docker";

    #[test]
    fn the_newest_docker_stack_is_found_by_the_numbers_in_its_name() {
        let offered: Vec<String> = [
            "64bit Windows Server 2025 v2.19.2 running IIS 10.0",
            "64bit Amazon Linux 2 v4.2.0 running Docker",
            "64bit Amazon Linux 2023 v4.5.2 running Docker",
            "64bit Amazon Linux 2023 v4.10.0 running Docker",
            "64bit Amazon Linux 2023 v4.6.0 running ECS",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            newest_docker_stack(&offered),
            Some("64bit Amazon Linux 2023 v4.10.0 running Docker")
        );
        assert_eq!(newest_docker_stack(&offered[..1]), None);
    }

    #[test]
    fn a_retired_or_foreign_stack_is_refused_with_the_newest_docker_one_offered() {
        let offered: Vec<String> = [
            "64bit Windows Server 2019 v2.19.2 running IIS 10.0",
            STACK,
            "64bit Amazon Linux 2 v4.2.0 running Docker",
        ]
        .map(String::from)
        .to_vec();
        let mut config = example();
        assert_eq!(check_stack(&config, &offered), Ok(STACK));
        for bad in [
            "64bit Windows",
            "64bit Windows Server 2019 v2.19.2 running IIS 10.0",
            "64bit Amazon Linux 2023 v4.0.0 running Docker",
        ] {
            config.aws.solution_stack = Some(bad.into());
            let problem = check_stack(&config, &offered).expect_err(bad);
            assert_eq!(problem.field, "aws.solution_stack");
            assert!(problem.problem.contains(bad), "{problem}");
            assert!(
                problem.problem.contains(&format!("use \"{STACK}\"")),
                "{problem}"
            );
        }
        config.aws.solution_stack = None;
        let problem = check_stack(&config, &offered[..1]).expect_err("no Docker stack");
        assert!(problem.problem.contains("default"), "{problem}");
        assert!(problem.problem.contains("no Docker stack"), "{problem}");
    }

    #[test]
    fn options_are_checked_against_their_description_naming_the_field() {
        let mut config = example();
        config.aws.option_settings = vec![
            raw(
                "aws:autoscaling:launchconfiguration",
                "IamInstanceProfile",
                "app",
            ),
            raw("aws:ec2:vpc", "VPCId", "vpc-0123abcd"),
            raw(
                "aws:ec2:instances",
                "SupportedArchitectures",
                "x86_64, arm64",
            ),
        ];
        assert!(check_options(&config, STACK, &described()).is_empty());

        config.instances.instance_type = "t3 small".into();
        config.instances.max = 20000;
        config.health_check_path = format!("/{}", "x".repeat(300));
        config.aws.option_settings.extend([
            raw("aws:nosuch:namespace", "Foo", "1"),
            raw("aws:autoscaling:asg", "NoSuchOption", "1"),
            raw("aws:ec2:vpc", "VPCId", "my-vpc"),
            raw(
                "aws:ec2:instances",
                "SupportedArchitectures",
                "x86_64,sparc",
            ),
            raw(
                "aws:elasticbeanstalk:application:environment",
                "ANY_NAME",
                "ok",
            ),
        ]);
        let problems = check_options(&config, STACK, &described());
        assert_eq!(
            fields(&problems),
            [
                "instances.type",
                "instances.max",
                "health_check_path",
                "aws.option_settings[3]",
                "aws.option_settings[4]",
                "aws.option_settings[5]",
                "aws.option_settings[6]",
            ],
            "{problems:#?}"
        );
        let text = |i: usize| problems[i].problem.as_str();
        assert!(text(0).contains("did you mean \"t3.small\""), "{}", text(0));
        assert!(text(1).contains("from 1 to 10000"), "{}", text(1));
        assert!(text(2).contains("at most 255"), "{}", text(2));
        assert!(
            text(3).contains("no option namespace \"aws:nosuch:namespace\""),
            "{}",
            text(3)
        );
        assert!(text(3).contains("aws:autoscaling:asg"), "{}", text(3));
        assert!(text(4).contains("MaxSize, MinSize"), "{}", text(4));
        assert!(text(5).contains("a VPC id"), "{}", text(5));
        assert!(text(6).contains("\"sparc\""), "{}", text(6));
    }

    #[test]
    fn a_raw_setting_that_overrides_a_derived_one_is_named_instead() {
        let mut config = example();
        config.aws.option_settings = vec![raw(
            "aws:autoscaling:launchconfiguration",
            "InstanceType",
            "huge",
        )];
        let problems = check_options(&config, STACK, &described());
        assert_eq!(
            fields(&problems),
            ["aws.option_settings[0]"],
            "{problems:?}"
        );
        assert!(
            problems[0].problem.contains("t3.micro, t3.small, m5.large"),
            "nothing starts alike, so all are listed: {problems:?}"
        );
    }
}
