//! The driver registry: which drivers the supervisor may start, and how.
//!
//! ```toml
//! [driver.e1000]
//! binary = "/usr/bin/e1000d"           # absolute path
//! args = ["--mac-from-eeprom"]         # optional
//! env = { RUST_LOG = "info" }          # optional
//! policy = "e1000"                     # policy label; default: the driver's name
//! heartbeat = "/scheme/network.e1000"  # optional: a path the driver serves
//! period_ms = 5000                     # heartbeat period and backoff unit (default 5000)
//! missed_periods = 2                   # kill after this many periods without a reply (default 2)
//! backoff_cap_periods = 30             # restart delays 1, 2, 4, ... periods, at most this (default 30)
//! recovery_script = "/etc/romain/recover"  # optional: run with (driver, reason, repetition)
//! standby = true                       # optional, a driver alone: keep a second process
//!                                      # started and waiting to take over (default false)
//! ports = "0x2f8-0x2ff"                # optional, replicated groups: the I/O ports the
//!                                      # replicas' port instructions reach (through mmio:)
//! watchdog_ms = 1000                   # optional, replicated groups: how long a replica may
//!                                      # take to its next event (default: the engine's, 1000)
//! backend = "stub"                     # optional, replicated groups: how replicas stop at
//!                                      # their events, "ptrace" or "stub" (default "ptrace")
//! uid = 1001                           # optional: the user and group the group's process
//! gid = 1001                           # runs as (default: the supervisor's own)
//! ```
//!
//! The defaults are MINIX 3's reincarnation server's. Any answer from the
//! heartbeat path counts as a reply, even an error: it proves the driver's
//! request loop runs. The heartbeat path's scheme is also the one the
//! supervisor holds for the driver across its restarts (see the group). A
//! driver running alone opens its ports itself, so `ports` and `watchdog_ms`
//! only matter to groups of two or more replicas.
//!
//! `uid` and `gid` are numbers (Redox and small systems have no user database to
//! look names up in), normally those of the driver's rule in the isolation
//! policy, so that `mmio:` and `dma:` grant the driver what that rule grants. The
//! group's process is switched to them before it starts: the driver itself, or
//! the replication engine, whose replicas inherit them and whose connections to
//! `mmio:` and `dma:` carry them. `uid` needs `gid` beside it, or the driver would
//! keep the supervisor's group (root's, usually). Switching takes root: a
//! supervisor that is not root fails to start such a group, and says so, as it
//! fails any start (counted, backed off, retried).
//!
//! Given the isolation policy (`romain serve --policy`), each driver also takes
//! from its rule (the one its `policy` label names) the schemes it may open
//! ([`Registry::apply_policy`]); a replicated group's engine lets the replicas
//! connect to those schemes only (`romain replicate --schemes`).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use driver_policy::{Policy, PortRange};
use romain_engine::BackendKind;
use scheme_runtime::SchemePath;
use serde::Deserialize;

const DEFAULT_PERIOD_MS: u64 = 5000;
const DEFAULT_MISSED_PERIODS: u32 = 2;
const DEFAULT_BACKOFF_CAP_PERIODS: u32 = 30;
/// A longer period is a typo, and bounding it keeps every deadline representable.
const MAX_PERIOD_MS: u64 = 24 * 60 * 60 * 1000;
/// Bound for the period counts, for the same reasons.
const MAX_PERIODS: u32 = 1000;

