//! `romain replicate`: one driver as a replica group, its scheme served to clients by
//! this process, so clients cannot tell the driver is replicated.
//!
//! Requests reach every replica in the order the scheme server takes them; replies
//! are voted. A group that loses its majority is started afresh (the request at hand
//! fails with `EIO`, as it would if an unreplicated driver crashed), and clients
//! reopen their handles: the fresh replicas know none of the old ones and number
//! theirs from the start again, so the link counts its restarts as a
//! [generation](ReplicaLink::generation) and the forwarder fails every operation on
//! a handle of an earlier one with `ESTALE`, never passing it to the fresh replicas
//! (`scheme_runtime::replicated`'s forwarder). Commands and status travel over an
//! optional control socket that the `romain:` daemon holds.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use scheme_runtime::replicated::{Forwarder, ReplicaLink, QUIET_ROUND};
use scheme_runtime::HostServer;

use super::replica_group::{Devices, GroupConfig, GroupFailure, ReplicaGroup};
use super::{Injection, SchemeAllowList};
use crate::trap::PortDevice;

/// How often a group whose driver asked for no tick still runs a round.
const IDLE_ROUND: Duration = Duration::from_millis(100);

/// How often the replicas' private memory is compared (about a millisecond per
/// MiB per replica).
const SCRUB_PERIOD: Duration = Duration::from_secs(1);
/// How often it is compared while the group serves no request: an idle group's
/// replicas make no event a flipped bit could reach the device by, and under
/// emulation a scrub a second is about 2% of the processor.
const IDLE_SCRUB_PERIOD: Duration = Duration::from_secs(5);

/// Most bytes of one control command.
const MAX_COMMAND_LEN: usize = 256;

/// The replica group behind the driver's scheme, and the ports it reaches.
pub struct GroupLink {
    group: ReplicaGroup,
    devices: Devices,
    control: Option<OwnedFd>,
    hello: Vec<u8>,
    /// How many times the group was started afresh: handles opened before the
    /// last time are unknown to the replicas now serving.
    generation: u64,
    last_scrub: Instant,
    /// The requests the group had served by the last scrub.
    requests_at_scrub: u64,
    failed: Option<String>,
}

impl GroupLink {
    /// `control`, if given, is a nonblocking SOCK_SEQPACKET socket: each message on it
    /// is a command (`status` or a fault injection), each answered with one message.
    pub fn new(group: ReplicaGroup, devices: Devices, control: Option<OwnedFd>) -> Self {
        Self {
            group,
            devices,
            control,
            hello: Vec::new(),
            generation: 0,
            last_scrub: Instant::now(),
            requests_at_scrub: 0,
            failed: None,
        }
    }

    pub fn group(&mut self) -> &mut ReplicaGroup {
        &mut self.group
    }

    /// Answers every command waiting on the control socket.
    fn serve_control(&mut self) {
        let Some(control) = self.control.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let mut command = [0; MAX_COMMAND_LEN];
        loop {
            let len = match recv(control, &mut command, MsgFlags::MSG_DONTWAIT) {
                Ok(0) | Err(Errno::EAGAIN) => return,
                Ok(len) => len,
                Err(errno) => {
                    log::warn!("control socket: {errno}; closing it");
                    self.control = None;
                    return;
                }
            };
            let text = String::from_utf8_lossy(&command[..len]);
            let answer = self.command(text.trim());
            let _ = send(control, answer.as_bytes(), MsgFlags::MSG_DONTWAIT);
        }
    }

    /// Carries out one control command; the answer starts with `ok` or `error`.
    pub fn command(&mut self, text: &str) -> String {
        match text {
            "status" => return format!("ok\n{}", self.group.stats()),
            "scrub" => {
                return match self.group.scrub() {
                    Ok(repaired) => format!("ok scrubbed: {repaired} replicas repaired"),
                    Err(error) => format!("error {error}"),
                }
            }
            _ => {}
        }
        match text.parse::<Injection>() {
            Ok(injection) => match self.group.inject(injection) {
                Ok(()) => format!("ok {injection}"),
                Err(error) => format!("error {error}"),
            },
            Err(error) => format!("error {error}"),
        }
    }

