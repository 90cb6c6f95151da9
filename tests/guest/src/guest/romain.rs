//! The `romain:` supervisor inside the guest, for a driver a program runs through it:
//! the registry written from what the program found at run time (the NIC's PCI
//! address is only known then), `romain serve` started as root (as init starts it on
//! Redox), and the driver's group driven through `romain:` handles: opened to start
//! it, written to inject faults and take it down, read for its status and the
//! replication engine's counters.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use guest_net::child::Child;
use nix::sys::signal::Signal;
use romain_engine::BackendKind;
use romain_scheme::client::{self, explain, group_path};
use romain_scheme::Registry;
use scheme_runtime::Handle;
use syscall::flag::{O_RDONLY, O_RDWR};

use crate::guest::control::EngineStatus;
use crate::guest::daemons::DAEMON_START_TIMEOUT;
use crate::guest::faults::FaultTarget;
use crate::guest::report::StepResult;
use crate::protocol::GUEST_POLICY_PATH;

/// Where the guest keeps the `romain` binary.
pub const ROMAIN_PROGRAM: &str = "/bin/romain";
/// `romain serve`'s default registry, where a Redox image keeps it too.
pub const REGISTRY_PATH: &str = "/etc/romain/drivers.toml";
/// Opens once the daemon serves.
const ROMAIN_ROOT: &str = "/scheme/romain";
/// How often a wait looks at the group's status again.
const POLL: Duration = Duration::from_millis(50);

/// One driver of the registry (`romain-scheme/src/registry.rs` describes every key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub driver: String,
    pub binary: String,
    pub args: Vec<String>,
    /// The driver's rule in the isolation policy.
    pub policy: String,
    /// The user and group the group's process runs as: the rule's.
    pub uid: u32,
    pub gid: u32,
    /// How long a replica may take to its next event.
    pub watchdog_ms: u32,
    /// How the engine's replicas stop at their events.
    pub backend: BackendKind,
}

/// How `romain:` watches a driver and restarts it (the registry's heartbeat and
/// backoff keys), where romain's defaults, MINIX 3's, will not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervision {
    /// A path the driver serves, opened as the liveness probe.
    pub heartbeat: String,
    pub period_ms: u64,
    pub missed_periods: u32,
    pub backoff_cap_periods: u32,
    /// A driver alone keeps a standby process waiting to take over.
    pub standby: bool,
}

impl Supervision {
    /// Watched through `heartbeat` every 100 ms, hung after a second without an
    /// answer, and restarted at once after every kill that comes at least half a
    /// second (5 periods, the backoff's cap) after the last: a driver that ran
    /// that long has recovered, so even a kill a second is a first fault. A
    /// driver alone has a standby ready to take over.
    pub fn quick_restart(heartbeat: &str) -> Supervision {
        Supervision {
            heartbeat: heartbeat.to_owned(),
            period_ms: 100,
            missed_periods: 10,
            backoff_cap_periods: 5,
            standby: true,
        }
    }
}

impl RegistryEntry {
    /// A registry file that holds this entry alone.
    pub fn registry(&self) -> String {
        self.table(None)
    }

    /// A registry file that holds this entry alone, supervised as `supervision` says.
    pub fn supervised_registry(&self, supervision: &Supervision) -> String {
        self.table(Some(supervision))
    }

    fn table(&self, supervision: Option<&Supervision>) -> String {
        let mut entry = toml::Table::new();
        entry.insert("binary".into(), self.binary.clone().into());
        entry.insert("args".into(), self.args.clone().into());
        entry.insert("policy".into(), self.policy.clone().into());
        entry.insert("uid".into(), self.uid.into());
        entry.insert("gid".into(), self.gid.into());
        entry.insert("watchdog_ms".into(), self.watchdog_ms.into());
        entry.insert("backend".into(), self.backend.to_string().into());
        if let Some(supervision) = supervision {
            entry.insert("heartbeat".into(), supervision.heartbeat.clone().into());
            // TOML integers are i64; a period past that is no period anyone means.
            let period = i64::try_from(supervision.period_ms).unwrap_or(i64::MAX);
            entry.insert("period_ms".into(), period.into());
            entry.insert("missed_periods".into(), supervision.missed_periods.into());
            entry.insert(
                "backoff_cap_periods".into(),
                supervision.backoff_cap_periods.into(),
            );
            entry.insert("standby".into(), supervision.standby.into());
        }
        let drivers = toml::Table::from_iter([(self.driver.clone(), entry.into())]);
        toml::Table::from_iter([("driver".to_owned(), drivers.into())]).to_string()
    }
}

/// A running `romain serve`, killed (with the groups it runs) when dropped.
pub struct Romain {
    daemon: Child,
}

impl Romain {
    /// The daemon's process id.
    pub fn id(&self) -> u32 {
        self.daemon.id()
    }

    /// Writes `registry` to [`REGISTRY_PATH`] and starts `romain serve` on it as this
    /// program's user (root); returns once `romain:` serves.
    pub fn start(registry: &str) -> StepResult<Romain> {
        // What romain would refuse at its start, refused here with its words.
        registry.parse::<Registry>()?;
        if let Some(folder) = Path::new(REGISTRY_PATH).parent() {
            fs::create_dir_all(folder)?;
        }
        fs::write(REGISTRY_PATH, registry)?;
        let mut command = Command::new(ROMAIN_PROGRAM);
        // With the policy, replicated drivers reach only the schemes their rule lists.
        command.args([
            "serve",
            "--registry",
            REGISTRY_PATH,
            "--policy",
            GUEST_POLICY_PATH,
        ]);
        let mut daemon = Child::spawn("romain serve", command)?;
        daemon.wait_until(DAEMON_START_TIMEOUT, || {
            Handle::open(ROMAIN_ROOT, O_RDONLY).is_ok()
        })?;
        Ok(Romain { daemon })
    }

