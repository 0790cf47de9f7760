//! Traffic on an Application Load Balancer: each environment's Auto Scaling group gets its own
//! target group, and the endpoint listener forwards to them with weights.
//!
//! The roller's plan is the same as on a classic ELB (register this environment's instances,
//! deregister that one's), so that both kinds share one tested core: an instance is
//! "registered" when it is a target in a target group the listener forwards to, and each
//! target group's weight is its number of healthy targets. The share of traffic a version gets
//! is then its share of healthy registered instances, as on a classic ELB, and the listener
//! shows it as weights.
//!
//! Target states follow ELBv2: a target is `unused` while its group is on no listener,
//! `initial` until it passes its health checks, and `draining` for the deregistration delay
//! after it is deregistered. Only healthy targets carry weight. A group joins the listener
//! when instances are registered into it, at weight 0 until they are healthy: its targets
//! count as registered but not in service, and the roller waits for them, as it waits for
//! OutOfService instances on a classic ELB. Once healthy they read as unregistered (they take
//! no traffic at weight 0) until the roller registers them again, which weighs them in. A
//! change re-weighs only the groups it touched, so a group left at 0 (a rolled-back release)
//! never gets weight back by someone else's change; groups with nothing but draining targets
//! leave the listener, and an environment's groups leave it before they are deleted.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    Action as ListenerAction, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, TargetDescription,
    TargetGroupTuple, TargetHealthStateEnum, TargetTypeEnum,
};
use ionroller_shared::cloud::CloudError;
use ionroller_shared::events::RegisteredInstance;

use crate::clients::Clients;
use crate::error::{classify, code};
use crate::spec::NAMES_PER_CALL;
use crate::state::DriverState;

/// The port targets receive traffic on: EB's Docker platform puts nginx on 80 in front of
/// the container.
const TARGET_PORT: i32 = 80;

/// The target group ionroller keeps for an Auto Scaling group: deterministic, so a repeated
/// action finds it; 32 characters at most, as ELBv2 requires.
pub fn target_group_name(auto_scaling_group: &str) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, auto_scaling_group.as_bytes());
    format!("ionroller-{}", &id.simple().to_string()[..22])
}

/// A target as far as traffic is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Passing health checks: takes requests if its group has weight.
    Healthy,
    /// Registered but not (yet, or any longer) passing: `unused` (its group is on no
    /// listener yet), `initial`, `unhealthy`, `unavailable`.
    Pending,
    /// Deregistered, finishing its requests: `draining`.
    Gone,
}

impl TargetState {
    pub fn of(state: Option<&TargetHealthStateEnum>) -> TargetState {
        match state {
            Some(TargetHealthStateEnum::Healthy) => TargetState::Healthy,
            Some(TargetHealthStateEnum::Draining) => TargetState::Gone,
            _ => TargetState::Pending,
        }
    }
}

/// ELBv2's largest forward weight.
const MAX_WEIGHT: i32 = 999;

