//! One process of a group, started from its registry entry, watched, and killed
//! on purpose: the driver itself, or for a replicated group the replication
//! engine (`romain replicate`), which runs the driver as N replicas, serves the
//! driver's scheme for them and takes commands on a control socket.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::fault::FaultReason;
use crate::heartbeat::{Heartbeat, ProbeReply};
use crate::platform::{self, ControlSocket, HeldScheme, StandbySignal};
use crate::registry::DriverSpec;

/// How long `romain:` waits for the engine's answer to a command. The engine
/// answers between two requests of the driver's scheme, so within a tick of the
/// driver unless a replica hangs; every other client of `romain:` waits as long.
pub const ENGINE_WAIT: Duration = Duration::from_secs(1);

/// Where the engine finds its control socket (`romain replicate --control-fd`).
const CONTROL_FD: RawFd = 3;
/// Where a standby driver finds its pipe (named in its environment).
const STANDBY_FD: RawFd = 3;
/// Where a driver or an engine finds its scheme's listening socket, when the
/// supervisor holds it (named in its environment).
const SCHEME_FD: RawFd = 4;

/// The longest answer read from the engine; its status is far shorter.
const MAX_ANSWER_LEN: usize = 16 * 1024;

/// Names one process for its whole life, unlike a pid, which the system reuses;
/// heartbeat replies carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplicaId(u64);

impl ReplicaId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a group's process runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// The driver alone, restarted when it fails.
    Driver,
    /// `<binary> replicate --replicas <replicas> ... -- <driver>`: the driver as
    /// replicas that vote on every effect.
    Engine { binary: PathBuf, replicas: usize },
}

impl Program {
    /// What a group of `replicas` runs, `engine` being the `romain` binary.
    /// Replication starts at two, the fewest that can disagree: one runs the
    /// driver alone (`romain replicate --replicas 1` exists to measure the
    /// engine's cost, not to serve).
    pub fn for_replicas(replicas: usize, engine: &Path) -> Self {
        if replicas >= 2 {
            Self::Engine {
                binary: engine.to_owned(),
                replicas,
            }
        } else {
            Self::Driver
        }
    }

    pub fn replicas(&self) -> usize {
        match self {
            Self::Driver => 1,
            Self::Engine { replicas, .. } => *replicas,
        }
    }

    /// The command that starts `spec`'s driver under this program, as the
    /// registry's user and group if it names them. Besides the registry's
    /// environment the process gets `ROMAIN_DRIVER`, `ROMAIN_POLICY` (the policy
    /// label) and `ROMAIN_REPLICA`; the engine passes the same environment, and
    /// its own user and group, to every replica.
    fn command(&self, spec: &DriverSpec) -> Command {
        use std::os::unix::process::CommandExt;

        let mut command = match self {
            Self::Driver => Command::new(&spec.binary),
            Self::Engine { binary, replicas } => {
                let mut command = Command::new(binary);
                command.args([
                    "replicate".to_owned(),
                    format!("--replicas={replicas}"),
                    format!("--control-fd={CONTROL_FD}"),
                    format!("--label={}", spec.policy),
                ]);
                if let Some(ports) = spec.ports {
                    command.arg(format!("--ports={ports}"));
                }
                if let Some(watchdog) = spec.watchdog {
                    command.arg(format!("--watchdog-ms={}", watchdog.as_millis()));
                }
                if let Some(backend) = spec.backend {
                    command.arg(format!("--backend={backend}"));
                }
                if let Some(schemes) = &spec.schemes {
                    command.arg(format!("--schemes={}", schemes.join(",")));
                }
                command.arg("--").arg(&spec.binary);
                command
            }
        };
        command
            .args(&spec.args)
            .envs(&spec.env)
            .env("ROMAIN_DRIVER", &spec.name)
            .env("ROMAIN_POLICY", &spec.policy)
            .env("ROMAIN_REPLICA", "0")
            .stdin(Stdio::null());
        // std switches these in the child before any `pre_exec` hook runs, so the
        // switch does not clear the parent-death signal `die_with_supervisor` sets.
        if let Some(gid) = spec.gid {
            command.gid(gid);
        }
        if let Some(uid) = spec.uid {
            command.uid(uid);
        }
        command
    }
}

