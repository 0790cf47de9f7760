//! Reading a service's part of AWS: its EB environments, their instances (through their Auto
//! Scaling groups), the endpoint load balancer's registrations and the configured alarms.
//!
//! Environments, instances and alarms are read for many services at once ([`read_region`]:
//! what [`crate::batch`] shares between the services of one account-region); the load
//! balancer is read per service ([`registrations`]), as AWS has no call that reads several,
//! and so that one endpoint's failing read never fails another service's observation.
//!
//! A quiet account-region costs, per read: DescribeEnvironments (one page per 100
//! environments), DescribeAutoScalingGroups (one per 50 live environments' groups) and
//! DescribeAlarms (one per 50 alarms, when any service has alarms), plus one
//! DescribeEnvironmentResources per environment until it is seen Ready; and per service
//! DescribeInstanceHealth (on an ALB: DescribeListeners, and DescribeTargetHealth per weighted
//! target group). Pages are followed.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use chrono::{DateTime, Utc};
use ionroller_shared::cloud::{CloudError, CloudView};
use ionroller_shared::config::{LoadBalancerKind, ServiceConfig};
use ionroller_shared::events::{
    AlarmState, AlarmView, EnvironmentStatus, EnvironmentView, Health, InstanceView,
    RegisteredInstance,
};

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
use aws_sdk_elasticbeanstalk::types::{
    EnvironmentDescription, EnvironmentHealth, EnvironmentStatus as EbStatus,
};

use crate::clients::Clients;
use crate::error::classify;
use crate::spec::{parse_version_label, quoted_value, NAMES_PER_CALL};
use crate::state::DriverState;

/// Environments per DescribeEnvironments page. Without it EB answers everything at once;
/// with it the answer stays bounded, and NextToken is followed.
const ENVIRONMENTS_PER_PAGE: i32 = 100;

/// What one read of an account-region saw, for the services it was taken for.
#[derive(Debug)]
pub struct RegionRead {
    /// When the first call of the read was sent: nothing older than this is in it.
    pub started: Instant,
    /// The services (EB applications) whose environments and instances it holds.
    pub services: BTreeSet<String>,
    /// The alarms it asked CloudWatch for.
    pub alarm_names: BTreeSet<String>,
    environments: HashMap<String, Vec<EnvironmentView>>,
    alarms: HashMap<String, AlarmView>,
}

impl RegionRead {
    /// Whether it holds everything `service` with `alarms` needs.
    pub fn covers(&self, service: &str, alarms: &[String]) -> bool {
        self.services.contains(service) && alarms.iter().all(|a| self.alarm_names.contains(a))
    }

    /// The service's view, with the load balancer's registrations read separately.
    pub fn view(
        &self,
        service: &str,
        config: &ServiceConfig,
        registrations: Vec<RegisteredInstance>,
    ) -> CloudView {
        CloudView {
            environments: self.environments.get(service).cloned().unwrap_or_default(),
            load_balancer: config.endpoint.load_balancer.name.clone(),
            registrations,
            alarms: config
                .rollout
                .alarms
                .iter()
                .map(|name| {
                    self.alarms
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| missing_alarm(name))
                })
                .collect(),
        }
    }
}

/// Which environments a read lists.
pub enum Listing<'a> {
    /// One application's: one call (per 100 of its environments), whatever else the region has.
    Application(&'a str),
    /// Every application's in the region: one call per 100 environments for all services.
    Region,
}

