//! The host's end of the guest's COM2: records every byte the guest sends (also into a
//! log file) and answers scripted lines, like a tiny `expect`. Answers go out from a
//! thread of their own, so a long one (64 KiB of bulk data) never stops the peer from
//! reading what the guest sends meanwhile.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

/// When `expect` has appeared in the guest's output, send `answer` once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub expect: &'static str,
    pub answer: Cow<'static, [u8]>,
}

/// A running peer; [`SerialPeer::finish`] returns what the guest sent.
pub struct SerialPeer {
    thread: JoinHandle<Vec<u8>>,
    answering: JoinHandle<()>,
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
        let (answers, due_answers) = mpsc::channel::<Cow<'static, [u8]>>();
        let answering = thread::spawn(move || {
            for answer in due_answers {
                if let Err(err) = to_guest.write_all(&answer) {
                    log::warn!("writing to COM2 failed: {err}");
                    break;
                }
            }
        });
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
                let searched = received.len();
                received.extend_from_slice(&buf[..n]);
                if let Err(err) = log.write_all(&buf[..n]) {
                    log::warn!("writing the COM2 log failed: {err}");
                }
                for answer in take_due(&mut pending, &received, searched) {
                    log::debug!("COM2: answering with {} bytes", answer.len());
                    // The answering thread only stops after a failed write, logged there.
                    let _ = answers.send(answer);
                }
            }
            received
        });
        Ok(SerialPeer { thread, answering })
    }

    /// Waits for QEMU to close COM2 and returns every byte the guest sent.
    pub fn finish(self) -> Vec<u8> {
        let received = self.thread.join().unwrap_or_else(|_| {
            log::warn!("the COM2 peer thread panicked");
            Vec::new()
        });
        if self.answering.join().is_err() {
            log::warn!("the COM2 answering thread panicked");
        }
        received
    }
}

/// Removes the exchanges whose expected text has arrived and returns their answers.
/// The first `searched` bytes of `received` were looked at before, so only the rest
/// (and the tail an expected text may straddle) is searched again.
fn take_due(
    pending: &mut Vec<Exchange>,
    received: &[u8],
    searched: usize,
) -> Vec<Cow<'static, [u8]>> {
    pending
        .extract_if(.., |exchange| {
            let expect = exchange.expect.as_bytes();
            let from = searched.saturating_sub(expect.len().saturating_sub(1));
            expect.is_empty() || received[from..].windows(expect.len()).any(|w| w == expect)
        })
        .map(|exchange| exchange.answer)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: Exchange = Exchange {
        expect: "hello\n",
        answer: Cow::Borrowed(b"hi\n"),
    };
    const BYE: Exchange = Exchange {
        expect: "bye\n",
        answer: Cow::Borrowed(b"ciao\n"),
    };

    #[test]
    fn answers_once_when_the_expected_text_has_arrived() {
        let mut pending = vec![HELLO, BYE];
        assert!(take_due(&mut pending, b"hel", 0).is_empty());
        assert_eq!(
            take_due(&mut pending, b"noise hello\n", 3),
            vec![&b"hi\n"[..]]
        );
        assert!(take_due(&mut pending, b"noise hello\nhello\n", 12).is_empty());
        assert_eq!(
            take_due(&mut pending, b"noise hello\nhello\nbye\n", 18),
            vec![&b"ciao\n"[..]]
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn finds_text_that_straddles_two_reads_but_not_text_searched_before() {
        let mut pending = vec![BYE];
        assert!(take_due(&mut pending, b"b", 0).is_empty());
        assert_eq!(take_due(&mut pending, b"bye\n", 1).len(), 1, "straddles");
        let mut pending = vec![BYE];
        assert!(
            take_due(&mut pending, b"bye\nxyz", 4).is_empty(),
            "only bytes from offset 4 - 3 on are searched again"
        );
    }

    #[test]
    fn a_long_answer_does_not_stop_the_peer_from_reading() {
        const LONG: usize = 4 << 20;
        let (qemu_side, peer_side) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let script = vec![Exchange {
            expect: "go\n",
            answer: Cow::Owned(vec![7; LONG]),
        }];
        let log = File::create(dir.path().join("com2.txt")).unwrap();
        let peer = SerialPeer::start(peer_side, script, log).unwrap();

        // The guest writes as much as the peer answers before it reads the answer:
        // a peer that wrote its answer from its reading thread would deadlock here.
        let mut guest = qemu_side;
        let (done, finished) = mpsc::channel();
        thread::spawn(move || {
            guest.write_all(b"go\n").unwrap();
            guest.write_all(&vec![1; LONG]).unwrap();
            let mut answer = vec![0; LONG];
            guest.read_exact(&mut answer).unwrap();
            let _ = done.send(answer.iter().all(|&b| b == 7));
        });
        let answered = finished.recv_timeout(std::time::Duration::from_secs(30));
        assert_eq!(answered, Ok(true), "the whole answer arrived");
        assert_eq!(peer.finish().len(), 3 + LONG);
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
