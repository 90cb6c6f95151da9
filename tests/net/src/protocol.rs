//! The echo service's wire protocol and the console line that announces it.
//!
//! One command per connection. The service greets with a banner naming the network
//! path it is reached through, the client sends one command line, and then:
//!
//! ```text
//! S: tcp-echo e1000-direct          (banner)
//! C: echo                           every byte the client sends comes back, until it closes
//! C: sink 20971520                  the client sends that many bytes; S: crc32 1a2b3c4d
//! C: source 20971520 7              S: that many bytes of pattern 7, then crc32 1a2b3c4d
//! C: quit                           S: bye, and the service ends
//! ```
//!
//! Lines end with `\n`; a command the service does not understand gets `error <why>`.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::str::FromStr;

/// The first word of the banner and of the service's own console lines.
pub const SERVICE: &str = "tcp-echo";
/// A line (banner, command, reply) is never longer, newline included.
pub const MAX_LINE: usize = 128;
/// The largest `sink` or `source` the service accepts: it bounds how long a session
/// can keep the service busy.
pub const MAX_TRANSFER: u64 = 1 << 30;
/// The service's answer to `quit`.
pub const BYE: &str = "bye";
/// What the guest prints on its console once the service listens; the host starts
/// its load when it sees it: `tcp-echo serving <path> on port <port>`.
const SERVING: &str = "tcp-echo serving";

/// What a client asks for on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Echo every byte back until the client closes.
    Echo,
    /// Receive `len` bytes and answer their checksum.
    Sink { len: u64 },
    /// Send `len` bytes of the pattern `seed`, then their checksum.
    Source { len: u64, seed: u64 },
    /// Answer [`BYE`] and stop serving.
    Quit,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Echo => write!(f, "echo"),
            Command::Sink { len } => write!(f, "sink {len}"),
            Command::Source { len, seed } => write!(f, "source {len} {seed}"),
            Command::Quit => write!(f, "quit"),
        }
    }
}

impl FromStr for Command {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |word: &str, what: &str| {
            word.parse::<u64>()
                .map_err(|_| format!("{what} {word:?} is not a number"))
        };
        let length = |word: &str| {
            let len = number(word, "length")?;
            match len {
                1..=MAX_TRANSFER => Ok(len),
                _ => Err(format!("length {len} is not in 1..={MAX_TRANSFER}")),
            }
        };
        match words.as_slice() {
            ["echo"] => Ok(Command::Echo),
            ["sink", len] => Ok(Command::Sink { len: length(len)? }),
            ["source", len, seed] => Ok(Command::Source {
                len: length(len)?,
                seed: number(seed, "seed")?,
            }),
            ["quit"] => Ok(Command::Quit),
            _ => Err(format!(
                "{line:?} is not one of: echo, sink LEN, source LEN SEED, quit"
            )),
        }
    }
}

/// A path label is one word: it travels in lines split at whitespace.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.contains(char::is_whitespace) || label.len() > MAX_LINE / 2 {
        return Err(format!(
            "{label:?} is not a label (one word of at most {} bytes)",
            MAX_LINE / 2
        ));
    }
    Ok(())
}

/// The service's greeting, without the newline.
pub fn banner(label: &str) -> String {
    format!("{SERVICE} {label}")
}

/// The label a banner names; `None` if the line is no banner.
pub fn parse_banner(line: &str) -> Option<&str> {
    let label = line.trim_end().strip_prefix(SERVICE)?.strip_prefix(' ')?;
    check_label(label).ok().map(|()| label)
}

/// The reply carrying a transfer's checksum, without the newline.
pub fn checksum_line(checksum: u32) -> String {
    format!("crc32 {checksum:08x}")
}

pub fn parse_checksum_line(line: &str) -> Result<u32, String> {
    line.trim_end()
        .strip_prefix("crc32 ")
        .filter(|hex| hex.len() == 8)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| format!("{:?} is not a checksum line", line.trim_end()))
}

/// The service's reply to a command it refused, without the newline.
pub fn error_line(why: &str) -> String {
    format!("error {why}")
}

/// The console line announcing that the service for `label` listens on `port`.
pub fn serving_line(label: &str, port: u16) -> String {
    format!("{SERVING} {label} on port {port}")
}