/// What the roller sees as registered, from the listener's target groups (weight and target
/// states each). Pure; the rules are in the module comment.
pub fn registrations_from(groups: &[(i32, Vec<(String, TargetState)>)]) -> Vec<RegisteredInstance> {
    let mut out: Vec<RegisteredInstance> = groups
        .iter()
        .flat_map(|(weight, targets)| {
            targets.iter().filter_map(move |(id, state)| {
                let in_service = match (state, *weight > 0) {
                    (TargetState::Gone, _) | (TargetState::Healthy, false) => return None,
                    (TargetState::Healthy, true) => true,
                    (TargetState::Pending, _) => false,
                };
                Some(RegisteredInstance {
                    id: id.clone(),
                    in_service,
                })
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The listener's forward weights after a change. `current` is what it has; `states` the
/// target states of every group in `current` or `touched` (the groups this change registered
/// into or deregistered from). A touched group weighs its healthy targets (0 while none is);
/// an untouched one keeps its weight. A group with no targets left but draining ones leaves,
/// unless nothing with weight would remain: then the listener keeps what it had, as it must
/// forward somewhere. Pure.
pub fn next_weights(
    current: &BTreeMap<String, i32>,
    states: &BTreeMap<String, Vec<TargetState>>,
    touched: &BTreeSet<String>,
) -> Vec<(String, i32)> {
    let empty = Vec::new();
    let mut keep = Vec::new();
    let mut leaving = Vec::new();
    for tg in current
        .keys()
        .chain(touched.iter().filter(|t| !current.contains_key(*t)))
    {
        let targets = states.get(tg).unwrap_or(&empty);
        let weight = if touched.contains(tg) {
            let healthy = targets
                .iter()
                .filter(|s| **s == TargetState::Healthy)
                .count();
            i32::try_from(healthy).unwrap_or(MAX_WEIGHT).min(MAX_WEIGHT)
        } else {
            current.get(tg).copied().unwrap_or(0)
        };
        if targets.iter().all(|s| *s == TargetState::Gone) {
            leaving.push((tg.clone(), current.get(tg).copied().unwrap_or(weight)));
        } else {
            keep.push((tg.clone(), weight));
        }
    }
    if !keep.iter().any(|(_, w)| *w > 0) {
        keep.extend(leaving);
    }
    keep.sort();
    keep
}

/// The listener as it is: its load balancer, its default actions, and the forward weights
/// (target group ARN → weight).
struct Listener {
    load_balancer: String,
    actions: Vec<ListenerAction>,
    weights: BTreeMap<String, i32>,
}

async fn describe_listener(
    state: &DriverState,
    c: &Clients,
    listener: &str,
) -> Result<Listener, CloudError> {
    state.call(c, "DescribeListeners").await;
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
    Ok(Listener {
        load_balancer: l.load_balancer_arn().unwrap_or_default().to_string(),
        actions: l.default_actions().to_vec(),
        weights,
    })
}

async fn targets(
    state: &DriverState,
    c: &Clients,
    target_group: &str,
) -> Result<Vec<(String, TargetState)>, CloudError> {
    state.call(c, "DescribeTargetHealth").await;
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
            Some((
                d.target()?.id()?.to_string(),
                TargetState::of(d.target_health().and_then(|h| h.state())),
            ))
        })
        .collect())
}

/// Registered instances: the targets of the listener's target groups.
pub async fn registrations(
    state: &DriverState,
    c: &Clients,
    listener: &str,
) -> Result<Vec<RegisteredInstance>, CloudError> {
    let l = describe_listener(state, c, listener).await?;
    let mut groups = Vec::new();
    for (tg, weight) in l.weights {
        groups.push((weight, targets(state, c, &tg).await?));
    }
    Ok(registrations_from(&groups))
}

/// Adds instances as targets of their groups' target groups (made when missing), or removes
/// them from whichever of the listener's target groups holds them; then re-weighs the groups
/// it touched. Safe to repeat: a repeated registration re-weighs too, which is how targets
/// that became healthy at weight 0 are weighed in.
pub async fn change(
    state: &DriverState,
    c: &Clients,
    listener: &str,
    instances: &[String],
    register: bool,
    health_check_path: &str,
) -> Result<String, CloudError> {
    let l = describe_listener(state, c, listener).await?;
    let mut touched = BTreeSet::new();
    if register {
        for (group, ids) in groups_of(state, c, instances).await? {
            let tg = match target_group(state, c, &group).await? {
                Some(arn) => arn,
                None => {
                    create_target_group(state, c, &l.load_balancer, &group, health_check_path)
                        .await?
                }
            };
            state.call(c, "RegisterTargets").await;
            c.elbv2
                .register_targets()
                .target_group_arn(&tg)
                .set_targets(Some(target_descriptions(&ids)))
                .send()
                .await
                .map_err(|e| classify("RegisterTargets", e))?;
            touched.insert(tg);
        }
    } else {
        // Wherever they are: ionroller's groups, or the group the listener forwarded to
        // before ionroller. Only what is there, so that a repeat after a crash cannot fail.
        for tg in l.weights.keys() {
            let present: Vec<String> = targets(state, c, tg)
                .await?
                .into_iter()
                .filter(|(id, state)| *state != TargetState::Gone && instances.contains(id))
                .map(|(id, _)| id)
                .collect();
            if present.is_empty() {
                continue;
            }
            state.call(c, "DeregisterTargets").await;
            c.elbv2
                .deregister_targets()
                .target_group_arn(tg)
                .set_targets(Some(target_descriptions(&present)))
                .send()
                .await
                .map_err(|e| classify("DeregisterTargets", e))?;
            touched.insert(tg.clone());
        }
    }
    let mut states = BTreeMap::new();
    for tg in l.weights.keys().chain(touched.iter()) {
        if !states.contains_key(tg) {
            let targets = targets(state, c, tg).await?;
            states.insert(tg.clone(), targets.into_iter().map(|(_, s)| s).collect());
        }
    }
    let weights = next_weights(&l.weights, &states, &touched);
    let verb = if register {
        "registered"
    } else {
        "deregistered"
    };
    let shown: Vec<String> = weights.iter().map(|(_, w)| w.to_string()).collect();
    let detail = format!(
        "{verb} {} instance(s); listener weights {}",
        instances.len(),
        shown.join(":")
    );
    if weights.iter().cloned().collect::<BTreeMap<_, _>>() != l.weights {
        set_weights(state, c, listener, &l.actions, &weights).await?;
    }
    Ok(detail)
}

async fn set_weights(
    state: &DriverState,
    c: &Clients,
    listener: &str,
    actions: &[ListenerAction],
    weights: &[(String, i32)],
) -> Result<(), CloudError> {
    state.call(c, "ModifyListener").await;
    c.elbv2
        .modify_listener()
        .listener_arn(listener)
        .set_default_actions(Some(with_forward(actions, weights)))
        .send()
        .await
        .map_err(|e| classify("ModifyListener", e))?;
    Ok(())
}

/// The listener's default actions with the forward action's target groups replaced by
/// `weights`. Everything else is kept as it was: authentication actions before it, the
/// forward action's order and its target group stickiness. A listener that forwarded
/// nowhere (a fixed response, say) gets the forward action in place of its final action.
pub fn with_forward(actions: &[ListenerAction], weights: &[(String, i32)]) -> Vec<ListenerAction> {
    let old = actions
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward));
    let forward = ForwardActionConfig::builder()
        .set_target_groups(Some(
            weights
                .iter()
                .map(|(tg, w)| {
                    TargetGroupTuple::builder()
                        .target_group_arn(tg)
                        .weight(*w)
                        .build()
                })
                .collect(),
        ))
        .set_target_group_stickiness_config(
            old.and_then(|a| a.forward_config())
                .and_then(|f| f.target_group_stickiness_config())
                .cloned(),
        )
        .build();
    let kept: Vec<ListenerAction> = actions
        .iter()
        .filter(|a| {
            matches!(
                a.r#type(),
                Some(ActionTypeEnum::AuthenticateOidc) | Some(ActionTypeEnum::AuthenticateCognito)
            )
        })
        .map(|a| {
            let mut a = a.clone();
            if let Some(oidc) = a.authenticate_oidc_config.as_mut() {
                // DescribeListeners does not give the client secret back; this keeps it.
                oidc.client_secret = None;
                oidc.use_existing_client_secret = Some(true);
            }
            a
        })
        .collect();
    let order = old
        .and_then(|a| a.order())
        .or_else(|| kept.iter().filter_map(|a| a.order()).max().map(|o| o + 1));
    let mut out = kept;
    out.push(
        ListenerAction::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(forward)
            .set_order(order)
            .build(),
    );
    out
}

