//! The replica side: a daemon serving the supervisor over one descriptor.
//!
//! The supervisor intercepts the replica's system calls on the channel, gives
//! every replica the same message and votes on their replies. Each stop of a
//! traced replica costs the supervisor a round trip through the kernel, so the
//! loop makes one system call per message and no other of its own, and its
//! buffers are allocated before the first message: `pread(channel, buffer, len,
//! reply_len)`, whose buffer holds the reply to the last message in its first
//! `reply_len` bytes (the hello, the first time) and takes the next message.
//! Everything else the replica does per message is the daemon's code.
//!
//! A channel that is a real socket answers that `pread` with `ESPIPE`; the loop
//! then writes each reply and reads each message, so a replica can also be served
//! without a supervisor that intercepts (tests do).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use syscall::error::{Error, Result, EPROTO, ESPIPE};
use syscall::flag::{EventFlags, O_NONBLOCK};

use super::codec::{
    decode_message, encode_read_ahead_header, encode_round_answers, Hello, Message, ReplyBuffer,
    Request, Round, RoundWait, MAX_MESSAGE_LEN, MAX_REPLY_LEN, READ_AHEAD_HEADER_LEN,
    ROUND_WAIT_LEN,
};
use super::held::{self, MAX_HELD_LEN};
use super::RelayedLine;
use crate::perform::{perform, Operation, Performed};
use crate::wire::Opcode;
use crate::{caller_ctx, io_error, Caller, SchemeDaemon};

/// Serves `daemon` as scheme `name` to the supervisor on `channel`: hands over
/// the hello, then answers every message until the channel ends (0 bytes),
/// which is a normal end. `tick` is passed on in the hello: the supervisor runs
/// the rounds.
///
/// The replica opens paths from its own scheme root. A malformed message gets an
/// `EPROTO` reply and the loop goes on; a read or write that would block is
/// answered with `EWOULDBLOCK` like any error, since parking is the
/// supervisor's business.
pub fn serve_replica<D: SchemeDaemon>(
    channel: OwnedFd,
    name: &str,
    daemon: &mut D,
    tick: Option<Duration>,
) -> io::Result<()> {
    let mut hello = Vec::new();
    let line = daemon.relayed_line();
    Hello {
        tick,
        name: name.to_owned(),
        line: line.as_ref().map(|line| line.path().to_owned()),
        cause_read: line.as_ref().and_then(RelayedLine::cause_read),
    }
    .encode(&mut hello)
    .map_err(|malformed| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot serve {name:?} as a replica: {malformed}"),
        )
    })?;
    let mut replica = Replica::new(daemon)?.with_line(line);
    let mut channel = Channel {
        file: File::from(channel),
        socket: false,
    };
    // One byte more than the largest message, so that an oversized message is
    // never cut down to one that decodes; and room for the largest reply and
    // the calls held with it.
    let mut buffer = vec![0u8; (MAX_MESSAGE_LEN + 1).max(MAX_REPLY_LEN + MAX_HELD_LEN)];
    buffer[..hello.len()].copy_from_slice(&hello);
    let mut reply_len = hello.len();
    loop {
        let len = channel.exchange(&mut buffer, reply_len)?;
        if len == 0 {
            return Ok(());
        }
        if !channel.socket {
            // A supervisor intercepts the channel: it takes held calls with
            // each reply.
            held::start_holding();
        }
        let reply = replica.answer(&mut buffer[..len]);
        buffer[..reply.len()].copy_from_slice(reply);
        reply_len = reply.len();
        let held_len = held::take_into(&mut buffer[reply_len..]);
        if held_len > 0 {
            held::set_section_len(&mut buffer[..reply_len], held_len);
            reply_len += held_len;
        }
    }
}

/// The replica's end of the channel.
struct Channel {
    file: File,
    /// The channel turned out to be a real socket: write, then read.
    socket: bool,
}