/// The label and port of an announcement; `None` for any other console line.
pub fn parse_serving_line(line: &str) -> Option<(&str, u16)> {
    let rest = line.trim_end().strip_prefix(SERVING)?.strip_prefix(' ')?;
    let (label, port) = rest.split_once(" on port ")?;
    check_label(label).ok()?;
    Some((label, port.parse().ok()?))
}

/// Reads one line of at most [`MAX_LINE`] bytes and returns it without its newline;
/// a longer line, one cut short by the end of the stream, or one that is not UTF-8
/// is an `InvalidData` error, and the end of the stream before any byte is
/// `UnexpectedEof`.
pub fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    reader.take(MAX_LINE as u64).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection",
        ));
    }
    if line.pop() != Some(b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a line longer than {MAX_LINE} bytes or cut short"),
        ));
    }
    String::from_utf8(line).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

/// Writes `line` and its newline in one write, so it leaves as one segment rather
/// than one per formatted piece.
pub fn write_line(writer: &mut impl Write, line: &str) -> io::Result<()> {
    writer.write_all(format!("{line}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_lines() {
        for command in [
            Command::Echo,
            Command::Sink { len: 20 << 20 },
            Command::Source {
                len: MAX_TRANSFER,
                seed: u64::MAX,
            },
            Command::Quit,
        ] {
            assert_eq!(command.to_string().parse(), Ok(command));
        }
        assert_eq!(" sink   5 \n".parse(), Ok(Command::Sink { len: 5 }));
    }

    #[test]
    fn bad_commands_say_why() {
        for (line, why) in [
            ("", "is not one of"),
            ("ECHO", "is not one of"),
            ("sink", "is not one of"),
            ("sink 5 6", "is not one of"),
            ("sink -5", "not a number"),
            ("sink 0", "not in 1..="),
            ("source 1073741825 1", "not in 1..="),
            ("source 5 x", "seed \"x\" is not a number"),
        ] {
            let err = line.parse::<Command>().unwrap_err();
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }

    #[test]
    fn banners_name_one_word_labels() {
        assert_eq!(parse_banner(&banner("e1000-mmio")), Some("e1000-mmio"));
        assert_eq!(parse_banner("tcp-echo e1000-mmio\r\n"), Some("e1000-mmio"));
        for other in ["tcp-echo", "tcp-echo ", "tcp-echo two words", "SSH-2.0 x"] {
            assert_eq!(parse_banner(other), None, "{other:?}");
        }
        assert!(check_label(&"x".repeat(65)).is_err());
    }

    #[test]
    fn checksum_lines_are_eight_hex_digits() {
        assert_eq!(checksum_line(0x1a2b), "crc32 00001a2b");
        assert_eq!(parse_checksum_line("crc32 00001a2b\n"), Ok(0x1a2b));
        for bad in ["crc32 1a2b", "crc32 zzzzzzzz", "error refused", ""] {
            let err = parse_checksum_line(bad).unwrap_err();
            assert!(err.contains("not a checksum line"), "{err}");
        }
    }

    #[test]
    fn lines_are_bounded_and_complete() {
        let mut written = Vec::new();
        write_line(&mut written, "echo").unwrap();
        write_line(&mut written, "sink 5").unwrap();
        assert_eq!(written, b"echo\nsink 5\n");
        let mut input = io::Cursor::new(written);
        assert_eq!(read_line(&mut input).unwrap(), "echo");
        assert_eq!(read_line(&mut input).unwrap(), "sink 5");
        let eof = read_line(&mut input).unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
        let cut = read_line(&mut io::Cursor::new(b"echo".to_vec())).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::InvalidData);
        let long = vec![b'x'; MAX_LINE + 1];
        let err = read_line(&mut io::Cursor::new(long)).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
        let err = read_line(&mut io::Cursor::new(b"\xff\n".to_vec())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn serving_lines_carry_label_and_port() {
        let line = serving_line("linux-e1000", 40123);
        assert_eq!(line, "tcp-echo serving linux-e1000 on port 40123");
        assert_eq!(parse_serving_line(&line), Some(("linux-e1000", 40123)));
        for other in [
            "tcp-echo serving linux-e1000",
            "tcp-echo serving linux-e1000 on port 70000",
            "tcp-echo serving  on port 1",
            "guest-test tcp ... ok",
        ] {
            assert_eq!(parse_serving_line(other), None, "{other:?}");
        }
    }
}
