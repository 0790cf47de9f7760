//! What the driver asks Elastic Beanstalk for, computed from the config. Pure.

use ionroller_shared::config::{
    FieldError, LoadBalancerKind, ServiceConfig, ENV_NAMESPACE, SECRETS_NAMESPACE,
};

/// Tag keys on every environment ionroller creates.
pub const TAG_SERVICE: &str = "ionroller:service";
pub const TAG_VERSION: &str = "ionroller:version";
pub const TAG_CONFIG_VERSION: &str = "ionroller:config-version";
pub const TAG_ACTION_ID: &str = "ionroller:action-id";

/// What the AWS driver needs of a config beyond its schema, each problem naming its field.
pub fn check_config(config: &ServiceConfig) -> Vec<FieldError> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, text: String| {
        problems.push(FieldError {
            field: field.to_string(),
            problem: text,
        })
    };
    let lb = &config.endpoint.load_balancer.name;
    match config.endpoint.load_balancer.kind {
        LoadBalancerKind::Classic => {
            if lb.is_empty()
                || lb.len() > 32
                || lb.starts_with('-')
                || lb.ends_with('-')
                || !lb.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                problem(
                    "endpoint.load_balancer.name",
                    format!("{lb:?} is not a classic ELB name (1 to 32 letters, digits and hyphens, not at either end)"),
                );
            }
        }
        LoadBalancerKind::Alb => {
            if !(lb.starts_with("arn:") && lb.contains(":listener/app/")) {
                problem(
                    "endpoint.load_balancer.name",
                    format!("{lb:?} is not an ALB listener ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/NAME/ID/ID)"),
                );
            }
        }
    }
    match config.aws.deployment_bucket.as_deref() {
        None => problem(
            "aws.deployment_bucket",
            "required with the AWS cloud: the S3 bucket source bundles are uploaded to".into(),
        ),
        Some(b) if !valid_bucket_name(b) => problem(
            "aws.deployment_bucket",
            format!("{b:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)"),
        ),
        Some(_) => {}
    }
    if let Some(role) = &config.aws.role_arn {
        let parts: Vec<&str> = role.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "iam"
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5].starts_with("role/");
        if !ok {
            problem(
                "aws.role_arn",
                format!("{role:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"),
            );
        }
    }
    if let Some(region) = &config.aws.region {
        let ok = region.split('-').count() >= 3
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            problem(
                "aws.region",
                format!("{region:?} is not an AWS region name (like us-east-1)"),
            );
        }
    }
    let profile = config.aws.option_settings.iter().any(|o| {
        o.namespace == INSTANCE_PROFILE.0
            && o.option_name == INSTANCE_PROFILE.1
            && !o.value.is_empty()
    });
    if !profile {
        problem(
            "aws.option_settings",
            format!(
                "needs {{\"namespace\": \"{}\", \"option_name\": \"{}\", \"value\": \"<instance profile name or ARN>\"}}: Elastic Beanstalk no longer creates a default instance profile, and without one the environment never turns Green",
                INSTANCE_PROFILE.0, INSTANCE_PROFILE.1
            ),
        );
    }
    // Elastic Beanstalk's 4096 bytes of environment properties is a rule of the config itself
    // (`ServiceConfig::validate`), checked on every cloud.
    problems
}

/// The option naming the instance profile EB gives the instances.
pub const INSTANCE_PROFILE: (&str, &str) =
    ("aws:autoscaling:launchconfiguration", "IamInstanceProfile");

fn valid_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// At most this many names per DescribeAutoScalingGroups, DescribeAutoScalingInstances and
/// DescribeAlarms call (AWS's limit). Here, with AWS's other facts, because both `observe`
/// and `alb` chunk their calls by it.
pub const NAMES_PER_CALL: usize = 50;

/// The solution stack used when the config names none.
pub const DEFAULT_SOLUTION_STACK: &str = "64bit Amazon Linux 2023 v4.6.0 running Docker";

const CONFIG_MARK: &str = ".config-";

/// The application version label: the release's version and the config version it was built
/// from (the bundle depends on both). Observation reads both back from it, which saves a
/// ListTagsForResource per environment per pass.
pub fn version_label(version: &str, config_version: u32) -> String {
    format!("{version}{CONFIG_MARK}{config_version}")
}

/// Inverse of [`version_label`]; `None` for labels ionroller did not make.
pub fn parse_version_label(label: &str) -> Option<(String, u32)> {
    let (version, config) = label.rsplit_once(CONFIG_MARK)?;
    if version.is_empty() || config.is_empty() || !config.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((version.to_string(), config.parse().ok()?))
}

/// How many application versions no environment runs are kept per service (the newest).
pub const KEEP_VERSIONS: usize = 20;

/// The application versions to delete: ionroller's own (by their labels), not run by a live
/// environment, older than the newest `keep` of those. `versions` are (label, created as
/// nanoseconds since the epoch). Pure.
pub fn versions_to_prune(
    versions: &[(String, i128)],
    live: &std::collections::BTreeSet<String>,
    keep: usize,
) -> Vec<String> {
    let mut idle: Vec<&(String, i128)> = versions
        .iter()
        .filter(|(label, _)| parse_version_label(label).is_some() && !live.contains(label))
        .collect();
    idle.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    idle.into_iter()
        .skip(keep)
        .map(|(label, _)| label.clone())
        .collect()
}

