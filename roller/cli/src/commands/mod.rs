//! Running each subcommand: a request through `client`, text from `render`, lines through
//! `output`, and the exit code. One file per group of commands; `up` has its own module.

pub(crate) mod config;
mod rollout;
mod sim;
mod tokens;
mod trail;

use std::time::Duration;

use serde_json::json;

use crate::args::{Cli, Command};
use crate::client::Client;
use crate::up::{up, StoreChoice};

/// Runs `cli`'s command; the exit code is the command's verdict (e.g. 1 for a rolled-back
/// release), an error is a failure to carry it out.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    crate::output::set_format(cli.output);
    let token = crate::credentials::find_token(cli.token, &cli.server)?;
    let http = crate::client::http_client(cli.ca_cert.as_deref())?;
    let console_token = token.clone();
    let roller = Client::new(&cli.server, "the roller", http.clone(), token.clone());
    let trail = Client::new(&cli.trail, "trail", http, token);
    match cli.command {
        Command::Up {
            data_dir,
            cloud,
            postgres,
            postgres_schema,
            kurrentdb,
            kurrentdb_namespace,
            replica_id,
            lease_ttl_ms,
            sim_file,
            aws_calls_per_second,
            listen,
            interval_ms,
            workers,
            trail_listen,
            external_trail,
            oidc,
            notifications,
            public_metrics,
            tls_cert,
            tls_key,
            insecure_http,
        } => {
            let replica = crate::up::Replication {
                id: replica_id.unwrap_or_else(crate::up::default_replica_id),
                lease_ttl: Duration::from_millis(lease_ttl_ms),
            };
            let store = match (postgres, kurrentdb) {
                (Some(url), _) => StoreChoice::Postgres {
                    url,
                    schema: postgres_schema,
                    replica,
                },
                (None, Some(url)) => StoreChoice::Kurrent {
                    url,
                    namespace: kurrentdb_namespace,
                    replica,
                },
                (None, None) => StoreChoice::Embedded,
            };
            up(
                data_dir,
                store,
                crate::up::CloudChoice {
                    kind: cloud,
                    sim_file,
                    aws_calls_per_second,
                },
                &listen.map_or_else(|| crate::up::address_of(&cli.server), Ok)?,
                match external_trail {
                    Some(url) => crate::up::TrailChoice::External { url },
                    None => crate::up::TrailChoice::InProcess {
                        listen: trail_listen
                            .map_or_else(|| crate::up::address_of(&cli.trail), Ok)?,
                    },
                },
                crate::up::Reconcile {
                    interval: Duration::from_millis(interval_ms),
                    workers: usize::from(workers),
                    notifications: match &notifications {
                        Some(file) => ionroller_roller::notify::endpoints::load(file)?,
                        None => Vec::new(),
                    },
                },
                crate::up::Access {
                    oidc,
                    public_metrics,
                    tls: tls_cert.zip(tls_key),
                    insecure_http,
                },
            )
            .await?;
            Ok(0)
        }
        Command::Audit {
            service,
            actor,
            people,
            event_type,
            since,
            limit,
            follow,
        } => {
            let filter = trail::AuditFilter {
                service,
                actor,
                people,
                event_type,
                since,
                limit,
            };
            trail::audit(&trail, filter, follow).await
        }
        Command::History { service } => trail::history(&trail, &service).await,
        Command::At { service, time } => trail::at(&trail, &service, &time).await,
        Command::Report { since, service } => trail::report(&trail, since, service).await,
        Command::Verify => trail::verify(&trail).await,
        Command::Whoami => tokens::whoami(&roller).await,
        Command::Console => tokens::console(&roller, &cli.server, console_token).await,
        Command::Token(command) => tokens::run(&roller, command).await,
        Command::Config(c) => config::run(&roller, c).await,
        Command::Release {
            service,
            version,
            reason,
            override_alarms,
            follow,
        } => {
            let request = rollout::ReleaseRequest {
                version,
                reason,
                override_alarms,
            };
            rollout::release(&roller, &service, request, follow.into()).await
        }
        Command::Rollback {
            service,
            to_version,
            reason,
            follow,
        } => rollout::rollback(&roller, &service, to_version, reason, follow.into()).await,
        Command::Pause { service, reason } => {
            rollout::simple(&roller, &service, "pause", json!({ "reason": reason })).await
        }
        Command::Resume { service, reason } => {
            rollout::simple(&roller, &service, "resume", json!({ "reason": reason })).await
        }
        Command::Promote {
            service,
            full,
            reason,
        } => {
            let body = json!({ "full": full, "reason": reason });
            rollout::simple(&roller, &service, "promote", body).await
        }
        Command::Abort { service, reason } => {
            rollout::simple(&roller, &service, "abort", json!({ "reason": reason })).await
        }
        Command::Status {
            service,
            watch: false,
            ..
        } => rollout::status(&roller, &service).await,
        Command::Status {
            service, timeout, ..
        }
        | Command::Watch { service, timeout } => rollout::watch(&roller, &service, timeout).await,
        Command::Completion { shell } => {
            let mut buffer = Vec::new();
            clap_complete::generate(
                shell,
                &mut <crate::args::Cli as clap::CommandFactory>::command(),
                "ionroller",
                &mut buffer,
            );
            crate::output::print(&String::from_utf8_lossy(&buffer))?;
            Ok(0)
        }
        Command::Services => rollout::services(&roller).await,
        Command::Events {
            service,
            follow,
            raw,
        } => rollout::events(&roller, &service, follow, raw).await,
        Command::Plan { service, version } => rollout::plan(&roller, &service, &version).await,
        Command::Sim(s) => sim::run(&roller, s).await,
    }
}
