//! The echo service: one connection at a time, one [`Command`] per connection, until
//! a client says `quit`. A connection that fails is logged and counted, and the
//! service goes on; every read and write has a deadline, so a vanished client costs
//! at most that long.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pattern::Pattern;
use crate::protocol::{
    banner, check_label, checksum_line, error_line, read_line, write_line, Command, BYE,
};

/// Bytes moved per read or write.
const CHUNK: usize = 64 << 10;
/// The line the service prints once it listens: `tcp-echo listening <details>`.
pub const LISTENING: &str = "tcp-echo listening";
/// The line the service prints when it ends: `tcp-echo served <`[`Served`]`>`.
pub const SERVED: &str = "tcp-echo served";
/// The lines `tcp-echo` prints as each session begins and ends:
/// `tcp-echo session <`[`SessionNews`]`>`.
pub const SESSION: &str = "tcp-echo session";

/// A session beginning or ending, as [`EchoService::serve_telling`] tells it:
/// `began <command>`, or `ended <command>: <n> exchanges`, where an exchange
/// is one chunk echoed (one round trip of a client that waits for each
/// answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionNews {
    Began(Command),
    Ended { command: Command, exchanges: u64 },
}

impl fmt::Display for SessionNews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Began(command) => write!(f, "began {command}"),
            Self::Ended { command, exchanges } => {
                write!(f, "ended {command}: {exchanges} exchanges")
            }
        }
    }
}

impl std::str::FromStr for SessionNews {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("not a session's news: {text:?}");
        if let Some(command) = text.strip_prefix("began ") {
            return Ok(Self::Began(command.parse()?));
        }
        let (command, exchanges) = text
            .strip_prefix("ended ")
            .and_then(|rest| rest.rsplit_once(": "))
            .ok_or_else(bad)?;
        let exchanges = exchanges
            .strip_suffix(" exchanges")
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        Ok(Self::Ended {
            command: command.parse()?,
            exchanges,
        })
    }
}

/// What the service did before it was told to stop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub connections: u64,
    /// Connections that ended in an error (the client's or the network's).
    pub failed: u64,
    pub echoed_bytes: u64,
    pub sunk_bytes: u64,
    pub sourced_bytes: u64,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections ({} failed), {} bytes echoed, {} sunk, {} sourced",
            self.connections, self.failed, self.echoed_bytes, self.sunk_bytes, self.sourced_bytes
        )
    }
}

pub struct EchoService {
    listener: TcpListener,
    label: String,
    io_timeout: Duration,
    /// Bytes echoed so far, as they go: what a fault campaign watches to know the
    /// load goes on.
    echoing: AtomicU64,
}