/// One driver the supervisor may start, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverSpec {
    pub name: String,
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The label of the driver's rule in the isolation policy, handed to the
    /// driver as `ROMAIN_POLICY`.
    pub policy: String,
    /// A scheme path the driver serves, opened as a liveness probe.
    pub heartbeat: Option<String>,
    pub period: Duration,
    pub missed_periods: u32,
    pub backoff_cap_periods: u32,
    pub recovery_script: Option<PathBuf>,
    /// Keep a standby process of a driver that runs alone, started and waiting
    /// at [`scheme_runtime::standby::wait_if_standby`], so that a restart skips
    /// the process start.
    pub standby: bool,
    /// The I/O ports the replication engine performs the replicas' port
    /// instructions on.
    pub ports: Option<PortRange>,
    /// The replication engine's watchdog; `None` leaves the engine's default.
    pub watchdog: Option<Duration>,
    /// How the engine's replicas stop at their events; `None` leaves the
    /// engine's default.
    pub backend: Option<BackendKind>,
    /// The user the group's process runs as; `None`: the supervisor's.
    pub uid: Option<u32>,
    /// Its group; `None`: the supervisor's.
    pub gid: Option<u32>,
    /// The schemes the driver's policy rule lists, the only ones a replicated
    /// group's replicas may connect to; `None` without a policy or a rule.
    pub schemes: Option<Vec<String>>,
}

/// All drivers, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    drivers: BTreeMap<String, DriverSpec>,
}

impl Registry {
    /// Reads and validates the registry file at `path`.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.to_owned(),
            source,
        })?;
        text.parse()
    }

    pub fn driver(&self, name: &str) -> Option<&DriverSpec> {
        self.drivers.get(name)
    }

    pub fn drivers(&self) -> impl Iterator<Item = &DriverSpec> {
        self.drivers.values()
    }

    /// Gives each driver the schemes its rule in `policy` lists (the rule its
    /// `policy` label names). Returns the drivers whose label has no rule: they
    /// keep no list, and their replicas connect wherever the engine may
    /// (`mmio:` and `dma:` refuse a driver without a rule by themselves).
    pub fn apply_policy(&mut self, policy: &Policy) -> Vec<String> {
        let mut without_rule = Vec::new();
        for spec in self.drivers.values_mut() {
            spec.schemes = policy
                .driver(&spec.policy)
                .map(|rule| rule.schemes().to_vec());
            if spec.schemes.is_none() {
                without_rule.push(spec.name.clone());
            }
        }
        without_rule
    }
}

impl FromStr for Registry {
    type Err = RegistryError;

    fn from_str(text: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(RegistryError::Syntax)?;
        let drivers = file
            .driver
            .into_iter()
            .map(|(name, entry)| Ok((name.clone(), entry.validate(name)?)))
            .collect::<Result<_, RegistryError>>()?;
        Ok(Self { drivers })
    }
}

/// Why a registry was refused. Every message names the file or the driver and
/// key at fault.
#[derive(Debug)]
pub enum RegistryError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    /// Not TOML, or a key the registry does not know.
    Syntax(toml::de::Error),
    Invalid {
        driver: String,
        key: &'static str,
        problem: String,
    },
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => {
                write!(f, "cannot read registry {}: {source}", path.display())
            }
            Self::Syntax(e) => write!(f, "registry: {e}"),
            Self::Invalid {
                driver,
                key,
                problem,
            } => write!(f, "registry: driver `{driver}`: {key}: {problem}"),
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Syntax(e) => Some(e),
            Self::Invalid { .. } => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    driver: BTreeMap<String, DriverEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DriverEntry {
    binary: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    policy: Option<String>,
    heartbeat: Option<String>,
    period_ms: Option<u64>,
    missed_periods: Option<u32>,
    backoff_cap_periods: Option<u32>,
    recovery_script: Option<PathBuf>,
    #[serde(default)]
    standby: bool,
    ports: Option<String>,
    watchdog_ms: Option<u64>,
    backend: Option<String>,
    // Wider than the ids, so that a value out of range gets this module's message.
    uid: Option<i64>,
    gid: Option<i64>,
}