/// The S3 key of a release's source bundle in the deployment bucket.
pub fn bundle_key(service: &str, label: &str) -> String {
    format!("ionroller/{service}/{label}.zip")
}

/// Elastic Beanstalk option settings: instance type and counts, env vars, secret references
/// and the health check from their own config fields, then the config's raw `aws.option_settings`, which
/// win where they name the same option (as ION-Roller's `eb.settings` did).
pub fn option_settings(config: &ServiceConfig) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut set = |ns: &str, name: &str, value: String| {
        out.retain(|(n, o, _)| !(n == ns && o == name));
        out.push((ns.to_string(), name.to_string(), value));
    };
    set(
        "aws:autoscaling:launchconfiguration",
        "InstanceType",
        config.instances.instance_type.clone(),
    );
    set(
        "aws:autoscaling:asg",
        "MinSize",
        config.instances.min.to_string(),
    );
    set(
        "aws:autoscaling:asg",
        "MaxSize",
        config.instances.max.to_string(),
    );
    set(
        "aws:elasticbeanstalk:application",
        "Application Healthcheck URL",
        config.health_check_path.clone(),
    );
    for (name, value) in &config.env {
        set(ENV_NAMESPACE, name, value.clone());
    }
    // Only the reference is sent: Elastic Beanstalk fetches the value while each instance
    // boots, with the instance profile's permissions.
    for (name, arn) in &config.secrets {
        set(SECRETS_NAMESPACE, name, arn.clone());
    }
    for o in &config.aws.option_settings {
        set(&o.namespace, &o.option_name, o.value.clone());
    }
    out
}

/// The datapoint an alarm's state quotes: the newest of `recentDatapoints` in its
/// `StateReasonData`, else the one its reason text names (AWS: "Threshold Crossed: 1
/// datapoint [100.0 (25/11/26 17:42:00)] was greater than ..."; some emulators:
/// "Threshold Crossed: Sum 100.0 GreaterThanThreshold 5.0").
pub fn quoted_value(state_reason_data: Option<&str>, reason: &str) -> Option<f64> {
    if let Some(value) = state_reason_data.and_then(quoted_datapoint) {
        return Some(value);
    }
    let (_, after) = reason.split_once("Threshold Crossed:")?;
    let text = match after.split_once('[') {
        Some((_, list)) => list,
        None => after,
    };
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '(')
        .find_map(|word| word.parse::<f64>().ok())
}

