//! A testbed daemon in a child process with its own scheme directory, for the
//! transport tests, the benchmark and the demo.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scheme_runtime::{Handle, SCHEME_DIR_ENV};

/// A running `testbed serve`, killed and cleaned up on drop.
pub struct DaemonProcess {
    child: Child,
    dir: PathBuf,
    testbed_exe: PathBuf,
}

impl DaemonProcess {
    /// Starts `testbed_exe serve` in a fresh scheme directory and waits until it
    /// answers.
    pub fn start(testbed_exe: &Path) -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "testbed-schemes-{}-{:x}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir)?;
        let child = Self::spawn_server(testbed_exe, &dir)?;
        let daemon = Self {
            child,
            dir,
            testbed_exe: testbed_exe.to_owned(),
        };
        daemon.wait_until_served(Duration::from_secs(10))?;
        Ok(daemon)
    }

    fn spawn_server(testbed_exe: &Path, dir: &Path) -> io::Result<Child> {
        Command::new(testbed_exe)
            .arg("serve")
            .env(SCHEME_DIR_ENV, dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()
    }

    /// Kills the daemon (SIGKILL, as a crash) and waits until it has ended; its
    /// socket stays behind, as a crashed driver's does.
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }

    /// Starts a successor in the same scheme directory, as a supervisor restarts
    /// a driver, and waits until it answers.
    pub fn start_successor(&mut self) -> io::Result<()> {
        self.child = Self::spawn_server(&self.testbed_exe, &self.dir)?;
        self.wait_until_served(Duration::from_secs(10))
    }

    fn wait_until_served(&self, limit: Duration) -> io::Result<()> {
        let start = Instant::now();
        loop {
            match self.open("testbed:stats", 0) {
                Ok(handle) => return handle.close(),
                Err(_) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("testbed daemon did not come up: {e}"),
                    ))
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens a path of this daemon's scheme directory.
    pub fn open(&self, path: &str, flags: usize) -> io::Result<Handle> {
        Handle::open_in(&self.dir, path, flags)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the daemon is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Starts `testbed client <path> --hold <count>` and waits until it holds its
    /// handles and blocks in a read.
    pub fn spawn_holding_client(&self, path: &str, count: usize) -> io::Result<Child> {
        let mut child = Command::new(&self.testbed_exe)
            .args(["client", path, "--hold", &count.to_string()])
            .env(SCHEME_DIR_ENV, &self.dir)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped")).read_line(&mut line)?;
        if line.trim() != format!("holding {count}") {
            let _ = child.kill();
            return Err(io::Error::other(format!("holding client said {line:?}")));
        }
        Ok(child)
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The scheme's counters, read through `testbed:stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub opened: u64,
    pub closed: u64,
}

impl Stats {
    pub fn read(daemon: &DaemonProcess) -> io::Result<Self> {
        let handle = daemon.open("testbed:stats", 0)?;
        let mut buf = [0u8; 128];
        let n = handle.read(&mut buf)?;
        handle.close()?;
        let text = std::str::from_utf8(&buf[..n]).map_err(io::Error::other)?;
        let field = |name: &str| -> io::Result<u64> {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .ok_or_else(|| io::Error::other(format!("no {name} in {text:?}")))
        };
        Ok(Self {
            opened: field("opened")?,
            closed: field("closed")?,
        })
    }

    /// Waits until `closed` reaches `target` (closes of a dead client arrive
    /// asynchronously); the last value seen if it does not within `limit`.
    pub fn wait_closed(daemon: &DaemonProcess, target: u64, limit: Duration) -> io::Result<Self> {
        let start = Instant::now();
        loop {
            let stats = Self::read(daemon)?;
            if stats.closed >= target || start.elapsed() > limit {
                return Ok(stats);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A per-call unique number (std's hasher keys are random per `RandomState`).
fn unique() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}
