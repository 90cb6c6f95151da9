//! The driver as a child process: started under a uid, waited for until its scheme
//! serves, and stopped; a start that must fail.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use driver_policy::PortRange;
use guest_harness::guest::report::StepResult;
use scheme_runtime::Handle;
use syscall::flag::O_RDONLY;

/// How long the driver may take to open the chip and serve; generous for TCG.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The scheme the test's driver serves in access mode `access`: a name per mode, since
/// a driver that is killed leaves its socket, which only its owner may replace.
pub fn scheme(access: &str) -> String {
    format!("uart.com2-{access}")
}

pub fn status_path(access: &str) -> String {
    format!("/scheme/{}/status", scheme(access))
}

pub fn data_path(access: &str) -> String {
    format!("/scheme/{}/data", scheme(access))
}

/// A running driver, killed when dropped.
pub struct Driver {
    child: Child,
}

impl Driver {
    /// Starts `program` with `--access access` for the UART at `ports`, as `uid` (and
    /// gid), and waits until its scheme answers.
    pub fn start(program: &Path, access: &str, ports: PortRange, uid: u32) -> StepResult<Driver> {
        let mut driver = Driver {
            child: command(program, access, ports, uid).spawn()?,
        };
        let started = Instant::now();
        let status = status_path(access);
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

/// Starting the driver with `--access access` as `uid` must fail within the start
/// timeout, and say `expected` in its log.
pub fn refused(
    program: &Path,
    access: &str,
    ports: PortRange,
    uid: u32,
    expected: &str,
) -> StepResult<()> {
    let mut command = command(program, access, ports, uid);
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

/// The driver for the UART at `ports` in mode `access`, to run as `uid` (and gid).
fn command(program: &Path, access: &str, ports: PortRange, uid: u32) -> Command {
    let mut command = Command::new(program);
    command
        .args(["--access", access, "--scheme", &scheme(access)])
        .args(["--base", &format!("{:#x}", ports.first())])
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null());
    command
}
