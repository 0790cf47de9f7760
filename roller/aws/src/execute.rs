//! The roller's actions on AWS. Each is idempotent: the roller repeats an action whose
//! outcome it did not record, so each first looks at what AWS already has.

use std::collections::BTreeSet;

use aws_sdk_elasticbeanstalk::types::{
    ConfigurationOptionSetting, EnvironmentStatus as EbStatus, S3Location, Tag,
};
use aws_sdk_elasticloadbalancing::types::Instance;
use aws_sdk_s3::primitives::ByteStream;
use ionroller_shared::cloud::CloudError;
use ionroller_shared::config::{LoadBalancerKind, ServiceConfig};
use ionroller_shared::events::Action;
use uuid::Uuid;

use crate::bundle::bundle_zip;
use crate::clients::Clients;
use crate::error::{classify, code};
use crate::observe::{describe_environments, environment_groups, EnvironmentRef};
use crate::spec::{
    bundle_key, option_settings, version_label, versions_to_prune, DEFAULT_SOLUTION_STACK,
    KEEP_VERSIONS, TAG_ACTION_ID, TAG_CONFIG_VERSION, TAG_SERVICE, TAG_VERSION,
};
use crate::state::DriverState;

pub async fn execute(
    state: &DriverState,
    c: &Clients,
    service: &str,
    config: &ServiceConfig,
    action_id: Uuid,
    action: &Action,
) -> Result<String, CloudError> {
    let alb = config.endpoint.load_balancer.kind == LoadBalancerKind::Alb;
    match action {
        Action::CreateEnvironment {
            environment,
            version,
            config_version,
            config,
        } => {
            let release = Release {
                service,
                environment,
                version,
                config_version: *config_version,
                config,
                action_id,
            };
            create_environment(state, c, &release).await
        }
        Action::RegisterInstances {
            load_balancer,
            instances,
        }
        | Action::DeregisterInstances {
            load_balancer,
            instances,
        } if alb => {
            let register = matches!(action, Action::RegisterInstances { .. });
            let path = &config.health_check_path;
            crate::alb::change(state, c, load_balancer, instances, register, path).await
        }
        Action::RegisterInstances {
            load_balancer,
            instances,
        } => {
            state.call(c, "RegisterInstancesWithLoadBalancer").await;
            c.elb
                .register_instances_with_load_balancer()
                .load_balancer_name(load_balancer)
                .set_instances(Some(elb_instances(instances)))
                .send()
                .await
                .map_err(|e| classify("RegisterInstancesWithLoadBalancer", e))?;
            Ok(format!("registered {} on {load_balancer}", instances.len()))
        }
        Action::DeregisterInstances {
            load_balancer,
            instances,
        } => {
            state.call(c, "DeregisterInstancesFromLoadBalancer").await;
            c.elb
                .deregister_instances_from_load_balancer()
                .load_balancer_name(load_balancer)
                .set_instances(Some(elb_instances(instances)))
                .send()
                .await
                .map_err(|e| classify("DeregisterInstancesFromLoadBalancer", e))?;
            Ok(format!(
                "deregistered {} from {load_balancer}",
                instances.len()
            ))
        }
        Action::TerminateEnvironment { environment } => {
            // On an ALB, the listener its target groups leave.
            let listener = alb.then_some(config.endpoint.load_balancer.name.as_str());
            terminate_environment(state, c, service, environment, listener).await
        }
    }
}

fn elb_instances(ids: &[String]) -> Vec<Instance> {
    ids.iter()
        .map(|id| Instance::builder().instance_id(id).build())
        .collect()
}

struct Release<'a> {
    service: &'a str,
    environment: &'a str,
    version: &'a str,
    config_version: u32,
    config: &'a ServiceConfig,
    action_id: Uuid,
}

