//! Traffic on an Application Load Balancer: each environment's Auto Scaling group gets its own
//! target group, and the endpoint listener forwards to them with weights.
//!
//! The roller's plan is the same as on a classic ELB (register this environment's instances,
//! deregister that one's), so that both kinds share one tested core: an instance is
//! "registered" when it is a target in its group's target group, and each target group's
//! listener weight is its number of registered targets. The share of traffic a version gets
//! is then exactly its share of registered instances, as on a classic ELB, and the listener
//! shows it as weights.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action as ListenerAction, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, TargetDescription,
    TargetGroupTuple, TargetHealthStateEnum, TargetTypeEnum,
};
use ionroller_shared::cloud::CloudError;
use ionroller_shared::events::RegisteredInstance;

use crate::clients::Clients;
use crate::error::{classify, code};
use crate::AwsCloud;

/// The port targets receive traffic on: EB's Docker platform puts nginx on 80 in front of
/// the container.
const TARGET_PORT: i32 = 80;

/// The target group ionroller keeps for an Auto Scaling group: deterministic, so a repeated
/// action finds it; 32 characters at most, as ELBv2 requires.
pub fn target_group_name(auto_scaling_group: &str) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, auto_scaling_group.as_bytes());
    format!("ionroller-{}", &id.simple().to_string()[..22])
}

/// The listener's forward targets: target group ARN → weight.
async fn listener_weights(
    cloud: &AwsCloud,
    c: &Clients,
    listener: &str,
) -> Result<(String, BTreeMap<String, i32>), CloudError> {
    cloud.count();
    let out = c
        .elbv2
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .map_err(|e| classify("DescribeListeners", e))?;
    let Some(l) = out.listeners().first() else {
        return Err(CloudError::Rejected {
            code: "ListenerNotFound".into(),
            message: format!("DescribeListeners: no listener {listener}"),
        });
    };
    let mut weights = BTreeMap::new();
    for action in l.default_actions() {
        if action.r#type() != Some(&ActionTypeEnum::Forward) {
            continue;
        }
        match action.forward_config() {
            Some(forward) => {
                for tg in forward.target_groups() {
                    if let Some(arn) = tg.target_group_arn() {
                        weights.insert(arn.to_string(), tg.weight().unwrap_or(1));
                    }
                }
            }
            None => {
                if let Some(arn) = action.target_group_arn() {
                    weights.insert(arn.to_string(), 1);
                }
            }
        }
    }
    Ok((
        l.load_balancer_arn().unwrap_or_default().to_string(),
        weights,
    ))
}

async fn targets(
    cloud: &AwsCloud,
    c: &Clients,
    target_group: &str,
) -> Result<Vec<RegisteredInstance>, CloudError> {
    cloud.count();
    let out = c
        .elbv2
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(|e| classify("DescribeTargetHealth", e))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| {
            Some(RegisteredInstance {
                id: d.target()?.id()?.to_string(),
                in_service: d.target_health().and_then(|h| h.state())
                    == Some(&TargetHealthStateEnum::Healthy),
            })
        })
        .collect())
}

/// Registered instances: the targets of the listener's target groups that carry weight.
pub async fn registrations(
    cloud: &AwsCloud,
    c: &Clients,
    listener: &str,
) -> Result<Vec<RegisteredInstance>, CloudError> {
    let (_, weights) = listener_weights(cloud, c, listener).await?;
    let mut out = Vec::new();
    for (tg, weight) in weights {
        if weight > 0 {
            out.extend(targets(cloud, c, &tg).await?);
        }
    }
    out.sort();
    Ok(out)
}