    /// Compares the replicas' memory every [`SCRUB_PERIOD`], between requests: a
    /// flipped bit that no event shows yet would otherwise wait for a second fault
    /// in another replica, and two wrong replicas out of three have no majority.
    fn scrub_when_due(&mut self) {
        let requests = self.group.requests();
        let period = match requests == self.requests_at_scrub {
            true => IDLE_SCRUB_PERIOD,
            false => SCRUB_PERIOD,
        };
        if self.last_scrub.elapsed() < period {
            return;
        }
        self.last_scrub = Instant::now();
        self.requests_at_scrub = requests;
        if let Err(error) = self.group.scrub() {
            log::warn!("scrubbing the replicas' memory: {error}");
        }
    }

    /// Starts the group again after `failure`, through to its hello.
    /// One that cannot (the driver itself ended, or will not start again) marks the
    /// link as failed: the server stops, and whoever supervises this process
    /// restarts it with backoff.
    fn recover(&mut self, failure: &GroupFailure) -> io::Result<()> {
        let recovered = match failure {
            GroupFailure::DriverEnded(how) => Err(format!("the driver {how}")),
            failure => {
                log::error!("replica group failed ({failure}); starting it again");
                self.restart()
            }
        };
        recovered.map_err(|reason| {
            log::error!("replica group cannot go on: {reason}");
            self.failed = Some(reason.clone());
            io::Error::other(reason)
        })
    }

    fn restart(&mut self) -> Result<(), String> {
        // Counted before anything else: whether or not the new group starts, the
        // replicas that knew the clients' handles are gone.
        self.generation += 1;
        self.group.restart().map_err(|error| error.to_string())?;
        match self.group.exchange(None, &mut self.devices) {
            Ok(Some(hello)) if hello == self.hello => Ok(()),
            Ok(_) => Err("the restarted group said another hello".to_owned()),
            Err(failure) => Err(failure.to_string()),
        }
    }

    /// Why the group cannot go on, once it cannot.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }
}

impl ReplicaLink for GroupLink {
    fn exchange(&mut self, message: &[u8], reply: &mut Vec<u8>) -> io::Result<()> {
        self.scrub_when_due();
        match self.group.exchange(Some(message), &mut self.devices) {
            Ok(Some(answer)) => {
                *reply = answer;
                Ok(())
            }
            Ok(None) => Err(io::Error::other("the replicas did not answer")),
            Err(failure) => {
                self.recover(&failure)?;
                Err(io::Error::other(failure))
            }
        }
    }

    fn last_exchange_reached_out(&self) -> bool {
        self.group.last_exchange_reached_out()
    }

    /// The group restarts only in [`Self::recover`], inside an exchange that then
    /// fails, as the forwarder expects.
    fn generation(&self) -> u64 {
        self.generation
    }

    /// The control socket: `romain:` asks for status and injects faults
    /// while the group idles too, and waits `romain:`'s `ENGINE_WAIT`
    /// for the answer.
    fn wake_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.control
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .into_iter()
            .collect()
    }

    fn attend(&mut self) {
        self.serve_control();
    }

    fn receive_hello(&mut self, reply: &mut Vec<u8>) -> io::Result<()> {
        match self.group.exchange(None, &mut self.devices) {
            Ok(Some(hello)) => {
                self.hello = hello.clone();
                *reply = hello;
                Ok(())
            }
            Ok(None) => Err(io::Error::other("the replicas waited without a hello")),
            Err(failure) => Err(io::Error::other(failure)),
        }
    }
}

/// Serves the group's scheme in `scheme_dir` until the server fails or the group
/// cannot be started again.
pub fn serve_group(link: GroupLink, scheme_dir: &Path) -> io::Result<()> {
    serve_group_until(link, scheme_dir, &AtomicBool::new(false))
}

