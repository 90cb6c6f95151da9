//! Messages on the replica channel.
//!
//! A replica reads one whole message per `read` and writes one whole reply per
//! `write`, so every message is one datagram (a `SOCK_SEQPACKET` message, or
//! one intercepted system call) and its length is the datagram's. All integers
//! are little-endian.
//!
//! A replica's first write is its hello:
//!
//! | bytes | field | meaning                                                  |
//! |-------|-------|----------------------------------------------------------|
//! | 0..8  | magic | [`HELLO_MAGIC`]                                          |
//! | 8..16 | tick  | the daemon's tick in microseconds, 0 for none            |
//! | 16..  | name  | the scheme name, UTF-8, 1 to [`MAX_NAME_LEN`] bytes       |
//!
//! and, when the daemon waits on an interrupt line that the supervisor should
//! wait on for the replicas and relay to them ([`crate::replicated::RelayedLine`]),
//! a zero byte and the line's path (as `Handle::open` takes it), UTF-8, 1 to
//! [`MAX_NAME_LEN`] bytes; and, when the daemon reads its device's interrupt
//! causes through a call the supervisor may make for it as the line fires
//! ([`CauseRead`]), another zero byte, the replica's descriptor of the
//! connection (4 bytes) and the call's request as the connection carries it
//! ([`crate::wire`]), 1 to [`MAX_CAUSE_LEN`] bytes.
//!
//! Then the supervisor sends messages, each told by its first byte:
//!
//! - `2`: a round; the replica runs `SchemeDaemon::after_round` and then asks
//!   its scheme's `fevent` about each handle the round lists, so that one
//!   exchange per round also answers the readiness the platform re-queries
//!   after every round. One byte, 1 if the relayed interrupt line fired since
//!   the last round that told so (else 0), two bytes (`cause`) that give the
//!   length of the cause read's answer at the end of the message (0 for none;
//!   only with the line fired), four zero bytes, then one 32-byte record per
//!   handle, then the answer (the call's payload as the scheme left it):
//!
//!   | bytes  | field      | meaning                                  |
//!   |--------|------------|------------------------------------------|
//!   | 0..8   | id         | the handle                               |
//!   | 8..12  | flags      | the event flags the caller wants         |
//!   | 12..16 | read_ahead | bytes the replica may read ahead for the handle's client when it finds the handle readable (see below), 0 for none |
//!   | 16..24 | pid        | the caller that registered the interest  |
//!   | 24..28 | uid        |                                          |
//!   | 28..32 | gid        |                                          |
//! - `1`: a request: a 32-byte header, then a host transport request
//!   ([`crate::wire`]: its opcode is the method, its flags the open flags or the
//!   wanted event flags, then offset, length, metadata and the payload: the path
//!   to open, the data to write, the call's payload).
//!
//! | bytes  | field       | meaning                                                  |
//! |--------|-------------|----------------------------------------------------------|
//! | 0      | kind        | 1                                                        |
//! | 1      | round       | 1 if a round follows the request (a write only), else 0  |
//! | 2..4   | reserved    | zero                                                     |
//! | 4..8   | fcntl_flags | the handle's fcntl flags (open, read, write)             |
//! | 8..16  | id          | the handle; open ignores it (a replica opens from its own root) |
//! | 16..24 | pid         | the caller, as the scheme sees it                        |
//! | 24..28 | uid         |                                                          |
//! | 28..32 | gid         |                                                          |
//!
//! A write with a round after it is the request as above, then a whole round
//! message (from its kind byte on): the replica writes, then runs the round, in
//! one exchange, where a write would otherwise call for a round of its own
//! (its frame must reach the device). Its reply is the write's (status: the
//! result), its payload the round's answers and [`RoundWait`].
//!
//! Every message gets one reply: a host transport response header of kind reply
//! (status: the result or -errno; extra: open's `NewFdFlags` bits), then at most
//! [`MAX_PAYLOAD`] bytes: the data read, the call's payload as the scheme left
//! it, the `Stat`, the path. A replica whose calls were held adds them after
//! the reply, as [`super::held`] lays out; the supervisor takes them off. Open's status is the new handle's number, fevent's
//! the ready event flags. A round's reply has the number of handles it listed
//! as status, and for each, in order, 8 bytes: the ready flags' bits, or a
//! negated errno. Then what the daemon asks of the next round
//! ([`RoundWait`]):
//!
//! | bytes | field       | meaning                                                    |
//! |-------|-------------|------------------------------------------------------------|
//! | 0..8  | within      | run the next round within this many microseconds, sooner than the tick; 0 for no wish (`SchemeDaemon::next_round_within`) |
//! | 8     | acknowledge | 1 if the daemon acknowledged the relayed line in this round (the supervisor unmasks it), else 0 |
//! | 9..16 | reserved    | zero                                                       |
//!
//! Then the reads made ahead ([`ReadAhead`]): for an interest with a
//! `read_ahead` length whose handle the round found readable, and whose daemon
//! allows it (`SchemeDaemon::may_read_ahead`), the replica reads that many
//! bytes at most, as a client's non-blocking read at offset 0 would, and,
//! where it read any, appends a record: the handle (8 bytes), the length (4),
//! four zero bytes, then the data. The answer about that handle is then its
//! readiness after the read. The supervisor holds the data for the client's
//! next read, which so costs the replicas no meeting of its own.

use std::fmt;
use std::time::Duration;

use crate::wire::{
    self, u64_at, MalformedRequest, Metadata, Opcode, RequestHeader, ResponseHeader, ResponseKind,
    MAX_METADATA, MAX_PAYLOAD, MAX_REQUEST_LEN, REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN,
};
use crate::Caller;
use syscall::flag::EventFlags;

/// The first eight bytes of a hello; they can never start a reply, whose first
/// byte is a response kind.
pub const HELLO_MAGIC: [u8; 8] = *b"REPLICA1";
/// Longest scheme name a hello carries.
pub const MAX_NAME_LEN: usize = 255;
/// Longest cause read's request, and longest answer a round carries.
pub const MAX_CAUSE_LEN: usize = 4096;
/// Length of a request's header, before the host transport request.
pub const CHANNEL_HEADER_LEN: usize = 32;
/// Largest well-formed message from the supervisor.
pub const MAX_MESSAGE_LEN: usize = CHANNEL_HEADER_LEN + MAX_REQUEST_LEN;
/// Largest well-formed message from a replica: a reply, or a hello.
pub const MAX_REPLY_LEN: usize = RESPONSE_HEADER_LEN + MAX_PAYLOAD;

const HELLO_HEADER_LEN: usize = 16;
const KIND_REQUEST: u8 = 1;
const KIND_ROUND: u8 = 2;
/// The kind byte and seven reserved bytes before a round's interests.
const ROUND_HEADER_LEN: usize = 8;
const INTEREST_LEN: usize = 32;
const ANSWER_LEN: usize = 8;
/// The most handles one round asks about; the platform asks about any others
/// with a request each.
pub const MAX_ROUND_INTERESTS: usize = 1024;
const _: () = assert!(ROUND_HEADER_LEN + MAX_ROUND_INTERESTS * INTEREST_LEN <= MAX_MESSAGE_LEN);
/// The bytes of a [`RoundWait`] after a round's answers.
pub const ROUND_WAIT_LEN: usize = 16;
const _: () = assert!(MAX_ROUND_INTERESTS * ANSWER_LEN + ROUND_WAIT_LEN <= MAX_PAYLOAD);

