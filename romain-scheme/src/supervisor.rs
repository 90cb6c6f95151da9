//! The table of groups, by driver name, and what opening one means.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use syscall::error::{EACCES, EINVAL, ENOENT, ESRCH};

use crate::command::Command;
use crate::group::{ControlError, Group};
use crate::heartbeat::Probes;
use crate::open_path::GroupRequest;
use crate::process::Program;
use crate::registry::Registry;
use crate::status::GroupState;

/// The longest a dead process waits to be noticed: the supervisor polls at
/// least this often.
const MAX_TICK: Duration = Duration::from_millis(100);
const MIN_TICK: Duration = Duration::from_millis(5);
/// Polls per heartbeat period, so deadlines are met to within a quarter period.
const TICKS_PER_PERIOD: u32 = 4;

/// Why a group cannot be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    UnknownDriver,
    /// `attach` to a driver without a group.
    NotRunning,
    ReplicaMismatch {
        running: usize,
        asked: usize,
    },
    /// Starting a group takes root or the supervisor's own user.
    NotPermitted,
}

impl OpenError {
    pub fn errno(&self) -> i32 {
        match self {
            Self::UnknownDriver => ENOENT,
            Self::NotRunning => ESRCH,
            Self::ReplicaMismatch { .. } => EINVAL,
            Self::NotPermitted => EACCES,
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownDriver => f.write_str("no such driver in the registry"),
            Self::NotRunning => f.write_str("no group to attach to"),
            Self::ReplicaMismatch { running, asked } => {
                write!(f, "the running group has {running} replicas, not {asked}")
            }
            Self::NotPermitted => {
                f.write_str("only root or the supervisor's user may start a group")
            }
        }
    }
}

pub struct Supervisor {
    registry: Registry,
    /// The `romain` binary, whose `replicate` runs replicated groups.
    /// The `romain` binary, which runs replicated groups; none where replication is
    /// unavailable (no process tracing).
    engine: Option<PathBuf>,
    groups: BTreeMap<String, Group>,
    probes: Probes,
}

impl Supervisor {
    /// Supervises the drivers of `registry`; `engine` is the `romain` binary
    /// (normally this very program) that runs groups of two or more replicas.
    pub fn new(registry: Registry, engine: Option<PathBuf>) -> Self {
        Self {
            registry,
            engine,
            groups: BTreeMap::new(),
            probes: Probes::new(),
        }
    }

    /// Attaches to the driver's group, starting it (`may_start`) when it is not
    /// running and the request does not say `attach`.
    pub fn open(
        &mut self,
        request: &GroupRequest,
        may_start: bool,
        now: Instant,
    ) -> Result<(), OpenError> {
        let spec = self
            .registry
            .driver(request.driver)
            .ok_or(OpenError::UnknownDriver)?;
        let asked = request.replicas.map(|n| n.get());
        let group = self.groups.get_mut(request.driver);
        let state = group.as_ref().map(|g| g.state());
        if let (Some(GroupState::Running | GroupState::Backoff), Some(group)) = (state, &group) {
            return match asked {
                Some(asked) if asked != group.asked_replicas() => Err(OpenError::ReplicaMismatch {
                    running: group.asked_replicas(),
                    asked,
                }),
                _ => Ok(()),
            };
        }
        if request.attach {
            // A group that went down can still be read.
            return group.map(drop).ok_or(OpenError::NotRunning);
        }
        if !may_start {
            return Err(OpenError::NotPermitted);
        }
        // Without a count a group runs the driver alone, as it always has. Where
        // replication is unavailable, a group asked for replicas degrades to that,
        // and says so in its status.
        let replicas = asked.unwrap_or(1);
        let program = match &self.engine {
            Some(engine) => Program::for_replicas(replicas, engine),
            None => {
                if replicas > 1 {
                    log::warn!(
                        "{}: {replicas} replicas asked, but replication needs process \
                         tracing, which this system lacks; running the driver alone",
                        spec.name
                    );
                }
                Program::Driver
            }
        };
        let group = match group {
            Some(group) => {
                group.up(program, now);
                group
            }
            None => self
                .groups
                .entry(spec.name.clone())
                .or_insert_with(|| Group::start(spec.clone(), program, now)),
        };
        group.set_asked_replicas(replicas);
        Ok(())
    }

    /// The group of `driver`; only drivers opened once have one.
    pub fn group(&self, driver: &str) -> Option<&Group> {
        self.groups.get(driver)
    }