    /// Waits until `ready` holds; an error if the daemon ends first or `timeout`
    /// passes.
    pub fn wait_until(&mut self, timeout: Duration, ready: impl FnMut() -> bool) -> StepResult<()> {
        Ok(self.daemon.wait_until(timeout, ready)?)
    }

    /// Stops the daemon, which must have run until now: it ends by the SIGTERM.
    pub fn stop(&mut self, timeout: Duration) -> StepResult<()> {
        let status = self.daemon.terminate(timeout)?;
        match status.signal() {
            Some(signal) if signal == Signal::SIGTERM as i32 => Ok(()),
            _ => Err(format!("romain serve had ended before it was stopped: {status}").into()),
        }
    }
}

/// A driver's group in `romain:`. Every call opens a handle of its own, as the
/// `romain` command line does, so threads may share the group.
pub struct RomainGroup {
    driver: String,
}

impl RomainGroup {
    /// Starts `driver`'s group of `replicas` (or attaches to the one running with as
    /// many); it runs until told `down`, not until a handle closes.
    pub fn up(driver: &str, replicas: usize) -> StepResult<RomainGroup> {
        let group = RomainGroup {
            driver: driver.to_owned(),
        };
        group.open(&format!("replicas={replicas}"), O_RDONLY)?;
        Ok(group)
    }

    fn open(&self, query: &str, flags: usize) -> StepResult<Handle> {
        let path = group_path(&self.driver, Some(query))?;
        Handle::open(&path, flags)
            .map_err(|e| format!("{path}: {}", explain(&e, &self.driver)).into())
    }

    /// Sends `command` (a fault, `scrub`, `down`); an error unless it was carried out.
    pub fn command(&self, command: &str) -> StepResult<()> {
        let handle = self.open("attach", O_RDWR)?;
        handle
            .write(command.as_bytes())
            .map_err(|e| format!("{command:?}: {}", explain(&e, &self.driver)))?;
        Ok(())
    }

    /// The group's status, the engine's counters included.
    pub fn status(&self) -> StepResult<EngineStatus> {
        let text = client::status(Some(&self.driver)).map_err(|e| explain(&e, &self.driver))?;
        EngineStatus::from_group_status(&text)
    }

    /// The group's status once its engine answers with counters: it answers
    /// between two requests it serves, which a replica the watchdog waits for can
    /// hold up.
    pub fn engine_status(&self, timeout: Duration) -> StepResult<EngineStatus> {
        let started = Instant::now();
        loop {
            let status = self.status()?;
            if status.value("events")? != "unknown" || started.elapsed() > timeout {
                return Ok(status);
            }
            sleep(POLL);
        }
    }

    /// Takes the group down for good and waits until its process has ended.
    pub fn down(&self, timeout: Duration) -> StepResult<()> {
        self.command("down")?;
        let started = Instant::now();
        loop {
            let status = self.status()?;
            match status.value("state")? {
                "down" => return Ok(()),
                state if started.elapsed() > timeout => {
                    return Err(format!("the group is still {state} after {timeout:?}").into())
                }
                _ => sleep(POLL),
            }
        }
    }
}

impl FaultTarget for RomainGroup {
    fn inject(&self, fault: &str) -> StepResult<()> {
        self.command(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_entry_is_what_romain_reads() {
        let entry = RegistryEntry {
            driver: "e1000".into(),
            binary: "/bin/e1000".into(),
            args: vec![
                "--pci".into(),
                "0000:00:03.0".into(),
                "--name".into(),
                "a \"b\"".into(),
            ],
            policy: "nic".into(),
            uid: 1001,
            gid: 1002,
            watchdog_ms: 5000,
            backend: BackendKind::Stub,
        };
        let registry: Registry = entry.registry().parse().unwrap();
        let spec = registry.driver("e1000").unwrap();
        assert_eq!(spec.binary, Path::new("/bin/e1000"));
        assert_eq!(spec.args, entry.args);
        assert_eq!(spec.policy, "nic");
        assert_eq!((spec.uid, spec.gid), (Some(1001), Some(1002)));
        assert_eq!(spec.watchdog, Some(Duration::from_millis(5000)));
        assert_eq!(spec.backend, Some(BackendKind::Stub));
        assert_eq!(registry.drivers().count(), 1);
        assert_eq!(spec.heartbeat, None, "romain's defaults");
    }

    #[test]
    fn a_supervised_entry_carries_its_heartbeat_and_backoff() {
        let entry = RegistryEntry {
            driver: "e1000".into(),
            binary: "/bin/e1000".into(),
            args: vec![],
            policy: "e1000".into(),
            uid: 1001,
            gid: 1001,
            watchdog_ms: 500,
            backend: BackendKind::Ptrace,
        };
        let supervision = Supervision::quick_restart("/scheme/network.e1000");
        let registry: Registry = entry.supervised_registry(&supervision).parse().unwrap();
        let spec = registry.driver("e1000").unwrap();
        assert_eq!(spec.heartbeat.as_deref(), Some("/scheme/network.e1000"));
        assert!(spec.standby);
        assert_eq!(spec.period, Duration::from_millis(100));
        assert_eq!((spec.missed_periods, spec.backoff_cap_periods), (10, 5));
    }
}