/// Why bytes are not a well-formed message of the replica channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    TooShort {
        len: usize,
        need: usize,
    },
    UnknownKind(u8),
    ReservedNotZero,
    /// A round's length is not its header and whole interest records.
    RoundLength(usize),
    /// The host transport request inside a request.
    Request(MalformedRequest),
    /// A hello's interrupt line is not a path of 1 to [`MAX_NAME_LEN`] UTF-8
    /// bytes.
    LinePath(usize),
    /// A reply's header is not a reply's (an event, or no kind at all).
    NotAReply,
    ReplyTooLarge(usize),
    NotAHello,
    NameLength(usize),
    NameNotUtf8,
    /// A read-ahead record of a round's reply runs past the reply's end.
    ReadAheadCutShort {
        at: usize,
    },
    /// A round's reply shorter than its answers and a [`RoundWait`].
    RoundReplyLength {
        len: usize,
        answers: usize,
    },
    /// A round after a request other than a write.
    RoundAfter(Opcode),
    /// A hello's cause read is not a descriptor and 1 to [`MAX_CAUSE_LEN`]
    /// bytes of request, or comes without a line.
    CauseRead(usize),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len, need } => write!(f, "{len} bytes, at least {need} needed"),
            Self::UnknownKind(kind) => write!(f, "unknown message kind {kind}"),
            Self::ReservedNotZero => f.write_str("reserved header bytes are not zero"),
            Self::RoundLength(len) => write!(
                f,
                "a round of {len} bytes ({ROUND_HEADER_LEN}, then at most \
                 {MAX_ROUND_INTERESTS} records of {INTEREST_LEN})"
            ),
            Self::Request(malformed) => write!(f, "request: {malformed}"),
            Self::NotAReply => f.write_str("the header is not a reply's"),
            Self::ReplyTooLarge(n) => write!(f, "reply of {n} bytes (at most {MAX_PAYLOAD})"),
            Self::NotAHello => f.write_str("not a hello"),
            Self::LinePath(n) => write!(
                f,
                "an interrupt line path of {n} bytes (1 to {MAX_NAME_LEN} of UTF-8)"
            ),
            Self::NameLength(n) => {
                write!(f, "scheme name of {n} bytes (1 to {MAX_NAME_LEN})")
            }
            Self::NameNotUtf8 => f.write_str("scheme name is not UTF-8"),
            Self::RoundReplyLength { len, answers } => write!(
                f,
                "a round's reply of {len} bytes for {answers} answers ({ANSWER_LEN} bytes \
                 each, then {ROUND_WAIT_LEN})"
            ),
            Self::RoundAfter(opcode) => write!(f, "a round after a {opcode:?}, not a write"),
            Self::ReadAheadCutShort { at } => {
                write!(f, "a read-ahead record at byte {at} runs past the reply")
            }
            Self::CauseRead(n) => write!(
                f,
                "a cause read of {n} bytes (a line, a descriptor, then 1 to {MAX_CAUSE_LEN} \
                 bytes of request)"
            ),
        }
    }
}

/// A replica's first message: which scheme it serves, how often its daemon
/// wants a round when no request comes, and the interrupt line, if any, the
/// supervisor should wait on and relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Carried in whole microseconds; a tick under one becomes one.
    pub tick: Option<Duration>,
    pub name: String,
    pub line: Option<String>,
    /// Only with a line.
    pub cause_read: Option<CauseRead>,
}

/// A call a replica's supervisor makes for the replicas when their relayed
/// line fires, before the round that tells them, and whose answer that round
/// carries: a driver reads its device's interrupt causes this way without a
/// meeting of the replicas of its own (`RelayedLine::set_cause_read`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CauseRead {
    /// The replicas' descriptor of the connection the call is made on.
    pub fd: u32,
    /// The request, as the connection carries it.
    pub request: Vec<u8>,
}

impl Hello {
    /// Encodes the hello into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Malformed> {
        scheme_name(self.name.as_bytes())?;
        let micros = self.tick.map_or(0, |tick| {
            u64::try_from(tick.as_micros()).unwrap_or(u64::MAX).max(1)
        });
        if let Some(line) = &self.line {
            line_path(line.as_bytes())?;
        }
        if let Some(cause) = &self.cause_read {
            let len = cause.request.len();
            if self.line.is_none() || len == 0 || len > MAX_CAUSE_LEN {
                return Err(Malformed::CauseRead(len));
            }
        }
        out.clear();
        out.extend_from_slice(&HELLO_MAGIC);
        out.extend_from_slice(&micros.to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        if let Some(line) = &self.line {
            out.push(0);
            out.extend_from_slice(line.as_bytes());
        }
        if let Some(cause) = &self.cause_read {
            out.push(0);
            out.extend_from_slice(&cause.fd.to_le_bytes());
            out.extend_from_slice(&cause.request);
        }
        Ok(())
    }

    /// Decodes a hello. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let (fixed, name) =
            bytes
                .split_at_checked(HELLO_HEADER_LEN)
                .ok_or(Malformed::TooShort {
                    len: bytes.len(),
                    need: HELLO_HEADER_LEN,
                })?;
        if fixed[..8] != HELLO_MAGIC {
            return Err(Malformed::NotAHello);
        }
        let micros = u64_at(fixed, 8);
        let (name, line, cause_read) = match name.iter().position(|&byte| byte == 0) {
            Some(at) => {
                let line = &name[at + 1..];
                let (line, cause_read) = match line.iter().position(|&byte| byte == 0) {
                    Some(end) => (&line[..end], Some(cause_read(&line[end + 1..])?)),
                    None => (line, None),
                };
                (&name[..at], Some(line_path(line)?.to_owned()), cause_read)
            }
            None => (name, None, None),
        };
        Ok(Self {
            tick: (micros != 0).then(|| Duration::from_micros(micros)),
            name: scheme_name(name)?.to_owned(),
            line,
            cause_read,
        })
    }
}

fn cause_read(bytes: &[u8]) -> Result<CauseRead, Malformed> {
    match bytes.split_first_chunk::<4>() {
        Some((fd, request)) if (1..=MAX_CAUSE_LEN).contains(&request.len()) => Ok(CauseRead {
            fd: u32::from_le_bytes(*fd),
            request: request.to_vec(),
        }),
        _ => Err(Malformed::CauseRead(bytes.len().saturating_sub(4))),
    }
}

fn line_path(bytes: &[u8]) -> Result<&str, Malformed> {
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN || bytes.contains(&0) {
        return Err(Malformed::LinePath(bytes.len()));
    }
    std::str::from_utf8(bytes).map_err(|_| Malformed::LinePath(bytes.len()))
}

fn scheme_name(bytes: &[u8]) -> Result<&str, Malformed> {
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN {
        return Err(Malformed::NameLength(bytes.len()));
    }
    std::str::from_utf8(bytes).map_err(|_| Malformed::NameNotUtf8)
}