/// Application (once per service), bundle, application version, environment: each step is
/// skipped when AWS already has it, so a repeat after a crash at any point completes the
/// release without making anything twice.
async fn create_environment(
    state: &DriverState,
    c: &Clients,
    r: &Release<'_>,
) -> Result<String, CloudError> {
    let existing = describe_environments(state, c, Some(r.service), Some(r.environment)).await?;
    if let Some(env) = existing
        .iter()
        .find(|e| e.environment_name() == Some(r.environment))
    {
        return match env.status() {
            Some(EbStatus::Terminating) => Err(CloudError::Unavailable(format!(
                "environment {} is still terminating; its name is free once it is gone",
                r.environment
            ))),
            _ => Ok(format!(
                "{} already exists ({})",
                r.environment,
                env.environment_id().unwrap_or("no id")
            )),
        };
    }
    let Some(bucket) = r.config.aws.deployment_bucket.as_deref() else {
        return Err(CloudError::Rejected {
            code: "MissingDeploymentBucket".into(),
            message: "aws.deployment_bucket must name the S3 bucket for source bundles".into(),
        });
    };
    ensure_application(state, c, r.service).await?;
    let label = version_label(r.version, r.config_version);
    let key = bundle_key(r.service, &label);
    // Writing a zip in memory fails only on a bug (say, a duplicate file name): refused, not
    // retried soon, and the message says what went wrong.
    let bundle = bundle_zip(r.config, r.version).map_err(|e| CloudError::Rejected {
        code: "SourceBundle".into(),
        message: format!("could not write the source bundle: {e}"),
    })?;
    state.call(c, "PutObject").await;
    c.s3.put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/zip")
        .body(ByteStream::from(bundle))
        .send()
        .await
        .map_err(|e| classify("PutObject", e))?;
    state.call(c, "CreateApplicationVersion").await;
    let created =
        c.eb.create_application_version()
            .application_name(r.service)
            .version_label(&label)
            .description(format!(
                "{} {} (config v{})",
                r.service, r.version, r.config_version
            ))
            .source_bundle(S3Location::builder().s3_bucket(bucket).s3_key(&key).build())
            // Not `process`: that only validates .ebextensions (the bundle has none) and
            // leaves the version Processing for a while, during which it cannot be deployed.
            .send()
            .await
            .map_err(|e| classify("CreateApplicationVersion", e));
    match created {
        Ok(_) => {}
        Err(e) if already_exists(&e) => {}
        Err(e) => return Err(e),
    }
    let tags = [
        (TAG_SERVICE, r.service.to_string()),
        (TAG_VERSION, r.version.to_string()),
        (TAG_CONFIG_VERSION, r.config_version.to_string()),
        (TAG_ACTION_ID, r.action_id.to_string()),
    ];
    state.call(c, "CreateEnvironment").await;
    let created =
        c.eb.create_environment()
            .application_name(r.service)
            .environment_name(r.environment)
            .version_label(&label)
            .solution_stack_name(
                r.config
                    .aws
                    .solution_stack
                    .as_deref()
                    .unwrap_or(DEFAULT_SOLUTION_STACK),
            )
            .description(format!("ionroller: {} {}", r.service, r.version))
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(v).build())
                    .collect(),
            ))
            .set_option_settings(Some(
                option_settings(r.config)
                    .into_iter()
                    .map(|(ns, name, value)| {
                        ConfigurationOptionSetting::builder()
                            .namespace(ns)
                            .option_name(name)
                            .value(value)
                            .build()
                    })
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| classify("CreateEnvironment", e));
    let done = match created {
        Ok(env) => format!(
            "created {} ({})",
            r.environment,
            env.environment_id().unwrap_or("no id")
        ),
        // Someone (a previous attempt whose answer was lost) created it in the meantime.
        Err(e) if already_exists(&e) => format!("{} already exists", r.environment),
        Err(e) => return Err(e),
    };
    // Housekeeping, not part of the release: a failure is reported, never fatal.
    Ok(match prune_versions(state, c, r.service).await {
        Ok(0) => done,
        Ok(n) => format!("{done}; deleted {n} old application version(s)"),
        Err(e) => format!("{done}; old application versions not pruned: {e}"),
    })
}

