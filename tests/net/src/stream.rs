//! A timed bulk stream into the guest, for measuring throughput while the driver
//! under it is killed and restarted: the host sends a [`Pattern`] for a fixed
//! window and then closes its side; the receiver checks every byte against the
//! pattern as it arrives, counts what arrived within its own window (from the
//! first byte on), and answers with the total and its CRC-32, which the host
//! compares with what it sent.
//!
//! ```text
//! S: tcp-echo restart-x1-every-4s   (banner, as the echo service's)
//! C: stream 7                       then the bytes of pattern 7, until the client closes
//! S: received 123456789 crc32 1a2b3c4d
//! ```
//!
//! A byte that differs from the pattern ends the stream with `error ...`.

use std::io::{self, BufReader, Read};
use std::net::{Shutdown, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::pattern::Pattern;
use crate::protocol::{banner, error_line, read_line, write_line};

/// Bytes moved per read.
const CHUNK: usize = 64 << 10;
/// How often a receiver waiting for its client looks again.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// The client's command: stream pattern `seed` until it closes.
pub fn stream_command(seed: u64) -> String {
    format!("stream {seed}")
}

/// The seed of a [`stream_command`].
pub fn parse_stream_command(line: &str) -> Option<u64> {
    line.trim_end().strip_prefix("stream ")?.parse().ok()
}

/// The receiver's closing answer, without the newline.
pub fn received_line(bytes: u64, checksum: u32) -> String {
    format!("received {bytes} crc32 {checksum:08x}")
}

/// The byte count and checksum of a [`received_line`]; what else came instead.
pub fn parse_received_line(line: &str) -> Result<(u64, u32), String> {
    let line = line.trim_end();
    let parsed = line.strip_prefix("received ").and_then(|rest| {
        let (bytes, checksum) = rest.split_once(" crc32 ")?;
        let checksum = Some(checksum).filter(|hex| hex.len() == 8)?;
        Some((bytes.parse().ok()?, u32::from_str_radix(checksum, 16).ok()?))
    });
    parsed.ok_or_else(|| format!("{line:?} is not a received line"))
}

/// What a receiver has seen so far, readable from another thread while it runs:
/// when the first byte came, and how many bytes have come.
#[derive(Debug, Default)]
pub struct Progress {
    first_byte: OnceLock<Instant>,
    received: AtomicU64,
}

impl Progress {
    pub fn first_byte(&self) -> Option<Instant> {
        self.first_byte.get().copied()
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// What one stream brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Every byte, the ones still in flight when the window closed included.
    pub bytes: u64,
    /// The bytes that arrived within the window, counted from the first byte.
    pub in_window: u64,
    pub checksum: u32,
}

/// Receives one stream on `listener`: waits up to `accept_timeout` for a client
/// that sends a [`stream_command`] (clients that fail before that are skipped),
/// then reads until it closes, every read bounded by `io_timeout`.
pub fn receive(
    listener: &TcpListener,
    label: &str,
    window: Duration,
    accept_timeout: Duration,
    io_timeout: Duration,
    progress: &Progress,
) -> io::Result<Received> {
    let deadline = Instant::now() + accept_timeout;
    listener.set_nonblocking(true)?;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no client streamed within {accept_timeout:?}"),
                    ));
                }
                sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => return Err(e),
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(io_timeout))?;
        stream.set_write_timeout(Some(io_timeout))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::with_capacity(CHUNK, stream);
        // QEMU's port forward hands over connections the guest never saw the
        // start of, and a client retries those: only a command starts the stream.
        let greeted = write_line(&mut writer, &banner(label)).and_then(|()| read_line(&mut reader));
        let seed = match greeted {
            Ok(line) => match parse_stream_command(&line) {
                Some(seed) => seed,
                None => {
                    let why = format!("{line:?} is not a stream command");
                    let _ = write_line(&mut writer, &error_line(&why));
                    log::warn!("{label}: {why}");
                    continue;
                }
            },
            Err(e) => {
                log::debug!("{label}: a client left before its command: {e}");
                continue;
            }
        };
        let received = sink(&mut reader, Pattern::new(seed), window, progress);
        return match received {
            Ok(received) => {
                write_line(
                    &mut writer,
                    &received_line(received.bytes, received.checksum),
                )?;
                writer.shutdown(Shutdown::Write)?;
                Ok(received)
            }
            Err(e) => {
                let _ = write_line(&mut writer, &error_line(&e.to_string()));
                Err(e)
            }
        };
    }
}