/// What a request is about, apart from its metadata and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, its open or wanted event flags, offset and length, as on the
    /// host transport.
    pub header: RequestHeader,
    pub id: usize,
    pub fcntl_flags: u32,
    pub caller: Caller,
}

impl RequestHead {
    /// A request of `caller`'s about handle `id`, with no flags, offset or
    /// length yet.
    pub fn new(opcode: Opcode, id: usize, caller: Caller) -> Self {
        Self {
            header: RequestHeader {
                opcode,
                flags: 0,
                offset: 0,
                len: 0,
            },
            id,
            fcntl_flags: 0,
            caller,
        }
    }
}

/// A decoded request, borrowing the received message.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub head: RequestHead,
    pub metadata: Metadata,
    /// Mutable because a call's payload is in-out: the scheme edits it in place.
    pub payload: &'a mut [u8],
    /// The round to run after the request (a write's).
    pub round: Option<Round<'a>>,
}

/// A message from the supervisor.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Request(Request<'a>),
    Round(Round<'a>),
}

/// A round: whether the relayed line fired, and the handles to ask about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round<'a> {
    pub line_fired: bool,
    pub interests: Interests<'a>,
    /// The answer to the hello's cause read, which the supervisor made as the
    /// line fired; empty when it made none.
    pub cause: &'a [u8],
}

/// A handle whose readiness a round asks about, for the caller that asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub id: usize,
    pub flags: EventFlags,
    pub caller: Caller,
    /// Bytes the replica may read ahead for the client when the round finds
    /// the handle readable; 0 for none.
    pub read_ahead: u32,
}

impl Interest {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.id as u64).to_le_bytes());
        // Event flags fit 32 bits on both platforms.
        out.extend_from_slice(&(self.flags.bits() as u32).to_le_bytes());
        out.extend_from_slice(&self.read_ahead.to_le_bytes());
        out.extend_from_slice(&(self.caller.pid as u64).to_le_bytes());
        out.extend_from_slice(&self.caller.uid.to_le_bytes());
        out.extend_from_slice(&self.caller.gid.to_le_bytes());
    }

    fn decode(record: &[u8]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4"));
        Self {
            id: u64_at(record, 0) as usize,
            flags: EventFlags::from_bits_truncate(u32_at(8) as usize),
            caller: Caller {
                pid: u64_at(record, 16) as usize,
                uid: u32_at(24),
                gid: u32_at(28),
            },
            read_ahead: u32_at(12),
        }
    }
}

/// The interests a round lists, read from the message as they are needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interests<'a> {
    records: &'a [u8],
}

impl<'a> Interests<'a> {
    pub fn len(&self) -> usize {
        self.records.len() / INTEREST_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Interest> + 'a {
        self.records
            .chunks_exact(INTEREST_LEN)
            .map(Interest::decode)
    }
}

/// Encodes a request into `out` (cleared first). Refuses what a replica would
/// refuse: more than [`MAX_METADATA`] words or [`MAX_PAYLOAD`] bytes.
pub fn encode_request(
    head: &RequestHead,
    metadata: &[u64],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), MalformedRequest> {
    if metadata.len() > MAX_METADATA {
        return Err(MalformedRequest::TooMuchMetadata(metadata.len()));
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(MalformedRequest::PayloadTooLarge(payload.len()));
    }
    let mut transport_head = [0u8; REQUEST_HEADER_LEN + MAX_METADATA * 8];
    let transport_head_len =
        wire::encode_request_head(&head.header, metadata, payload.len(), &mut transport_head);
    out.clear();
    out.push(KIND_REQUEST);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&head.fcntl_flags.to_le_bytes());
    out.extend_from_slice(&(head.id as u64).to_le_bytes());
    out.extend_from_slice(&(head.caller.pid as u64).to_le_bytes());
    out.extend_from_slice(&head.caller.uid.to_le_bytes());
    out.extend_from_slice(&head.caller.gid.to_le_bytes());
    out.extend_from_slice(&transport_head[..transport_head_len]);
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends to the write request in `out` ([`encode_request`]) a round that
/// tells whether the relayed line fired and asks about the first
/// [`MAX_ROUND_INTERESTS`] of `interests`, to run after the write; returns how
/// many it lists. `None`, with `out` as it was, if `out` holds no write or
/// the two would not fit one message ([`MAX_MESSAGE_LEN`]).
pub fn append_round(interests: &[Interest], line_fired: bool, out: &mut Vec<u8>) -> Option<usize> {
    if request_opcode(out) != Some(Opcode::Write) || out[1] != 0 {
        return None;
    }
    let listed = interests.len().min(MAX_ROUND_INTERESTS);
    if out.len() + ROUND_HEADER_LEN + listed * INTEREST_LEN > MAX_MESSAGE_LEN {
        return None;
    }
    out[1] = 1;
    Some(push_round(interests, line_fired, out))
}

/// Encodes a round that tells whether the relayed line fired and asks about
/// the first [`MAX_ROUND_INTERESTS`] of `interests` into `out` (cleared
/// first); returns how many it lists.
pub fn encode_round(interests: &[Interest], line_fired: bool, out: &mut Vec<u8>) -> usize {
    out.clear();
    push_round(interests, line_fired, out)
}

/// Appends the round [`encode_round`] encodes to `out`.
fn push_round(interests: &[Interest], line_fired: bool, out: &mut Vec<u8>) -> usize {
    let listed = &interests[..interests.len().min(MAX_ROUND_INTERESTS)];
    out.push(KIND_ROUND);
    out.push(u8::from(line_fired));
    out.extend_from_slice(&[0; ROUND_HEADER_LEN - 2]);
    for interest in listed {
        interest.encode(out);
    }
    listed.len()
}

/// Writes a round's answer for each interest into `body`; returns the bytes
/// written.
///
/// # Panics
///
/// If `body` is shorter than 8 bytes per answer.
pub fn encode_round_answers(
    answers: impl Iterator<Item = syscall::error::Result<EventFlags>>,
    body: &mut [u8],
) -> usize {
    let mut len = 0;
    for answer in answers {
        let value = match answer {
            Ok(flags) => flags.bits() as i64,
            Err(error) => -i64::from(error.errno),
        };
        body[len..len + ANSWER_LEN].copy_from_slice(&value.to_le_bytes());
        len += ANSWER_LEN;
    }
    len
}

/// Reads the answers of a round's reply payload, in the order of its interests.
pub fn decode_round_answers(
    payload: &[u8],
) -> impl Iterator<Item = syscall::error::Result<EventFlags>> + '_ {
    payload.chunks_exact(ANSWER_LEN).map(|answer| {
        let value = i64::from_le_bytes(answer.try_into().expect("8 bytes"));
        match value {
            flags if flags >= 0 => Ok(EventFlags::from_bits_truncate(flags as usize)),
            errno => Err(syscall::error::Error::new(
                i32::try_from(-errno).unwrap_or(syscall::error::EIO),
            )),
        }
    })
}

/// What a daemon asks of its next round, carried after a round's answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundWait {
    /// Run the next round within this, sooner than the tick.
    pub within: Option<Duration>,
    /// The daemon acknowledged the relayed line: unmask it.
    pub acknowledge: bool,
}