impl EchoService {
    /// Listens on `addr`, greeting clients with `label` (the network path's name).
    pub fn bind(addr: SocketAddr, label: &str, io_timeout: Duration) -> io::Result<Self> {
        check_label(label).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
        Ok(Self {
            listener: TcpListener::bind(addr)?,
            label: label.to_owned(),
            io_timeout,
            echoing: AtomicU64::new(0),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Bytes echoed so far, those of connections still open included.
    pub fn echoed_so_far(&self) -> u64 {
        self.echoing.load(Ordering::Relaxed)
    }

    /// Serves connections until one says `quit`.
    pub fn serve(&self) -> io::Result<Served> {
        self.serve_telling(|_| {})
    }

    /// As [`serve`](Self::serve), telling `tell` as each session begins and
    /// ends.
    pub fn serve_telling(&self, mut tell: impl FnMut(SessionNews)) -> io::Result<Served> {
        let mut served = Served::default();
        loop {
            let (stream, peer) = self.listener.accept()?;
            served.connections += 1;
            match self.session(stream, &mut served, &mut tell) {
                Ok(Some(Command::Quit)) => return Ok(served),
                Ok(_) => {}
                Err(err) => {
                    served.failed += 1;
                    log::warn!("connection from {peer} failed: {err}");
                }
            }
        }
    }

    /// Greets, takes one command and carries it out; returns it, or `None` for a
    /// command that was refused.
    fn session(
        &self,
        stream: TcpStream,
        served: &mut Served,
        tell: &mut dyn FnMut(SessionNews),
    ) -> io::Result<Option<Command>> {
        stream.set_read_timeout(Some(self.io_timeout))?;
        stream.set_write_timeout(Some(self.io_timeout))?;
        // Round trips are single small writes each way: no waiting to coalesce them.
        stream.set_nodelay(true)?;
        let mut reader = BufReader::with_capacity(CHUNK, stream.try_clone()?);
        let mut writer = stream;
        write_line(&mut writer, &banner(&self.label))?;
        let line = read_line(&mut reader)?;
        let command = match line.parse::<Command>() {
            Ok(command) => command,
            Err(why) => {
                log::warn!("refused a command: {why}");
                write_line(&mut writer, &error_line(&why))?;
                return Ok(None);
            }
        };
        log::debug!("{command}");
        tell(SessionNews::Began(command));
        let mut exchanges = 0;
        match command {
            Command::Echo => {
                let (bytes, chunks) = echo(&mut reader, &mut writer, &self.echoing)?;
                served.echoed_bytes += bytes;
                exchanges = chunks;
            }
            Command::Sink { len } => {
                let checksum = sink(&mut reader, len)?;
                served.sunk_bytes += len;
                write_line(&mut writer, &checksum_line(checksum))?;
            }
            Command::Source { len, seed } => {
                let checksum = source(&mut writer, Pattern::new(seed), len)?;
                served.sourced_bytes += len;
                write_line(&mut writer, &checksum_line(checksum))?;
            }
            Command::Quit => write_line(&mut writer, BYE)?,
        }
        writer.shutdown(Shutdown::Write)?;
        tell(SessionNews::Ended { command, exchanges });
        if matches!(command, Command::Quit) {
            // The service ends next, and the guest then takes down the path the answer
            // travels on (the bridge, the driver): wait until the client has read it
            // and closed its side, or the answer may never leave the guest.
            if let Err(err) = wait_for_close(&mut reader) {
                log::warn!("the client did not close after `{BYE}`: {err}");
            }
        }
        Ok(Some(command))
    }
}

/// Reads until the client closes its side (or the read timeout ends the wait).
fn wait_for_close(reader: &mut impl Read) -> io::Result<()> {
    let mut discard = [0u8; 64];
    while reader.read(&mut discard)? > 0 {}
    Ok(())
}

/// Sends back whatever arrives, as it arrives, until the client closes its side;
/// counts each chunk into `echoing` once sent. Returns the bytes and the
/// chunks echoed.
fn echo(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
    echoing: &AtomicU64,
) -> io::Result<(u64, u64)> {
    let (mut echoed, mut chunks) = (0, 0);
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok((echoed, chunks));
        }
        let n = chunk.len();
        writer.write_all(chunk)?;
        reader.consume(n);
        echoed += n as u64;
        chunks += 1;
        echoing.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn sink(reader: &mut impl Read, len: u64) -> io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0; CHUNK];
    let mut left = len;
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        let n = reader.read(&mut chunk[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the client closed after {} of {len} bytes", len - left),
            ));
        }
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    Ok(hasher.finalize())
}

fn source(writer: &mut impl Write, pattern: Pattern, len: u64) -> io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0; CHUNK];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(CHUNK as u64) as usize;
        pattern.fill(offset, &mut chunk[..n]);
        hasher.update(&chunk[..n]);
        writer.write_all(&chunk[..n])?;
        offset += n as u64;
    }
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_news_reads_back_as_it_was_told() {
        for news in [
            SessionNews::Began(Command::Echo),
            SessionNews::Ended {
                command: Command::Echo,
                exchanges: 1000,
            },
            SessionNews::Ended {
                command: Command::Source { len: 5, seed: 7 },
                exchanges: 0,
            },
        ] {
            assert_eq!(news.to_string().parse(), Ok(news), "{news}");
        }
        assert_eq!(
            SessionNews::Began(Command::Sink { len: 3 }).to_string(),
            "began sink 3"
        );
        for bad in [
            "",
            "began",
            "ended echo",
            "ended echo: many exchanges",
            "went echo",
        ] {
            assert!(bad.parse::<SessionNews>().is_err(), "{bad:?}");
        }
    }
}
