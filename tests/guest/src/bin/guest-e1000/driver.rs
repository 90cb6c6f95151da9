//! The e1000 driver as a child process under the driver's uid, started in one access
//! mode and stopped with SIGTERM, as a supervisor would.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use driver_policy::Bdf;
use guest_harness::guest::report::StepResult;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{sysconf, Pid, SysconfVar};
use scheme_runtime::Handle;
use syscall::flag::O_RDONLY;

use crate::nic::MAC_PATH;

/// The driver's binary in the guest's /bin.
const PROGRAM: &str = "e1000";
/// The driver serves network.<NAME>.
pub const NAME: &str = "e1000";
/// Bring-up takes milliseconds, two 2 MiB DMA buffers and a few register batches;
/// generous for TCG.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGTERM stops the NIC's DMA in one batch, then the process.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(5);

pub struct Driver {
    child: Child,
    /// When `network.e1000` first answered.
    pub serving_since: Instant,
    /// CPU time the driver had used by then (start-up and bring-up).
    cpu_at_serving: Duration,
    exited: Option<ExitStatus>,
}

impl Driver {
    /// Starts the driver for the NIC at `bdf` as `uid` (also its gid) with register
    /// access `access`, and waits until its scheme answers.
    pub fn start(bdf: Bdf, uid: u32, access: &str) -> StepResult<Driver> {
        let started = Instant::now();
        let child = Command::new(PROGRAM)
            .args([
                "--pci",
                &bdf.to_string(),
                "--access",
                access,
                "--name",
                NAME,
            ])
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .spawn()?;
        let mut driver = Driver {
            child,
            serving_since: started,
            cpu_at_serving: Duration::ZERO,
            exited: None,
        };
        loop {
            match Handle::open(MAC_PATH, O_RDONLY) {
                Ok(mac) => {
                    mac.close()?;
                    driver.serving_since = Instant::now();
                    driver.cpu_at_serving = driver.cpu_time()?;
                    log::info!(
                        "{access}: the driver serves {:?} after start",
                        started.elapsed()
                    );
                    return Ok(driver);
                }
                Err(err) => {
                    if let Some(status) = driver.child.try_wait()? {
                        driver.exited = Some(status);
                        return Err(format!("the driver ended with {status} before serving").into());
                    }
                    if started.elapsed() > SERVE_TIMEOUT {
                        return Err(format!(
                            "{MAC_PATH} does not open after {SERVE_TIMEOUT:?}: {err}"
                        )
                        .into());
                    }
                    sleep(POLL);
                }
            }
        }
    }

    /// The real, effective, saved and file-system uids of the running driver.
    pub fn uids(&self) -> StepResult<Vec<u32>> {
        let status = fs::read_to_string(self.proc_file("status"))?;
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .ok_or("no Uid: line in the driver's /proc status")?;
        Ok(line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?)
    }

    /// CPU time the driver has used (user and system) since it began serving.
    pub fn cpu_time_serving(&self) -> StepResult<Duration> {
        Ok(self.cpu_time()?.saturating_sub(self.cpu_at_serving))
    }

    /// CPU time the driver has used (user and system), at the kernel's clock tick.
    fn cpu_time(&self) -> StepResult<Duration> {
        let stat = fs::read_to_string(self.proc_file("stat"))?;
        // Fields 14 and 15, counted after the parenthesised command name.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .ok_or("malformed /proc stat")?
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields.get(11).ok_or("short /proc stat")?.parse::<u64>()?
            + fields.get(12).ok_or("short /proc stat")?.parse::<u64>()?;
        let per_second = sysconf(SysconfVar::CLK_TCK)?.ok_or("no clock tick rate")?;
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    fn proc_file(&self, name: &str) -> String {
        format!("/proc/{}/{name}", self.child.id())
    }

    /// SIGTERM, then waits: the driver must exit with success.
    pub fn stop(&mut self) -> StepResult<()> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)?;
        let asked = Instant::now();
        while asked.elapsed() < STOP_TIMEOUT {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the driver ended with {status} on SIGTERM").into())
                };
            }
            sleep(POLL);
        }
        Err(format!("the driver still runs {STOP_TIMEOUT:?} after SIGTERM").into())
    }
}

impl Drop for Driver {
    /// A driver a failed step left running is killed, so the next mode finds the NIC
    /// and the scheme name free.
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
