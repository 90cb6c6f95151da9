//! One run of the bulk exchange through the driver's `data` path: the marker, then
//! 64 KiB out from one thread while another reads the host's 64 KiB, each with
//! blocking requests the driver parks; then the driver's own counters.

use std::io;
use std::sync::mpsc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use guest_harness::com2_bulk::{checksum, BulkRun, BULK_LEN};
use guest_harness::guest::daemons::read_status;
use guest_harness::guest::report::StepResult;
use scheme_runtime::Handle;
use syscall::flag::O_RDWR;

use crate::driver::{data_path, status_path};

/// How long one exchange may take; split access under TCG is the slow case.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(40);
/// Bytes per write request: the driver takes what fits its queue.
const WRITE_CHUNK: usize = 4096;
/// How often the sender looks whether the driver's queue has drained.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// How long each direction took, from the marker's write on, and what it cost.
pub struct Throughput {
    /// Until the driver had given the last byte to the UART.
    pub to_host: Duration,
    /// Until the last of the host's bytes was read.
    pub from_host: Duration,
    /// Register batches the driver ran since it started (`mmio:` calls in split mode).
    pub steps: String,
}

/// Sends the run's marker and bytes while reading the host's answer; fails unless
/// every byte of the answer arrived, in order.
pub fn exchange(run: &BulkRun) -> StepResult<Throughput> {
    let sender = Handle::open(&data_path(run.access), O_RDWR)?;
    let receiver = Handle::open(&data_path(run.access), O_RDWR)?;
    let started = Instant::now();
    write_all(&sender, run.marker.as_bytes())?;
    let (outgoing, access) = (run.guest_bytes(), run.access);
    let sent = in_thread(move || -> io::Result<Duration> {
        write_all(&sender, &outgoing)?;
        wait_until_drained(access, started)
    });
    let received = in_thread(move || -> io::Result<(Vec<u8>, Duration)> {
        let mut bytes = vec![0; BULK_LEN];
        let mut filled = 0;
        while filled < BULK_LEN {
            match receiver.read(&mut bytes[filled..])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => filled += n,
            }
        }
        Ok((bytes, started.elapsed()))
    });
    let deadline = started + EXCHANGE_TIMEOUT;
    let (bytes, from_host) = wait(&received, deadline, "reading the host's bytes")?;
    let to_host = wait(&sent, deadline, "sending the guest's bytes")?;
    let expected = run.host_bytes();
    if bytes != expected {
        let first = bytes.iter().zip(&expected).position(|(a, b)| a != b);
        return Err(format!(
            "the host's bytes arrived changed: checksum {:#018x}, expected {:#018x}, first difference at byte {}",
            checksum(&bytes),
            checksum(&expected),
            first.unwrap_or(BULK_LEN)
        )
        .into());
    }
    Ok(Throughput {
        to_host,
        from_host,
        steps: status_value(run.access, "steps")?,
    })
}

/// The driver took exactly the run's bytes from the chip and gave it the marker and
/// the run's bytes, saw no overrun and no device error.
pub fn check_counters(run: &BulkRun) -> StepResult<()> {
    let sent = (run.marker.len() + BULK_LEN).to_string();
    let received = BULK_LEN.to_string();
    for (key, expected) in [
        ("rx_bytes", received.as_str()),
        ("tx_bytes", sent.as_str()),
        ("overruns", "0"),
        ("device_errors", "0"),
        ("state", "ok"),
    ] {
        let value = status_value(run.access, key)?;
        if value != expected {
            return Err(format!("status {key}: {value}, expected {expected}").into());
        }
    }
    Ok(())
}

fn status_value(access: &str, key: &str) -> StepResult<String> {
    let text = read_status(&status_path(access))?;
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

/// Waits until the driver's transmit queue is empty; the time since `started`.
fn wait_until_drained(access: &str, started: Instant) -> io::Result<Duration> {
    loop {
        let drained =
            status_value(access, "tx_queued").map_err(|err| io::Error::other(err.to_string()))?;
        if drained == "0" {
            return Ok(started.elapsed());
        }
        sleep(DRAIN_POLL);
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

fn wait<T>(result: &mpsc::Receiver<io::Result<T>>, deadline: Instant, what: &str) -> StepResult<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    match result.recv_timeout(left) {
        Ok(outcome) => Ok(outcome.map_err(|err| format!("{what}: {err}"))?),
        Err(_) => Err(format!("{what}: not done after {EXCHANGE_TIMEOUT:?}").into()),
    }
}
