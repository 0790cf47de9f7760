//! A simulated Elastic Beanstalk + load balancer + CloudWatch, for demos, what-ifs and tests.
//!
//! Environments take `launch_secs` to become Ready and `healthy_secs` more to turn Green (or
//! Red, for versions told to fail). Its state lives in a JSON file beside the event log, so a
//! restarted roller sees the same "cloud", as it would see AWS. People change it through
//! `ionroller sim ...` (alarms, failures, drift).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::{
    Action, AlarmState, AlarmView, EnvironmentStatus, EnvironmentView, Health, InstanceView,
    RegisteredInstance,
};
use serde::{Deserialize, Serialize};

use super::{Cloud, CloudError};
use crate::clock::Clock;
use ionroller_core::CloudView;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimSettings {
    pub launch_secs: f64,
    pub healthy_secs: f64,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            launch_secs: 2.0,
            healthy_secs: 1.0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SimState {
    settings: SimSettings,
    environments: BTreeMap<String, SimEnvironment>,
    load_balancers: BTreeMap<String, BTreeSet<String>>,
    alarms: BTreeMap<String, AlarmView>,
    /// `service/version` pairs whose environments turn Red.
    failing: BTreeSet<String>,
    /// How many CreateEnvironment calls actually created something (for tests).
    creations: u64,
    /// The last [`CALLS_KEPT`] actions executed, with who executed them: the simulator's own
    /// record, for tests that count what each roller replica did.
    #[serde(default)]
    calls: std::collections::VecDeque<SimCall>,
    /// Each service's environment names, rebuilt on load: observing a service costs its own
    /// environments, not every service's (quadratic in services otherwise).
    #[serde(skip)]
    by_service: BTreeMap<String, BTreeSet<String>>,
}

impl SimState {
    fn indexed(mut self) -> Self {
        self.by_service.clear();
        for (name, e) in &self.environments {
            self.by_service
                .entry(e.service.clone())
                .or_default()
                .insert(name.clone());
        }
        self
    }

    /// The service's environments, by name.
    fn environments_of<'a>(
        &'a self,
        service: &str,
    ) -> impl Iterator<Item = (&'a String, &'a SimEnvironment)> + 'a {
        self.by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|name| self.environments.get_key_value(name))
    }
}

/// One action the simulated cloud was asked to execute.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SimCall {
    pub at: DateTime<Utc>,
    /// The caller's name ([`SimCloud::with_caller`]): a replica id, or `roller`.
    pub by: String,
    pub service: String,
    pub action: String,
    /// Whether it changed anything (a create of an existing environment does not).
    pub effective: bool,
}

const CALLS_KEPT: usize = 20_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SimEnvironment {
    service: String,
    version: String,
    config_version: u32,
    instances: u32,
    created_at: DateTime<Utc>,
    failing: bool,
    terminated_at: Option<DateTime<Utc>>,
    /// The timings in force when it was created: changing the settings affects only
    /// environments created afterwards, as a slower AMI would.
    #[serde(default)]
    timings: Option<SimSettings>,
    /// The secret references (variable name → ARN) it was created with, as Elastic Beanstalk
    /// records its environment secrets: never a value, which EB would fetch at boot.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    secrets: BTreeMap<String, String>,
}

impl SimEnvironment {
    fn status(&self, settings: &SimSettings, now: DateTime<Utc>) -> (EnvironmentStatus, Health) {
        let settings = self.timings.as_ref().unwrap_or(settings);
        if self.terminated_at.is_some() {
            return (EnvironmentStatus::Terminated, Health::Grey);
        }
        let age = (now - self.created_at).num_milliseconds() as f64 / 1000.0;
        if age < settings.launch_secs {
            (EnvironmentStatus::Launching, Health::Grey)
        } else if age < settings.launch_secs + settings.healthy_secs {
            (EnvironmentStatus::Ready, Health::Grey)
        } else if self.failing {
            (EnvironmentStatus::Ready, Health::Red)
        } else {
            (EnvironmentStatus::Ready, Health::Green)
        }
    }

    fn instance_ids(&self, name: &str) -> Vec<String> {
        (0..self.instances)
            .map(|i| format!("i-{name}-{i}"))
            .collect()
    }
}