/// Adds (or removes) instances as targets, then sets every target group's weight to its
/// number of targets. Safe to repeat.
pub async fn change(
    cloud: &AwsCloud,
    c: &Clients,
    listener: &str,
    instances: &[String],
    register: bool,
    health_check_path: &str,
) -> Result<String, CloudError> {
    let (load_balancer, mut weights) = listener_weights(cloud, c, listener).await?;
    for (group, ids) in groups_of(cloud, c, instances).await? {
        let tg = match target_group(cloud, c, &group).await? {
            Some(arn) => arn,
            None if register => {
                create_target_group(cloud, c, &load_balancer, &group, health_check_path).await?
            }
            None => continue, // never registered: nothing to deregister
        };
        // Deregister only what is there: a repeat after a crash must not fail on targets
        // already gone.
        let ids: Vec<String> = if register {
            ids
        } else {
            let present = targets(cloud, c, &tg).await?;
            ids.into_iter()
                .filter(|id| present.iter().any(|t| &t.id == id))
                .collect()
        };
        if !ids.is_empty() {
            let described: Vec<TargetDescription> = ids
                .iter()
                .map(|id| {
                    TargetDescription::builder()
                        .id(id)
                        .port(TARGET_PORT)
                        .build()
                })
                .collect();
            cloud.count();
            if register {
                c.elbv2
                    .register_targets()
                    .target_group_arn(&tg)
                    .set_targets(Some(described))
                    .send()
                    .await
                    .map_err(|e| classify("RegisterTargets", e))?;
            } else {
                c.elbv2
                    .deregister_targets()
                    .target_group_arn(&tg)
                    .set_targets(Some(described))
                    .send()
                    .await
                    .map_err(|e| classify("DeregisterTargets", e))?;
            }
        }
        weights.entry(tg).or_insert(0);
    }
    // Every group's weight from its targets now; groups left empty drop out of the listener
    // (ELBv2 needs at least one, so the last one stays with what it has).
    let mut next = BTreeMap::new();
    for tg in weights.keys() {
        next.insert(tg.clone(), targets(cloud, c, tg).await?.len() as i32);
    }
    if next.values().all(|w| *w == 0) {
        return Ok(format!(
            "{} instance(s): no targets left to weigh",
            instances.len()
        ));
    }
    next.retain(|_, w| *w > 0);
    let forward = ForwardActionConfig::builder()
        .set_target_groups(Some(
            next.iter()
                .map(|(tg, w)| {
                    TargetGroupTuple::builder()
                        .target_group_arn(tg)
                        .weight(*w)
                        .build()
                })
                .collect(),
        ))
        .build();
    cloud.count();
    c.elbv2
        .modify_listener()
        .listener_arn(listener)
        .default_actions(
            ListenerAction::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(forward)
                .build(),
        )
        .send()
        .await
        .map_err(|e| classify("ModifyListener", e))?;
    let weights: Vec<String> = next.values().map(|w| w.to_string()).collect();
    Ok(format!(
        "{} {} instance(s); listener weights {}",
        if register {
            "registered"
        } else {
            "deregistered"
        },
        instances.len(),
        weights.join(":")
    ))
}

/// Instances by the Auto Scaling group they belong to.
async fn groups_of(
    cloud: &AwsCloud,
    c: &Clients,
    instances: &[String],
) -> Result<BTreeMap<String, Vec<String>>, CloudError> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for chunk in instances.chunks(crate::observe::NAMES_PER_CALL) {
        cloud.count();
        let out = c
            .asg
            .describe_auto_scaling_instances()
            .set_instance_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| classify("DescribeAutoScalingInstances", e))?;
        for i in out.auto_scaling_instances() {
            if let (Some(group), Some(id)) = (i.auto_scaling_group_name(), i.instance_id()) {
                groups
                    .entry(group.to_string())
                    .or_default()
                    .push(id.to_string());
            }
        }
    }
    Ok(groups)
}

/// The ARN of the group's target group, if it exists.
async fn target_group(
    cloud: &AwsCloud,
    c: &Clients,
    group: &str,
) -> Result<Option<String>, CloudError> {
    cloud.count();
    match c
        .elbv2
        .describe_target_groups()
        .names(target_group_name(group))
        .send()
        .await
        .map_err(|e| classify("DescribeTargetGroups", e))
    {
        Ok(out) => Ok(out
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .map(str::to_string)),
        Err(e) if code(&e) == Some("TargetGroupNotFound") => Ok(None),
        Err(e) => Err(e),
    }
}

async fn create_target_group(
    cloud: &AwsCloud,
    c: &Clients,
    load_balancer: &str,
    group: &str,
    health_check_path: &str,
) -> Result<String, CloudError> {
    cloud.count();
    let lbs = c
        .elbv2
        .describe_load_balancers()
        .load_balancer_arns(load_balancer)
        .send()
        .await
        .map_err(|e| classify("DescribeLoadBalancers", e))?;
    let vpc = lbs
        .load_balancers()
        .first()
        .and_then(|l| l.vpc_id())
        .unwrap_or_default()
        .to_string();
    cloud.count();
    // Creating a target group that exists with the same settings returns it (AWS documents
    // this), so a repeat after a crash is harmless.
    let out = c
        .elbv2
        .create_target_group()
        .name(target_group_name(group))
        .protocol(ProtocolEnum::Http)
        .port(TARGET_PORT)
        .vpc_id(vpc)
        .target_type(TargetTypeEnum::Instance)
        .health_check_path(health_check_path)
        .send()
        .await
        .map_err(|e| classify("CreateTargetGroup", e))?;
    out.target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .map(str::to_string)
        .ok_or_else(|| CloudError::Unavailable("CreateTargetGroup returned no ARN".into()))
}

/// Deletes the target groups of an environment's Auto Scaling groups (after its termination
/// took its instances off them); a group already gone is fine.
pub async fn delete_target_groups(
    cloud: &AwsCloud,
    c: &Clients,
    groups: &[String],
) -> Result<(), CloudError> {
    for group in groups {
        let Some(tg) = target_group(cloud, c, group).await? else {
            continue;
        };
        cloud.count();
        match c
            .elbv2
            .delete_target_group()
            .target_group_arn(tg)
            .send()
            .await
            .map_err(|e| classify("DeleteTargetGroup", e))
        {
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceInUse") => {} // still on the listener: later
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