impl Channel {
    /// Hands over the reply in `buffer[..reply_len]` and takes the next message
    /// into `buffer`; returns its length.
    fn exchange(&mut self, buffer: &mut [u8], reply_len: usize) -> io::Result<usize> {
        if !self.socket {
            loop {
                match self.file.read_at(buffer, reply_len as u64) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.raw_os_error() == Some(ESPIPE) => break,
                    other => return other,
                }
            }
            self.socket = true;
        }
        write_message(&mut self.file, &buffer[..reply_len])?;
        loop {
            match self.file.read(buffer) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// Writes `message` with one `write`. The supervisor takes each write as a whole
/// message, so a short write is an error, not something to resume.
fn write_message(channel: &mut File, message: &[u8]) -> io::Result<()> {
    loop {
        match channel.write(message) {
            Ok(n) if n == message.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!(
                        "the replica channel took {n} of a {}-byte reply",
                        message.len()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The part of the loop between two exchanges.
pub(crate) struct Replica<'d, D> {
    daemon: &'d mut D,
    root: usize,
    reply: ReplyBuffer,
    /// The daemon's line, relayed by the supervisor.
    line: Option<RelayedLine>,
}

impl<'d, D: SchemeDaemon> Replica<'d, D> {
    pub(crate) fn new(daemon: &'d mut D) -> io::Result<Self> {
        let root = daemon.scheme_root().map_err(io_error)?;
        Ok(Self {
            daemon,
            root,
            reply: ReplyBuffer::default(),
            line: None,
        })
    }

    pub(crate) fn with_line(mut self, line: Option<RelayedLine>) -> Self {
        self.line = line;
        self
    }

    /// Runs `round`: tells the daemon's line if it fired, runs the daemon's
    /// round, and writes the answers about its interests and what it asks of
    /// the next round into the reply body from `at`; returns the bytes
    /// written.
    fn run_round(&mut self, round: Round<'_>, at: usize) -> usize {
        if let Some(line) = self.line.as_ref().filter(|_| round.line_fired) {
            line.fire(round.cause);
        }
        self.daemon.after_round();
        let daemon = &mut *self.daemon;
        let mut answers: Vec<Result<EventFlags>> = round
            .interests
            .iter()
            .map(|interest| {
                let Caller { pid, uid, gid } = interest.caller;
                daemon.fevent(interest.id, interest.flags, &caller_ctx(pid, uid, gid))
            })
            .collect();
        // The reads made ahead go after the answers and the wait, which are
        // written last: an answer is the handle's readiness after its read.
        let answers_len = answers.len() * 8;
        let mut read_ahead_at = at + answers_len + ROUND_WAIT_LEN;
        for (interest, answer) in round.interests.iter().zip(answers.iter_mut()) {
            let readable = answer
                .as_ref()
                .is_ok_and(|ready| ready.contains(EventFlags::EVENT_READ));
            if interest.read_ahead == 0 || !readable || !self.daemon.may_read_ahead(interest.id) {
                continue;
            }
            let body = &mut self.reply.body()[read_ahead_at..];
            let Some(room) = body.len().checked_sub(READ_AHEAD_HEADER_LEN) else {
                break;
            };
            let want = (interest.read_ahead as usize).min(room);
            let Caller { pid, uid, gid } = interest.caller;
            let ctx = caller_ctx(pid, uid, gid);
            let data = &mut body[READ_AHEAD_HEADER_LEN..READ_AHEAD_HEADER_LEN + want];
            match self
                .daemon
                .read(interest.id, data, 0, O_NONBLOCK as u32, &ctx)
            {
                Ok(0) | Err(_) => continue,
                Ok(read) => {
                    read_ahead_at += encode_read_ahead_header(interest.id, read, body);
                    *answer = self.daemon.fevent(interest.id, interest.flags, &ctx);
                }
            }
        }
        let len = encode_round_answers(answers.into_iter(), &mut self.reply.body()[at..]);
        let wait = RoundWait {
            within: self.daemon.next_round_within(),
            acknowledge: self
                .line
                .as_ref()
                .is_some_and(RelayedLine::take_acknowledged),
        };
        wait.encode(&mut self.reply.body()[at + len..]);
        read_ahead_at - at
    }

    /// Performs one message and returns the reply to write.
    pub(crate) fn answer(&mut self, message: &mut [u8]) -> &[u8] {
        let performed = match decode_message(message) {
            Ok(Message::Round(round)) => {
                let len = self.run_round(round, 0);
                Performed {
                    result: Ok(round.interests.len()),
                    extra: 0,
                    data_len: len,
                }
            }
            Ok(Message::Request(Request {
                head,
                metadata,
                payload,
                round,
            })) => {
                let id = match head.header.opcode {
                    Opcode::Open => self.root,
                    _ => head.id,
                };
                let operation = Operation {
                    header: head.header,
                    id,
                    fcntl_flags: head.fcntl_flags,
                    metadata: metadata.as_slice(),
                    payload,
                };
                let ctx = caller_ctx(head.caller.pid, head.caller.uid, head.caller.gid);
                let mut performed = perform(self.daemon, operation, &ctx, self.reply.body());
                if let Some(round) = round {
                    performed.data_len += self.run_round(round, performed.data_len);
                }
                performed
            }
            Err(malformed) => {
                log::warn!("replica channel: malformed message: {malformed}");
                Performed::status(Err(Error::new(EPROTO)))
            }
        };
        self.reply
            .finish(performed.result, performed.extra, performed.data_len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{
        append_round, decode_reply, decode_round_answers, decode_round_reply, encode_request,
        encode_round, read_aheads, Interest, RequestHead, RoundWait,
    };
    use super::super::test_scheme::Notes;
    use super::*;
    use crate::Caller;
    use syscall::error::{EBADF, EOPNOTSUPP, EWOULDBLOCK};
    use syscall::flag::EventFlags;
    use syscall::schemev2::NewFdFlags;

    fn request(opcode: Opcode, id: usize, len: u64, payload: &[u8]) -> Vec<u8> {
        let caller = Caller {
            pid: 42,
            uid: 1,
            gid: 2,
        };
        let mut head = RequestHead::new(opcode, id, caller);
        head.header.len = len;
        let mut message = Vec::new();
        encode_request(&head, &[], payload, &mut message).unwrap();
        message
    }

    /// The reply's result, extra byte and payload.
    fn answer(
        replica: &mut Replica<'_, Notes>,
        mut message: Vec<u8>,
    ) -> (syscall::error::Result<usize>, u8, Vec<u8>) {
        let reply = decode_reply(replica.answer(&mut message)).expect("a well-formed reply");
        (
            reply.header.result(),
            reply.header.extra,
            reply.payload.to_vec(),
        )
    }

    #[test]
    fn opens_from_its_own_root_and_performs_requests() {
        let mut notes = Notes::default();
        let mut replica = Replica::new(&mut notes).unwrap();
        // The supervisor's idea of the directory does not matter.
        let (opened, extra, _) = answer(&mut replica, request(Opcode::Open, 77, 0, b"note"));
        let id = opened.unwrap();
        assert_eq!(extra, NewFdFlags::POSITIONED.bits());
        assert_eq!(
            answer(&mut replica, request(Opcode::Read, id, 8, b"")).0,
            Err(Error::new(EWOULDBLOCK)),
            "would-block goes back as an error; parking is the supervisor's business"
        );
        assert_eq!(
            answer(&mut replica, request(Opcode::Write, id, 5, b"hello")).0,
            Ok(5)
        );
        assert_eq!(
            answer(&mut replica, request(Opcode::Read, id, 3, b"")),
            (Ok(3), 0, b"hel".to_vec())
        );
        assert_eq!(
            answer(&mut replica, request(Opcode::Mmap, id, 4096, b"")).0,
            Err(Error::new(EOPNOTSUPP))
        );
        assert_eq!(
            answer(&mut replica, request(Opcode::Close, id, 0, b"")).0,
            Ok(0)
        );
        assert_eq!(
            answer(&mut replica, request(Opcode::Read, id, 3, b"")).0,
            Err(Error::new(EBADF))
        );
        drop(replica);
        assert_eq!(notes.closed, [id]);
        assert_eq!(
            notes.last_pid, 42,
            "the caller's identity reaches the scheme"
        );
    }

    #[test]
    fn rounds_run_the_daemon_answer_readiness_and_malformed_messages_get_eproto() {
        let mut notes = Notes::default();
        notes.next_round_within = Some(Duration::from_millis(3));
        let mut replica = Replica::new(&mut notes).unwrap();
        let (opened, _, _) = answer(&mut replica, request(Opcode::Open, 0, 0, b"note"));
        let id = opened.unwrap();
        let caller = Caller {
            pid: 42,
            uid: 1,
            gid: 2,
        };
        let interests = [
            Interest {
                id,
                flags: EventFlags::EVENT_READ | EventFlags::EVENT_WRITE,
                caller,
                read_ahead: 0,
            },
            Interest {
                id: 99,
                flags: EventFlags::EVENT_READ,
                caller,
                read_ahead: 0,
            },
        ];
        let mut round = Vec::new();
        encode_round(&interests, false, &mut round);
        let (result, _, reply) = answer(&mut replica, round);
        assert_eq!(result, Ok(2));
        let (answers, wait, _) = decode_round_reply(&reply, 2).unwrap();
        assert_eq!(
            decode_round_answers(answers).collect::<Vec<_>>(),
            [Ok(EventFlags::EVENT_WRITE), Err(Error::new(EBADF))],
            "each handle's fevent, after the round's own work"
        );
        assert_eq!(
            wait,
            RoundWait {
                within: Some(Duration::from_millis(3)),
                acknowledge: false,
            },
            "and what the daemon asks of the next round"
        );
        assert_eq!(
            answer(&mut replica, b"garbage".to_vec()).0,
            Err(Error::new(EPROTO))
        );
        let mut cut = request(Opcode::Write, 1, 5, b"hello");
        cut.pop();
        assert_eq!(answer(&mut replica, cut).0, Err(Error::new(EPROTO)));
        drop(replica);
        assert_eq!(notes.rounds, 1);
    }

    #[test]
    fn a_write_with_a_round_writes_then_runs_the_round_and_answers_both() {
        let mut notes = Notes::default();
        let mut replica = Replica::new(&mut notes).unwrap();
        let (opened, _, _) = answer(&mut replica, request(Opcode::Open, 0, 0, b"note"));
        let id = opened.unwrap();
        let interest = Interest {
            id,
            flags: EventFlags::EVENT_READ,
            caller: Caller {
                pid: 42,
                uid: 1,
                gid: 2,
            },
            read_ahead: 0,
        };
        let mut message = request(Opcode::Write, id, 5, b"hello");
        assert_eq!(append_round(&[interest], false, &mut message), Some(1));
        let (result, _, reply) = answer(&mut replica, message);
        assert_eq!(result, Ok(5), "the write's result");
        let (answers, _, _) = decode_round_reply(&reply, 1).unwrap();
        assert_eq!(
            decode_round_answers(answers).collect::<Vec<_>>(),
            [Ok(EventFlags::EVENT_READ)],
            "readable: the round ran after the write"
        );
        drop(replica);
        assert_eq!(notes.rounds, 1);
    }

    /// A round about note `id` that may read `read_ahead` bytes ahead for its
    /// reader; the answer about it and the data read ahead.
    fn round_reading_ahead(
        replica: &mut Replica<'_, Notes>,
        id: usize,
        read_ahead: u32,
    ) -> (Result<EventFlags>, Vec<(usize, Vec<u8>)>) {
        let interest = Interest {
            id,
            flags: EventFlags::EVENT_READ,
            caller: Caller {
                pid: 7,
                uid: 1,
                gid: 2,
            },
            read_ahead,
        };
        let mut round = Vec::new();
        encode_round(&[interest], false, &mut round);
        let (result, _, reply) = answer(replica, round);
        assert_eq!(result, Ok(1));
        let (answers, _, section) = decode_round_reply(&reply, 1).unwrap();
        let answer = decode_round_answers(answers).next().unwrap();
        let read = read_aheads(section)
            .map(|record| {
                let record = record.unwrap();
                (record.id, record.data.to_vec())
            })
            .collect();
        (answer, read)
    }

    #[test]
    fn a_round_reads_ahead_what_a_readable_handle_holds_and_answers_its_readiness_after() {
        let mut notes = Notes::taking();
        let mut replica = Replica::new(&mut notes).unwrap();
        let (opened, _, _) = answer(&mut replica, request(Opcode::Open, 0, 0, b"note"));
        let id = opened.unwrap();
        // Nothing to read: nothing read, and no read tried.
        assert_eq!(
            round_reading_ahead(&mut replica, id, 5),
            (Ok(EventFlags::empty()), vec![])
        );
        let (written, _, _) = answer(&mut replica, request(Opcode::Write, id, 11, b"hello world"));
        assert_eq!(written, Ok(11));
        assert_eq!(
            round_reading_ahead(&mut replica, id, 5),
            (Ok(EventFlags::EVENT_READ), vec![(id, b"hello".to_vec())]),
            "still readable after five bytes"
        );
        // Without a length from the supervisor, nothing is read ahead.
        assert_eq!(
            round_reading_ahead(&mut replica, id, 0),
            (Ok(EventFlags::EVENT_READ), vec![])
        );
        assert_eq!(
            round_reading_ahead(&mut replica, id, 64),
            (Ok(EventFlags::empty()), vec![(id, b" world".to_vec())]),
            "no longer readable once taken"
        );
        drop(replica);
        assert_eq!(notes.reads, 2, "only readable handles are read");
    }

    #[test]
    fn a_daemon_that_does_not_allow_it_is_never_read_ahead() {
        let mut notes = Notes::default();
        let mut replica = Replica::new(&mut notes).unwrap();
        let (opened, _, _) = answer(&mut replica, request(Opcode::Open, 0, 0, b"note"));
        let id = opened.unwrap();
        let (written, _, _) = answer(&mut replica, request(Opcode::Write, id, 5, b"hello"));
        assert_eq!(written, Ok(5));
        assert_eq!(
            round_reading_ahead(&mut replica, id, 64),
            (Ok(EventFlags::EVENT_READ), vec![])
        );
        drop(replica);
        assert_eq!(notes.reads, 0);
    }

    #[test]
    fn a_relayed_line_fires_in_the_daemon_and_its_acknowledgement_comes_back_in_the_reply() {
        let line = RelayedLine::new("/scheme/lines/7");
        let mut notes = Notes::default();
        notes.line = Some(line.clone());
        let mut replica = Replica::new(&mut notes).unwrap().with_line(Some(line));
        let acknowledged = |replica: &mut Replica<Notes>, fired: bool| {
            let mut round = Vec::new();
            encode_round(&[], fired, &mut round);
            let (result, _, reply) = answer(replica, round);
            assert_eq!(result, Ok(0));
            decode_round_reply(&reply, 0).unwrap().1.acknowledge
        };
        assert!(!acknowledged(&mut replica, false));
        assert!(acknowledged(&mut replica, true));
        assert!(!acknowledged(&mut replica, false), "once per firing");
        drop(replica);
        assert_eq!((notes.rounds, notes.line_fired), (3, 1));
    }

    #[test]
    fn the_cause_a_fired_round_carries_reaches_the_daemons_line() {
        let line = RelayedLine::new("/scheme/lines/7");
        let mut notes = Notes::default();
        notes.line = Some(line.clone());
        let mut replica = Replica::new(&mut notes)
            .unwrap()
            .with_line(Some(line.clone()));
        let mut round = Vec::new();
        encode_round(&[], true, &mut round);
        assert!(super::super::codec::attach_cause(&mut round, b"ICR=0x84"));
        let (result, _, _) = answer(&mut replica, round);
        assert_eq!(result, Ok(0));
        drop(replica);
        assert_eq!(line.take_cause().as_deref(), Some(&b"ICR=0x84"[..]));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn serves_over_a_socket_until_it_ends() {
        use nix::sys::socket::{
            recv, send, shutdown, socketpair, AddressFamily, MsgFlags, Shutdown, SockFlag, SockType,
        };
        use std::os::fd::AsRawFd;

        let (supervisor, replica_end) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let replica = std::thread::spawn(move || {
            let mut notes = Notes::default();
            serve_replica(
                replica_end,
                "notes",
                &mut notes,
                Some(Duration::from_millis(7)),
            )
        });
        let fd = supervisor.as_raw_fd();
        let mut buf = vec![0u8; 1024];
        let n = recv(fd, &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(
            Hello::decode(&buf[..n]).unwrap(),
            Hello {
                tick: Some(Duration::from_millis(7)),
                name: "notes".into(),
                line: None,
                cause_read: None,
            }
        );
        send(fd, &request(Opcode::Open, 0, 0, b"note"), MsgFlags::empty()).unwrap();
        let n = recv(fd, &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(decode_reply(&buf[..n]).unwrap().header.result(), Ok(1));
        shutdown(fd, Shutdown::Write).unwrap();
        replica
            .join()
            .unwrap()
            .expect("the end of the channel is a normal end");
    }

    #[test]
    fn a_name_the_hello_cannot_carry_is_refused() {
        let (channel, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let error = serve_replica(channel.into(), "", &mut Notes::default(), None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
