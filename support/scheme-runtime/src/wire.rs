//! Host transport messages.
//!
//! The replica channel ([`crate::replicated::codec`]) carries the same requests
//! and reply headers, so the limits and layouts here hold for it too.
//!
//! Every open handle is one `SOCK_SEQPACKET` connection to the scheme's socket, so
//! message boundaries come from the socket and requests on a handle are sequential,
//! as system calls on one file descriptor are. One message is one request or one
//! response; all integers are little-endian.
//!
//! Request: a 32-byte header, `metadata_count` u64 words, then the payload.
//!
//! | bytes  | field          | meaning                                             |
//! |--------|----------------|-----------------------------------------------------|
//! | 0      | opcode         | [`Opcode`]                                          |
//! | 1      | metadata_count | u64 words after the header, at most [`MAX_METADATA`]|
//! | 2..4   | reserved       | zero                                                |
//! | 4..8   | payload_len    | bytes after the metadata, at most [`MAX_PAYLOAD`]   |
//! | 8..16  | flags          | open flags, fcntl flags, event flags or map flags   |
//! | 16..24 | offset         | file offset (read, write, mmap)                     |
//! | 24..32 | len            | bytes wanted (read, fpath, mmap)                    |
//!
//! Response: a 16-byte header, then the payload (data read, the path, the `Stat`,
//! the call payload as the scheme left it). A map reply carries one file descriptor
//! (`SCM_RIGHTS`).
//!
//! | bytes | field  | meaning                                                      |
//! |-------|--------|--------------------------------------------------------------|
//! | 0     | kind   | [`ResponseKind`]: a reply, or an unsolicited readiness event |
//! | 1     | extra  | open reply: the `NewFdFlags` bits                            |
//! | 2..8  | zero   |                                                              |
//! | 8..16 | status | reply: result >= 0 or -errno; event: the ready event flags   |

use std::fmt;

/// Largest payload of one request or response (a write, a call, a read).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most metadata words a `call` may carry.
pub const MAX_METADATA: usize = 8;
pub const REQUEST_HEADER_LEN: usize = 32;
pub const RESPONSE_HEADER_LEN: usize = 16;
/// Largest well-formed request message.
pub const MAX_REQUEST_LEN: usize = REQUEST_HEADER_LEN + MAX_METADATA * 8 + MAX_PAYLOAD;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    Open = 1,
    Read = 2,
    Write = 3,
    Call = 4,
    Fstat = 5,
    Fpath = 6,
    Fevent = 7,
    Close = 8,
    Mmap = 9,
}

impl Opcode {
    pub(crate) fn from_raw(raw: u8) -> Option<Self> {
        Some(match raw {
            1 => Self::Open,
            2 => Self::Read,
            3 => Self::Write,
            4 => Self::Call,
            5 => Self::Fstat,
            6 => Self::Fpath,
            7 => Self::Fevent,
            8 => Self::Close,
            9 => Self::Mmap,
            _ => return None,
        })
    }
}

/// The fixed part of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub opcode: Opcode,
    pub flags: u64,
    pub offset: u64,
    pub len: u64,
}

/// The metadata words of a `call`, held inline: decoding allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    words: [u64; MAX_METADATA],
    count: usize,
}

impl Metadata {
    pub fn as_slice(&self) -> &[u64] {
        &self.words[..self.count]
    }
}

/// A decoded request, borrowing the received message.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub header: RequestHeader,
    pub metadata: Metadata,
    /// Mutable because a `call` payload is in-out: the scheme edits it in place.
    pub payload: &'a mut [u8],
}

/// Why a message is not a well-formed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedRequest {
    TooShort { len: usize },
    UnknownOpcode(u8),
    ReservedNotZero,
    TooMuchMetadata(usize),
    PayloadTooLarge(usize),
    LengthMismatch { declared: usize, actual: usize },
}