impl RoundWait {
    /// Writes the wait into `body` after a round's answers; returns the
    /// bytes written.
    ///
    /// # Panics
    ///
    /// If `body` is shorter than 16 bytes.
    pub fn encode(&self, body: &mut [u8]) -> usize {
        // A wish under a microsecond is a wish for a round at once, not none.
        let micros = self.within.map_or(0, |within| {
            u64::try_from(within.as_micros()).unwrap_or(u64::MAX).max(1)
        });
        body[..8].copy_from_slice(&micros.to_le_bytes());
        body[8..ROUND_WAIT_LEN].copy_from_slice(&u64::from(self.acknowledge).to_le_bytes());
        ROUND_WAIT_LEN
    }
}

/// Bytes before a read-ahead record's data.
pub const READ_AHEAD_HEADER_LEN: usize = 16;

/// Data a replica read for a handle's client before the client asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAhead<'a> {
    pub id: usize,
    pub data: &'a [u8],
}

/// Writes the header of a read-ahead record for `len` bytes of data read for
/// handle `id` (which the caller put right after it) into `body`; returns the
/// whole record's length.
///
/// # Panics
///
/// If `body` is shorter than [`READ_AHEAD_HEADER_LEN`], or `len` over `u32`.
pub fn encode_read_ahead_header(id: usize, len: usize, body: &mut [u8]) -> usize {
    let len32 = u32::try_from(len).expect("a read fits a reply");
    body[..8].copy_from_slice(&(id as u64).to_le_bytes());
    body[8..12].copy_from_slice(&len32.to_le_bytes());
    body[12..READ_AHEAD_HEADER_LEN].fill(0);
    READ_AHEAD_HEADER_LEN + len
}

/// The read-ahead records of a round's reply, in order.
pub fn read_aheads(section: &[u8]) -> impl Iterator<Item = Result<ReadAhead<'_>, Malformed>> {
    length_prefixed(section, READ_AHEAD_HEADER_LEN, 8).map(|record| {
        let (header, data) = record.map_err(|at| Malformed::ReadAheadCutShort { at })?;
        if header[12..] != [0; 4] {
            return Err(Malformed::ReservedNotZero);
        }
        Ok(ReadAhead {
            id: u64_at(header, 0) as usize,
            data,
        })
    })
}

/// Splits `section` into records of a `header_len`-byte header, whose bytes
/// `len_at..len_at + 4` give the length of the data after it, and that data;
/// a record cut short is `Err` with where it starts, and ends the walk.
pub(crate) fn length_prefixed(
    section: &[u8],
    header_len: usize,
    len_at: usize,
) -> impl Iterator<Item = Result<(&[u8], &[u8]), usize>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at == section.len() {
            return None;
        }
        let start = at + header_len;
        let record = section.get(at..start).and_then(|header| {
            let len = u32::from_le_bytes(header[len_at..len_at + 4].try_into().expect("4 bytes"));
            let data = start
                .checked_add(len as usize)
                .and_then(|end| section.get(start..end))?;
            Some((header, data))
        });
        let Some((header, data)) = record else {
            let cut = at;
            at = section.len();
            return Some(Err(cut));
        };
        at = start + data.len();
        Some(Ok((header, data)))
    })
}

/// Splits a round's reply `payload` for `answers` interests into the answers,
/// what the daemon asks of the next round, and the reads made ahead (the
/// section [`read_aheads`] reads).
pub fn decode_round_reply(
    payload: &[u8],
    answers: usize,
) -> Result<(&[u8], RoundWait, &[u8]), Malformed> {
    let malformed = Malformed::RoundReplyLength {
        len: payload.len(),
        answers,
    };
    let answered_len = answers.checked_mul(ANSWER_LEN).ok_or(malformed)?;
    let waited_len = answered_len.checked_add(ROUND_WAIT_LEN).ok_or(malformed)?;
    if payload.len() < waited_len {
        return Err(malformed);
    }
    let (answered, rest) = payload.split_at(answered_len);
    let (wait, read_ahead) = rest.split_at(ROUND_WAIT_LEN);
    let within = match u64_at(wait, 0) {
        0 => None,
        micros => Some(Duration::from_micros(micros)),
    };
    let acknowledge = match u64_at(wait, 8) {
        0 => false,
        1 => true,
        _ => return Err(Malformed::ReservedNotZero),
    };
    Ok((
        answered,
        RoundWait {
            within,
            acknowledge,
        },
        read_ahead,
    ))
}

/// Whether `message` is a request with a round after it, told by its first
/// two bytes alone.
pub fn carries_round(message: &[u8]) -> bool {
    matches!(message, [KIND_REQUEST, 1, ..])
}

/// Adds `answer`, the answer to the hello's cause read, to `message` if it is a
/// round that tells the line fired and carries none yet; false, with `message`
/// as it was, otherwise (a request, a quiet round, an answer too long).
pub fn attach_cause(message: &mut Vec<u8>, answer: &[u8]) -> bool {
    let fired_round = tells_line_fired(message) && message[2..4] == [0, 0];
    let Ok(len) = u16::try_from(answer.len()) else {
        return false;
    };
    if !fired_round || answer.is_empty() || answer.len() > MAX_CAUSE_LEN {
        return false;
    }
    message[2..4].copy_from_slice(&len.to_le_bytes());
    message.extend_from_slice(answer);
    true
}

/// Whether `message` is a round that tells the relayed line fired.
pub fn tells_line_fired(message: &[u8]) -> bool {
    matches!(message, [KIND_ROUND, 1, _, _, ..])
}

/// Whether `message` is a round, told by its first byte alone.
pub fn is_round(message: &[u8]) -> bool {
    message.first() == Some(&KIND_ROUND)
}

/// The method of a request message, told without decoding the rest; `None`
/// for a round or a message too short to say.
pub fn request_opcode(message: &[u8]) -> Option<Opcode> {
    match message {
        [KIND_REQUEST, ..] => message
            .get(CHANNEL_HEADER_LEN)
            .and_then(|&op| Opcode::from_raw(op)),
        _ => None,
    }
}

/// Decodes one message from the supervisor in place. Never panics, whatever
/// the bytes.
pub fn decode_message(bytes: &mut [u8]) -> Result<Message<'_>, Malformed> {
    match bytes.first() {
        None => Err(Malformed::TooShort { len: 0, need: 1 }),
        Some(&KIND_ROUND) => decode_round(bytes).map(Message::Round),
        Some(&KIND_REQUEST) => decode_request(bytes).map(Message::Request),
        Some(&kind) => Err(Malformed::UnknownKind(kind)),
    }
}

