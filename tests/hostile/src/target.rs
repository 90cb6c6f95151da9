//! A daemon under attack, watched from outside: its process, descriptors,
//! memory and log, and a well-behaved client that keeps asking it for service.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use scheme_runtime::{Handle, SCHEME_DIR_ENV};

use crate::{AttackClass, Daemon};

/// A `hostile-target serve` process in a scheme directory of its own, its
/// standard error in a log file; killed and cleaned up on drop.
pub struct Target {
    daemon: Daemon,
    exe: PathBuf,
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Target {
    /// Starts `exe serve <daemon>` and waits until it answers the probe.
    pub fn start(exe: &Path, daemon: Daemon) -> io::Result<Self> {
        Self::start_with_fd_limit(exe, daemon, None)
    }

    /// As [`Self::start`], the daemon limited to `fd_limit` open files if given.
    pub fn start_with_fd_limit(
        exe: &Path,
        daemon: Daemon,
        fd_limit: Option<u64>,
    ) -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "hostile-{}-{}-{:?}",
            daemon.scheme(),
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir)?;
        // The attacker, another uid, must reach the sockets.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let log = dir.with_extension("log");
        let mut command = Command::new(exe);
        command
            .args(["serve", &format!("{daemon:?}").to_lowercase()])
            .env(SCHEME_DIR_ENV, &dir)
            .env("RUST_LOG", "info")
            .stderr(File::create(&log)?);
        if let Some(limit) = fd_limit {
            use nix::sys::resource::{setrlimit, Resource};
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
            // child between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(io::Error::from)
                });
            }
        }
        let child = command.spawn()?;
        let target = Self {
            daemon,
            exe: exe.to_owned(),
            child,
            dir,
            log,
        };
        let start = Instant::now();
        while let Err(e) = target.probe() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{daemon:?} did not come up: {e}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(target)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What a well-behaved client asks for: open the probe path, read, close.
    pub fn probe(&self) -> io::Result<()> {
        probe(&self.dir, self.daemon)
    }

    /// Descriptors the daemon holds.
    pub fn fd_count(&self) -> io::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()))?.count())
    }

    /// The daemon's resident memory, in KiB.
    pub fn rss_kib(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS"))
    }

    /// Bytes the daemon has logged so far.
    pub fn log_bytes(&self) -> io::Result<u64> {
        Ok(std::fs::metadata(&self.log)?.len())
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `exe attack` against this daemon (as uid 65534 when root) and
    /// returns what it printed.
    pub fn attack(&self, count: usize, classes: &[AttackClass]) -> io::Result<Output> {
        let mut command = Command::new(&self.exe);
        command
            .args([
                "attack",
                &format!("{:?}", self.daemon).to_lowercase(),
                "--count",
                &count.to_string(),
            ])
            .env(SCHEME_DIR_ENV, &self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if !classes.is_empty() {
            let names: Vec<String> = classes.iter().map(class_name).collect();
            command.args(["--class", &names.join(",")]);
        }
        command.output()
    }

    /// Waits up to `limit` for the daemon's descriptors to come back to `count`
    /// (closes of dropped connections arrive asynchronously); the last count seen.
    pub fn settle_fds(&self, count: usize, limit: Duration) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            let now = self.fd_count()?;
            if now <= count || start.elapsed() > limit {
                return Ok(now);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The class's name on the command line (clap's kebab case).
fn class_name(class: &AttackClass) -> String {
    use clap::ValueEnum;
    class
        .to_possible_value()
        .map_or_else(String::new, |value| value.get_name().to_owned())
}

fn probe(dir: &Path, daemon: Daemon) -> io::Result<()> {
    let handle = Handle::open_in(dir, &daemon.probe_path(), syscall::flag::O_RDONLY)?;
    let mut buf = [0u8; 4096];
    handle.read(&mut buf)?;
    handle.close()
}

/// A well-behaved client probing a daemon every few milliseconds from a thread.
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProbeReport>,
}

/// What the well-behaved client saw.
#[derive(Clone, Debug, Default)]
pub struct ProbeReport {
    pub probes: u64,
    pub failures: u64,
    pub slowest: Duration,
    pub first_failure: Option<String>,
}

impl Prober {
    pub fn start(target: &Target) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let (dir, daemon) = (target.dir.clone(), target.daemon);
        let thread = std::thread::spawn(move || {
            let mut report = ProbeReport::default();
            while !stopped.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = probe(&dir, daemon);
                report.slowest = report.slowest.max(start.elapsed());
                report.probes += 1;
                if let Err(e) = result {
                    report.failures += 1;
                    report.first_failure.get_or_insert_with(|| e.to_string());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            report
        });
        Self { stop, thread }
    }

    pub fn stop(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