impl DriverEntry {
    fn validate(self, name: String) -> Result<DriverSpec, RegistryError> {
        let invalid = |key: &'static str, problem: String| RegistryError::Invalid {
            driver: name.clone(),
            key,
            problem,
        };
        if !is_driver_name(&name) {
            return Err(invalid(
                "name",
                "want letters, digits, '.', '_' or '-'".into(),
            ));
        }
        if !self.binary.is_absolute() {
            return Err(invalid(
                "binary",
                format!("{} is not an absolute path", self.binary.display()),
            ));
        }
        if let Some(script) = &self.recovery_script {
            if !script.is_absolute() {
                return Err(invalid(
                    "recovery_script",
                    format!("{} is not an absolute path", script.display()),
                ));
            }
        }
        if let Some(arg) = self.args.iter().find(|arg| arg.contains('\0')) {
            return Err(invalid("args", format!("{arg:?} holds a NUL byte")));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(invalid(
                    "env",
                    format!("{key:?} = {value:?} is not a valid environment variable"),
                ));
            }
        }
        let policy = self.policy.unwrap_or_else(|| name.clone());
        if policy.is_empty() || policy.contains(char::is_whitespace) {
            return Err(invalid(
                "policy",
                format!("{policy:?}: want a non-empty label without spaces"),
            ));
        }
        if let Some(path) = &self.heartbeat {
            SchemePath::parse(path).map_err(|e| invalid("heartbeat", format!("{path:?}: {e}")))?;
        }
        let milliseconds = |key: &'static str, ms: u64| match ms {
            1..=MAX_PERIOD_MS => Ok(Duration::from_millis(ms)),
            _ => Err(invalid(key, format!("{ms}: want 1 to {MAX_PERIOD_MS}"))),
        };
        let period = milliseconds("period_ms", self.period_ms.unwrap_or(DEFAULT_PERIOD_MS))?;
        let watchdog = self
            .watchdog_ms
            .map(|ms| milliseconds("watchdog_ms", ms))
            .transpose()?;
        let backend = self
            .backend
            .map(|text| {
                text.parse::<BackendKind>()
                    .map_err(|e| invalid("backend", e))
            })
            .transpose()?;
        let ports = self
            .ports
            .map(|text| {
                text.parse::<PortRange>()
                    .map_err(|e| invalid("ports", e.to_string()))
            })
            .transpose()?;
        let count =
            |key: &'static str, value: Option<u32>, default: u32| match value.unwrap_or(default) {
                n @ 1..=MAX_PERIODS => Ok(n),
                n => Err(invalid(key, format!("{n}: want 1 to {MAX_PERIODS}"))),
            };
        // The id that is all ones is the kernel's "leave unchanged", never a user.
        let id = |key: &'static str, value: i64| match u32::try_from(value) {
            Ok(id) if id != u32::MAX => Ok(id),
            _ => Err(invalid(
                key,
                format!("{value}: want a number from 0 to {}", u32::MAX - 1),
            )),
        };
        let uid = self.uid.map(|uid| id("uid", uid)).transpose()?;
        let gid = self.gid.map(|gid| id("gid", gid)).transpose()?;
        if uid.is_some() && gid.is_none() {
            return Err(invalid(
                "gid",
                "missing beside uid: the driver would keep the supervisor's group".into(),
            ));
        }
        let missed_periods = count(
            "missed_periods",
            self.missed_periods,
            DEFAULT_MISSED_PERIODS,
        )?;
        let backoff_cap_periods = count(
            "backoff_cap_periods",
            self.backoff_cap_periods,
            DEFAULT_BACKOFF_CAP_PERIODS,
        )?;
        Ok(DriverSpec {
            binary: self.binary,
            args: self.args,
            env: self.env,
            policy,
            heartbeat: self.heartbeat,
            period,
            missed_periods,
            backoff_cap_periods,
            recovery_script: self.recovery_script,
            standby: self.standby,
            ports,
            watchdog,
            backend,
            uid,
            gid,
            schemes: None,
            name,
        })
    }
}