impl fmt::Display for MalformedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len } => write!(f, "{len} bytes is shorter than a request header"),
            Self::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            Self::ReservedNotZero => f.write_str("reserved header bytes are not zero"),
            Self::TooMuchMetadata(n) => write!(f, "{n} metadata words (at most {MAX_METADATA})"),
            Self::PayloadTooLarge(n) => write!(f, "payload of {n} bytes (at most {MAX_PAYLOAD})"),
            Self::LengthMismatch { declared, actual } => {
                write!(
                    f,
                    "header declares {declared} payload bytes, message has {actual}"
                )
            }
        }
    }
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes one request message in place. Never panics, whatever the bytes.
pub fn decode_request(message: &mut [u8]) -> Result<Request<'_>, MalformedRequest> {
    if message.len() < REQUEST_HEADER_LEN {
        return Err(MalformedRequest::TooShort { len: message.len() });
    }
    let opcode = Opcode::from_raw(message[0]).ok_or(MalformedRequest::UnknownOpcode(message[0]))?;
    let metadata_count = usize::from(message[1]);
    if message[2] != 0 || message[3] != 0 {
        return Err(MalformedRequest::ReservedNotZero);
    }
    if metadata_count > MAX_METADATA {
        return Err(MalformedRequest::TooMuchMetadata(metadata_count));
    }
    let declared = u32::from_le_bytes(message[4..8].try_into().expect("4 bytes")) as usize;
    if declared > MAX_PAYLOAD {
        return Err(MalformedRequest::PayloadTooLarge(declared));
    }
    let payload_start = REQUEST_HEADER_LEN + metadata_count * 8;
    let actual = message.len().saturating_sub(payload_start);
    if message.len() < payload_start || actual != declared {
        return Err(MalformedRequest::LengthMismatch { declared, actual });
    }
    let header = RequestHeader {
        opcode,
        flags: u64_at(message, 8),
        offset: u64_at(message, 16),
        len: u64_at(message, 24),
    };
    let mut words = [0u64; MAX_METADATA];
    for (i, word) in words.iter_mut().take(metadata_count).enumerate() {
        *word = u64_at(message, REQUEST_HEADER_LEN + i * 8);
    }
    Ok(Request {
        header,
        metadata: Metadata {
            words,
            count: metadata_count,
        },
        payload: &mut message[payload_start..],
    })
}