/// The newest of `recentDatapoints` in an alarm's `StateReasonData`.
pub fn quoted_datapoint(state_reason_data: &str) -> Option<f64> {
    let data: serde_json::Value = serde_json::from_str(state_reason_data).ok()?;
    data.get("recentDatapoints")?
        .as_array()?
        .iter()
        .rev()
        .find_map(|v| v.as_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ServiceConfig {
        serde_json::from_str(include_str!("../../../examples/hello.json")).expect("example parses")
    }

    #[test]
    fn version_labels_round_trip_and_foreign_labels_are_ignored() {
        for (v, c) in [
            ("v1", 1),
            ("1.2.3", 17),
            ("a.config-b", 2),
            ("x.config-3", 4),
        ] {
            assert_eq!(
                parse_version_label(&version_label(v, c)),
                Some((v.to_string(), c))
            );
        }
        for foreign in [
            "v1",
            "v1.config-",
            ".config-3",
            "v1.config-x",
            "Sample Application",
        ] {
            assert_eq!(parse_version_label(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn option_settings_come_from_the_config_and_raw_settings_win() {
        let mut config = example();
        config
            .aws
            .option_settings
            .push(ionroller_shared::config::OptionSetting {
                namespace: "aws:autoscaling:asg".into(),
                option_name: "MaxSize".into(),
                value: "9".into(),
            });
        let settings = option_settings(&config);
        let get = |ns: &str, name: &str| {
            settings
                .iter()
                .filter(|(n, o, _)| n == ns && o == name)
                .map(|(_, _, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            get("aws:autoscaling:launchconfiguration", "InstanceType"),
            ["t3.small"]
        );
        assert_eq!(get("aws:autoscaling:asg", "MinSize"), ["2"]);
        assert_eq!(get("aws:autoscaling:asg", "MaxSize"), ["9"]);
        assert_eq!(
            get("aws:elasticbeanstalk:application:environment", "GREETING"),
            ["hello"]
        );
        assert!(get(SECRETS_NAMESPACE, "GREETING").is_empty());
        assert_eq!(
            get(
                "aws:elasticbeanstalk:application",
                "Application Healthcheck URL"
            ),
            ["/health"]
        );
    }

    #[test]
    fn secrets_go_to_elastic_beanstalk_as_references_in_their_own_namespace() {
        let mut config = example();
        let arn = "arn:aws:ssm:us-east-1:111122223333:parameter/hello/db-password";
        config.secrets.insert("DB_PASSWORD".into(), arn.into());
        let settings = option_settings(&config);
        let sent: Vec<_> = settings
            .iter()
            .filter(|(_, name, _)| name == "DB_PASSWORD")
            .collect();
        assert_eq!(
            sent,
            [&(
                SECRETS_NAMESPACE.to_string(),
                "DB_PASSWORD".to_string(),
                arn.to_string()
            )]
        );
        assert_eq!(
            SECRETS_NAMESPACE,
            "aws:elasticbeanstalk:application:environmentsecrets"
        );
    }

    #[test]
    fn the_aws_driver_names_each_field_it_needs() {
        let mut config = example();
        let fields = |c: &ServiceConfig| {
            check_config(c)
                .into_iter()
                .map(|p| p.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(&config),
            ["aws.deployment_bucket", "aws.option_settings"]
        );
        config.aws.deployment_bucket = Some("my-bundles".into());
        config
            .aws
            .option_settings
            .push(ionroller_shared::config::OptionSetting {
                namespace: INSTANCE_PROFILE.0.into(),
                option_name: INSTANCE_PROFILE.1.into(),
                value: "ionroller-app".into(),
            });
        assert!(fields(&config).is_empty());
        for (bad, field) in [
            ("My_Bucket", "aws.deployment_bucket"),
            ("ab", "aws.deployment_bucket"),
            ("-bundles", "aws.deployment_bucket"),
        ] {
            let mut c = config.clone();
            c.aws.deployment_bucket = Some(bad.into());
            assert_eq!(fields(&c), [field], "{bad}");
        }
        let mut c = config.clone();
        c.aws.role_arn = Some("arn:aws:iam::123:role/x".into());
        c.aws.region = Some("moon".into());
        c.endpoint.load_balancer.name = "has spaces".into();
        assert_eq!(
            fields(&c),
            ["endpoint.load_balancer.name", "aws.role_arn", "aws.region"]
        );
        c = config.clone();
        c.endpoint.load_balancer.kind = LoadBalancerKind::Alb;
        assert_eq!(
            fields(&c),
            ["endpoint.load_balancer.name"],
            "a name is not a listener ARN"
        );
        c.endpoint.load_balancer.name =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2".into();
        assert!(fields(&c).is_empty());
        c = config.clone();
        c.aws.role_arn = Some("arn:aws:iam::123456789012:role/ionroller-deployer".into());
        assert!(fields(&c).is_empty());

        // Elastic Beanstalk's 4096 bytes of NAME=value is the config's own rule; the size
        // counted there is what `option_settings` sends in the environment namespace.
        c = config.clone();
        c.env.clear();
        c.env.insert("BIG".into(), "x".repeat(4092));
        c.aws
            .option_settings
            .push(ionroller_shared::config::OptionSetting {
                namespace: ENV_NAMESPACE.into(),
                option_name: "A".into(),
                value: String::new(),
            });
        let sent: usize = option_settings(&c)
            .iter()
            .filter(|(ns, _, _)| ns == ENV_NAMESPACE)
            .map(|(_, name, value)| name.len() + 1 + value.len())
            .sum();
        assert_eq!(
            sent,
            ionroller_shared::config::environment_properties_bytes(&c)
        );
        assert_eq!(c.validate().len(), 1, "4098 bytes are too many");
    }

    #[test]
    fn old_idle_versions_of_ionroller_are_pruned_and_the_rest_kept() {
        let versions: Vec<(String, i128)> = [
            ("v1.config-1", 1),
            ("v2.config-1", 2),
            ("v3.config-1", 3),
            ("v4.config-1", 4),
            ("Sample Application", 0), // not ionroller's
        ]
        .iter()
        .map(|(l, t)| (l.to_string(), *t))
        .collect();
        let live = ["v1.config-1".to_string()].into_iter().collect();
        // v1 runs; of v2..v4 the newest two stay.
        assert_eq!(versions_to_prune(&versions, &live, 2), ["v2.config-1"]);
        assert!(versions_to_prune(&versions, &live, 3).is_empty());
        assert_eq!(
            versions_to_prune(&versions, &Default::default(), 0).len(),
            4,
            "never another tool's version"
        );
    }

    #[test]
    fn the_quoted_datapoint_is_the_newest_recent_one() {
        let data =
            r#"{"version":"1.0","statistic":"Sum","recentDatapoints":[3.0,100.0],"threshold":5.0}"#;
        assert_eq!(quoted_datapoint(data), Some(100.0));
        assert_eq!(quoted_datapoint(r#"{"recentDatapoints":[]}"#), None);
        assert_eq!(quoted_datapoint("not json"), None);
        let aws = "Threshold Crossed: 1 datapoint [100.0 (25/11/26 17:42:00)] was greater than the threshold (5.0).";
        assert_eq!(quoted_value(None, aws), Some(100.0));
        let emulator = "Threshold Crossed: Sum 12.5 GreaterThanThreshold 5.0";
        assert_eq!(quoted_value(None, emulator), Some(12.5));
        assert_eq!(quoted_value(Some(data), emulator), Some(100.0));
        assert_eq!(quoted_value(None, "set by hand"), None);
    }
}
