//! The host's end of the guest's COM2: records every byte the guest sends (also into a
//! log file) and answers scripted lines, like a tiny `expect`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};

/// When `expect` has appeared in the guest's output, send `answer` once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub expect: &'static str,
    pub answer: &'static str,
}

/// A running peer; [`SerialPeer::finish`] returns what the guest sent.
pub struct SerialPeer {
    thread: JoinHandle<Vec<u8>>,
}

impl SerialPeer {
    /// Serves `stream` (QEMU's COM2 chardev) until QEMU closes it.
    pub fn start(
        stream: UnixStream,
        script: Vec<Exchange>,
        mut log: File,
    ) -> std::io::Result<SerialPeer> {
        let mut to_guest = stream.try_clone()?;
        let mut from_guest = stream;
        let thread = thread::spawn(move || {
            let mut received = Vec::new();
            let mut pending = script;
            let mut buf = [0u8; 4096];
            loop {
                let n = match from_guest.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) => {
                        log::warn!("reading COM2 failed: {err}");
                        break;
                    }
                };
                received.extend_from_slice(&buf[..n]);
                if let Err(err) = log.write_all(&buf[..n]) {
                    log::warn!("writing the COM2 log failed: {err}");
                }
                for answer in take_due(&mut pending, &received) {
                    log::debug!("COM2: answering {answer:?}");
                    if let Err(err) = to_guest.write_all(answer.as_bytes()) {
                        log::warn!("writing to COM2 failed: {err}");
                    }
                }
            }
            received
        });
        Ok(SerialPeer { thread })
    }

    /// Waits for QEMU to close COM2 and returns every byte the guest sent.
    pub fn finish(self) -> Vec<u8> {
        self.thread.join().unwrap_or_else(|_| {
            log::warn!("the COM2 peer thread panicked");
            Vec::new()
        })
    }
}

/// Removes the exchanges whose expected text has arrived and returns their answers.
fn take_due(pending: &mut Vec<Exchange>, received: &[u8]) -> Vec<&'static str> {
    let mut due = Vec::new();
    pending.retain(|exchange| {
        let expect = exchange.expect.as_bytes();
        let arrived = expect.is_empty() || received.windows(expect.len()).any(|w| w == expect);
        if arrived {
            due.push(exchange.answer);
        }
        !arrived
    });
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: Exchange = Exchange {
        expect: "hello\n",
        answer: "hi\n",
    };
    const BYE: Exchange = Exchange {
        expect: "bye\n",
        answer: "ciao\n",
    };

    #[test]
    fn answers_once_when_the_expected_text_has_arrived() {
        let mut pending = vec![HELLO, BYE];
        assert!(take_due(&mut pending, b"hel").is_empty());
        assert_eq!(take_due(&mut pending, b"noise hello\n"), vec!["hi\n"]);
        assert_eq!(
            take_due(&mut pending, b"noise hello\nhello\n"),
            Vec::<&str>::new()
        );
        assert_eq!(
            take_due(&mut pending, b"noise hello\nbye\n"),
            vec!["ciao\n"]
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn peer_records_output_and_answers_over_a_socket() {
        let (qemu_side, peer_side) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("com2.txt");
        let peer =
            SerialPeer::start(peer_side, vec![HELLO], File::create(&log_path).unwrap()).unwrap();

        let mut guest = qemu_side;
        guest.write_all(b"hello\n").unwrap();
        let mut answer = [0u8; 3];
        guest.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"hi\n");
        guest.write_all(b"done").unwrap();
        drop(guest);

        assert_eq!(peer.finish(), b"hello\ndone");
        assert_eq!(std::fs::read(log_path).unwrap(), b"hello\ndone");
    }
}