/// As [`serve_group`], and returns once `stop` is set (checked every round).
pub fn serve_group_until(link: GroupLink, scheme_dir: &Path, stop: &AtomicBool) -> io::Result<()> {
    let (mut forwarder, hello) = Forwarder::connect(link)?;
    log::info!(
        "replicas serve {}: (tick {:?}); serving it for them",
        hello.name,
        hello.tick
    );
    let mut server = HostServer::bind(scheme_dir, &hello.name)?;
    // A daemon without a tick still gets rounds often enough to notice `stop`.
    // Replicas whose line this side waits on need no tick of theirs: the line
    // wakes it, and the forwarder runs their safety round itself.
    let tick = match &hello.line {
        Some(_) => QUIET_ROUND,
        None => hello.tick.unwrap_or(IDLE_ROUND),
    };
    server.set_tick(Some(tick));
    while !stop.load(Ordering::Relaxed) {
        server.run_round(&mut forwarder)?;
        if let Some(reason) = forwarder.link().failure() {
            return Err(io::Error::other(reason.to_owned()));
        }
    }
    Ok(())
}

/// How `romain replicate` runs a driver.
#[derive(Debug)]
pub struct ReplicateOptions {
    pub config: GroupConfig,
    /// The port range the driver's port instructions may reach through `mmio:`.
    pub ports: Option<driver_policy::PortRange>,
    /// The driver's policy label, for `mmio:` when this process runs as root.
    pub label: Option<String>,
    /// The schemes the driver's policy rule lists: the only ones, in the scheme
    /// directory, its replicas may connect to. `None` (no rule known): any.
    pub schemes: Option<Vec<String>>,
    pub control: Option<OwnedFd>,
}

/// Starts the group and serves its scheme in the scheme directory until the server
/// fails or the group cannot be started again.
pub fn replicate(options: ReplicateOptions) -> io::Result<()> {
    let device: Box<dyn PortDevice + Send> = match options.ports {
        Some(range) => Box::new(super::MmioPorts::open(range, options.label.as_deref())?),
        None => Box::new(NoPorts),
    };
    if let Some(control) = &options.control {
        nix::fcntl::fcntl(
            control,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
    }
    let scheme_dir = scheme_runtime::scheme_dir();
    let mut group = ReplicaGroup::start(options.config).map_err(io::Error::other)?;
    if let Some(schemes) = options.schemes {
        let allowed = SchemeAllowList::new(scheme_dir.clone(), schemes);
        log::info!("the replicas may connect to the schemes {allowed}");
        group.restrict_connections(allowed);
    }
    serve_group(
        GroupLink::new(
            group,
            Devices {
                ports: device,
                memory: None,
            },
            options.control,
        ),
        &scheme_dir,
    )
}

/// The device of a driver granted no ports: every port instruction is refused.
struct NoPorts;

impl PortDevice for NoPorts {
    fn read(&mut self, port: u16, _width: crate::trap::Width) -> u32 {
        log::warn!("replicas read port {port:#x} but were granted no ports");
        u32::MAX
    }

    fn write(&mut self, port: u16, _width: crate::trap::Width, _value: u32) {
        log::warn!("replicas wrote port {port:#x} but were granted no ports");
    }
}

/// A group served from a thread of its own, which is the replicas' tracer (ptrace
/// works per thread): for tests, benchmarks and programs that embed the engine.
/// Dropping it stops serving and ends the replicas.
pub struct GroupThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
    control: OwnedFd,
}

impl GroupThread {
    /// Starts `config`'s replicas on the thread and serves their scheme in
    /// `scheme_dir`; returns once the thread runs (the scheme appears when the
    /// replicas said their hello).
    pub fn spawn(config: GroupConfig, devices: Devices, scheme_dir: PathBuf) -> io::Result<Self> {
        let (control, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("romain-group".into())
                .spawn(move || {
                    let group = ReplicaGroup::start(config).map_err(io::Error::other)?;
                    let link = GroupLink::new(group, devices, Some(theirs));
                    serve_group_until(link, &scheme_dir, &stop)
                })?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
            control,
        })
    }

    /// Sends a control command (`status`, `scrub`, a fault) and returns the answer.
    pub fn command(&self, text: &str) -> io::Result<String> {
        send(self.control.as_raw_fd(), text.as_bytes(), MsgFlags::empty())?;
        let mut answer = vec![0; 4096];
        let len = recv(self.control.as_raw_fd(), &mut answer, MsgFlags::empty())?;
        Ok(String::from_utf8_lossy(&answer[..len]).into_owned())
    }

    /// Whether the serving thread has ended (its error is logged when dropped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for GroupThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Err(error)) => log::warn!("replica group thread ended: {error}"),
                Err(_) => log::error!("replica group thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}
