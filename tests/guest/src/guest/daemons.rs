//! The daemons `/init` starts before the programs run: waiting until they serve, and
//! reading their status text.

use std::io;
use std::thread::sleep;
use std::time::{Duration, Instant};

use scheme_runtime::Handle;
use syscall::flag::O_RDONLY;

/// Counters and open handles of the `mmio:` daemon.
pub const MMIO_STATUS: &str = "/scheme/mmio/status";
/// Buffers per client of the `dma:` daemon.
pub const DMA_STATUS: &str = "/scheme/dma/status";

/// /init starts the daemons just before the programs run; generous for TCG.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until every status path opens, which means its daemon serves; returns how
/// long that took.
pub fn wait_until_serving(status_paths: &[&str], timeout: Duration) -> io::Result<Duration> {
    let started = Instant::now();
    for path in status_paths {
        while let Err(err) = Handle::open(path, O_RDONLY) {
            if started.elapsed() > timeout {
                return Err(io::Error::new(
                    err.kind(),
                    format!("{path} does not open after {timeout:?}: {err}"),
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }
    Ok(started.elapsed())
}

/// The whole status text behind `path`, a snapshot taken when it opens.
pub fn read_status(path: &str) -> io::Result<String> {
    scheme_runtime::read_text(&Handle::open(path, O_RDONLY)?)
}
