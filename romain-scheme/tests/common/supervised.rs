//! A real `romain serve` in its own process and scheme directory, and the
//! helpers its tests share: what `supervision.rs` and `state_store.rs` have in
//! common. Each declares it by path (`#[path = "common/supervised.rs"] mod
//! supervised;`), so it is compiled only into the test binaries that use all of
//! it; what one file alone asks of the daemon stays in that file.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use scheme_runtime::{Handle, SCHEME_DIR_ENV};
use syscall::flag::{O_RDONLY, O_RDWR};

pub const ROMAIN: &str = env!("CARGO_BIN_EXE_romain");

/// A running `romain serve` with its own scheme directory, killed (with its
/// drivers) on drop. Its log goes to a file that is printed if the test fails.
pub struct Supervised {
    pub daemon: Child,
    /// The directory of the test: `schemes/`, `drivers.toml`, `daemon.log`, and
    /// whatever the registry's maker put there.
    pub dir: PathBuf,
}

impl Supervised {
    /// Starts the daemon, as `user` (uid and gid) if given, else as this
    /// process, on the registry `registry` makes from the test's directory (it
    /// may write files there, a recovery script say), and waits until it serves.
    pub fn serve(user: Option<u32>, registry: impl FnOnce(&Path) -> String) -> Self {
        let dir =
            std::env::temp_dir().join(format!("romain-test-{}-{:x}", std::process::id(), unique()));
        fs::create_dir_all(dir.join("schemes")).unwrap();
        // Drivers running as other users serve schemes too; as /run/schemes.
        fs::set_permissions(dir.join("schemes"), fs::Permissions::from_mode(0o1777)).unwrap();
        let registry = registry(&dir);
        fs::write(dir.join("drivers.toml"), registry).unwrap();
        let mut daemon = Command::new(ROMAIN);
        if let Some(user) = user {
            daemon.uid(user).gid(user);
        }
        let daemon = daemon
            .arg("serve")
            .arg("--registry")
            .arg(dir.join("drivers.toml"))
            .env(SCHEME_DIR_ENV, dir.join("schemes"))
            .env("RUST_LOG", "info")
            .stderr(fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let supervised = Self { daemon, dir };
        wait_for("the daemon to serve", Duration::from_secs(10), || {
            supervised.open("romain:", O_RDONLY).ok()
        });
        supervised
    }

    /// The scheme directory the daemon and its drivers serve in.
    pub fn schemes(&self) -> PathBuf {
        self.dir.join("schemes")
    }

    pub fn open(&self, path: &str, flags: usize) -> io::Result<Handle> {
        Handle::open_in(&self.schemes(), path, flags)
    }

    /// `driver`'s status, a field a line.
    pub fn status(&self, driver: &str) -> BTreeMap<String, String> {
        let handle = self
            .open(&format!("romain:{driver}?attach"), O_RDONLY)
            .unwrap();
        fields(&read_text(&handle))
    }

    pub fn command(&self, driver: &str, command: &str) -> io::Result<usize> {
        self.open(&format!("romain:{driver}?attach"), O_RDWR)?
            .write(command.as_bytes())
    }

    /// Waits until `driver`'s group runs a process other than `old_pid`.
    pub fn wait_for_new_pid(&self, driver: &str, old_pid: Option<u32>, limit: Duration) -> u32 {
        wait_for("a new process", limit, || {
            let status = self.status(driver);
            let pid = status["pids"].parse().ok()?;
            (status["state"] == "running" && Some(pid) != old_pid).then_some(pid)
        })
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ---\n{}--- end of daemon log ---",
                self.log()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn read_text(handle: &Handle) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    let n = handle.read_at(&mut buf, 0).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// The `key=value` lines of `text`; any other line is a failure.
pub fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {line:?}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Polls `check` until it gives a value; fails after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A number no other call is likely to get, for names of directories.
pub fn unique() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

/// The errno `result` failed with, if it failed with one.
pub fn errno(result: io::Result<impl Sized>) -> Option<i32> {
    result.err().and_then(|error| error.raw_os_error())
}
