//! `ionroller sim`: drive the simulated cloud (alarms, failing and vanished environments,
//! deregistered instances) to try failures and drift; prints the simulator's answer.

use serde_json::json;

use crate::args::SimCommand;
use crate::client::Client;
use crate::output::line;

pub async fn run(client: &Client, command: SimCommand) -> anyhow::Result<i32> {
    let (path, body) = match command {
        SimCommand::Alarm {
            name,
            state,
            reason,
            value,
        } => (
            format!("/v1/sim/alarms/{name}"),
            json!({ "state": state.to_uppercase(), "reason": reason, "value": value }),
        ),
        SimCommand::FailEnv { service, version } => (
            "/v1/sim/fail-env".into(),
            json!({ "service": service, "version": version }),
        ),
        SimCommand::TerminateEnv { environment } => (
            "/v1/sim/terminate-env".into(),
            json!({ "environment": environment }),
        ),
        SimCommand::Deregister { instance } => {
            ("/v1/sim/deregister".into(), json!({ "instance": instance }))
        }
    };
    line(client.post(&path, &body).await?)?;
    Ok(0)
}