fn decode_round(bytes: &[u8]) -> Result<Round<'_>, Malformed> {
    let len = bytes.len();
    let (header, records) = bytes
        .split_at_checked(ROUND_HEADER_LEN)
        .ok_or(Malformed::RoundLength(len))?;
    let line_fired = match header[1] {
        0 => false,
        1 => true,
        _ => return Err(Malformed::ReservedNotZero),
    };
    if header[4..] != [0; ROUND_HEADER_LEN - 4] {
        return Err(Malformed::ReservedNotZero);
    }
    let cause_len = usize::from(u16::from_le_bytes([header[2], header[3]]));
    if cause_len > MAX_CAUSE_LEN || cause_len > records.len() || (cause_len > 0 && !line_fired) {
        return Err(Malformed::RoundLength(len));
    }
    let (records, cause) = records.split_at(records.len() - cause_len);
    if !records.len().is_multiple_of(INTEREST_LEN)
        || records.len() / INTEREST_LEN > MAX_ROUND_INTERESTS
    {
        return Err(Malformed::RoundLength(len));
    }
    Ok(Round {
        line_fired,
        interests: Interests { records },
        cause,
    })
}

fn decode_request(bytes: &mut [u8]) -> Result<Request<'_>, Malformed> {
    let len = bytes.len();
    let (channel, transport) =
        bytes
            .split_at_mut_checked(CHANNEL_HEADER_LEN)
            .ok_or(Malformed::TooShort {
                len,
                need: CHANNEL_HEADER_LEN,
            })?;
    let round_follows = match channel[1] {
        0 => false,
        1 => true,
        _ => return Err(Malformed::ReservedNotZero),
    };
    if channel[2..4] != [0; 2] {
        return Err(Malformed::ReservedNotZero);
    }
    let u32_at = |at: usize| u32::from_le_bytes(channel[at..at + 4].try_into().expect("4 bytes"));
    let head = |header| RequestHead {
        header,
        id: u64_at(channel, 8) as usize,
        fcntl_flags: u32_at(4),
        caller: Caller {
            pid: u64_at(channel, 16) as usize,
            uid: u32_at(24),
            gid: u32_at(28),
        },
    };
    let (transport, round) = match round_follows {
        false => (transport, None),
        true => {
            let request_len = transport_len(transport);
            let (request, round) =
                transport
                    .split_at_mut_checked(request_len)
                    .ok_or(Malformed::TooShort {
                        len,
                        need: CHANNEL_HEADER_LEN + request_len,
                    })?;
            (request, Some(round))
        }
    };
    let wire::Request {
        header,
        metadata,
        payload,
    } = wire::decode_request(transport).map_err(Malformed::Request)?;
    let round = match round {
        None => None,
        Some(_) if header.opcode != Opcode::Write => {
            return Err(Malformed::RoundAfter(header.opcode))
        }
        Some(round) => match round.first() {
            Some(&KIND_ROUND) => Some(decode_round(round)?),
            Some(&kind) => return Err(Malformed::UnknownKind(kind)),
            None => return Err(Malformed::RoundLength(0)),
        },
    };
    Ok(Request {
        head: head(header),
        metadata,
        payload,
        round,
    })
}

/// The length a host transport request declares (its header, metadata and
/// payload), or what there is of it when too short to say: the bytes after it
/// are not its own.
fn transport_len(transport: &[u8]) -> usize {
    match transport {
        [_, metadata, _, _, a, b, c, d, ..] if transport.len() >= REQUEST_HEADER_LEN => {
            let declared = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
            REQUEST_HEADER_LEN + usize::from(*metadata) * 8 + declared.min(MAX_PAYLOAD)
        }
        _ => transport.len(),
    }
}

/// A decoded reply, borrowing the received message.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Of kind reply; [`ResponseHeader::result`] gives the result.
    pub header: ResponseHeader,
    pub payload: &'a [u8],
}

/// Decodes a reply. Never panics, whatever the bytes.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply<'_>, Malformed> {
    let (head, payload) =
        bytes
            .split_first_chunk::<RESPONSE_HEADER_LEN>()
            .ok_or(Malformed::TooShort {
                len: bytes.len(),
                need: RESPONSE_HEADER_LEN,
            })?;
    let header = ResponseHeader::decode(head)
        .filter(|header| header.kind == ResponseKind::Reply)
        .ok_or(Malformed::NotAReply)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(Malformed::ReplyTooLarge(payload.len()));
    }
    Ok(Reply { header, payload })
}

/// A reply assembled in place, allocated once: the scheme writes its data
/// straight into [`ReplyBuffer::body`].
pub struct ReplyBuffer {
    bytes: Vec<u8>,
}

impl Default for ReplyBuffer {
    fn default() -> Self {
        Self {
            bytes: vec![0; MAX_REPLY_LEN],
        }
    }
}

impl ReplyBuffer {
    /// Where the payload goes: [`MAX_PAYLOAD`] bytes.
    pub fn body(&mut self) -> &mut [u8] {
        &mut self.bytes[RESPONSE_HEADER_LEN..]
    }