/// Encodes the header and metadata of a request; the payload travels in a second
/// iovec so it is never copied. The caller has checked the limits.
pub fn encode_request_head(
    header: &RequestHeader,
    metadata: &[u64],
    payload_len: usize,
    out: &mut [u8; REQUEST_HEADER_LEN + MAX_METADATA * 8],
) -> usize {
    debug_assert!(metadata.len() <= MAX_METADATA && payload_len <= MAX_PAYLOAD);
    out[0] = header.opcode as u8;
    out[1] = metadata.len() as u8;
    out[2..4].fill(0);
    out[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[8..16].copy_from_slice(&header.flags.to_le_bytes());
    out[16..24].copy_from_slice(&header.offset.to_le_bytes());
    out[24..32].copy_from_slice(&header.len.to_le_bytes());
    for (i, word) in metadata.iter().enumerate() {
        let at = REQUEST_HEADER_LEN + i * 8;
        out[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
    REQUEST_HEADER_LEN + metadata.len() * 8
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ResponseKind {
    Reply = 0,
    Event = 1,
}

/// The fixed part of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    pub kind: ResponseKind,
    pub extra: u8,
    pub status: i64,
}

impl ResponseHeader {
    /// A reply carrying a scheme's result.
    pub fn reply(result: syscall::error::Result<usize>) -> Self {
        let status = match result {
            Ok(value) => value as i64,
            Err(error) => -i64::from(error.errno),
        };
        Self {
            kind: ResponseKind::Reply,
            extra: 0,
            status,
        }
    }

    /// The result a reply carries.
    pub fn result(&self) -> syscall::error::Result<usize> {
        if self.status < 0 {
            let errno = i32::try_from(-self.status).unwrap_or(syscall::error::EPROTO);
            Err(syscall::error::Error::new(errno))
        } else {
            Ok(self.status as usize)
        }
    }

    pub fn encode(&self) -> [u8; RESPONSE_HEADER_LEN] {
        let mut out = [0u8; RESPONSE_HEADER_LEN];
        out[0] = self.kind as u8;
        out[1] = self.extra;
        out[8..16].copy_from_slice(&self.status.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; RESPONSE_HEADER_LEN]) -> Option<Self> {
        let kind = match bytes[0] {
            0 => ResponseKind::Reply,
            1 => ResponseKind::Event,
            _ => return None,
        };
        Some(Self {
            kind,
            extra: bytes[1],
            status: u64_at(bytes, 8) as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use syscall::error::{Error, EACCES};

    fn encode(header: &RequestHeader, metadata: &[u64], payload: &[u8]) -> Vec<u8> {
        let mut head = [0u8; REQUEST_HEADER_LEN + MAX_METADATA * 8];
        let n = encode_request_head(header, metadata, payload.len(), &mut head);
        let mut message = head[..n].to_vec();
        message.extend_from_slice(payload);
        message
    }

    #[test]
    fn request_round_trip() {
        let header = RequestHeader {
            opcode: Opcode::Call,
            flags: 7,
            offset: 1 << 40,
            len: 3,
        };
        let mut message = encode(&header, &[1, 2, 3], b"payload");
        let request = decode_request(&mut message).unwrap();
        assert_eq!(request.header, header);
        assert_eq!(request.metadata.as_slice(), &[1, 2, 3]);
        assert_eq!(request.payload, b"payload");
    }

    #[test]
    fn malformed_requests() {
        let header = RequestHeader {
            opcode: Opcode::Read,
            flags: 0,
            offset: 0,
            len: 0,
        };
        let good = encode(&header, &[], b"abc");

        assert_eq!(
            decode_request(&mut good[..10].to_vec()),
            Err(MalformedRequest::TooShort { len: 10 })
        );
        let mut m = good.clone();
        m[0] = 200;
        assert_eq!(
            decode_request(&mut m),
            Err(MalformedRequest::UnknownOpcode(200))
        );
        let mut m = good.clone();
        m[3] = 1;
        assert_eq!(
            decode_request(&mut m),
            Err(MalformedRequest::ReservedNotZero)
        );
        let mut m = good.clone();
        m[1] = 9;
        assert_eq!(
            decode_request(&mut m),
            Err(MalformedRequest::TooMuchMetadata(9))
        );
        let mut m = good.clone();
        m[4..8].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert_eq!(
            decode_request(&mut m),
            Err(MalformedRequest::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
        let mut m = good.clone();
        m.push(0);
        assert_eq!(
            decode_request(&mut m),
            Err(MalformedRequest::LengthMismatch {
                declared: 3,
                actual: 4
            })
        );
        // Metadata announced but cut off.
        let mut m = good[..REQUEST_HEADER_LEN].to_vec();
        m[1] = 2;
        m[4..8].fill(0);
        assert_eq!(
            decode_request(&mut m),
            Err(MalformedRequest::LengthMismatch {
                declared: 0,
                actual: 0
            })
        );
    }

    #[test]
    fn response_round_trip() {
        for result in [Ok(0), Ok(12345), Err(Error::new(EACCES))] {
            let header = ResponseHeader::reply(result);
            let decoded = ResponseHeader::decode(&header.encode()).unwrap();
            assert_eq!(decoded, header);
            assert_eq!(decoded.result(), result);
        }
        let mut bad = ResponseHeader::reply(Ok(1)).encode();
        bad[0] = 9;
        assert_eq!(ResponseHeader::decode(&bad), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_request(&mut bytes);
        }

        #[test]
        fn decode_inverts_encode(
            op in 1u8..=9, flags: u64, offset: u64, len: u64,
            metadata in proptest::collection::vec(any::<u64>(), 0..=MAX_METADATA),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let header = RequestHeader { opcode: Opcode::from_raw(op).unwrap(), flags, offset, len };
            let mut message = encode(&header, &metadata, &payload);
            let request = decode_request(&mut message).unwrap();
            prop_assert_eq!(request.header, header);
            prop_assert_eq!(request.metadata.as_slice(), &metadata[..]);
            prop_assert_eq!(&request.payload[..], &payload[..]);
        }
    }
}