/// Deletes the application versions (and their bundles) that ionroller made and no live
/// environment runs, beyond the newest [`KEEP_VERSIONS`], so that a service that releases
/// every day never reaches Elastic Beanstalk's limit on versions (1000 per region by
/// default). A release of a pruned version uploads it again.
async fn prune_versions(
    state: &DriverState,
    c: &Clients,
    service: &str,
) -> Result<usize, CloudError> {
    let live: BTreeSet<String> = describe_environments(state, c, Some(service), None)
        .await?
        .iter()
        .filter(|e| e.status() != Some(&EbStatus::Terminated))
        .filter_map(|e| e.version_label().map(str::to_string))
        .collect();
    let mut versions = Vec::new();
    let mut token = None;
    loop {
        state.call(c, "DescribeApplicationVersions").await;
        let page =
            c.eb.describe_application_versions()
                .application_name(service)
                .max_records(100)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify("DescribeApplicationVersions", e))?;
        for v in page.application_versions() {
            if let (Some(label), Some(created)) = (v.version_label(), v.date_created()) {
                versions.push((label.to_string(), created.as_nanos()));
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    // One version that cannot go (its bundle was deleted by hand, say) does not keep the
    // others: the first error is reported after trying them all.
    let mut deleted = 0;
    let mut first_error = None;
    for label in versions_to_prune(&versions, &live, KEEP_VERSIONS) {
        state.call(c, "DeleteApplicationVersion").await;
        match c
            .eb
            .delete_application_version()
            .application_name(service)
            .version_label(&label)
            .delete_source_bundle(true)
            .send()
            .await
            .map_err(|e| classify("DeleteApplicationVersion", e))
        {
            Ok(_) => deleted += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if deleted == 0 => Err(e),
        _ => Ok(deleted),
    }
}

async fn ensure_application(
    state: &DriverState,
    c: &Clients,
    service: &str,
) -> Result<(), CloudError> {
    state.call(c, "DescribeApplications").await;
    let apps =
        c.eb.describe_applications()
            .application_names(service)
            .send()
            .await
            .map_err(|e| classify("DescribeApplications", e))?;
    if apps
        .applications()
        .iter()
        .any(|a| a.application_name() == Some(service))
    {
        return Ok(());
    }
    state.call(c, "CreateApplication").await;
    match c
        .eb
        .create_application()
        .application_name(service)
        .description("deployed by ionroller")
        .send()
        .await
        .map_err(|e| classify("CreateApplication", e))
    {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// EB says "X already exists." with code InvalidParameterValue for applications, versions
/// and environments alike; the message is the only way to tell it from other bad values.
fn already_exists(e: &CloudError) -> bool {
    matches!(e, CloudError::Rejected { message, .. } if message.contains("already exists"))
        && code(e) == Some("InvalidParameterValue")
}

async fn terminate_environment(
    state: &DriverState,
    c: &Clients,
    service: &str,
    environment: &str,
    alb: Option<&str>,
) -> Result<String, CloudError> {
    let existing = describe_environments(state, c, Some(service), Some(environment)).await?;
    let live = existing.iter().find(|e| {
        e.environment_name() == Some(environment)
            && !matches!(
                e.status(),
                Some(EbStatus::Terminating) | Some(EbStatus::Terminated)
            )
    });
    let Some(env) = live else {
        return Ok(format!("{environment} was already terminated"));
    };
    // EB terminates only a Ready environment ("Must be Ready"): one still launching or
    // updating is retried later rather than refused for good.
    if env.status() != Some(&EbStatus::Ready) {
        return Err(CloudError::Unavailable(format!(
            "{environment} is {}; Elastic Beanstalk terminates it once it is Ready",
            env.status().map_or("in no known state", |s| s.as_str())
        )));
    }
    // On an ALB, each of the environment's groups had a target group: deleted first, so
    // that a crash after the termination cannot leave them behind (a repeat then finds the
    // environment Terminating and stops there).
    if let (Some(listener), Some(id)) = (alb, env.environment_id()) {
        state.call(c, "DescribeEnvironmentResources").await;
        let groups = environment_groups(c, EnvironmentRef::Id(id)).await?;
        crate::alb::delete_target_groups(state, c, listener, &groups).await?;
    }
    state.call(c, "TerminateEnvironment").await;
    let mut call = c.eb.terminate_environment().terminate_resources(true);
    call = match env.environment_id() {
        Some(id) => call.environment_id(id),
        None => call.environment_name(environment),
    };
    call.send()
        .await
        .map_err(|e| classify("TerminateEnvironment", e))?;
    if let (Ok(mut cache), Some(id)) = (state.resources.lock(), env.environment_id()) {
        cache.remove(id);
    }
    Ok(format!("terminating {environment}"))
}