/// The simulated cloud. Cheap to clone; every change is saved to its file before returning.
///
/// Several processes may share one file, as several roller replicas share one AWS account:
/// a change happens under an exclusive lock on `FILE.lock` after re-reading the file if
/// another process replaced it (saves are atomic renames, so a new file means a new state),
/// and a read re-reads a replaced file first.
///
/// [`SimCloud::in_memory`] keeps no file (benchmarks with thousands of services, where
/// rewriting the file on every change would be what is measured).
#[derive(Clone)]
pub struct SimCloud {
    path: Option<PathBuf>,
    state: Arc<Mutex<Loaded>>,
    clock: Arc<dyn Clock>,
    caller: String,
}

/// The state as last read or written, and which version of the file it came from.
struct Loaded {
    state: SimState,
    file: Option<FileVersion>,
}

impl SimCloud {
    /// Opens the simulation saved at `path`, or starts an empty one there.
    pub fn open(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Self, CloudError> {
        let path = path.as_ref().to_path_buf();
        let (state, file) = read_file(&path)?;
        Ok(SimCloud {
            path: Some(path),
            state: Arc::new(Mutex::new(Loaded { state, file })),
            clock,
            caller: crate::log::ROLLER_ACTOR.to_string(),
        })
    }

    /// An empty simulation kept in this process only, shared by its clones.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Self {
        SimCloud {
            path: None,
            state: Arc::new(Mutex::new(Loaded {
                state: SimState::default(),
                file: None,
            })),
            clock,
            caller: crate::log::ROLLER_ACTOR.to_string(),
        }
    }

    /// Names the actions this handle executes in the call record (a replica's id).
    pub fn with_caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = caller.into();
        self
    }

    /// Its file; `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The state as the file holds it now.
    fn fresh(&self) -> Result<std::sync::MutexGuard<'_, Loaded>, CloudError> {
        let mut loaded = self
            .state
            .lock()
            .map_err(|_| CloudError::Unavailable("simulated cloud lock poisoned".into()))?;
        if let Some(path) = &self.path {
            let file = file_version(path);
            if file.is_some() && file != loaded.file {
                let (state, file) = read_file(path)?;
                *loaded = Loaded { state, file };
            }
        }
        Ok(loaded)
    }

    fn read<T>(&self, look: impl FnOnce(&SimState, DateTime<Utc>) -> T) -> Result<T, CloudError> {
        let now = self.clock.now();
        let loaded = self.fresh()?;
        Ok(look(&loaded.state, now))
    }

    fn with_state<T>(
        &self,
        change: impl FnOnce(&mut SimState, DateTime<Utc>) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let Some(path) = &self.path else {
            // In memory: nothing to save, so nothing can fail half-way; change in place.
            let now = self.clock.now();
            let mut loaded = self.fresh()?;
            return change(&mut loaded.state, now);
        };
        let lock_path = path.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| CloudError::Unavailable(format!("lock {}: {e}", lock_path.display())))?;
        let lock = lock_within(file, LOCK_WAIT)
            .map_err(|e| CloudError::Unavailable(format!("lock {}: {e}", lock_path.display())))?;
        let now = self.clock.now();
        let mut loaded = self.fresh()?;
        let mut next = loaded.state.clone();
        let result = change(&mut next, now)?;
        save(path, &next)?;
        *loaded = Loaded {
            state: next,
            file: file_version(path),
        };
        drop(lock);
        Ok(result)
    }

    pub fn set_settings(&self, settings: SimSettings) -> Result<(), CloudError> {
        self.with_state(|s, _| {
            s.settings = settings;
            Ok(())
        })
    }

    /// Sets an alarm's state, as CloudWatch would after evaluating its metric.
    pub fn set_alarm(
        &self,
        name: &str,
        state: AlarmState,
        reason: Option<String>,
        value: Option<f64>,
    ) -> Result<(), CloudError> {
        self.with_state(|s, now| {
            let reason = reason.unwrap_or_else(|| match state {
                AlarmState::Alarm => "Threshold Crossed (simulated)".to_string(),
                AlarmState::Ok => "Threshold not crossed (simulated)".to_string(),
                AlarmState::InsufficientData => "No datapoints (simulated)".to_string(),
            });
            s.alarms.insert(
                name.to_string(),
                AlarmView {
                    name: name.to_string(),
                    state,
                    reason,
                    value,
                    updated_at: now,
                },
            );
            Ok(())
        })
    }

    /// Environments of `service` at `version` (existing and future) turn Red instead of Green.
    pub fn fail_version(&self, service: &str, version: &str) -> Result<(), CloudError> {
        self.with_state(|s, _| {
            s.failing.insert(format!("{service}/{version}"));
            for env in s.environments.values_mut() {
                if env.service == service && env.version == version {
                    env.failing = true;
                }
            }
            Ok(())
        })
    }

    /// Drift: terminates an environment behind the roller's back.
    pub fn terminate_outside(&self, environment: &str) -> Result<(), CloudError> {
        self.with_state(|s, now| terminate(s, environment, now).map(|_| ()))
    }

    /// Drift: deregisters an instance behind the roller's back.
    pub fn deregister_outside(&self, instance: &str) -> Result<(), CloudError> {
        self.with_state(|s, _| {
            for members in s.load_balancers.values_mut() {
                members.remove(instance);
            }
            Ok(())
        })
    }

    /// How many environments were really created (not found already existing).
    pub fn creations(&self) -> u64 {
        self.read(|s, _| s.creations).unwrap_or(0)
    }

    /// The actions executed, oldest first (the last 20,000).
    pub fn calls(&self) -> Vec<SimCall> {
        self.read(|s, _| s.calls.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The secret references an environment was created with (variable name → ARN).
    pub fn environment_secrets(&self, environment: &str) -> Option<BTreeMap<String, String>> {
        self.read(|s, _| s.environments.get(environment).map(|e| e.secrets.clone()))
            .ok()
            .flatten()
    }

    /// Names of the live environments of a service.
    pub fn live_environments(&self, service: &str) -> Vec<String> {
        self.read(|s, _| {
            s.environments_of(service)
                .filter(|(_, e)| e.terminated_at.is_none())
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default()
    }
}

/// How long a change waits for another process's change to finish. A change holds the lock
/// for milliseconds; only a stopped process holds it longer, and then the caller gets
/// `Unavailable` (and retries later) instead of a runtime thread blocked for as long.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the exclusive lock on `file`, trying for at most `wait`.
fn lock_within(file: std::fs::File, wait: std::time::Duration) -> std::io::Result<std::fs::File> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::other(format!(
                    "held by another process for over {wait:?}"
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

fn read_file(path: &Path) -> Result<(SimState, Option<FileVersion>), CloudError> {
    let file = file_version(path);
    let state = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<SimState>(&text)
            .map_err(|e| {
                CloudError::Unavailable(format!(
                    "simulated cloud file {} is unreadable: {e}",
                    path.display()
                ))
            })?
            .indexed(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SimState::default(),
        Err(e) => {
            return Err(CloudError::Unavailable(format!(
                "read {}: {e}",
                path.display()
            )))
        }
    };
    Ok((state, file))
}

/// Which version of the file is there: version, change time and size. The version alone is not
/// enough, since the file system reuses a replaced file's version for the next one at once.
fn file_version(path: &Path) -> Option<FileVersion> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.ctime(), m.ctime_nsec(), m.size()))
}

type FileVersion = (u64, i64, i64, u64);

fn save(path: &Path, state: &SimState) -> Result<(), CloudError> {
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| CloudError::Unavailable(format!("encode simulated cloud: {e}")))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| CloudError::Unavailable(format!("save {}: {e}", path.display())))
}