/// A start of `spec`'s process that was refused, said with the user it was to
/// run as: switching users takes root, and that user must be allowed to run the
/// binary. Other failures have nothing to do with the user and pass unchanged.
fn spawn_error(spec: &DriverSpec, error: io::Error) -> io::Error {
    if error.kind() != io::ErrorKind::PermissionDenied {
        return error;
    }
    let user = match (spec.uid, spec.gid) {
        (None, None) => return error,
        (Some(uid), Some(gid)) => format!("uid {uid}, gid {gid}"),
        (Some(uid), None) => format!("uid {uid}"),
        (None, Some(gid)) => format!("gid {gid}"),
    };
    let hint = match platform::own_uid() {
        0 => String::new(),
        own => format!(
            "; only root may start a process as another user, and this supervisor runs as uid {own}"
        ),
    };
    io::Error::new(error.kind(), format!("cannot run as {user}: {error}{hint}"))
}

/// The heartbeat of `spec`'s driver for a process that starts serving at `now`.
fn heartbeat(spec: &DriverSpec, now: Instant) -> Option<Heartbeat> {
    spec.heartbeat
        .as_deref()
        .map(|path| Heartbeat::new(path, spec.period, spec.missed_periods, now))
}

/// Why the supervisor killed a replica, so that its death is not taken for a
/// fault of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillCause {
    Fault(FaultReason),
    /// A `restart` command: replace it, no fault.
    Restart,
    /// A `down` command: do not replace it.
    Down,
}

#[derive(Debug)]
pub struct GroupProcess {
    id: ReplicaId,
    child: Child,
    started: Instant,
    kill_cause: Option<KillCause>,
    /// When it was first told to die: the fault's time, for a hung driver.
    killed_at: Option<Instant>,
    heartbeat: Option<Heartbeat>,
    engine: Option<EngineControl>,
    /// Set while the process waits as a standby: what tells it to take over.
    standby: Option<StandbySignal>,
}

impl GroupProcess {
    /// Starts `spec`'s driver as `program`, handing it `scheme` if the
    /// supervisor holds the driver's scheme.
    pub fn spawn(
        spec: &DriverSpec,
        program: &Program,
        scheme: Option<&HeldScheme>,
        now: Instant,
    ) -> io::Result<Self> {
        let mut command = program.command(spec);
        let control = match program {
            Program::Driver => None,
            Program::Engine { .. } => Some(ControlSocket::for_child(&mut command, CONTROL_FD)?),
        };
        if let Some(scheme) = scheme {
            platform::hand_over_scheme(&mut command, scheme, SCHEME_FD)?;
        }
        #[cfg(target_os = "linux")]
        platform::die_with_supervisor(&mut command);
        let child = command.spawn().map_err(|e| spawn_error(spec, e))?;
        // The engine's end of the control socket is the engine's alone from
        // now on, so that its death closes the socket instead of leaving
        // commands unanswered.
        drop(command);
        let engine = control.map(|socket| EngineControl {
            socket,
            late: Cell::new(0),
        });
        Ok(Self::watched(
            child,
            now,
            heartbeat(spec, now),
            engine,
            None,
        ))
    }

    fn watched(
        child: Child,
        now: Instant,
        heartbeat: Option<Heartbeat>,
        engine: Option<EngineControl>,
        standby: Option<StandbySignal>,
    ) -> Self {
        Self {
            id: ReplicaId::next(),
            child,
            started: now,
            kill_cause: None,
            killed_at: None,
            heartbeat,
            engine,
            standby,
        }
    }

    /// Starts `spec`'s driver alone as a standby: it waits, set up but serving
    /// nothing (it holds `scheme`, the held scheme, but does not accept on it),
    /// until [`GroupProcess::take_over`].
    pub fn spawn_standby(
        spec: &DriverSpec,
        scheme: Option<&HeldScheme>,
        now: Instant,
    ) -> io::Result<Self> {
        let mut command = Program::Driver.command(spec);
        let signal = StandbySignal::for_child(&mut command, STANDBY_FD)?;
        if let Some(scheme) = scheme {
            platform::hand_over_scheme(&mut command, scheme, SCHEME_FD)?;
        }
        // Its start yields to the driver that serves and takes the time the
        // processor has to spare; it gets the usual priority back when it
        // takes over, which takes root.
        if platform::own_uid() == 0 {
            platform::start_at_low_priority(&mut command);
        }
        #[cfg(target_os = "linux")]
        platform::die_with_supervisor(&mut command);
        let child = command.spawn().map_err(|e| spawn_error(spec, e))?;
        // The pipe's other end is the standby's alone from now on.
        drop(command);
        // Not watched until it takes over: it serves nothing before.
        Ok(Self::watched(child, now, None, None, Some(signal)))
    }