    /// The whole reply: a header for `result` and `extra`, then the first
    /// `body_len` bytes of the body.
    ///
    /// # Panics
    ///
    /// If `body_len` is over [`MAX_PAYLOAD`].
    pub fn finish(
        &mut self,
        result: syscall::error::Result<usize>,
        extra: u8,
        body_len: usize,
    ) -> &[u8] {
        let mut header = ResponseHeader::reply(result);
        header.extra = extra;
        self.bytes[..RESPONSE_HEADER_LEN].copy_from_slice(&header.encode());
        &self.bytes[..RESPONSE_HEADER_LEN + body_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use syscall::error::{Error, ENOENT};

    fn head(opcode: Opcode) -> RequestHead {
        RequestHead {
            header: RequestHeader {
                opcode,
                flags: 0x11,
                offset: 1 << 40,
                len: 77,
            },
            id: 9,
            fcntl_flags: 0x8000_0001,
            caller: Caller {
                pid: 1234,
                uid: 1000,
                gid: 100,
            },
        }
    }

    fn encoded(head: &RequestHead, metadata: &[u64], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0xaa; 3];
        encode_request(head, metadata, payload, &mut out).unwrap();
        out
    }

    #[test]
    fn request_round_trip() {
        let head = head(Opcode::Call);
        let mut message = encoded(&head, &[1, 2], b"payload");
        assert_eq!(
            message.len(),
            CHANNEL_HEADER_LEN + REQUEST_HEADER_LEN + 16 + 7
        );
        let Message::Request(request) = decode_message(&mut message).unwrap() else {
            panic!("not a request");
        };
        assert_eq!(request.head, head);
        assert_eq!(request.metadata.as_slice(), &[1, 2]);
        assert_eq!(request.payload, b"payload");
    }

    #[test]
    fn a_write_carries_a_round_after_it_and_nothing_else_does() {
        let interest = Interest {
            id: 3,
            flags: EventFlags::EVENT_READ,
            caller: head(Opcode::Write).caller,
            read_ahead: 0,
        };
        let mut message = encoded(&head(Opcode::Write), &[], b"frame");
        let alone = message.clone();
        assert!(!carries_round(&message));
        assert_eq!(append_round(&[interest], true, &mut message), Some(1));
        assert!(carries_round(&message));
        assert_eq!(message.len(), alone.len() + ROUND_HEADER_LEN + INTEREST_LEN);
        let Message::Request(request) = decode_message(&mut message).unwrap() else {
            panic!("not a request");
        };
        assert_eq!(request.payload, b"frame");
        let round = request.round.expect("the round after the write");
        assert!(round.line_fired);
        assert_eq!(round.interests.iter().collect::<Vec<_>>(), [interest]);
        assert_eq!(
            append_round(&[interest], false, &mut message),
            None,
            "one round"
        );

        let mut read = encoded(&head(Opcode::Read), &[], &[]);
        assert_eq!(append_round(&[], false, &mut read), None, "a write only");
        // One that would not fit one message goes without.
        let mut largest = encoded(&head(Opcode::Write), &[], &[0; MAX_PAYLOAD]);
        let many = vec![interest; 8];
        assert_eq!(append_round(&many, false, &mut largest), None);
        assert!(!carries_round(&largest));
    }

    #[test]
    fn a_round_after_anything_but_a_write_or_cut_short_is_malformed() {
        let mut read = encoded(&head(Opcode::Read), &[], &[]);
        read[1] = 1;
        let mut round = Vec::new();
        encode_round(&[], false, &mut round);
        read.extend_from_slice(&round);
        assert_eq!(
            decode_message(&mut read),
            Err(Malformed::RoundAfter(Opcode::Read))
        );
        let mut write = encoded(&head(Opcode::Write), &[], b"frame");
        let mut flagged = write.clone();
        flagged[1] = 2;
        assert_eq!(
            decode_message(&mut flagged),
            Err(Malformed::ReservedNotZero)
        );
        write[1] = 1;
        assert_eq!(
            decode_message(&mut write.clone()),
            Err(Malformed::RoundLength(0)),
            "the flag without a round"
        );
        write.push(KIND_REQUEST);
        assert_eq!(
            decode_message(&mut write),
            Err(Malformed::UnknownKind(KIND_REQUEST))
        );
    }

    #[test]
    fn round_lists_interests_and_its_answers_come_back_in_order() {
        let interests = [
            Interest {
                id: 7,
                flags: EventFlags::EVENT_READ,
                caller: Caller {
                    pid: 41,
                    uid: 1000,
                    gid: 100,
                },
                read_ahead: 0,
            },
            Interest {
                id: usize::MAX,
                flags: EventFlags::EVENT_READ | EventFlags::EVENT_WRITE,
                caller: Caller {
                    pid: 0,
                    uid: u32::MAX,
                    gid: 0,
                },
                read_ahead: 0,
            },
        ];
        let mut out = vec![1, 2, 3];
        assert_eq!(encode_round(&interests, false, &mut out), 2);
        assert!(is_round(&out));
        assert_eq!(out[1], 0, "the line did not fire");
        let Message::Round(decoded) = decode_message(&mut out).unwrap() else {
            panic!("not a round");
        };
        assert!(!decoded.line_fired);
        assert_eq!(decoded.interests.len(), 2);
        assert_eq!(decoded.interests.iter().collect::<Vec<_>>(), interests);

        assert_eq!(encode_round(&[], true, &mut out), 0);
        assert_eq!(out, [2, 1, 0, 0, 0, 0, 0, 0]);
        let Message::Round(fired) = decode_message(&mut out).unwrap() else {
            panic!("not a round");
        };
        assert!(fired.line_fired);
        assert!(fired.interests.is_empty());
        out[1] = 2;
        assert!(matches!(
            decode_message(&mut out),
            Err(Malformed::ReservedNotZero)
        ));

        let many = vec![interests[0]; MAX_ROUND_INTERESTS + 5];
        assert_eq!(encode_round(&many, false, &mut out), MAX_ROUND_INTERESTS);
        assert!(decode_message(&mut out).is_ok());

        let mut body = [0u8; 24];
        let answers = [
            Ok(EventFlags::EVENT_READ),
            Err(syscall::error::Error::new(syscall::error::EBADF)),
            Ok(EventFlags::empty()),
        ];
        let len = encode_round_answers(answers.iter().copied(), &mut body);
        assert_eq!(len, 24);
        assert_eq!(decode_round_answers(&body).collect::<Vec<_>>(), answers);
    }

    #[test]
    fn a_rounds_reply_carries_the_daemons_wait_after_its_answers() {
        let mut body = [0u8; 64];
        let len = encode_round_answers([Ok(EventFlags::EVENT_READ)].into_iter(), &mut body);
        let wait = RoundWait {
            within: Some(Duration::from_micros(100)),
            acknowledge: true,
        };
        let len = len + wait.encode(&mut body[len..]);
        assert_eq!(len, 8 + 16);
        assert_eq!(
            &body[8..24],
            &[100, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        let (answers, decoded, _) = decode_round_reply(&body[..len], 1).unwrap();
        assert_eq!(answers.len(), 8);
        assert_eq!(decoded, wait);
        // No wish; a wish under a microsecond is one for a round at once.
        let len = RoundWait::default().encode(&mut body);
        assert_eq!(
            decode_round_reply(&body[..len], 0).unwrap().1,
            RoundWait::default()
        );
        let soon = RoundWait {
            within: Some(Duration::from_nanos(10)),
            acknowledge: false,
        };
        let len = soon.encode(&mut body);
        let within = decode_round_reply(&body[..len], 0).unwrap().1.within;
        assert_eq!(within, Some(Duration::from_micros(1)));
    }

    #[test]
    fn a_rounds_reply_too_short_or_with_a_bad_flag_is_malformed() {
        let body = [0u8; 64];
        for (len, answers) in [(0, 0), (8, 1), (15, 0), (16, 1), (23, 1), (16, usize::MAX)] {
            assert_eq!(
                decode_round_reply(&body[..len], answers),
                Err(Malformed::RoundReplyLength { len, answers }),
                "{len} bytes, {answers} answers"
            );
        }
        assert!(decode_round_reply(&body[..24], 1).is_ok());
        // What follows the wait is the reads made ahead.
        let (_, _, section) = decode_round_reply(&body[..40], 1).unwrap();
        assert_eq!(section.len(), 16);
        let mut flagged = [0u8; 16];
        flagged[8] = 2;
        assert_eq!(
            decode_round_reply(&flagged, 0),
            Err(Malformed::ReservedNotZero)
        );
    }

    #[test]
    fn reads_made_ahead_come_back_in_order_and_a_record_cut_short_is_malformed() {
        let mut section = vec![0u8; 64];
        section[16..21].copy_from_slice(b"frame");
        let first = encode_read_ahead_header(7, 5, &mut section);
        section[first + 16..first + 18].copy_from_slice(b"ok");
        let second = encode_read_ahead_header(usize::MAX, 2, &mut section[first..]);
        section.truncate(first + second);
        let records: Vec<_> = read_aheads(&section).collect();
        assert_eq!(
            records,
            [
                Ok(ReadAhead {
                    id: 7,
                    data: b"frame"
                }),
                Ok(ReadAhead {
                    id: usize::MAX,
                    data: b"ok"
                })
            ]
        );
        let cut = &section[..section.len() - 1];
        assert_eq!(
            read_aheads(cut).last(),
            Some(Err(Malformed::ReadAheadCutShort { at: first }))
        );
        assert_eq!(
            read_aheads(&section[..10]).collect::<Vec<_>>(),
            [Err(Malformed::ReadAheadCutShort { at: 0 })]
        );
        let mut reserved = section.clone();
        reserved[12] = 1;
        assert_eq!(
            read_aheads(&reserved).next(),
            Some(Err(Malformed::ReservedNotZero))
        );
        assert_eq!(read_aheads(&[]).count(), 0);
    }

    #[test]
    fn an_interest_carries_how_much_to_read_ahead_beside_its_flags() {
        let interest = Interest {
            id: 9,
            flags: EventFlags::EVENT_READ | EventFlags::EVENT_WRITE,
            caller: Caller {
                pid: 3,
                uid: 4,
                gid: 5,
            },
            read_ahead: 49_000,
        };
        let mut round = Vec::new();
        encode_round(&[interest], false, &mut round);
        let Ok(Message::Round(decoded)) = decode_message(&mut round) else {
            panic!("a round");
        };
        assert_eq!(decoded.interests.iter().collect::<Vec<_>>(), [interest]);
    }

    #[test]
    fn a_requests_method_is_told_without_decoding_it() {
        let message = encoded(&head(Opcode::Write), &[], b"data");
        assert_eq!(request_opcode(&message), Some(Opcode::Write));
        let mut round = Vec::new();
        encode_round(&[], false, &mut round);
        assert_eq!(request_opcode(&round), None);
        assert_eq!(request_opcode(&message[..CHANNEL_HEADER_LEN]), None);
    }

    #[test]
    fn malformed_rounds() {
        assert_eq!(
            decode_message(&mut [KIND_ROUND]),
            Err(Malformed::RoundLength(1))
        );
        let mut out = Vec::new();
        encode_round(&[], false, &mut out);
        let mut reserved = out.clone();
        reserved[4] = 1;
        assert_eq!(
            decode_message(&mut reserved),
            Err(Malformed::ReservedNotZero)
        );
        let mut partial = out.clone();
        partial.extend_from_slice(&[0; INTEREST_LEN - 1]);
        assert_eq!(
            decode_message(&mut partial),
            Err(Malformed::RoundLength(ROUND_HEADER_LEN + INTEREST_LEN - 1))
        );
        let mut too_many = out;
        let len = ROUND_HEADER_LEN + (MAX_ROUND_INTERESTS + 1) * INTEREST_LEN;
        too_many.resize(len, 0);
        assert_eq!(
            decode_message(&mut too_many),
            Err(Malformed::RoundLength(len))
        );
    }

    #[test]
    fn a_fired_round_carries_the_cause_answer_after_its_interests_and_no_other_message_does() {
        let interest = Interest {
            id: 3,
            flags: EventFlags::EVENT_READ,
            caller: Caller {
                pid: 1,
                uid: 2,
                gid: 3,
            },
            read_ahead: 0,
        };
        let mut fired = Vec::new();
        encode_round(&[interest], true, &mut fired);
        assert!(tells_line_fired(&fired));
        assert!(attach_cause(&mut fired, b"ICR=0x80"));
        assert!(!attach_cause(&mut fired, b"again"), "one answer per round");
        let Ok(Message::Round(round)) = decode_message(&mut fired) else {
            panic!("a round")
        };
        assert!(round.line_fired);
        assert_eq!(round.interests.iter().collect::<Vec<_>>(), [interest]);
        assert_eq!(round.cause, b"ICR=0x80");

        let mut quiet = Vec::new();
        encode_round(&[interest], false, &mut quiet);
        let before = quiet.clone();
        assert!(!tells_line_fired(&quiet));
        assert!(!attach_cause(&mut quiet, b"ICR"), "the line did not fire");
        assert!(!attach_cause(&mut fired.clone(), &[]));
        assert!(!attach_cause(
            &mut {
                let mut plain = Vec::new();
                encode_round(&[], true, &mut plain);
                plain
            },
            &[0; MAX_CAUSE_LEN + 1]
        ));
        assert_eq!(quiet, before);
        let Ok(Message::Round(round)) = decode_message(&mut quiet) else {
            panic!("a round")
        };
        assert!(round.cause.is_empty());

        // An answer on a round whose line did not fire, or longer than the
        // message, is malformed.
        quiet[2] = 1;
        assert!(matches!(
            decode_message(&mut quiet),
            Err(Malformed::RoundLength(_))
        ));
        let mut short = Vec::new();
        encode_round(&[], true, &mut short);
        short[2] = 9;
        short.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode_message(&mut short),
            Err(Malformed::RoundLength(_))
        ));
    }

    #[test]
    fn a_hello_names_its_cause_read_only_with_a_line_and_a_request() {
        let mut out = Vec::new();
        let hello = Hello {
            tick: None,
            name: "e1000".into(),
            line: Some("/scheme/mmio/pci/0000:00:03.0/irq".into()),
            cause_read: Some(CauseRead {
                fd: 9,
                request: b"read ICR\0with a zero".to_vec(),
            }),
        };
        hello.encode(&mut out).unwrap();
        assert_eq!(Hello::decode(&out), Ok(hello.clone()));
        let lineless = Hello {
            line: None,
            ..hello.clone()
        };
        assert_eq!(lineless.encode(&mut out), Err(Malformed::CauseRead(20)));
        let empty = Hello {
            cause_read: Some(CauseRead {
                fd: 9,
                request: Vec::new(),
            }),
            ..hello.clone()
        };
        assert_eq!(empty.encode(&mut out), Err(Malformed::CauseRead(0)));
        let long = Hello {
            cause_read: Some(CauseRead {
                fd: 9,
                request: vec![1; MAX_CAUSE_LEN + 1],
            }),
            ..hello
        };
        assert_eq!(
            long.encode(&mut out),
            Err(Malformed::CauseRead(MAX_CAUSE_LEN + 1))
        );
        // A descriptor cut short.
        let mut cut = HELLO_MAGIC.to_vec();
        cut.extend_from_slice(&[0; 8]);
        cut.extend_from_slice(b"e1000\0/irq\0\x01\x02");
        assert_eq!(Hello::decode(&cut), Err(Malformed::CauseRead(0)));
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(
            decode_message(&mut []),
            Err(Malformed::TooShort { len: 0, need: 1 })
        );
        assert_eq!(decode_message(&mut [7]), Err(Malformed::UnknownKind(7)));
        let good = encoded(&head(Opcode::Write), &[], b"data");
        assert_eq!(
            decode_message(&mut good[..20].to_vec()),
            Err(Malformed::TooShort {
                len: 20,
                need: CHANNEL_HEADER_LEN
            })
        );
        let mut reserved = good.clone();
        reserved[2] = 1;
        assert_eq!(
            decode_message(&mut reserved),
            Err(Malformed::ReservedNotZero)
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            decode_message(&mut longer),
            Err(Malformed::Request(MalformedRequest::LengthMismatch {
                declared: 4,
                actual: 5
            }))
        );
        let mut opcode = good;
        opcode[CHANNEL_HEADER_LEN] = 0;
        assert_eq!(
            decode_message(&mut opcode),
            Err(Malformed::Request(MalformedRequest::UnknownOpcode(0)))
        );
    }

    #[test]
    fn encoding_refuses_what_a_replica_would() {
        let mut out = Vec::new();
        assert_eq!(
            encode_request(&head(Opcode::Call), &[0; MAX_METADATA + 1], &[], &mut out),
            Err(MalformedRequest::TooMuchMetadata(MAX_METADATA + 1))
        );
        assert_eq!(
            encode_request(
                &head(Opcode::Write),
                &[],
                &vec![0; MAX_PAYLOAD + 1],
                &mut out
            ),
            Err(MalformedRequest::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
        let largest = encoded(
            &head(Opcode::Call),
            &[0; MAX_METADATA],
            &vec![0; MAX_PAYLOAD],
        );
        assert_eq!(largest.len(), MAX_MESSAGE_LEN);
    }

    #[test]
    fn reply_round_trip_and_limits() {
        let mut buffer = ReplyBuffer::default();
        buffer.body()[..3].copy_from_slice(b"abc");
        let bytes = buffer.finish(Ok(12), 1, 3).to_vec();
        let reply = decode_reply(&bytes).unwrap();
        assert_eq!(reply.header.result(), Ok(12));
        assert_eq!((reply.header.extra, reply.payload), (1, &b"abc"[..]));

        let failed = buffer.finish(Err(Error::new(ENOENT)), 0, 0).to_vec();
        assert_eq!(
            decode_reply(&failed).unwrap().header.result(),
            Err(Error::new(ENOENT))
        );

        assert_eq!(buffer.finish(Ok(0), 0, MAX_PAYLOAD).len(), MAX_REPLY_LEN);
        let mut too_large = buffer.finish(Ok(0), 0, MAX_PAYLOAD).to_vec();
        too_large.push(0);
        assert_eq!(
            decode_reply(&too_large),
            Err(Malformed::ReplyTooLarge(MAX_PAYLOAD + 1))
        );
        let mut event = failed.clone();
        event[0] = ResponseKind::Event as u8;
        assert_eq!(decode_reply(&event), Err(Malformed::NotAReply));
        assert_eq!(
            decode_reply(&failed[..15]),
            Err(Malformed::TooShort { len: 15, need: 16 })
        );
    }

    #[test]
    fn hello_round_trip_and_errors() {
        let mut out = Vec::new();
        for tick in [None, Some(Duration::from_millis(5))] {
            for line in [None, Some("/scheme/mmio/pci/0000:00:03.0/irq".to_owned())] {
                let hello = Hello {
                    tick,
                    name: "e1000".into(),
                    line,
                    cause_read: None,
                };
                hello.encode(&mut out).unwrap();
                assert_eq!(Hello::decode(&out), Ok(hello));
            }
        }
        assert!(out.ends_with(b"e1000\0/scheme/mmio/pci/0000:00:03.0/irq"));
        for bad in ["", "a\0b"] {
            let hello = Hello {
                tick: None,
                name: "e1000".into(),
                line: Some(bad.into()),
                cause_read: None,
            };
            assert_eq!(hello.encode(&mut out), Err(Malformed::LinePath(bad.len())));
        }
        let mut lineless = b"REPLICA1\0\0\0\0\0\0\0\0e1000\0".to_vec();
        assert_eq!(Hello::decode(&lineless), Err(Malformed::LinePath(0)));
        lineless.push(0xff);
        assert_eq!(Hello::decode(&lineless), Err(Malformed::LinePath(1)));
        let tiny = Hello {
            tick: Some(Duration::from_nanos(1)),
            name: "x".into(),
            line: None,
            cause_read: None,
        };
        tiny.encode(&mut out).unwrap();
        assert_eq!(
            Hello::decode(&out).unwrap().tick,
            Some(Duration::from_micros(1)),
            "a tick under a microsecond is not lost"
        );

        let nameless = Hello {
            tick: None,
            name: String::new(),
            line: None,
            cause_read: None,
        };
        assert_eq!(nameless.encode(&mut out), Err(Malformed::NameLength(0)));
        let long = Hello {
            tick: None,
            name: "n".repeat(MAX_NAME_LEN + 1),
            line: None,
            cause_read: None,
        };
        assert_eq!(
            long.encode(&mut out),
            Err(Malformed::NameLength(MAX_NAME_LEN + 1))
        );

        let mut reply = ReplyBuffer::default();
        assert_eq!(
            Hello::decode(reply.finish(Ok(0), 0, 4)),
            Err(Malformed::NotAHello)
        );
        let mut bad_utf8 = HELLO_MAGIC.to_vec();
        bad_utf8.extend_from_slice(&[0; 8]);
        bad_utf8.push(0xff);
        assert_eq!(Hello::decode(&bad_utf8), Err(Malformed::NameNotUtf8));
        assert_eq!(
            Hello::decode(&bad_utf8[..10]),
            Err(Malformed::TooShort { len: 10, need: 16 })
        );
    }

    proptest! {
        #[test]
        fn decoding_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_reply(&bytes);
            let _ = Hello::decode(&bytes);
            let _ = decode_message(&mut bytes);
        }

        #[test]
        fn decoding_never_panics_on_requests_with_a_valid_start(
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            // Random bytes rarely get past the kind byte; these always do.
            let mut bytes = vec![KIND_REQUEST, 0, 0, 0];
            bytes.extend_from_slice(&tail);
            let _ = decode_message(&mut bytes);
        }

        #[test]
        fn decode_inverts_encode(
            op in 1u8..=9, flags: u64, offset: u64, len: u64, id: usize, fcntl_flags: u32,
            pid: usize, uid: u32, gid: u32,
            metadata in proptest::collection::vec(any::<u64>(), 0..=MAX_METADATA),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let head = RequestHead {
                header: RequestHeader { opcode: Opcode::from_raw(op).unwrap(), flags, offset, len },
                id,
                fcntl_flags,
                caller: Caller { pid, uid, gid },
            };
            let mut message = encoded(&head, &metadata, &payload);
            let Ok(Message::Request(request)) = decode_message(&mut message) else {
                panic!("not decoded as a request");
            };
            prop_assert_eq!(request.head, head);
            prop_assert_eq!(request.metadata.as_slice(), &metadata[..]);
            prop_assert_eq!(&request.payload[..], &payload[..]);
        }

        #[test]
        fn hello_decode_inverts_encode(micros in 0u64.., name in "[a-z0-9._-]{1,40}") {
            let hello = Hello { tick: (micros != 0).then(|| Duration::from_micros(micros)), name, line: None, cause_read: None };
            let mut out = Vec::new();
            hello.encode(&mut out).unwrap();
            prop_assert_eq!(Hello::decode(&out), Ok(hello));
        }

        #[test]
        fn reply_decode_inverts_encode(
            result in prop_oneof![
                (0..=i64::MAX as usize).prop_map(Ok),
                (1..=i32::MAX).prop_map(|errno| Err(Error::new(errno))),
            ],
            extra: u8,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut buffer = ReplyBuffer::default();
            buffer.body()[..payload.len()].copy_from_slice(&payload);
            let reply = decode_reply(buffer.finish(result, extra, payload.len())).unwrap();
            prop_assert_eq!(reply.header.result(), result);
            prop_assert_eq!(reply.header.extra, extra);
            prop_assert_eq!(reply.payload, &payload[..]);
        }
    }
}