fn terminate(
    s: &mut SimState,
    environment: &str,
    now: DateTime<Utc>,
) -> Result<String, CloudError> {
    let Some(env) = s.environments.get_mut(environment) else {
        return Err(CloudError::Rejected {
            code: "InvalidParameterValue".into(),
            message: format!("No Environment found for EnvironmentName = '{environment}'."),
        });
    };
    if env.terminated_at.is_some() {
        return Ok(format!("{environment} was already terminated"));
    }
    env.terminated_at = Some(now);
    let ids: BTreeSet<String> = env.instance_ids(environment).into_iter().collect();
    for members in s.load_balancers.values_mut() {
        members.retain(|i| !ids.contains(i));
    }
    Ok(format!("terminated {environment}"))
}

/// Which live environment an instance belongs to, with its health. Instance ids are
/// `i-<environment>-<n>`, so the environment is looked up, not searched for.
fn owner<'a>(s: &'a SimState, instance: &str) -> Option<(&'a String, &'a SimEnvironment)> {
    let (name, n) = instance.strip_prefix("i-")?.rsplit_once('-')?;
    let n: u32 = n.parse().ok()?;
    s.environments
        .get_key_value(name)
        .filter(|(_, e)| e.terminated_at.is_none() && n < e.instances)
}

#[async_trait]
impl Cloud for SimCloud {
    async fn observe(
        &self,
        service: &str,
        config: &ServiceConfig,
    ) -> Result<CloudView, CloudError> {
        let now = self.clock.now();
        let loaded = self.fresh()?;
        let s = &loaded.state;
        let environments = s
            .environments_of(service)
            .map(|(name, e)| {
                let (status, health) = e.status(&s.settings, now);
                let instances = if status == EnvironmentStatus::Terminated {
                    Vec::new()
                } else {
                    e.instance_ids(name)
                        .into_iter()
                        .map(|id| InstanceView {
                            id,
                            healthy: health == Health::Green,
                        })
                        .collect()
                };
                EnvironmentView {
                    name: name.clone(),
                    version: e.version.clone(),
                    config_version: e.config_version,
                    status,
                    health,
                    instances,
                    url: Some(format!("http://{name}.sim.local")),
                }
            })
            .collect();
        let lb = config.endpoint.load_balancer.name.clone();
        let registrations = s
            .load_balancers
            .get(&lb)
            .into_iter()
            .flatten()
            .map(|id| RegisteredInstance {
                id: id.clone(),
                in_service: owner(s, id)
                    .is_some_and(|(_, e)| e.status(&s.settings, now).1 == Health::Green),
            })
            .collect();
        let alarms = config
            .rollout
            .alarms
            .iter()
            .map(|name| {
                s.alarms.get(name).cloned().unwrap_or_else(|| AlarmView {
                    name: name.clone(),
                    state: AlarmState::Ok,
                    reason: "never set in the simulation".into(),
                    value: None,
                    updated_at: DateTime::<Utc>::UNIX_EPOCH,
                })
            })
            .collect();
        Ok(CloudView {
            environments,
            load_balancer: lb,
            registrations,
            alarms,
        })
    }