    /// Every group, ordered by driver.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// The drivers it may start.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn command(
        &mut self,
        driver: &str,
        command: &Command,
        now: Instant,
    ) -> Result<(), ControlError> {
        match self.groups.get_mut(driver) {
            Some(group) => group.command(command, now),
            None => Err(ControlError::NoProcess(GroupState::Down)),
        }
    }

    /// One summary line per group.
    pub fn listing(&self) -> String {
        self.groups
            .values()
            .map(|group| group.status().summary())
            .collect()
    }

    /// Collects heartbeat replies, then lets every group reap, check and restart.
    pub fn poll(&mut self, now: Instant) {
        for reply in self.probes.drain() {
            // A reply for a replica that is gone matches no group.
            for group in self.groups.values_mut() {
                if group.record_probe(&reply) {
                    break;
                }
            }
        }
        for group in self.groups.values_mut() {
            group.poll(now, self.probes.sender());
        }
    }

    /// How often [`Supervisor::poll`] must run.
    pub fn tick(&self) -> Duration {
        self.registry
            .drivers()
            .map(|spec| spec.period / TICKS_PER_PERIOD)
            .fold(MAX_TICK, Duration::min)
            .max(MIN_TICK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open_path::{parse, OpenTarget};

    fn registry() -> Registry {
        "[driver.fast]\nbinary = \"/nonexistent/fast\"\nperiod_ms = 40\nbackoff_cap_periods = 4\n\
         [driver.slow]\nbinary = \"/nonexistent/slow\"\n"
            .parse()
            .unwrap()
    }

    fn supervisor(registry: Registry) -> Supervisor {
        Supervisor::new(registry, Some(PathBuf::from("/nonexistent/romain")))
    }

    fn open(supervisor: &mut Supervisor, path: &str, may_start: bool) -> Result<(), OpenError> {
        let OpenTarget::Group(request) = parse(path).unwrap() else {
            panic!("{path} is not a group")
        };
        supervisor.open(&request, may_start, Instant::now())
    }

    #[test]
    fn the_tick_follows_the_shortest_period() {
        assert_eq!(supervisor(registry()).tick(), Duration::from_millis(10));
        assert_eq!(supervisor(Registry::default()).tick(), MAX_TICK);
        let tiny: Registry = "[driver.t]\nbinary = \"/x\"\nperiod_ms = 1\n"
            .parse()
            .unwrap();
        assert_eq!(supervisor(tiny).tick(), MIN_TICK);
    }

    #[test]
    fn refusals_before_anything_is_started() {
        let mut supervisor = supervisor(registry());
        assert_eq!(
            open(&mut supervisor, "nosuch", true),
            Err(OpenError::UnknownDriver)
        );
        assert_eq!(
            open(&mut supervisor, "fast?attach", true),
            Err(OpenError::NotRunning)
        );
        assert_eq!(
            open(&mut supervisor, "fast", false),
            Err(OpenError::NotPermitted)
        );
        assert!(supervisor.group("fast").is_none());
        assert_eq!(supervisor.listing(), "");
        assert_eq!(
            open(&mut supervisor, "fast?replicas=3", false),
            Err(OpenError::NotPermitted),
            "a replicated group no less"
        );
        let errnos: Vec<i32> = [
            OpenError::UnknownDriver,
            OpenError::NotRunning,
            OpenError::ReplicaMismatch {
                running: 1,
                asked: 2,
            },
            OpenError::NotPermitted,
        ]
        .iter()
        .map(OpenError::errno)
        .collect();
        assert_eq!(errnos, [ENOENT, ESRCH, EINVAL, EACCES]);
    }

    #[test]
    fn without_replication_a_replicated_group_runs_the_driver_alone_and_says_so() {
        let mut supervisor = Supervisor::new(registry(), None);
        open(&mut supervisor, "slow?replicas=3", true).unwrap();
        let group = supervisor.group("slow").unwrap();
        assert_eq!(group.replicas(), 1);
        let status = group.status();
        assert_eq!((&status.engine, status.unreplicated), (&None, Some(3)));
        assert!(status
            .to_string()
            .contains("replication=unavailable: 3 replicas asked; this system cannot trace processes, so the driver runs alone\n"));
        // Later opens asking for the same count attach; another count is refused.
        open(&mut supervisor, "slow?replicas=3", true).unwrap();
        assert_eq!(
            open(&mut supervisor, "slow?replicas=2", true),
            Err(OpenError::ReplicaMismatch {
                running: 3,
                asked: 2
            })
        );
        // A group of one says nothing of replication.
        open(&mut supervisor, "fast", true).unwrap();
        assert_eq!(
            supervisor.group("fast").unwrap().status().unreplicated,
            None
        );
    }

    #[test]
    fn a_driver_that_cannot_start_backs_off_and_can_be_attached_and_downed() {
        let mut supervisor = supervisor(registry());
        open(&mut supervisor, "fast?replicas=1", true).unwrap();
        let group = supervisor.group("fast").unwrap();
        assert_eq!(group.state(), GroupState::Backoff);
        let status = group.status();
        assert_eq!(status.last_fault.unwrap().reason.keyword(), "spawn");
        assert_eq!(status.repetition, 1);

        // Attaching leaves it be; a different replica count is refused.
        open(&mut supervisor, "fast", false).unwrap();
        open(&mut supervisor, "fast?attach", false).unwrap();
        assert_eq!(
            open(&mut supervisor, "fast?replicas=2", true),
            Err(OpenError::ReplicaMismatch {
                running: 1,
                asked: 2
            })
        );
        assert_eq!(
            supervisor.listing(),
            "driver=fast state=backoff replicas=1 pids= restarts=0\n"
        );

        supervisor
            .command("fast", &Command::Down, Instant::now())
            .unwrap();
        assert_eq!(supervisor.group("fast").unwrap().state(), GroupState::Down);
        supervisor.poll(Instant::now() + Duration::from_secs(10));
        assert_eq!(
            supervisor.group("fast").unwrap().state(),
            GroupState::Down,
            "down is for good"
        );
        assert_eq!(
            supervisor
                .command("fast", &Command::Kill(0), Instant::now())
                .unwrap_err()
                .errno(),
            ESRCH
        );
        assert_eq!(
            supervisor
                .command("slow", &Command::Restart, Instant::now())
                .unwrap_err()
                .errno(),
            ESRCH
        );
        open(&mut supervisor, "fast?attach", false).unwrap();
        // Opening it again starts afresh.
        open(&mut supervisor, "fast", true).unwrap();
        let status = supervisor.group("fast").unwrap().status();
        assert_eq!((status.restarts, status.repetition), (0, 1));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn replicas_from_two_run_the_engine_and_take_its_commands() {
        use crate::status::EngineReport;
        use syscall::error::EOPNOTSUPP;

        let mut supervisor = supervisor(registry());
        open(&mut supervisor, "fast?replicas=3", true).unwrap();
        let group = supervisor.group("fast").unwrap();
        assert_eq!(group.replicas(), 3);
        let status = group.status();
        assert_eq!(status.replicas, 3);
        assert_eq!(
            status.last_fault.unwrap().reason.to_string(),
            "could not be started: /nonexistent/romain: No such file or directory (os error 2)",
            "the group's process is the engine"
        );
        assert_eq!(status.engine, Some(EngineReport::Unknown));
        assert_eq!(
            supervisor.listing(),
            "driver=fast state=backoff replicas=3 pids= restarts=0 votes=unknown repairs=unknown\n"
        );
        assert_eq!(
            open(&mut supervisor, "fast?replicas=1", true),
            Err(OpenError::ReplicaMismatch {
                running: 3,
                asked: 1
            })
        );

        let errno = |supervisor: &mut Supervisor, driver: &str, command: &str| {
            supervisor
                .command(driver, &command.parse().unwrap(), Instant::now())
                .map_err(|e| e.errno())
        };
        // Every replica index is checked against the group's N first.
        for command in ["kill 3", "stop 3", "hang 3", "flip 3 reg rax 1"] {
            assert_eq!(
                errno(&mut supervisor, "fast", command),
                Err(EINVAL),
                "{command}"
            );
        }
        // No engine runs while the group backs off.
        for command in ["kill 2", "hang 0", "flip 1 reg rax 3", "scrub"] {
            assert_eq!(
                errno(&mut supervisor, "fast", command),
                Err(ESRCH),
                "{command}"
            );
        }

        // A group of one takes none of the engine's commands.
        open(&mut supervisor, "slow?replicas=1", true).unwrap();
        assert_eq!(supervisor.group("slow").unwrap().status().engine, None);
        for command in ["hang 0", "flip 0 reg rax 3", "scrub"] {
            assert_eq!(
                errno(&mut supervisor, "slow", command),
                Err(EOPNOTSUPP),
                "{command}"
            );
        }
        assert_eq!(errno(&mut supervisor, "slow", "kill 1"), Err(EINVAL));

        // Down, then up again without a count: the driver alone.
        errno(&mut supervisor, "fast", "down").unwrap();
        open(&mut supervisor, "fast", true).unwrap();
        let group = supervisor.group("fast").unwrap();
        assert_eq!((group.replicas(), group.status().engine), (1, None));
        assert_eq!(
            group.status().last_fault.unwrap().reason.to_string(),
            "could not be started: /nonexistent/fast: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn the_backoff_grows_while_spawning_fails() {
        let mut supervisor = supervisor(registry());
        open(&mut supervisor, "fast", true).unwrap();
        let start = Instant::now();
        let mut seen = Vec::new();
        // Step a clock through 1 s of polls, 1 ms apart.
        for ms in 0..1000 {
            supervisor.poll(start + Duration::from_millis(ms));
            let repetition = supervisor.group("fast").unwrap().status().repetition;
            if seen.last().is_none_or(|&(r, _)| r != repetition) {
                seen.push((repetition, ms));
            }
        }
        // The first retry is immediate (at open), then 1, 2, 4 periods of 40 ms,
        // and never more than the cap of 4.
        let gaps: Vec<u64> = seen.windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert_eq!(seen[0], (2, 0), "{seen:?}");
        assert_eq!(gaps, [40, 80, 160, 160, 160, 160, 160], "{seen:?}");
        assert_eq!(supervisor.group("fast").unwrap().status().restarts, 8);
    }
}
