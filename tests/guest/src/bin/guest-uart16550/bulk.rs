//! One run of the bulk exchange through the driver's `data` path: the marker, then
//! the run's bytes out from one thread while another reads the host's, each with
//! blocking requests the driver parks; then the driver's own counters.

use std::io;
use std::sync::mpsc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use guest_harness::com2_bulk::{checksum, BulkRun, Setup};
use guest_harness::guest::daemons::read_status;
use guest_harness::guest::report::StepResult;
use scheme_runtime::Handle;
use syscall::flag::O_RDWR;

use crate::driver::{data_path, status_path};

/// Bytes per write request: the driver takes what fits its queue.
const WRITE_CHUNK: usize = 4096;

/// How long one exchange may take, and how often the sender looks whether the
/// driver's queue has drained.
struct Pace {
    timeout: Duration,
    drain_poll: Duration,
}

/// The driver alone; access through `mmio:` under TCG is the slow case.
const ALONE: Pace = Pace {
    timeout: Duration::from_secs(40),
    drain_poll: Duration::from_millis(5),
};
/// The engine traps every port access, a hung replica stalls the group for a watchdog
/// period, and each look at the queue costs the group events the exchange waits for.
const REPLICATED: Pace = Pace {
    timeout: Duration::from_secs(90),
    drain_poll: Duration::from_millis(50),
};

/// How long each direction took, from the marker's write on, and what it cost.
pub struct Throughput {
    /// Until the driver had given the last byte to the UART.
    pub to_host: Duration,
    /// Until the last of the host's bytes was read.
    pub from_host: Duration,
    /// Register batches the driver ran since it started (`mmio:` calls in mmio mode).
    pub steps: String,
}

/// Sends the run's marker and bytes while reading the host's answer; fails unless
/// every byte of the answer arrived, in order.
pub fn exchange(run: &BulkRun) -> StepResult<Throughput> {
    let sender = Handle::open(&data_path(run.name), O_RDWR)?;
    let receiver = Handle::open(&data_path(run.name), O_RDWR)?;
    let pace = match run.setup {
        Setup::Direct | Setup::Mmio => &ALONE,
        Setup::Replicated { .. } => &REPLICATED,
    };
    let started = Instant::now();
    write_all(&sender, run.marker.as_bytes())?;
    let (outgoing, name, len, poll) = (run.guest_bytes(), run.name, run.len, pace.drain_poll);
    let sent = in_thread(move || -> io::Result<Duration> {
        write_all(&sender, &outgoing)?;
        wait_until_drained(name, started, poll)
    });
    let received = in_thread(move || -> io::Result<(Vec<u8>, Duration)> {
        let mut bytes = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match receiver.read(&mut bytes[filled..])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => filled += n,
            }
        }
        Ok((bytes, started.elapsed()))
    });
    let (bytes, from_host) = wait(&received, started, pace.timeout, "reading the host's bytes")?;
    let to_host = wait(&sent, started, pace.timeout, "sending the guest's bytes")?;
    let expected = run.host_bytes();
    if bytes != expected {
        let first = bytes.iter().zip(&expected).position(|(a, b)| a != b);
        return Err(format!(
            "the host's bytes arrived changed: checksum {:#018x}, expected {:#018x}, first difference at byte {}",
            checksum(&bytes),
            checksum(&expected),
            first.unwrap_or(run.len)
        )
        .into());
    }
    Ok(Throughput {
        to_host,
        from_host,
        steps: status_value(run.name, "steps")?,
    })
}

/// The driver took exactly the run's bytes from the chip and gave it the marker and
/// the run's bytes, saw no overrun and no device error.
pub fn check_counters(run: &BulkRun) -> StepResult<()> {
    let sent = (run.marker.len() + run.len).to_string();
    let received = run.len.to_string();
    for (key, expected) in [
        ("rx_bytes", received.as_str()),
        ("tx_bytes", sent.as_str()),
        ("overruns", "0"),
        ("device_errors", "0"),
        ("state", "ok"),
    ] {
        let value = status_value(run.name, key)?;
        if value != expected {
            return Err(format!("status {key}: {value}, expected {expected}").into());
        }
    }
    Ok(())
}

fn status_value(run: &str, key: &str) -> StepResult<String> {
    let text = read_status(&status_path(run))?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "));
    Ok(value
        .ok_or(format!("no {key} in the driver's status"))?
        .to_owned())
}

fn write_all(handle: &Handle, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match handle.write(&bytes[..bytes.len().min(WRITE_CHUNK)])? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

/// Waits until the driver's transmit queue is empty, looking every `poll`; the time
/// since `started`.
fn wait_until_drained(run: &str, started: Instant, poll: Duration) -> io::Result<Duration> {
    loop {
        let drained =
            status_value(run, "tx_queued").map_err(|err| io::Error::other(err.to_string()))?;
        if drained == "0" {
            return Ok(started.elapsed());
        }
        sleep(poll);
    }
}

/// Runs `work` in a thread of its own; the receiver gets its result.
fn in_thread<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> mpsc::Receiver<io::Result<T>> {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(work());
    });
    result
}

fn wait<T>(
    result: &mpsc::Receiver<io::Result<T>>,
    started: Instant,
    timeout: Duration,
    what: &str,
) -> StepResult<T> {
    let left = (started + timeout).saturating_duration_since(Instant::now());
    match result.recv_timeout(left) {
        Ok(outcome) => Ok(outcome.map_err(|err| format!("{what}: {err}"))?),
        Err(_) => Err(format!("{what}: not done after {timeout:?}").into()),
    }
}
