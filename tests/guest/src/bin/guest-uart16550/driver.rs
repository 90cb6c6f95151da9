//! The driver as a child process, alone or replicated by `romain replicate`: started,
//! waited for until its scheme serves, and stopped; a start that must fail.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use driver_policy::PortRange;
use guest_harness::guest::control;
use guest_harness::guest::report::StepResult;
use scheme_runtime::Handle;
use syscall::flag::O_RDONLY;

/// How long the driver may take to open the chip and serve; generous for TCG, where
/// the replication engine also starts and traces its replicas first.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a replica may take to reach its next event: well above what a replica
/// needs under TCG on a busy host, since a replica caught by mistake is a fault.
const REPLICA_WATCHDOG_MS: u32 = 2000;

/// The scheme the test's driver serves in run `run`: a name per run, since a driver
/// that is killed leaves its socket, which only its owner may replace.
pub fn scheme(run: &str) -> String {
    format!("uart.com2-{run}")
}

pub fn status_path(run: &str) -> String {
    format!("/scheme/{}/status", scheme(run))
}

pub fn data_path(run: &str) -> String {
    format!("/scheme/{}/data", scheme(run))
}

/// The driver for the UART at `ports` in mode `access`, serving the scheme of run
/// `run`, as `uid` (and gid).
pub fn alone(program: &Path, access: &str, run: &str, ports: PortRange, uid: u32) -> Command {
    let mut command = Command::new(program);
    command
        .args(driver_args(access, run, ports))
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null());
    command
}

/// `romain replicate` running the driver as `replicas` replicas for run `run`; it takes
/// commands on `control`, which only the child keeps. With a policy rule `label`, the
/// direct-access driver, whose port accesses the engine performs through `mmio:` for
/// that rule (as root: `mmio:` lets only root act for a driver's rule). Without one,
/// the driver reaching its ports through `mmio:`, whose `mmio:` calls the engine makes on connections it
/// holds for the replicas, as whatever uid the command runs as.
pub fn replicated(
    romain: &Path,
    program: &Path,
    replicas: usize,
    run: &str,
    ports: PortRange,
    label: Option<&str>,
    control: OwnedFd,
) -> Command {
    let mut command = Command::new(romain);
    let number = control::hand_over(&mut command, control);
    command.args(["replicate", "--replicas", &replicas.to_string()]);
    if let Some(label) = label {
        command.args(["--ports", &ports.to_string(), "--label", label]);
    }
    let access = if label.is_some() { "direct" } else { "mmio" };
    command
        .args(["--watchdog-ms", &REPLICA_WATCHDOG_MS.to_string()])
        .args(["--control-fd", &number.to_string(), "--"])
        .arg(program)
        .args(driver_args(access, run, ports))
        .stdin(Stdio::null());
    command
}

pub fn driver_args(access: &str, run: &str, ports: PortRange) -> [String; 6] {
    [
        "--access".into(),
        access.into(),
        "--scheme".into(),
        scheme(run),
        "--base".into(),
        format!("{:#x}", ports.first()),
    ]
}

/// A running driver, killed when dropped.
pub struct Driver {
    child: Child,
}

impl Driver {
    /// Starts `command`, a driver serving the scheme of run `run`, and waits until the
    /// scheme answers.
    pub fn start(mut command: Command, run: &str) -> StepResult<Driver> {
        let mut driver = Driver {
            child: command.spawn()?,
        };
        drop(command);
        let started = Instant::now();
        let status = status_path(run);
        while let Err(err) = Handle::open(&status, O_RDONLY) {
            if let Some(status) = driver.child.try_wait()? {
                return Err(format!("the driver exited with {status} before serving").into());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(
                    format!("{status} does not open after {START_TIMEOUT:?}: {err}").into(),
                );
            }
            sleep(Duration::from_millis(10));
        }
        Ok(driver)
    }

    /// The uid the driver runs as, after checking its real, effective, saved and file
    /// system uids agree.
    pub fn uid(&self) -> StepResult<u32> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .ok_or("no Uid line in /proc/<pid>/status")?;
        let uids: Vec<u32> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        match uids[..] {
            [real, ..] if uids.iter().all(|&uid| uid == real) => Ok(real),
            _ => Err(format!("the driver's uids differ: {line}").into()),
        }
    }

    /// Stops the driver, which must still be running.
    pub fn stop(mut self) -> StepResult<()> {
        if let Some(status) = self.child.try_wait()? {
            return Err(format!("the driver exited during the run with {status}").into());
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starting `command`, a driver, must fail within the start timeout, and say
/// `expected` in its log.
pub fn refused(mut command: Command, expected: &str) -> StepResult<()> {
    let mut child = command.stderr(Stdio::piped()).spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the driver still runs after {START_TIMEOUT:?}").into());
        }
        sleep(Duration::from_millis(10));
    };
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut log)?;
    }
    eprint!("{log}");
    if status.success() {
        return Err("the driver started and exited successfully".into());
    }
    match log.contains(expected) {
        true => Ok(()),
        false => Err(format!("the driver failed ({status}) without saying {expected:?}").into()),
    }
}