/// Driver names appear in scheme paths and status lines: keep them plain.
pub fn is_driver_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Registry, RegistryError> {
        text.parse()
    }

    fn problem(text: &str) -> String {
        parse(text).expect_err("expected a refusal").to_string()
    }

    #[test]
    fn full_entry_and_minix_defaults() {
        let registry = parse(
            r#"
            [driver.e1000]
            binary = "/usr/bin/e1000d"
            args = ["-v", "--bar=0"]
            env = { RUST_LOG = "debug" }
            policy = "nic"
            heartbeat = "network.e1000:"
            period_ms = 250
            missed_periods = 3
            backoff_cap_periods = 8
            recovery_script = "/etc/romain/recover"
            uid = 1001
            gid = 0

            [driver.uart]
            binary = "/usr/bin/uartd"
            ports = "0x2f8-0x2ff"
            watchdog_ms = 250
            backend = "stub"
            "#,
        )
        .unwrap();
        let e1000 = registry.driver("e1000").unwrap();
        assert_eq!(e1000.binary, Path::new("/usr/bin/e1000d"));
        assert_eq!(e1000.args, ["-v", "--bar=0"]);
        assert_eq!(e1000.env["RUST_LOG"], "debug");
        assert_eq!(e1000.policy, "nic");
        assert_eq!(e1000.heartbeat.as_deref(), Some("network.e1000:"));
        assert_eq!(e1000.period, Duration::from_millis(250));
        assert_eq!((e1000.missed_periods, e1000.backoff_cap_periods), (3, 8));
        assert_eq!(
            e1000.recovery_script.as_deref(),
            Some(Path::new("/etc/romain/recover"))
        );
        assert_eq!(
            (e1000.ports, e1000.watchdog, e1000.backend),
            (None, None, None)
        );
        assert_eq!((e1000.uid, e1000.gid), (Some(1001), Some(0)));

        let uart = registry.driver("uart").unwrap();
        assert_eq!(
            uart.policy, "uart",
            "the policy label defaults to the driver's name"
        );
        assert_eq!(uart.period, Duration::from_secs(5));
        assert_eq!((uart.missed_periods, uart.backoff_cap_periods), (2, 30));
        assert!(uart.args.is_empty() && uart.env.is_empty() && uart.heartbeat.is_none());
        assert_eq!(uart.ports, Some(PortRange::new(0x2f8, 0x2ff).unwrap()));
        assert_eq!(uart.watchdog, Some(Duration::from_millis(250)));
        assert_eq!(uart.backend, Some(BackendKind::Stub));
        assert_eq!(
            (uart.uid, uart.gid),
            (None, None),
            "the supervisor's own user"
        );
        assert_eq!(
            registry
                .drivers()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["e1000", "uart"]
        );
        assert!(registry.driver("nope").is_none());
        assert_eq!(parse("").unwrap(), Registry::default());
    }

    #[test]
    fn refusals_name_the_driver_and_key() {
        let cases = [
            (
                "[driver.a]\nbinary = \"rel/path\"",
                "driver `a`: binary: rel/path is not an absolute path",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nperiod_ms = 0",
                "driver `a`: period_ms: 0: want 1 to",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nperiod_ms = 99999999999",
                "period_ms: 99999999999",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nmissed_periods = 0",
                "missed_periods: 0",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nbackoff_cap_periods = 5000",
                "backoff_cap_periods: 5000",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nheartbeat = \"no-scheme\"",
                "heartbeat: \"no-scheme\": not a scheme path",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\npolicy = \"two words\"",
                "policy: \"two words\"",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nrecovery_script = \"r.sh\"",
                "recovery_script: r.sh is not an absolute",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nenv = { \"A=B\" = \"c\" }",
                "env: \"A=B\"",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nargs = [\"a\\u0000b\"]",
                "args: \"a\\0b\" holds a NUL byte",
            ),
            ("[driver.\"a/b\"]\nbinary = \"/x\"", "driver `a/b`: name:"),
            (
                "[driver.a]\nbinary = \"/x\"\nports = \"0x2ff-0x2f8\"",
                "driver `a`: ports: `0x2ff-0x2f8` runs backwards",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nports = \"2f8-2ff\"",
                "driver `a`: ports: `2f8-2ff` is not a port range",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nwatchdog_ms = 0",
                "driver `a`: watchdog_ms: 0: want 1 to",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nbackend = \"strace\"",
                "driver `a`: backend: no backend \"strace\" (ptrace or stub)",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nuid = 4294967296\ngid = 1",
                "driver `a`: uid: 4294967296: want a number from 0 to 4294967294",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nuid = -1\ngid = 1",
                "driver `a`: uid: -1: want",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nuid = 4294967295\ngid = 1",
                "driver `a`: uid: 4294967295: want",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nuid = 1\ngid = 99999999999",
                "driver `a`: gid: 99999999999: want",
            ),
            (
                "[driver.a]\nbinary = \"/x\"\nuid = 1001",
                "driver `a`: gid: missing beside uid",
            ),
        ];
        for (text, expected) in cases {
            let message = problem(text);
            assert!(message.contains(expected), "{text:?} gave {message:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused() {
        assert!(
            problem("[driver.a]\nbinary = \"/x\"\nperiod = 5").contains("unknown field `period`")
        );
        assert!(problem("[drivers.a]\nbinary = \"/x\"").contains("unknown field `drivers`"));
        assert!(problem("[driver.a]\nargs = []").contains("missing field `binary`"));
        assert!(problem("[driver.a]\nbinary = \"/x\"\nperiod_ms = \"5s\"").contains("period_ms"));
        assert!(
            problem("[driver.a]\nbinary = \"/x\"\nports = [\"0x2f8-0x2ff\"]").contains("ports")
        );
        assert!(problem("[driver.a]\nbinary = \"/x\"\nwatchdog = 5")
            .contains("unknown field `watchdog`"));
        assert!(problem("[driver.a").starts_with("registry: "));
        assert!(problem("[driver.a]\nbinary = \"/x\"\nuid = \"root\"\ngid = 0").contains("uid"));
    }

    #[test]
    fn a_policy_gives_each_driver_the_schemes_of_its_rule() {
        let mut registry = parse(
            "[driver.e1000]\nbinary = \"/x\"\n\
             [driver.serial]\nbinary = \"/x\"\npolicy = \"uart\"\n\
             [driver.bare]\nbinary = \"/x\"\npolicy = \"nothing\"\n\
             [driver.stranger]\nbinary = \"/x\"\n",
        )
        .unwrap();
        assert_eq!(registry.driver("e1000").unwrap().schemes, None);
        let policy: Policy = "[driver.e1000]\nuid = 1001\nschemes = [\"mmio\", \"dma\"]\n\
                              [driver.uart]\nuid = 1002\nschemes = [\"mmio\"]\n\
                              [driver.nothing]\nuid = 1003\n"
            .parse()
            .unwrap();
        assert_eq!(registry.apply_policy(&policy), ["stranger"]);
        let schemes = |name: &str| registry.driver(name).unwrap().schemes.clone();
        assert_eq!(schemes("e1000"), Some(vec!["mmio".into(), "dma".into()]));
        assert_eq!(schemes("serial"), Some(vec!["mmio".into()]), "by its label");
        assert_eq!(
            schemes("bare"),
            Some(Vec::new()),
            "a rule without schemes grants none"
        );
        assert_eq!(schemes("stranger"), None);
    }

    #[test]
    fn a_group_alone_is_enough() {
        let registry = parse("[driver.a]\nbinary = \"/x\"\ngid = 1002\n").unwrap();
        let spec = registry.driver("a").unwrap();
        assert_eq!((spec.uid, spec.gid), (None, Some(1002)));
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let message = Registry::load(Path::new("/nonexistent/romain/drivers.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("cannot read registry /nonexistent/romain/drivers.toml: "),
            "{message}"
        );
    }

    #[test]
    fn driver_names() {
        for good in ["e1000", "uart-16550", "a.b_c"] {
            assert!(is_driver_name(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a?b", "a b", "é"] {
            assert!(!is_driver_name(bad), "{bad}");
        }
    }
}