    /// Tells a standby to take over now, and watches it from now on as if it
    /// had just started; an error if it is gone or is no standby.
    pub fn take_over(&mut self, spec: &DriverSpec, now: Instant) -> io::Result<()> {
        let signal = self
            .standby
            .take()
            .ok_or_else(|| io::Error::other("not a standby"))?;
        if let Err(e) = platform::set_usual_priority(self.pid()) {
            log::warn!("standby pid {}: keeps its low priority: {e}", self.pid());
        }
        signal.take_over()?;
        self.started = now;
        self.heartbeat = heartbeat(spec, now);
        Ok(())
    }

    /// Kills the process and waits for it: a standby that is no longer wanted,
    /// killed at once and gone within moments.
    pub fn discard(mut self) {
        let _ = self.child.kill();
        if let Err(e) = self.child.wait() {
            log::warn!("cannot wait for pid {}: {e}", self.pid());
        }
    }

    /// It has answered its heartbeat once (or has no heartbeat to answer).
    pub fn has_served(&self) -> bool {
        self.heartbeat.as_ref().is_none_or(Heartbeat::has_served)
    }

    pub fn id(&self) -> ReplicaId {
        self.id
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The control socket, when this process is a replication engine.
    pub fn engine(&self) -> Option<&EngineControl> {
        self.engine.as_ref()
    }

    /// The exit status once the process has ended; never waits.
    pub fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends SIGKILL and remembers why. `Down` is final: no later cause
    /// replaces it.
    pub fn kill(&mut self, cause: KillCause) {
        if self.kill_cause != Some(KillCause::Down) {
            self.kill_cause = Some(cause);
        }
        self.killed_at.get_or_insert_with(Instant::now);
        if let Err(e) = self.child.kill() {
            log::error!("cannot kill pid {}: {e}", self.pid());
        }
    }

    /// Cancels a pending `down`: the process is replaced when it ends.
    pub fn revive(&mut self) {
        if self.kill_cause == Some(KillCause::Down) {
            self.kill_cause = Some(KillCause::Restart);
        }
    }

    /// Sends SIGSTOP, which makes it look hung.
    pub fn stop(&self) -> io::Result<()> {
        platform::stop(self.pid())
    }

    pub fn is_going_down(&self) -> bool {
        self.kill_cause == Some(KillCause::Down)
    }

    pub fn take_kill_cause(&mut self) -> Option<KillCause> {
        self.kill_cause.take()
    }

    /// When it was first told to die, if it was.
    pub fn killed_at(&self) -> Option<Instant> {
        self.killed_at
    }

    /// Runs the heartbeat; the periods without an answer once the replica
    /// counts as hung. A replica being killed is not probed.
    pub fn check_heartbeat(&mut self, now: Instant, probes: &Sender<ProbeReply>) -> Option<u32> {
        if self.kill_cause.is_some() {
            return None;
        }
        self.heartbeat.as_mut()?.poll(self.id, now, probes)
    }

    /// Takes a heartbeat reply; the time the driver started serving, when this
    /// was its first answer.
    pub fn record_probe(&mut self, reply: &ProbeReply) -> Option<Instant> {
        self.heartbeat.as_mut()?.record(reply.answered, reply.at)
    }
}

/// The line to a replication engine: one command, one answer that starts with
/// `ok` or `error`.
#[derive(Debug)]
pub struct EngineControl {
    socket: ControlSocket,
    /// Answers still to come for commands whose wait ran out. They arrive before
    /// the answer to the next command, and are skipped. A `Cell` because asking
    /// is I/O on a shared socket, like writing to a `&File`, and status is taken
    /// through shared references.
    late: Cell<usize>,
}

impl EngineControl {
    /// Sends `command` and waits up to `wait` for its answer; the text after
    /// `ok`.
    pub fn ask(&self, command: &str, wait: Duration) -> Result<String, EngineError> {
        self.socket
            .send(command.as_bytes())
            .map_err(EngineError::Socket)?;
        let deadline = Instant::now() + wait;
        let mut answer = vec![0; MAX_ANSWER_LEN];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = self
                .socket
                .receive(&mut answer, left)
                .map_err(EngineError::Socket)?;
            let Some(len) = received else {
                self.late.set(self.late.get() + 1);
                return Err(EngineError::Silent(wait));
            };
            if self.late.get() > 0 {
                self.late.set(self.late.get() - 1);
                continue;
            }
            let answer = String::from_utf8_lossy(&answer[..len]);
            return match answer.strip_prefix("ok") {
                Some(rest) => Ok(rest.trim().to_owned()),
                None => Err(EngineError::Refused(
                    answer
                        .strip_prefix("error")
                        .unwrap_or(&answer)
                        .trim()
                        .to_owned(),
                )),
            };
        }
    }
}

