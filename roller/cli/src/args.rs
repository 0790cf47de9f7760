//! What the command line accepts: clap's definitions only, so that `--help` and the parser can
//! be read (and unit-tested) apart from what each command does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

#[derive(Parser)]
#[command(
    name = "ionroller",
    version,
    about = "Ship Docker-image releases to AWS, gradually and reversibly"
)]
pub struct Cli {
    /// The roller's URL.
    #[arg(
        long,
        global = true,
        env = "IONROLLER_URL",
        default_value = "http://127.0.0.1:7878"
    )]
    pub server: String,
    /// Trail's URL (audit, history, reports).
    #[arg(
        long,
        global = true,
        env = "IONROLLER_TRAIL_URL",
        default_value = "http://127.0.0.1:7879"
    )]
    pub trail: String,
    /// Output: `text` for people, or `json`: the API's answer as it is (one JSON object per
    /// line for lists that stream: `events`, `audit`).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// The API token to send (else IONROLLER_TOKEN, the user's config file, or, for a server
    /// on this machine, the admin token `ionroller up` wrote to its data dir).
    #[arg(long, global = true, env = "IONROLLER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// For an https server: trust only the CA certificates in this PEM file (e.g. a private
    /// CA's, or the server's own self-signed certificate) instead of the system's.
    #[arg(long, global = true, env = "IONROLLER_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once and never stored.
    ///
    /// Example: `ionroller token create payments-ci --role deployer --service 'payments-*'
    /// --expires 90d`
    Create {
        /// 1 to 64 lowercase letters, digits, `-`, `_` or `.`.
        name: String,
        /// viewer, deployer, maintainer or admin.
        #[arg(long)]
        role: String,
        /// Services it reaches (`payments-*`, `hello`); repeat for several. None: every one.
        #[arg(long = "service")]
        services: Vec<String>,
        /// It stops working after this long (`90d`, `12h`). Default: never.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Every token: name, role, services, who created it, when it expires.
    ///
    /// Example: `ionroller token list -o json`
    List,
    /// Refuse the token named NAME from now on, on every replica.
    ///
    /// Example: `ionroller token revoke payments-ci`
    Revoke {
        /// The token's name, as `token list` shows it.
        name: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CloudKind {
    Sim,
    Aws,
}

// `Up` carries every server option; the command is parsed once per process, so its size
// costs nothing worth boxing it for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run the roller and trail on the embedded event store, on the simulated cloud or AWS.
    ///
    /// Example: `ionroller up` (embedded log, simulated cloud, 127.0.0.1:7878 and :7879);
    /// `ionroller up --cloud aws --postgres postgresql://... --notifications hooks.json`
    #[command(group(clap::ArgGroup::new("shared_log").args(["postgres", "kurrentdb"])))]
    Up {
        /// Where the event log (and the simulated cloud) keep their files, and where the first
        /// `up` writes the admin token (`admin.token`, readable by its owner only).
        #[arg(long, env = "IONROLLER_DATA_DIR", default_value = ".ionroller")]
        data_dir: PathBuf,
        /// `sim` (no account needed) or `aws`: the AWS SDK's standard configuration
        /// (region, credentials, `AWS_ENDPOINT_URL*`) decides where calls go.
        #[arg(long, value_enum, default_value_t = CloudKind::Sim)]
        cloud: CloudKind,
        /// Keep the event log in PostgreSQL (a libpq URL) instead of the embedded SQLite file.
        #[arg(long, env = "IONROLLER_POSTGRES_URL", hide_env_values = true)]
        postgres: Option<String>,
        /// The PostgreSQL schema for the log's tables (created if missing).
        #[arg(long, default_value = "public")]
        postgres_schema: String,
        /// Keep the event log in KurrentDB, given as its clients take it:
        /// `kurrentdb://user:password@host:2113?tls=true` for one node,
        /// `kurrentdb+discover://...` for a cluster (`nodePreference=leader` by default).
        /// Several `up` processes on one log share the services as replicas (see --replica-id).
        #[arg(
            long,
            env = "IONROLLER_KURRENTDB_CONNECTION_STRING",
            hide_env_values = true,
            conflicts_with = "postgres"
        )]
        kurrentdb: Option<String>,
        /// With --kurrentdb, a prefix for every stream ionroller writes (several
        /// installations, or environments, on one cluster).
        #[arg(
            long,
            env = "IONROLLER_KURRENTDB_NAMESPACE",
            default_value = "",
            requires = "kurrentdb"
        )]
        kurrentdb_namespace: String,
        /// With --postgres or --kurrentdb, several `up` processes share the services as
        /// replicas: this one's name in the lease table and on every action it intends. Unique
        /// per process; by default the host name, the process id and a random suffix.
        #[arg(long, env = "IONROLLER_REPLICA_ID", requires = "shared_log")]
        replica_id: Option<String>,
        /// With --postgres or --kurrentdb, how long a replica's shard leases last unrenewed, in
        /// milliseconds: the services of a replica that dies wait this long for another to
        /// take them over.
        #[arg(long, default_value_t = 10_000, requires = "shared_log",
              value_parser = clap::value_parser!(u64).range(1000..=300_000))]
        lease_ttl_ms: u64,
        /// The simulated cloud's file (default: sim-cloud.json in the data dir). Replicas on
        /// one log give the same file, so that they see one cloud.
        #[arg(long)]
        sim_file: Option<PathBuf>,
        /// With --cloud aws, at most this many calls per second of one AWS API in one account
        /// and region (AWS throttles from roughly 10-20); calls beyond wait their turn.
        #[arg(long, default_value_t = ionroller_aws::DEFAULT_CALLS_PER_SECOND,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        aws_calls_per_second: u32,
        /// Address for the API. Default: where IONROLLER_URL (--server) points, so the CLI and
        /// the server share one setting; without it, 127.0.0.1:7878.
        #[arg(long)]
        listen: Option<String>,
        /// How often each service is observed and reconciled, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// How many services of one account-region reconcile at once (each one stays strictly
        /// serial): an account whose calls hang or are throttled holds its own workers only.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: u16,
        /// Address for trail's API and dashboard. Default: where IONROLLER_TRAIL_URL (--trail)
        /// points; without it, 127.0.0.1:7879.
        #[arg(long)]
        trail_listen: Option<String>,
        /// Trail runs as a service of its own (`trail serve` on the same log) at this URL:
        /// start none here (`--trail-listen` is then unused), and link the console to it.
        #[arg(long)]
        external_trail: Option<String>,
        /// Notify the webhooks and Slack hooks this JSON file names of rollouts that start,
        /// wait for a person, complete, roll back, are aborted or superseded, of refused cloud
        /// actions and of drift (README, "Notifications").
        #[arg(long, env = "IONROLLER_NOTIFICATIONS")]
        notifications: Option<PathBuf>,
        /// Also accept bearer JWTs from the OpenID Connect issuers this JSON file names, with
        /// the rules that map their groups to roles (see README, "Identity").
        #[arg(long)]
        oidc: Option<PathBuf>,
        /// Serve `/metrics` without credentials (for a scraper that cannot send a token).
        #[arg(long)]
        public_metrics: bool,
        /// PEM certificate chain: both APIs speak TLS (with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Allow plain HTTP on an address other machines can reach, because a load balancer
        /// in front terminates TLS. Without it (or TLS), such an address is refused.
        #[arg(long, conflicts_with = "tls_cert")]
        insecure_http: bool,
    },
    /// Who the token this command line sends proves you to be, and what you may do.
    ///
    /// Example: `ionroller whoami`
    Whoami,
    /// Print a link that opens the web console signed in with this command line's token
    /// (in the URL's fragment, which browsers never send to a server).
    ///
    /// Example: `ionroller console`
    Console,
    /// API tokens (admin): create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Trail: the newest audit rows, printed oldest first; with --follow, then every new one.
    ///
    /// Example: `ionroller audit --service hello --since 1h --people`
    Audit {
        /// Only this service's rows.
        #[arg(long)]
        service: Option<String>,
        /// Only rows by this actor (`NAME via token ID`, `roller`, ...).
        #[arg(long)]
        actor: Option<String>,
        /// Only rows by people (and their automation), not the roller's own.
        #[arg(long)]
        people: bool,
        /// Only this event type, e.g. release-requested.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// A duration back from now ("1h", "30m", "7d") or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// At most this many of the newest rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Then print every new row that matches, as it is projected.
        #[arg(long)]
        follow: bool,
    },
    /// Trail: every rollout of a service, with its outcome.
    ///
    /// Example: `ionroller history hello`
    History {
        /// The service (lowercase letters, digits and `-`).
        service: String,
    },
    /// Trail: what served SERVICE at TIME (RFC 3339, or a duration ago such as "2h").
    ///
    /// Example: `ionroller at hello 10m`
    At {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// An RFC 3339 time, or a duration back from now (`2h`, `10m`).
        time: String,
    },
    /// Trail: the delivery report (deployments, lead time, failure rate, time to restore).
    ///
    /// Example: `ionroller report --since 7d --service hello`
    Report {
        /// A duration back from now ("7d", "12h") or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only this service (default: every service you may read).
        #[arg(long)]
        service: Option<String>,
    },
    /// Trail: recompute the audit hash chain against the log (exit 1 on a mismatch).
    ///
    /// Example: `ionroller verify`
    Verify,
    /// Service configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Release a version and follow it until it ends: exit 0 completed, 1 rolled back, 4
    /// superseded or aborted, 5 --timeout (README, "Exit codes").
    ///
    /// Example: `ionroller release hello v2 --reason "fix login"`, or in CI
    /// `ionroller release hello "$GIT_SHA" --timeout 30m`
    Release {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// The version to ship (the Docker image tag the config's image names).
        version: String,
        /// Why, recorded in the audit.
        #[arg(long)]
        reason: Option<String>,
        /// Release even though a configured alarm is firing (recorded).
        #[arg(long)]
        override_alarms: bool,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Release the previous version again (fast while its environment is warm); during a
    /// rollout without --to, send traffic back.
    ///
    /// Example: `ionroller rollback hello`, or `ionroller rollback hello --to v1`
    Rollback {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// A version that served all traffic before (default: the one before the current).
        #[arg(long = "to")]
        to_version: Option<String>,
        /// Why, recorded in the audit.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Hold the rollout where it is.
    ///
    /// Example: `ionroller pause hello --reason "checking the dashboards"`
    Pause {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// Why, recorded in the audit.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let a paused rollout move on.
    ///
    /// Example: `ionroller resume hello`
    Resume {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// Why, recorded in the audit.
        #[arg(long)]
        reason: Option<String>,
    },
    /// End the current wait: canary or test endpoint.
    ///
    /// Example: `ionroller promote hello`, or `ionroller promote hello --full`
    Promote {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// Also skip every step left: the next shift goes to 100% (alarms still roll back).
        #[arg(long)]
        full: bool,
        /// Why, recorded in the audit.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move traffic back to the previous version.
    ///
    /// Example: `ionroller abort hello --reason "wrong build"`
    Abort {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// Why, recorded in the audit and sent with the notification.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Environments, traffic split, and the rollout in progress.
    ///
    /// Example: `ionroller status hello`; `ionroller status -w hello` watches the rollout in
    /// progress as `ionroller watch` does.
    Status {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// Keep watching the rollout in progress until it ends (as `ionroller watch`).
        #[arg(short = 'w', long)]
        watch: bool,
        /// With --watch, stop watching after this long (`90s`, `10m`), exiting 5.
        #[arg(long, value_parser = humantime::parse_duration, requires = "watch")]
        timeout: Option<std::time::Duration>,
    },
    /// Attach to the service's rollout in progress and follow it until it ends; exits with its
    /// outcome (0 completed, 1 rolled back, 4 superseded or aborted, 5 --timeout passed).
    ///
    /// On a terminal the status is redrawn in place; piped, one line per change. With nothing
    /// in progress it prints the status and exits 0. Ctrl-C stops watching, never the rollout.
    ///
    /// Example: `ionroller watch hello --timeout 30m`
    Watch {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// Stop watching after this long (`90s`, `10m`), exiting 5; the rollout goes on.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Print a completion script for your shell.
    ///
    /// Example: `ionroller completion bash > /etc/bash_completion.d/ionroller`, or
    /// `source <(ionroller completion zsh)`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Every service you may read: stable version, rollout stage and step, what needs
    /// attention, most urgent first.
    ///
    /// Example: `ionroller services`, or `ionroller services -o json | jq '.services[]'`
    Services,
    /// The service's events, one sentence each; with --follow, keep printing new ones.
    ///
    /// Example: `ionroller events hello --follow`, or `ionroller events hello --raw | jq .type`
    Events {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// Then keep printing new events as they are recorded.
        #[arg(long)]
        follow: bool,
        /// Each event as the API sends it, one JSON object per line (as `-o json`).
        #[arg(long)]
        raw: bool,
    },
    /// The steps, pauses and worst-case duration a release would take.
    ///
    /// Example: `ionroller plan hello v2`
    Plan {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// The version the release would ship.
        version: String,
    },
    /// Drive the simulated cloud (demos and what-ifs).
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Args)]
pub struct FollowArgs {
    /// Return once the request is accepted instead of following progress.
    #[arg(long)]
    pub no_follow: bool,
    /// Stop following after this long (`90s`, `10m`), exiting 5; the rollout goes on.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "no_follow")]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print a commented template to start from.
    ///
    /// Example: `ionroller config init hello > hello.jsonc`
    Init {
        /// The service (lowercase letters, digits and `-`).
        service: String,
    },
    /// Save FILE as the service's next config version (JSON with comments and trailing commas).
    ///
    /// Example: `ionroller config set hello hello.jsonc`
    Set {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// The config: JSON, with comments and trailing commas allowed.
        file: PathBuf,
    },
    /// Print the service's current config (as JSON a `config set` takes back).
    ///
    /// Example: `ionroller config get hello > hello.json`
    Get {
        /// The service (lowercase letters, digits and `-`).
        service: String,
    },
    /// Every saved version of the service's config: when, and by whom.
    ///
    /// Example: `ionroller config history hello`
    History {
        /// The service (lowercase letters, digits and `-`).
        service: String,
    },
}

#[derive(Subcommand)]
pub enum SimCommand {
    /// Set a CloudWatch alarm's state: ALARM, OK or INSUFFICIENT_DATA.
    ///
    /// Example: `ionroller sim alarm hello-5xx ALARM --reason "5xx 12% > 5%" --value 12`
    Alarm {
        /// The alarm's name, as the service's config lists it.
        name: String,
        /// ALARM, OK or INSUFFICIENT_DATA.
        state: String,
        /// The reason CloudWatch would give.
        #[arg(long)]
        reason: Option<String>,
        /// The datapoint the reason quotes.
        #[arg(long)]
        value: Option<f64>,
    },
    /// Make environments of SERVICE at VERSION turn Red.
    ///
    /// Example: `ionroller sim fail-env hello v2`
    FailEnv {
        /// The service (lowercase letters, digits and `-`).
        service: String,
        /// The version whose environments fail.
        version: String,
    },
    /// Terminate an environment behind the roller's back (drift).
    ///
    /// Example: `ionroller sim terminate-env hello-v1-e4f5d8`
    TerminateEnv {
        /// The environment's name, as `ionroller status` shows it.
        environment: String,
    },
    /// Deregister an instance behind the roller's back (drift).
    ///
    /// Example: `ionroller sim deregister i-0123456789abcdef0`
    Deregister {
        /// The instance id (`i-...`, as `ionroller -o json status SERVICE` lists them).
        instance: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("ionroller").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"))
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// `--help` documents every argument and flag, and shows an example of every command.
    #[test]
    fn every_command_argument_and_flag_is_documented_with_an_example() {
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name()).trim().to_string();
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: argument {id} has no help"));
                }
            }
            let subcommands: Vec<_> = command.get_subcommands().collect();
            if subcommands.is_empty() && path != "ionroller" {
                let long = command
                    .get_long_about()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                if !long.contains("Example:") {
                    missing.push(format!("{path}: no example in its long help"));
                }
            }
            for sub in subcommands {
                check(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn up_has_the_documented_defaults() {
        let Command::Up {
            data_dir,
            cloud,
            listen,
            interval_ms,
            trail_listen,
            postgres_schema,
            ..
        } = parse(&["up"]).command
        else {
            panic!("not up");
        };
        assert_eq!(data_dir, PathBuf::from(".ionroller"));
        assert_eq!(cloud, CloudKind::Sim);
        assert_eq!(listen, None, "taken from --server");
        assert_eq!(interval_ms, 1000);
        assert_eq!(trail_listen, None, "taken from --trail");
        assert_eq!(postgres_schema, "public");
        let Command::Up { cloud, .. } = parse(&["up", "--cloud", "aws"]).command else {
            panic!("not up");
        };
        assert_eq!(cloud, CloudKind::Aws);
    }

    #[test]
    fn global_urls_go_after_the_subcommand_too() {
        let cli = parse(&[
            "status",
            "hello",
            "--server",
            "http://r:1",
            "--trail",
            "http://t:2",
        ]);
        assert_eq!(cli.server, "http://r:1");
        assert_eq!(cli.trail, "http://t:2");
    }

    #[test]
    fn release_takes_its_flags() {
        let Command::Release {
            service,
            version,
            reason,
            override_alarms,
            follow,
        } = parse(&[
            "release",
            "hello",
            "v2",
            "--reason",
            "new greeting",
            "--override-alarms",
            "--no-follow",
        ])
        .command
        else {
            panic!("not release");
        };
        assert_eq!((service.as_str(), version.as_str()), ("hello", "v2"));
        assert_eq!(reason.as_deref(), Some("new greeting"));
        assert!(override_alarms && follow.no_follow);
    }

    #[test]
    fn readme_examples_parse() {
        for line in [
            "config set hello examples/hello.json",
            "config init hello",
            "plan hello v1",
            "rollback hello --to v1",
            "sim alarm hello-5xx ALARM --reason x --value 12",
            "sim fail-env hello v3",
            "audit --service hello --since 1h --follow",
            "at hello 10m",
            "report --since 7d",
            "events hello --follow",
            "verify",
        ] {
            parse(&line.split(' ').collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_missing_argument_is_refused() {
        assert!(Cli::try_parse_from(["ionroller", "release", "hello"]).is_err());
        assert!(Cli::try_parse_from(["ionroller", "up", "--cloud", "gcp"]).is_err());
    }
}