    async fn execute(
        &self,
        service: &str,
        _config: &ServiceConfig,
        _action_id: uuid::Uuid,
        action: &Action,
    ) -> Result<String, CloudError> {
        self.with_state(|s, now| {
            let created_before = s.creations;
            let detail = execute(s, service, action, now)?;
            let effective = match action {
                Action::CreateEnvironment { .. } => s.creations > created_before,
                _ => true,
            };
            if s.calls.len() >= CALLS_KEPT {
                s.calls.pop_front();
            }
            s.calls.push_back(SimCall {
                at: now,
                by: self.caller.clone(),
                service: service.to_string(),
                action: action.describe(),
                effective,
            });
            Ok(detail)
        })
    }
}

/// What an action does to the simulated cloud.
fn execute(
    s: &mut SimState,
    service: &str,
    action: &Action,
    now: DateTime<Utc>,
) -> Result<String, CloudError> {
    match action {
        Action::CreateEnvironment {
            environment,
            version,
            config_version,
            config,
        } => {
            if s.environments
                .get(environment)
                .is_some_and(|e| e.terminated_at.is_none())
            {
                return Ok(format!("{environment} already exists"));
            }
            let failing = s.failing.contains(&format!("{service}/{version}"));
            s.environments.insert(
                environment.clone(),
                SimEnvironment {
                    service: service.to_string(),
                    version: version.clone(),
                    config_version: *config_version,
                    instances: config.instances.min,
                    created_at: now,
                    failing,
                    terminated_at: None,
                    timings: Some(s.settings.clone()),
                    secrets: config.secrets.clone(),
                },
            );
            s.by_service
                .entry(service.to_string())
                .or_default()
                .insert(environment.clone());
            s.creations += 1;
            Ok(format!("created {environment}"))
        }
        Action::RegisterInstances {
            load_balancer,
            instances,
        } => {
            if let Some(unknown) = instances.iter().find(|i| owner(s, i).is_none()) {
                return Err(CloudError::Rejected {
                    code: "InvalidInstance".into(),
                    message: format!("instance {unknown} is not running"),
                });
            }
            let members = s.load_balancers.entry(load_balancer.clone()).or_default();
            members.extend(instances.iter().cloned());
            Ok(format!("registered {} on {load_balancer}", instances.len()))
        }
        Action::DeregisterInstances {
            load_balancer,
            instances,
        } => {
            let members = s.load_balancers.entry(load_balancer.clone()).or_default();
            for i in instances {
                members.remove(i);
            }
            Ok(format!(
                "deregistered {} from {load_balancer}",
                instances.len()
            ))
        }
        Action::TerminateEnvironment { environment } => terminate(s, environment, now),
    }
}
