//! The host's load on the echo service, through QEMU's port forward: timed round
//! trips of small messages, each one checked, and bulk transfers both ways whose
//! checksums must agree, and a timed stream into the guest ([`crate::stream`]). Any
//! difference or failure is an error: the load allows none.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

use crate::pattern::{pattern_checksum, Pattern};
use crate::protocol::{parse_banner, parse_checksum_line, read_line, write_line, Command, BYE};
use crate::stream::{parse_received_line, stream_command};

/// Bytes moved per read or write.
const CHUNK: usize = 64 << 10;
/// Pause between attempts to reach a service that does not answer yet.
const RETRY: Duration = Duration::from_millis(100);
/// A stream's write gives up this soon when the path stalls, so the window ends on
/// time.
const STREAM_WRITE_SLICE: Duration = Duration::from_millis(100);
/// A stream's send buffer: a few round trips' worth, where Linux grows it to
/// megabytes, which would take the slowest path (the replicated driver) half a
/// minute to drain after each window.
const STREAM_SEND_BUFFER: usize = 64 << 10;
/// Seeds of the transfers' patterns; the round trips use their index.
const UPLOAD_SEED: u64 = 1 << 32;
const DOWNLOAD_SEED: u64 = (1 << 32) + 1;

/// An open connection to the service: its reading side (buffered, as lines and
/// data interleave) and its writing side.
type Connection = (BufReader<TcpStream>, TcpStream);

/// How much load one network path gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub round_trips: u32,
    pub message_len: usize,
    /// Bytes of each transfer, one to the guest and one from it.
    pub transfer_bytes: u64,
}

/// Timing of a run of round trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTrips {
    pub count: u32,
    pub mean: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl RoundTrips {
    /// `None` for no samples.
    pub fn from_samples(samples: &[Duration]) -> Option<Self> {
        let count = u32::try_from(samples.len()).ok().filter(|&n| n > 0)?;
        Some(Self {
            count,
            mean: samples.iter().sum::<Duration>() / count,
            min: *samples.iter().min()?,
            max: *samples.iter().max()?,
        })
    }
}

impl fmt::Display for RoundTrips {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} round trips: mean {:.1} us, min {:.1} us, max {:.1} us",
            self.count,
            micros(self.mean),
            micros(self.min),
            micros(self.max)
        )
    }
}

/// One bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Transfer {
    /// Megabytes (10^6 bytes) per second.
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

impl fmt::Display for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes in {:.2} s, {:.2} MB/s, checksums equal",
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.megabytes_per_second()
        )
    }
}

pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// What became of one round trip of a continuous load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundTripVerdict {
    /// The echo equals the message.
    Exact,
    /// The echo came back complete but differs from the message.
    Wrong,
    /// No echo: the connection failed or timed out (or none could be made).
    Failed,
}

/// What the load found on one network path; an `Err` says what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct PathReport {
    pub label: String,
    pub round_trips: Result<RoundTrips, String>,
    pub upload: Result<Transfer, String>,
    pub download: Result<Transfer, String>,
    /// The service ended when told to, so the guest goes on.
    pub quit: Result<(), String>,
}

/// Reaches the echo service of one network path.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    /// The path the service must name in its banner.
    pub label: String,
    /// How long to keep trying while the service is not up yet.
    pub startup: Duration,
    /// Deadline of every read and write.
    pub io_timeout: Duration,
}

impl Client {
    /// Runs `workload` and then ends the service, whatever happened before.
    pub fn run(&self, workload: &Workload) -> PathReport {
        let round_trips = self.round_trips(workload.round_trips, workload.message_len);
        let upload = self.upload(workload.transfer_bytes);
        let download = self.download(workload.transfer_bytes);
        PathReport {
            label: self.label.clone(),
            round_trips,
            upload,
            download,
            quit: self.quit(),
        }
    }