/// Reads the environments (with their instances) of `services` and the alarms named.
pub async fn read_region(
    state: &DriverState,
    c: &Clients,
    listing: Listing<'_>,
    services: BTreeSet<String>,
    alarm_names: BTreeSet<String>,
) -> Result<RegionRead, CloudError> {
    let started = Instant::now();
    let application = match listing {
        Listing::Application(service) => Some(service),
        Listing::Region => None,
    };
    let described = describe_environments(state, c, application, None).await?;
    let mut environments: Vec<(String, EnvironmentView)> = Vec::new();
    // (index into `environments`, EB's environment id, its Auto Scaling groups)
    let mut groups_of: Vec<(usize, &str, Vec<String>)> = Vec::new();
    for env in &described {
        let Some(app) = env.application_name().filter(|a| services.contains(*a)) else {
            continue; // another team's application, or one no one here asked about
        };
        let Some(view) = environment_view(env) else {
            continue; // not one of ionroller's
        };
        if !matches!(
            view.status,
            EnvironmentStatus::Terminated | EnvironmentStatus::Terminating
        ) {
            if let (Some(id), Some(groups)) = (env.environment_id(), groups(state, c, env).await?) {
                groups_of.push((environments.len(), id, groups));
            }
        }
        environments.push((app.to_string(), view));
    }
    let all_groups: Vec<String> = groups_of.iter().flat_map(|(_, _, g)| g.clone()).collect();
    let (instances, existing) = group_instances(state, c, &all_groups).await?;
    // A cached group that Auto Scaling no longer has was replaced (RebuildEnvironment keeps
    // the environment id and makes new groups): EB is asked again on the next read.
    for (_, id, groups) in &groups_of {
        if groups.iter().any(|g| !existing.contains(g)) {
            if let Ok(mut cache) = state.resources.lock() {
                cache.remove(*id);
            }
        }
    }
    for (index, _, groups) in groups_of {
        let env = &mut environments[index].1;
        env.instances = instances
            .iter()
            .filter(|(group, _)| groups.contains(group))
            .map(|(_, instance)| instance.clone())
            .collect();
        env.instances.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let names: Vec<String> = alarm_names.iter().cloned().collect();
    let alarms = alarms(state, c, &names).await?;
    let mut by_service: HashMap<String, Vec<EnvironmentView>> = HashMap::new();
    for (app, view) in environments {
        by_service.entry(app).or_default().push(view);
    }
    Ok(RegionRead {
        started,
        services,
        alarm_names,
        environments: by_service,
        alarms: alarms.into_iter().map(|a| (a.name.clone(), a)).collect(),
    })
}

/// The endpoint load balancer's registrations, classic or ALB.
pub async fn registrations(
    state: &DriverState,
    c: &Clients,
    config: &ServiceConfig,
) -> Result<Vec<RegisteredInstance>, CloudError> {
    let load_balancer = &config.endpoint.load_balancer.name;
    match config.endpoint.load_balancer.kind {
        LoadBalancerKind::Classic => classic_registrations(state, c, load_balancer).await,
        LoadBalancerKind::Alb => crate::alb::registrations(state, c, load_balancer).await,
    }
}

/// The application's environments (or the named one; or, with no application, the region's),
/// every page, deleted ones left out.
pub async fn describe_environments(
    state: &DriverState,
    c: &Clients,
    application: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<EnvironmentDescription>, CloudError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        state.call(c, "DescribeEnvironments").await;
        let page =
            c.eb.describe_environments()
                .set_application_name(application.map(str::to_string))
                .set_environment_names(name.map(|n| vec![n.to_string()]))
                .include_deleted(false)
                .max_records(ENVIRONMENTS_PER_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify("DescribeEnvironments", e))?;
        out.extend(page.environments().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// What the roller needs of an EB environment; `None` for environments ionroller did not
/// create (their version label does not carry a config version).
fn environment_view(env: &EnvironmentDescription) -> Option<EnvironmentView> {
    let (version, config_version) = parse_version_label(env.version_label()?)?;
    let status = match env.status()? {
        EbStatus::Launching => EnvironmentStatus::Launching,
        EbStatus::Terminating => EnvironmentStatus::Terminating,
        EbStatus::Terminated => EnvironmentStatus::Terminated,
        // Updating, Aborting, linking: the environment exists and serves.
        _ => EnvironmentStatus::Ready,
    };
    let health = match env.health() {
        Some(EnvironmentHealth::Green) => Health::Green,
        Some(EnvironmentHealth::Yellow) => Health::Yellow,
        Some(EnvironmentHealth::Red) => Health::Red,
        _ => Health::Grey,
    };
    Some(EnvironmentView {
        name: env.environment_name()?.to_string(),
        version,
        config_version,
        status,
        health,
        instances: Vec::new(),
        url: env
            .cname()
            .filter(|c| !c.is_empty())
            .map(|c| format!("http://{c}")),
    })
}

/// The environment's Auto Scaling groups: cached once it is Ready, asked for until then.
async fn groups(
    state: &DriverState,
    c: &Clients,
    env: &EnvironmentDescription,
) -> Result<Option<Vec<String>>, CloudError> {
    let Some(id) = env.environment_id() else {
        return Ok(None);
    };
    let ready = env.status() == Some(&EbStatus::Ready);
    if let Ok(mut cache) = state.resources.lock() {
        match cache.get(id) {
            Some(known) if ready => return Ok(Some(known.clone())),
            // Updating or relaunching: its resources may be changing under it.
            Some(_) => {
                cache.remove(id);
            }
            None => {}
        }
    }
    state.call(c, "DescribeEnvironmentResources").await;
    let groups = environment_groups(c, EnvironmentRef::Id(id)).await?;
    if ready && !groups.is_empty() {
        if let Ok(mut cache) = state.resources.lock() {
            cache.insert(id.to_string(), groups.clone());
        }
    }
    Ok(Some(groups))
}

/// An environment, by the id EB gave it or by its name.
pub enum EnvironmentRef<'a> {
    Id(&'a str),
    /// Only the testkit knows an environment by name alone; the driver has its id.
    #[cfg(feature = "testkit")]
    Name(&'a str),
}

/// An environment's Auto Scaling groups, as EB's DescribeEnvironmentResources names them.
pub async fn environment_groups(
    c: &Clients,
    environment: EnvironmentRef<'_>,
) -> Result<Vec<String>, CloudError> {
    let call = c.eb.describe_environment_resources();
    let call = match environment {
        EnvironmentRef::Id(id) => call.environment_id(id),
        #[cfg(feature = "testkit")]
        EnvironmentRef::Name(name) => call.environment_name(name),
    };
    let out = call
        .send()
        .await
        .map_err(|e| classify("DescribeEnvironmentResources", e))?;
    Ok(out
        .environment_resources()
        .map(|r| {
            r.auto_scaling_groups()
                .iter()
                .filter_map(|g| g.name().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Every instance of the groups, as (group, instance), and the groups that exist. Healthy
/// means in service in its group and passing the group's health check.
async fn group_instances(
    state: &DriverState,
    c: &Clients,
    groups: &[String],
) -> Result<(Vec<(String, InstanceView)>, BTreeSet<String>), CloudError> {
    let mut out = Vec::new();
    let mut existing = BTreeSet::new();
    for chunk in groups.chunks(NAMES_PER_CALL) {
        let mut token = None;
        loop {
            state.call(c, "DescribeAutoScalingGroups").await;
            let page = c
                .asg
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify("DescribeAutoScalingGroups", e))?;
            for group in page.auto_scaling_groups() {
                let name = group.auto_scaling_group_name().unwrap_or_default();
                existing.insert(name.to_string());
                for i in group.instances() {
                    let Some(id) = i.instance_id() else { continue };
                    let healthy = i.lifecycle_state() == Some(&LifecycleState::InService)
                        && i.health_status() == Some("Healthy");
                    out.push((
                        name.to_string(),
                        InstanceView {
                            id: id.to_string(),
                            healthy,
                        },
                    ));
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok((out, existing))
}

/// The classic load balancer's registered instances and whether each is InService.
async fn classic_registrations(
    state: &DriverState,
    c: &Clients,
    load_balancer: &str,
) -> Result<Vec<RegisteredInstance>, CloudError> {
    state.call(c, "DescribeInstanceHealth").await;
    let out = c
        .elb
        .describe_instance_health()
        .load_balancer_name(load_balancer)
        .send()
        .await
        .map_err(|e| classify("DescribeInstanceHealth", e))?;
    let mut registered: Vec<RegisteredInstance> = out
        .instance_states()
        .iter()
        .filter_map(|s| classic_registration(s.instance_id()?, s.state(), s.description()))
        .collect();
    registered.sort();
    Ok(registered)
}

/// One row of DescribeInstanceHealth as a registration. With connection draining, a
/// deregistered instance is reported "InService: Instance deregistration currently in
/// progress" until its connections finish (up to 300 s by default); it takes no new
/// requests, so for the roller it is already deregistered.
pub fn classic_registration(
    id: &str,
    state: Option<&str>,
    description: Option<&str>,
) -> Option<RegisteredInstance> {
    let draining = description.is_some_and(|d| {
        d.to_ascii_lowercase()
            .contains("deregistration currently in progress")
    });
    (!draining).then(|| RegisteredInstance {
        id: id.to_string(),
        in_service: state == Some("InService"),
    })
}

/// The named alarms CloudWatch has, metric and composite. One it does not have is left out
/// here and reported by [`RegionRead::view`] as INSUFFICIENT_DATA, never as OK.
async fn alarms(
    state: &DriverState,
    c: &Clients,
    names: &[String],
) -> Result<Vec<AlarmView>, CloudError> {
    let mut found = Vec::new();
    for chunk in names.chunks(NAMES_PER_CALL) {
        let mut token = None;
        loop {
            state.call(c, "DescribeAlarms").await;
            // Without AlarmTypes, DescribeAlarms answers metric alarms only.
            let page = c
                .cloudwatch
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify("DescribeAlarms", e))?;
            for a in page.metric_alarms() {
                found.extend(alarm_view(
                    a.alarm_name(),
                    a.state_value(),
                    a.state_reason(),
                    a.state_reason_data(),
                    a.state_updated_timestamp(),
                ));
            }
            for a in page.composite_alarms() {
                found.extend(alarm_view(
                    a.alarm_name(),
                    a.state_value(),
                    a.state_reason(),
                    a.state_reason_data(),
                    a.state_updated_timestamp(),
                ));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

/// An alarm the config names but CloudWatch does not have: never OK, and the reason says so.
fn missing_alarm(name: &str) -> AlarmView {
    AlarmView {
        name: name.to_string(),
        state: AlarmState::InsufficientData,
        reason: format!("alarm {name} does not exist in CloudWatch"),
        value: None,
        updated_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

/// A metric or composite alarm as the roller sees it: its state, the reason CloudWatch gives,
/// and the datapoint that reason quotes (the evidence a rollback records).
fn alarm_view(
    name: Option<&str>,
    state: Option<&StateValue>,
    reason: Option<&str>,
    reason_data: Option<&str>,
    updated: Option<&aws_smithy_types::DateTime>,
) -> Option<AlarmView> {
    let reason = reason.unwrap_or_default();
    Some(AlarmView {
        name: name?.to_string(),
        state: match state {
            Some(StateValue::Alarm) => AlarmState::Alarm,
            Some(StateValue::Ok) => AlarmState::Ok,
            _ => AlarmState::InsufficientData,
        },
        reason: reason.to_string(),
        value: quoted_value(reason_data, reason),
        updated_at: updated
            .and_then(to_chrono)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    })
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_draining_from_a_classic_elb_is_not_registered() {
        let row = |state, description| classic_registration("i-1", Some(state), description);
        assert_eq!(
            row("InService", Some("N/A")),
            Some(RegisteredInstance {
                id: "i-1".into(),
                in_service: true
            })
        );
        assert_eq!(
            row("OutOfService", Some("Instance has failed at least the UnhealthyThreshold number of health checks consecutively.")),
            Some(RegisteredInstance {
                id: "i-1".into(),
                in_service: false
            })
        );
        // What a classic ELB with connection draining reports while it drains (AWS's words).
        assert_eq!(
            row(
                "InService",
                Some("Instance deregistration currently in progress.")
            ),
            None
        );
    }
}