/// A command the engine did not carry out, or may not have.
#[derive(Debug)]
pub enum EngineError {
    /// The engine said no, and why.
    Refused(String),
    /// No answer within this wait; the engine may still carry the command out.
    Silent(Duration),
    /// The socket failed, or the engine closed it (it ended).
    Socket(io::Error),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "the engine refused: {why}"),
            Self::Silent(wait) => write!(f, "the engine did not answer within {wait:?}"),
            Self::Socket(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe
                ) =>
            {
                f.write_str("the engine closed its control socket")
            }
            Self::Socket(e) => write!(f, "cannot reach the engine: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ffi::OsStr;

    fn spec() -> DriverSpec {
        "[driver.uart]\nbinary = \"/usr/bin/uartd\"\nargs = [\"-v\", \"--\"]\n\
         env = { RUST_LOG = \"debug\" }\npolicy = \"serial\"\n\
         ports = \"0x2f8-0x2ff\"\nwatchdog_ms = 250\nbackend = \"stub\"\n"
            .parse::<crate::registry::Registry>()
            .unwrap()
            .driver("uart")
            .unwrap()
            .clone()
    }

    fn args(command: &Command) -> Vec<&str> {
        command.get_args().map(|a| a.to_str().unwrap()).collect()
    }

    fn envs(command: &Command) -> BTreeMap<&OsStr, Option<&OsStr>> {
        command.get_envs().collect()
    }

    #[test]
    fn replication_starts_at_two_replicas() {
        let romain = Path::new("/usr/bin/romain");
        assert_eq!(Program::for_replicas(1, romain), Program::Driver);
        assert_eq!(Program::for_replicas(1, romain).replicas(), 1);
        let engine = Program::for_replicas(2, romain);
        assert_eq!(
            engine,
            Program::Engine {
                binary: romain.into(),
                replicas: 2
            }
        );
        assert_eq!(engine.replicas(), 2);
    }

    #[test]
    fn a_lone_driver_runs_as_itself() {
        let command = Program::Driver.command(&spec());
        assert_eq!(command.get_program(), "/usr/bin/uartd");
        assert_eq!(args(&command), ["-v", "--"]);
        let envs = envs(&command);
        for (key, value) in [
            ("RUST_LOG", "debug"),
            ("ROMAIN_DRIVER", "uart"),
            ("ROMAIN_POLICY", "serial"),
            ("ROMAIN_REPLICA", "0"),
        ] {
            assert_eq!(envs[OsStr::new(key)], Some(OsStr::new(value)), "{key}");
        }
    }

    #[test]
    fn a_replicated_driver_runs_under_the_engine() {
        let program = Program::for_replicas(3, Path::new("/usr/bin/romain"));
        let command = program.command(&spec());
        assert_eq!(command.get_program(), "/usr/bin/romain");
        assert_eq!(
            args(&command),
            [
                "replicate",
                "--replicas=3",
                "--control-fd=3",
                "--label=serial",
                "--ports=0x2f8-0x2ff",
                "--watchdog-ms=250",
                "--backend=stub",
                "--",
                "/usr/bin/uartd",
                "-v",
                "--",
            ]
        );
        assert_eq!(
            envs(&command)[OsStr::new("ROMAIN_DRIVER")],
            Some(OsStr::new("uart"))
        );

        let plain: DriverSpec = {
            let mut spec = spec();
            (spec.ports, spec.watchdog, spec.backend) = (None, None, None);
            spec.args.clear();
            spec
        };
        assert_eq!(
            args(&program.command(&plain)),
            [
                "replicate",
                "--replicas=3",
                "--control-fd=3",
                "--label=serial",
                "--",
                "/usr/bin/uartd"
            ],
            "the engine's own defaults apply"
        );
    }

    #[test]
    fn a_replicated_driver_with_a_policy_rule_is_held_to_its_schemes() {
        let program = Program::for_replicas(2, Path::new("/usr/bin/romain"));
        let mut spec = spec();
        spec.schemes = Some(vec!["mmio".into(), "dma".into()]);
        assert!(args(&program.command(&spec)).contains(&"--schemes=mmio,dma"));
        spec.schemes = Some(Vec::new());
        assert!(
            args(&program.command(&spec)).contains(&"--schemes="),
            "a rule that lists no scheme allows none"
        );
        spec.schemes = None;
        assert!(!args(&program.command(&spec))
            .iter()
            .any(|arg| arg.starts_with("--schemes")));
        spec.schemes = Some(vec!["mmio".into()]);
        assert!(
            !args(&Program::Driver.command(&spec))
                .iter()
                .any(|arg| arg.starts_with("--schemes")),
            "a driver alone opens its schemes itself, under their own checks"
        );
    }

    #[test]
    fn a_refused_start_names_the_user_it_was_for() {
        let mut spec = spec();
        let refused = || io::Error::from_raw_os_error(1);
        assert_eq!(
            spawn_error(&spec, refused()).to_string(),
            refused().to_string(),
            "no user named, nothing to add"
        );
        (spec.uid, spec.gid) = (Some(1001), Some(1002));
        let message = spawn_error(&spec, refused()).to_string();
        assert!(
            message.starts_with("cannot run as uid 1001, gid 1002: Operation not permitted"),
            "{message}"
        );
        assert_eq!(
            message.contains("only root may start a process as another user"),
            platform::own_uid() != 0,
            "{message}"
        );
        assert_eq!(
            spawn_error(&spec, io::Error::from(io::ErrorKind::NotFound)).kind(),
            io::ErrorKind::NotFound,
            "a missing binary is not about the user"
        );
        assert!(
            !spawn_error(&spec, io::Error::from(io::ErrorKind::NotFound))
                .to_string()
                .contains("uid")
        );
    }

    #[cfg(target_os = "linux")]
    mod engine {
        use super::*;
        use std::os::fd::{AsRawFd, OwnedFd};
        use std::thread;

        use nix::sys::socket::{recv, send, MsgFlags};

        /// A control line whose engine end the test holds.
        fn control() -> (EngineControl, OwnedFd) {
            let (socket, engine_end) = ControlSocket::pair().unwrap();
            let control = EngineControl {
                socket,
                late: Cell::new(0),
            };
            (control, engine_end)
        }

        /// Plays an engine that answers each command after `delay`, `answer`
        /// telling it what to say, until the line closes.
        fn engine(
            socket: OwnedFd,
            delay: Duration,
            answer: fn(&str) -> String,
        ) -> thread::JoinHandle<Vec<String>> {
            thread::spawn(move || {
                let mut heard = Vec::new();
                let mut buf = [0u8; 256];
                while let Ok(len @ 1..) = recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    let command = String::from_utf8(buf[..len].to_vec()).unwrap();
                    thread::sleep(delay);
                    send(
                        socket.as_raw_fd(),
                        answer(&command).as_bytes(),
                        MsgFlags::empty(),
                    )
                    .unwrap();
                    heard.push(command);
                }
                heard
            })
        }

        #[test]
        fn answers_decide_success() {
            let (control, engine_end) = control();
            let engine = engine(engine_end, Duration::ZERO, |command| match command {
                "status" => "ok\nevents: 3\n".to_owned(),
                "flip 1 reg rax 3" => format!("ok {command}"),
                _ => "error missing replica index".to_owned(),
            });
            let wait = Duration::from_secs(5);
            assert_eq!(control.ask("status", wait).unwrap(), "events: 3");
            assert_eq!(
                control.ask("flip 1 reg rax 3", wait).unwrap(),
                "flip 1 reg rax 3"
            );
            let refused = control.ask("bogus", wait).unwrap_err();
            assert!(
                matches!(&refused, EngineError::Refused(why) if why == "missing replica index"),
                "{refused:?}"
            );
            assert_eq!(
                refused.to_string(),
                "the engine refused: missing replica index"
            );
            drop(control);
            assert_eq!(
                engine.join().unwrap(),
                ["status", "flip 1 reg rax 3", "bogus"]
            );
        }

        #[test]
        fn a_late_answer_is_not_taken_for_the_next_one() {
            let (control, engine_end) = control();
            let engine = engine(engine_end, Duration::from_millis(300), |command| {
                format!("ok answer to {command}")
            });
            let silent = control.ask("first", Duration::from_millis(20)).unwrap_err();
            assert!(matches!(silent, EngineError::Silent(_)), "{silent:?}");
            assert_eq!(control.late.get(), 1);
            assert_eq!(
                control.ask("second", Duration::from_secs(5)).unwrap(),
                "answer to second"
            );
            assert_eq!(control.late.get(), 0);
            drop(control);
            engine.join().unwrap();
        }

        #[test]
        fn an_engine_that_is_gone_is_an_error_not_a_wait() {
            let (control, engine_end) = control();
            drop(engine_end);
            let started = Instant::now();
            let error = control.ask("status", Duration::from_secs(5)).unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(1), "it waited");
            assert!(matches!(error, EngineError::Socket(_)), "{error:?}");
            assert_eq!(error.to_string(), "the engine closed its control socket");
        }
    }
}