fn target_descriptions(ids: &[String]) -> Vec<TargetDescription> {
    ids.iter()
        .map(|id| {
            TargetDescription::builder()
                .id(id)
                .port(TARGET_PORT)
                .build()
        })
        .collect()
}

/// Instances by the Auto Scaling group they belong to.
async fn groups_of(
    state: &DriverState,
    c: &Clients,
    instances: &[String],
) -> Result<BTreeMap<String, Vec<String>>, CloudError> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for chunk in instances.chunks(NAMES_PER_CALL) {
        state.call(c, "DescribeAutoScalingInstances").await;
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
    state: &DriverState,
    c: &Clients,
    group: &str,
) -> Result<Option<String>, CloudError> {
    state.call(c, "DescribeTargetGroups").await;
    find_target_group(c, group).await
}

/// The ARN of the target group ionroller keeps for an Auto Scaling group, if it exists.
pub async fn find_target_group(c: &Clients, group: &str) -> Result<Option<String>, CloudError> {
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
    state: &DriverState,
    c: &Clients,
    load_balancer: &str,
    group: &str,
    health_check_path: &str,
) -> Result<String, CloudError> {
    state.call(c, "DescribeLoadBalancers").await;
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
    state.call(c, "CreateTargetGroup").await;
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

/// Takes the target groups of an environment's Auto Scaling groups off the listener and
/// deletes them, before the environment is terminated (so that a crash in between cannot
/// leave them behind); what is already gone is fine. The roller terminates an environment
/// only once none of its instances reads as registered, so any of its groups still on the
/// listener carries no traffic that matters; but a listener left with nothing to forward to
/// is refused, for a person to point it somewhere.
pub async fn delete_target_groups(
    state: &DriverState,
    c: &Clients,
    listener: &str,
    groups: &[String],
) -> Result<(), CloudError> {
    let mut arns = Vec::new();
    for group in groups {
        if let Some(tg) = target_group(state, c, group).await? {
            arns.push(tg);
        }
    }
    let l = describe_listener(state, c, listener).await?;
    if arns.iter().any(|tg| l.weights.contains_key(tg)) {
        let rest: Vec<(String, i32)> = l
            .weights
            .iter()
            .filter(|(tg, _)| !arns.contains(tg))
            .map(|(tg, w)| (tg.clone(), *w))
            .collect();
        if !rest.iter().any(|(_, w)| *w > 0) {
            return Err(CloudError::Rejected {
                code: "ListenerWouldForwardNowhere".into(),
                message: format!(
                    "the listener {listener} forwards only to this environment's target groups; point it at another target group and the termination is retried"
                ),
            });
        }
        set_weights(state, c, listener, &l.actions, &rest).await?;
    }
    for tg in arns {
        state.call(c, "DeleteTargetGroup").await;
        match c
            .elbv2
            .delete_target_group()
            .target_group_arn(tg)
            .send()
            .await
            .map_err(|e| classify("DeleteTargetGroup", e))
        {
            Ok(_) => {}
            Err(e) if code(&e) == Some("TargetGroupNotFound") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetState::{Gone, Healthy, Pending};

    fn targets(list: &[(&str, TargetState)]) -> Vec<(String, TargetState)> {
        list.iter().map(|(id, s)| (id.to_string(), *s)).collect()
    }

    fn reg(id: &str, in_service: bool) -> RegisteredInstance {
        RegisteredInstance {
            id: id.into(),
            in_service,
        }
    }

    #[test]
    fn draining_targets_are_gone_and_healthy_ones_at_weight_zero_wait_to_be_weighed_in() {
        let seen = registrations_from(&[
            // The old group: one serving, one draining after its deregistration.
            (1, targets(&[("i-old-1", Healthy), ("i-old-2", Gone)])),
            // The new group at weight 0: one still initial, one healthy but not weighed in.
            (0, targets(&[("i-new-1", Pending), ("i-new-2", Healthy)])),
        ]);
        assert_eq!(
            seen,
            vec![reg("i-new-1", false), reg("i-old-1", true)],
            "i-new-2 reads as unregistered, so the roller registers it again, which re-weighs"
        );
    }

    #[test]
    fn target_states_from_elbv2() {
        use TargetHealthStateEnum as S;
        assert_eq!(TargetState::of(Some(&S::Healthy)), Healthy);
        assert_eq!(TargetState::of(Some(&S::Draining)), Gone);
        // A group on no listener yet reports its targets unused: they are on their way in.
        for pending in [S::Unused, S::Initial, S::Unhealthy, S::Unavailable] {
            assert_eq!(TargetState::of(Some(&pending)), Pending, "{pending:?}");
        }
        assert_eq!(TargetState::of(None), Pending);
    }

    fn weights(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(tg, w)| (tg.to_string(), *w)).collect()
    }

    fn states(list: &[(&str, &[TargetState])]) -> BTreeMap<String, Vec<TargetState>> {
        list.iter()
            .map(|(tg, s)| (tg.to_string(), s.to_vec()))
            .collect()
    }

    fn touched(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(tg, w)| (tg.to_string(), *w)).collect()
    }

    #[test]
    fn a_first_release_joins_at_zero_and_is_weighed_in_once_healthy() {
        // The listener forwards to the team's own (empty) group; v1's targets are unused.
        let before = weights(&[("theirs", 1)]);
        let mut now = states(&[("theirs", &[]), ("v1", &[Pending, Pending])]);
        assert_eq!(
            next_weights(&before, &now, &touched(&["v1"])),
            pairs(&[("theirs", 1), ("v1", 0)]),
            "nothing healthy yet: the listener keeps forwarding where it did"
        );
        now.insert("v1".into(), vec![Healthy, Healthy]);
        assert_eq!(
            next_weights(
                &weights(&[("theirs", 1), ("v1", 0)]),
                &now,
                &touched(&["v1"])
            ),
            pairs(&[("v1", 2)]),
            "the empty group leaves once v1 carries weight"
        );
    }

    #[test]
    fn only_touched_groups_are_reweighed_and_drained_ones_leave() {
        let before = weights(&[("v1", 2), ("v2", 1), ("rolled-back", 0)]);
        // v1 lost one target to a deregistration; the rolled-back group's target turned
        // healthy at 0, which must not give it weight back.
        let now = states(&[
            ("v1", &[Healthy, Gone]),
            ("v2", &[Healthy, Healthy]),
            ("rolled-back", &[Healthy]),
        ]);
        assert_eq!(
            next_weights(&before, &now, &touched(&["v1"])),
            pairs(&[("rolled-back", 0), ("v1", 1), ("v2", 1)])
        );
        let drained = states(&[("v1", &[Gone, Gone]), ("v2", &[Healthy, Healthy])]);
        assert_eq!(
            next_weights(
                &weights(&[("v1", 1), ("v2", 2)]),
                &drained,
                &touched(&["v1"])
            ),
            pairs(&[("v2", 2)])
        );
        // The last group draining stays: the listener must forward somewhere.
        let last = states(&[("v1", &[Gone])]);
        assert_eq!(
            next_weights(&weights(&[("v1", 2)]), &last, &touched(&["v1"])),
            pairs(&[("v1", 2)])
        );
    }

    #[test]
    fn the_forward_action_is_replaced_and_the_rest_kept() {
        use aws_sdk_elasticloadbalancingv2::types::{
            AuthenticateOidcActionConfig, TargetGroupStickinessConfig,
        };
        let auth = ListenerAction::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .order(1)
            .authenticate_oidc_config(
                AuthenticateOidcActionConfig::builder()
                    .issuer("https://idp.example")
                    .client_secret("as read back, if it were")
                    .build(),
            )
            .build();
        let sticky = TargetGroupStickinessConfig::builder()
            .enabled(true)
            .duration_seconds(300)
            .build();
        let forward = ListenerAction::builder()
            .r#type(ActionTypeEnum::Forward)
            .order(2)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_group_stickiness_config(sticky.clone())
                    .build(),
            )
            .build();
        let out = with_forward(&[auth.clone(), forward], &[("tg-new".into(), 2)]);
        assert_eq!(out.len(), 2);
        let kept = out[0].authenticate_oidc_config().expect("oidc");
        assert_eq!(kept.issuer(), Some("https://idp.example"));
        assert_eq!(kept.client_secret(), None, "never sent back");
        assert_eq!(kept.use_existing_client_secret(), Some(true));
        assert_eq!(out[0].order(), Some(1));
        assert_eq!(out[1].order(), Some(2));
        let config = out[1].forward_config().expect("forward");
        assert_eq!(config.target_group_stickiness_config(), Some(&sticky));
        assert_eq!(config.target_groups()[0].weight(), Some(2));

        let fixed = ListenerAction::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .build();
        let out = with_forward(&[fixed], &[("tg-new".into(), 1)]);
        assert_eq!(out.len(), 1, "the fixed response is replaced");
        assert_eq!(out[0].r#type(), Some(&ActionTypeEnum::Forward));
    }
}