/// Reads to the end of the stream, checking each byte against `pattern`.
fn sink(
    reader: &mut impl Read,
    pattern: Pattern,
    window: Duration,
    progress: &Progress,
) -> io::Result<Received> {
    let mut chunk = vec![0; CHUNK];
    let mut expected = vec![0; CHUNK];
    let mut hasher = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    let mut in_window = None;
    loop {
        let n = reader.read(&mut chunk)?;
        let first = *progress.first_byte.get_or_init(Instant::now);
        // A read that returns after the window closed holds bytes that may have
        // arrived after it: they are not counted in it.
        if in_window.is_none() && first.elapsed() >= window {
            in_window = Some(bytes);
        }
        if n == 0 {
            return Ok(Received {
                bytes,
                in_window: in_window.unwrap_or(bytes),
                checksum: hasher.finalize(),
            });
        }
        pattern.fill(bytes, &mut expected[..n]);
        if let Some(at) = chunk[..n].iter().zip(&expected).position(|(a, b)| a != b) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("byte {} differs from the pattern", bytes + at as u64),
            ));
        }
        hasher.update(&chunk[..n]);
        bytes += n as u64;
        progress.received.store(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_and_received_lines_read_back_as_written() {
        assert_eq!(parse_stream_command(&stream_command(7)), Some(7));
        assert_eq!(parse_stream_command("stream x"), None);
        assert_eq!(parse_stream_command("sink 7"), None);
        let line = received_line(123_456_789, 0x1a2b);
        assert_eq!(line, "received 123456789 crc32 00001a2b");
        assert_eq!(parse_received_line(&line), Ok((123_456_789, 0x1a2b)));
        let refused = parse_received_line("error byte 5 differs from the pattern");
        assert!(refused.unwrap_err().contains("not a received line"));
        assert!(parse_received_line("received 5 crc32 1a2b").is_err());
    }

    #[test]
    fn the_sink_counts_checks_and_sums_what_arrives() {
        let pattern = Pattern::new(3);
        let mut bytes = vec![0; 200_000];
        pattern.fill(0, &mut bytes);
        let progress = Progress::default();
        let received = sink(
            &mut io::Cursor::new(bytes.clone()),
            pattern,
            Duration::from_secs(60),
            &progress,
        )
        .unwrap();
        assert_eq!(received.bytes, 200_000);
        assert_eq!(received.in_window, 200_000, "the window never closed");
        assert_eq!(received.checksum, crc32fast::hash(&bytes));
        assert_eq!(progress.received(), 200_000);
        assert!(progress.first_byte().is_some());
    }

    #[test]
    fn a_byte_off_the_pattern_ends_the_stream_naming_it() {
        let pattern = Pattern::new(3);
        let mut bytes = vec![0; 70_000];
        pattern.fill(0, &mut bytes);
        bytes[66_000] ^= 1;
        let err = sink(
            &mut io::Cursor::new(bytes),
            pattern,
            Duration::from_secs(60),
            &Progress::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("byte 66000"), "{err}");
    }

    #[test]
    fn a_client_streams_for_its_window_and_both_ends_agree_on_every_byte() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let progress = std::sync::Arc::new(Progress::default());
        let receiving = std::thread::spawn({
            let progress = std::sync::Arc::clone(&progress);
            move || {
                let long = Duration::from_secs(10);
                receive(
                    &listener,
                    "loop",
                    Duration::from_secs(60),
                    long,
                    long,
                    &progress,
                )
            }
        });
        let client = crate::load::Client {
            addr,
            label: "loop".into(),
            startup: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
        };
        let window = Duration::from_millis(200);
        let sent = client.stream_for(window, 9).unwrap();
        let received = receiving.join().unwrap().unwrap();
        assert!(sent.elapsed >= window);
        assert!(sent.bytes > 0);
        assert_eq!(received.bytes, sent.bytes);
        assert_eq!(
            received.in_window, sent.bytes,
            "the receiver's window is longer"
        );
        assert_eq!(progress.received(), sent.bytes);
    }

    #[test]
    fn bytes_that_come_after_the_window_are_left_out_of_it() {
        let pattern = Pattern::new(1);
        let mut bytes = vec![0; 100];
        pattern.fill(0, &mut bytes);
        let received = sink(
            &mut io::Cursor::new(bytes),
            pattern,
            Duration::ZERO,
            &Progress::default(),
        )
        .unwrap();
        assert_eq!((received.bytes, received.in_window), (100, 0));
    }
}