    /// `count` messages of `len` bytes, each sent and awaited alone; every echo must
    /// equal its message.
    pub fn round_trips(&self, count: u32, len: usize) -> Result<RoundTrips, String> {
        let (mut reader, mut writer) = self.start(Command::Echo)?;
        writer
            .set_nodelay(true)
            .map_err(|e| self.failed("TCP_NODELAY", e))?;
        let mut message = vec![0; len];
        let mut echo = vec![0; len];
        let mut samples = Vec::with_capacity(count as usize);
        for i in 0..count {
            Pattern::new(u64::from(i)).fill(0, &mut message);
            let sent = Instant::now();
            writer
                .write_all(&message)
                .and_then(|()| reader.read_exact(&mut echo))
                .map_err(|e| self.failed(&format!("round trip {i}"), e))?;
            samples.push(sent.elapsed());
            if let Some(at) = first_difference(&message, &echo) {
                return Err(format!(
                    "{}: round trip {i}: the echo differs from the message at byte {at}",
                    self.label
                ));
            }
        }
        self.expect_end(&mut reader, &writer)?;
        RoundTrips::from_samples(&samples).ok_or_else(|| format!("{}: no round trips", self.label))
    }

    /// Round trips of `len`-byte messages, one after another, until `stop` is set;
    /// each one's verdict goes to `verdict` as soon as it is known. A round trip
    /// that fails or comes back wrong ends its connection and the next one starts
    /// on a new connection, so the load outlives the faults it is there to see.
    pub fn round_trips_until(
        &self,
        len: usize,
        stop: &AtomicBool,
        mut verdict: impl FnMut(RoundTripVerdict),
    ) {
        let mut message = vec![0; len];
        let mut echo = vec![0; len];
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let (mut reader, mut writer) = match self.start(Command::Echo) {
                Ok(connection) => connection,
                Err(why) => {
                    log::debug!("{why}");
                    verdict(RoundTripVerdict::Failed);
                    sleep(RETRY);
                    continue;
                }
            };
            let _ = writer.set_nodelay(true);
            while !stop.load(Ordering::Relaxed) {
                Pattern::new(sent).fill(0, &mut message);
                sent += 1;
                let result = writer
                    .write_all(&message)
                    .and_then(|()| reader.read_exact(&mut echo));
                let seen = match result {
                    Err(e) => {
                        log::debug!("{}", self.failed("round trip", e));
                        RoundTripVerdict::Failed
                    }
                    Ok(()) if message != echo => RoundTripVerdict::Wrong,
                    Ok(()) => RoundTripVerdict::Exact,
                };
                verdict(seen);
                if seen != RoundTripVerdict::Exact {
                    break;
                }
            }
        }
    }

    /// Sends `bytes` of a pattern; the service's checksum must be the sender's.
    pub fn upload(&self, bytes: u64) -> Result<Transfer, String> {
        let started = Instant::now();
        let (mut reader, mut writer) = self.start(Command::Sink { len: bytes })?;
        let pattern = Pattern::new(UPLOAD_SEED);
        let mut hasher = crc32fast::Hasher::new();
        let mut chunk = vec![0; CHUNK];
        let mut offset = 0;
        while offset < bytes {
            let n = (bytes - offset).min(CHUNK as u64) as usize;
            pattern.fill(offset, &mut chunk[..n]);
            hasher.update(&chunk[..n]);
            writer
                .write_all(&chunk[..n])
                .map_err(|e| self.failed(&format!("sending at byte {offset}"), e))?;
            offset += n as u64;
        }
        let theirs = self.checksum_reply(&mut reader)?;
        let elapsed = started.elapsed();
        self.compare_checksums("sent", hasher.finalize(), theirs)?;
        self.expect_end(&mut reader, &writer)?;
        Ok(Transfer { bytes, elapsed })
    }

    /// Receives `bytes` of a pattern; what arrived, the pattern and the service's
    /// checksum must all agree.
    pub fn download(&self, bytes: u64) -> Result<Transfer, String> {
        let expected = pattern_checksum(Pattern::new(DOWNLOAD_SEED), bytes);
        let started = Instant::now();
        let (mut reader, writer) = self.start(Command::Source {
            len: bytes,
            seed: DOWNLOAD_SEED,
        })?;
        let mut hasher = crc32fast::Hasher::new();
        let mut chunk = vec![0; CHUNK];
        let mut received = 0;
        while received < bytes {
            let want = (bytes - received).min(CHUNK as u64) as usize;
            let n = reader
                .read(&mut chunk[..want])
                .map_err(|e| self.failed(&format!("receiving at byte {received}"), e))?;
            if n == 0 {
                return Err(format!(
                    "{}: the service closed after {received} of {bytes} bytes",
                    self.label
                ));
            }
            hasher.update(&chunk[..n]);
            received += n as u64;
        }
        let theirs = self.checksum_reply(&mut reader)?;
        let elapsed = started.elapsed();
        let ours = hasher.finalize();
        self.compare_checksums("received", ours, theirs)?;
        self.compare_checksums("received", ours, expected)?;
        self.expect_end(&mut reader, &writer)?;
        Ok(Transfer { bytes, elapsed })
    }

    /// Streams pattern `seed` to a [`stream`](crate::stream) receiver for `window`,
    /// then closes and compares the receiver's count and checksum with what was
    /// sent. The window is kept even when the path stalls (a driver being
    /// restarted): writes are short-timed and retried until it ends.
    pub fn stream_for(&self, window: Duration, seed: u64) -> Result<Transfer, String> {
        let (mut reader, mut writer) = self.start_with(&stream_command(seed))?;
        writer
            .set_write_timeout(Some(STREAM_WRITE_SLICE))
            .map_err(|e| self.failed("setting the write timeout", e))?;
        setsockopt(&writer, sockopt::SndBuf, &STREAM_SEND_BUFFER)
            .map_err(|e| self.failed("bounding the send buffer", e.into()))?;
        let pattern = Pattern::new(seed);
        let mut hasher = crc32fast::Hasher::new();
        let mut chunk = vec![0; CHUNK];
        let (mut offset, mut pending) = (0u64, 0..0);
        let started = Instant::now();
        while started.elapsed() < window {
            if pending.is_empty() {
                pattern.fill(offset, &mut chunk);
                pending = 0..CHUNK;
            }
            match writer.write(&chunk[pending.clone()]) {
                Ok(0) => {
                    return Err(format!(
                        "{}: the receiver closed at byte {offset}",
                        self.label
                    ))
                }
                Ok(n) => {
                    hasher.update(&chunk[pending.start..pending.start + n]);
                    pending.start += n;
                    offset += n as u64;
                }
                Err(e) if is_retryable(&e) => {}
                Err(e) => return Err(self.failed(&format!("sending at byte {offset}"), e)),
            }
        }
        let elapsed = started.elapsed();
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| self.failed("closing", e))?;
        let line = read_line(&mut reader).map_err(|e| self.failed("waiting for the count", e))?;
        let (bytes, theirs) =
            parse_received_line(&line).map_err(|why| format!("{}: {why}", self.label))?;
        if bytes != offset {
            return Err(format!(
                "{}: {offset} bytes sent, the receiver counts {bytes}",
                self.label
            ));
        }
        self.compare_checksums("sent", hasher.finalize(), theirs)?;
        Ok(Transfer {
            bytes: offset,
            elapsed,
        })
    }

    /// Tells the service to end.
    pub fn quit(&self) -> Result<(), String> {
        let (mut reader, _writer) = self.start(Command::Quit)?;
        match read_line(&mut reader) {
            Ok(line) if line == BYE => Ok(()),
            Ok(line) => Err(format!("{}: `quit` answered {line:?}", self.label)),
            Err(e) => Err(self.failed("waiting for bye", e)),
        }
    }

    /// A connection to the service that has greeted with the right banner and taken
    /// `command`. Retries while the service is not up yet: QEMU's port forward
    /// accepts at once and closes again when nothing listens in the guest.
    fn start(&self, command: Command) -> Result<Connection, String> {
        self.start_with(&command.to_string())
    }

    /// [`Client::start`] with a command line of any kind.
    fn start_with(&self, command: &str) -> Result<Connection, String> {
        let deadline = Instant::now() + self.startup;
        let (reader, mut writer) = loop {
            match self.greeted() {
                Ok(Ok(pair)) => break pair,
                Ok(Err(wrong)) => return Err(wrong),
                Err(e) if Instant::now() >= deadline => {
                    return Err(self.failed(
                        &format!("reaching the service within {:?}", self.startup),
                        e,
                    ))
                }
                Err(e) => {
                    log::debug!("{}: not up yet: {e}", self.label);
                    sleep(RETRY);
                }
            }
        };
        write_line(&mut writer, command)
            .map_err(|e| self.failed(&format!("sending {command}"), e))?;
        Ok((reader, writer))
    }

    /// Connects and reads the banner; the inner `Err` is a service that is up but
    /// is not the one expected.
    fn greeted(&self) -> io::Result<Result<Connection, String>> {
        let stream = TcpStream::connect_timeout(&self.addr, self.io_timeout)?;
        stream.set_read_timeout(Some(self.io_timeout))?;
        stream.set_write_timeout(Some(self.io_timeout))?;
        let mut reader = BufReader::with_capacity(CHUNK, stream.try_clone()?);
        let banner = read_line(&mut reader)?;
        Ok(match parse_banner(&banner) {
            Some(label) if label == self.label => Ok((reader, stream)),
            _ => Err(format!(
                "{}: the service at {} greeted with {banner:?}",
                self.label, self.addr
            )),
        })
    }

    fn checksum_reply(&self, reader: &mut BufReader<TcpStream>) -> Result<u32, String> {
        let line = read_line(reader).map_err(|e| self.failed("waiting for the checksum", e))?;
        parse_checksum_line(&line).map_err(|why| format!("{}: {why}", self.label))
    }

    fn compare_checksums(&self, what: &str, ours: u32, theirs: u32) -> Result<(), String> {
        if ours == theirs {
            Ok(())
        } else {
            Err(format!(
                "{}: checksum of the bytes {what} is {ours:08x}, the other end has {theirs:08x}",
                self.label
            ))
        }
    }

    /// Closes our side; the service must close too, with nothing more to say.
    fn expect_end(
        &self,
        reader: &mut BufReader<TcpStream>,
        writer: &TcpStream,
    ) -> Result<(), String> {
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| self.failed("closing", e))?;
        let mut extra = [0; 1];
        match reader.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!("{}: the service sent more than asked", self.label)),
            Err(e) => Err(self.failed("waiting for the service to close", e)),
        }
    }

    fn failed(&self, what: &str, error: io::Error) -> String {
        format!("{}: {what}: {error}", self.label)
    }
}

/// A write that timed out or was interrupted moved nothing and may be tried again.
fn is_retryable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_statistics() {
        let samples = [30, 10, 20].map(Duration::from_micros);
        let stats = RoundTrips::from_samples(&samples).unwrap();
        assert_eq!(stats.count, 3);
        assert_eq!(stats.mean, Duration::from_micros(20));
        assert_eq!(stats.min, Duration::from_micros(10));
        assert_eq!(stats.max, Duration::from_micros(30));
        assert_eq!(
            stats.to_string(),
            "3 round trips: mean 20.0 us, min 10.0 us, max 30.0 us"
        );
        assert_eq!(RoundTrips::from_samples(&[]), None);
    }

    #[test]
    fn throughput_in_megabytes_per_second() {
        let transfer = Transfer {
            bytes: 20_000_000,
            elapsed: Duration::from_secs(4),
        };
        assert_eq!(transfer.megabytes_per_second(), 5.0);
        assert_eq!(
            transfer.to_string(),
            "20000000 bytes in 4.00 s, 5.00 MB/s, checksums equal"
        );
    }

    #[test]
    fn differences_are_located() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
    }
}
