//! A `dma` daemon process serving over the host transport in a temporary scheme directory.

use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use scheme_runtime::{Handle, SCHEME_DIR_ENV};
use syscall::flag::O_RDONLY;

/// The daemon, killed when dropped. Clients in this process find it: `start` points
/// `SCHEME_DIR` at its directory (so each test binary starts one daemon).
pub struct DmaDaemon {
    process: Child,
    _dir: tempfile::TempDir,
}

impl DmaDaemon {
    // Each test binary compiles this module and uses only some of it.
    #[allow(dead_code)]
    pub fn start(quota: &str) -> Self {
        Self::start_with(quota, &[])
    }

    /// As [`start`](Self::start), with more of the daemon's options.
    pub fn start_with(quota: &str, options: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(SCHEME_DIR_ENV, dir.path());
        let process = Command::new(env!("CARGO_BIN_EXE_dma"))
            .args(["--backend", "memfd-not-for-devices", "--quota", quota])
            .args(options)
            .env(SCHEME_DIR_ENV, dir.path())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Self { process, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Handle::open("/scheme/dma/status", O_RDONLY).is_err() {
            assert!(Instant::now() < deadline, "the dma daemon did not come up");
            sleep(Duration::from_millis(20));
        }
        daemon
    }
}

impl Drop for DmaDaemon {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The daemon's status text.
pub fn status() -> String {
    let handle = Handle::open("/scheme/dma/status", O_RDONLY).unwrap();
    let mut text = vec![0; 4096];
    let n = handle.read(&mut text).unwrap();
    text.truncate(n);
    String::from_utf8(text).unwrap()
}

/// Waits until the status satisfies `done`; the last status if it never does.
pub fn wait_for_status(done: impl Fn(&str) -> bool) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = status();
        if done(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            return Err(text);
        }
        sleep(Duration::from_millis(20));
    }
}
