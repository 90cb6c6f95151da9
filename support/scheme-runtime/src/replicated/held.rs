//! Held calls: scheme calls whose answer the caller does not wait for, which a
//! replica hands to its supervisor with its next reply instead of making each
//! one at once.
//!
//! A driver ends a round with writes that only go out (a ring's tail
//! register). Under a supervisor that intercepts, a call made at once is an
//! event: every replica stops, their calls are compared and one is made. Held
//! (`Handle::call_held`), the call waits in this process's outbox and travels
//! in the reply that ends the message, is voted with that reply, and the
//! supervisor makes the held calls in the order they were held before the reply
//! goes out: one meeting for the reply and all the writes before it. What the
//! replicas disagree on never leaves; what a majority held leaves once, in
//! order.
//!
//! The order the devices see is the order the driver made its calls: any other
//! request, on any handle, first makes the held calls at once
//! ([`take_all`], called by the host `Handle` before every request and when a
//! handle closes). A held call is made with the driver's shared memory as it
//! is when the reply goes out, so a driver holds only calls whose meaning does
//! not depend on memory it writes after them (a tail register, written once
//! the descriptors before it are). Its answer is lost: a failure shows in the
//! log. Events its scheme posts meanwhile do not reach the handle, so a driver
//! holds calls only on handles that wait for no events (a register window).
//!
//! Holding is on only in a replica whose channel the supervisor intercepts
//! (`serve_replica` turns it on after the first exchange); anywhere else a held
//! call is made at once.
//!
//! # Wire format
//!
//! A reply with held calls says so in its response header: bytes 4..8 (reserved
//! and zero on the host transport) hold the length of the held-calls section,
//! little-endian, which follows the reply's payload and is at most
//! [`MAX_HELD_LEN`] bytes. The section is records back to back:
//!
//! | bytes      | field   | meaning                                                   |
//! |------------|---------|-----------------------------------------------------------|
//! | 0..4       | fd      | the replica's descriptor of the connection, little-endian |
//! | 4..8       | len     | `n`, the request's length, little-endian                  |
//! | 8..8 + n   | request | the request as the connection carries it ([`crate::wire`]) |
//!
//! The supervisor takes the section off ([`split_held`]) before the reply goes
//! on to the daemon it serves, which never sees it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::codec::HELLO_MAGIC;
use crate::wire::RESPONSE_HEADER_LEN;

/// The most bytes of held calls one reply carries; a call that would not fit
/// makes the held ones at once first.
pub const MAX_HELD_LEN: usize = 16 * 1024;
/// A record's fields before its request.
const RECORD_HEADER_LEN: usize = 8;
/// Where a reply's header says how long its held-calls section is.
const HELD_LEN_AT: usize = 4;
const _: () = assert!(HELD_LEN_AT + 4 <= RESPONSE_HEADER_LEN);

/// One held call, borrowing its section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldCall<'a> {
    /// The replica's descriptor of the connection the call is made on.
    pub fd: u32,
    pub request: &'a [u8],
}

/// Why bytes are not a well-formed held-calls section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedHeld {
    /// The header claims a section longer than the reply or than
    /// [`MAX_HELD_LEN`].
    SectionLength { claimed: usize, available: usize },
    /// A record runs past the end of the section.
    RecordCutShort { at: usize },
}

impl fmt::Display for MalformedHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::SectionLength { claimed, available } => write!(
                f,
                "a held-calls section of {claimed} bytes where {available} follow the header \
                 (at most {MAX_HELD_LEN})"
            ),
            Self::RecordCutShort { at } => {
                write!(f, "the held call at byte {at} runs past the section")
            }
        }
    }
}

/// Appends the record of a call on `fd` to `section`.
pub fn encode_record(fd: u32, request: &[u8], section: &mut Vec<u8>) {
    section.extend_from_slice(&fd.to_le_bytes());
    section.extend_from_slice(&(request.len() as u32).to_le_bytes());
    section.extend_from_slice(request);
}

/// The calls of `section`, in the order they were held; a record cut short
/// ends it.
pub fn records(section: &[u8]) -> impl Iterator<Item = Result<HeldCall<'_>, MalformedHeld>> {
    super::codec::length_prefixed(section, RECORD_HEADER_LEN, 4).map(|record| {
        let (head, request) = record.map_err(|at| MalformedHeld::RecordCutShort { at })?;
        let fd = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        Ok(HeldCall { fd, request })
    })
}

/// Says in the reply's header (`reply`'s first [`RESPONSE_HEADER_LEN`] bytes)
/// that a held-calls section of `len` bytes follows its payload.
///
/// # Panics
/// If `reply` is shorter than a response header: the caller's sizing, not input.
pub fn set_section_len(reply: &mut [u8], len: usize) {
    let len = u32::try_from(len).expect("a held-calls section is at most MAX_HELD_LEN");
    reply[HELD_LEN_AT..HELD_LEN_AT + 4].copy_from_slice(&len.to_le_bytes());
}

/// Takes the held-calls section off the end of `reply` and clears the header's
/// note of it, leaving the reply the daemon expects; returns the section
/// (empty when the reply holds none). A hello holds none, and a reply too
/// short for a header is left as it is, for the reply's own decoding to
/// refuse.
pub fn split_held(reply: &mut Vec<u8>) -> Result<Vec<u8>, MalformedHeld> {
    if reply.starts_with(&HELLO_MAGIC) {
        return Ok(Vec::new());
    }
    let Some(field) = reply.get(HELD_LEN_AT..HELD_LEN_AT + 4) else {
        return Ok(Vec::new());
    };
    let claimed = u32::from_le_bytes(field.try_into().expect("4 bytes")) as usize;
    if claimed == 0 {
        return Ok(Vec::new());
    }
    let available = reply.len().saturating_sub(RESPONSE_HEADER_LEN);
    if claimed > available || claimed > MAX_HELD_LEN {
        return Err(MalformedHeld::SectionLength { claimed, available });
    }
    let section = reply.split_off(reply.len() - claimed);
    set_section_len(reply, 0);
    Ok(section)
}

/// Calls held for the next reply, as a held-calls section.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    section: Vec<u8>,
}

impl Outbox {
    const fn new() -> Self {
        Self {
            section: Vec::new(),
        }
    }

    /// Holds `request` on `fd`; false when the section has no room for it.
    fn hold(&mut self, fd: u32, request: &[u8]) -> bool {
        if self.section.len() + RECORD_HEADER_LEN + request.len() > MAX_HELD_LEN {
            return false;
        }
        encode_record(fd, request, &mut self.section);
        true
    }

    fn is_empty(&self) -> bool {
        self.section.is_empty()
    }

    /// Moves the held calls into `out`, which has room for [`MAX_HELD_LEN`]
    /// bytes, and returns how many bytes they took.
    fn take_into(&mut self, out: &mut [u8]) -> usize {
        let len = self.section.len();
        out[..len].copy_from_slice(&self.section);
        self.section.clear();
        len
    }
}

/// The calls this process holds.
static OUTBOX: Mutex<Outbox> = Mutex::new(Outbox::new());
/// Whether calls may be held: the process is a replica whose channel the
/// supervisor intercepts.
static HOLDING: AtomicBool = AtomicBool::new(false);
/// Whether the outbox holds any call: checked before every request, so kept
/// outside the lock.
static PENDING: AtomicBool = AtomicBool::new(false);

fn outbox() -> std::sync::MutexGuard<'static, Outbox> {
    OUTBOX.lock().unwrap_or_else(PoisonError::into_inner)
}

/// From now on calls may be held: the supervisor takes them with each reply.
pub(crate) fn start_holding() {
    HOLDING.store(true, Ordering::Relaxed);
}

/// Whether a call made now may be held.
pub(crate) fn holding() -> bool {
    HOLDING.load(Ordering::Relaxed)
}

/// Holds `request` on descriptor `fd`; false when it was not held (holding is
/// off, or the outbox has no room for it) and the caller makes it at once,
/// after [`take_all`]'s.
pub(crate) fn hold(fd: u32, request: &[u8]) -> bool {
    if !holding() {
        return false;
    }
    let held = outbox().hold(fd, request);
    if held {
        PENDING.store(true, Ordering::Relaxed);
    }
    held
}

/// Whether any call is held.
pub(crate) fn pending() -> bool {
    PENDING.load(Ordering::Relaxed)
}

/// Takes every held call, as a section, leaving the outbox empty.
pub(crate) fn take_all() -> Vec<u8> {
    let mut outbox = outbox();
    PENDING.store(false, Ordering::Relaxed);
    std::mem::take(&mut outbox.section)
}

/// Moves the held calls into `out`, which has room for [`MAX_HELD_LEN`]
/// bytes, and returns how many bytes they took.
pub(crate) fn take_into(out: &mut [u8]) -> usize {
    if !pending() {
        return 0;
    }
    let mut outbox = outbox();
    PENDING.store(false, Ordering::Relaxed);
    debug_assert!(!outbox.is_empty());
    outbox.take_into(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ResponseHeader;

    #[test]
    fn records_come_back_in_the_order_they_were_encoded() {
        let mut section = Vec::new();
        encode_record(7, b"first", &mut section);
        encode_record(9, b"", &mut section);
        encode_record(7, b"third", &mut section);
        let calls: Vec<_> = records(&section).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            calls,
            [
                HeldCall {
                    fd: 7,
                    request: b"first"
                },
                HeldCall {
                    fd: 9,
                    request: b""
                },
                HeldCall {
                    fd: 7,
                    request: b"third"
                },
            ]
        );
    }

    #[test]
    fn a_record_cut_short_ends_the_section_with_an_error() {
        let mut section = Vec::new();
        encode_record(7, b"whole", &mut section);
        let whole = section.len();
        encode_record(8, b"cut", &mut section);
        section.pop();
        let calls: Vec<_> = records(&section).collect();
        assert_eq!(calls.len(), 2);
        assert!(calls[0].is_ok());
        assert_eq!(calls[1], Err(MalformedHeld::RecordCutShort { at: whole }));
        // A header alone, cut inside its fields.
        assert_eq!(
            records(&[1, 0, 0]).collect::<Vec<_>>(),
            [Err(MalformedHeld::RecordCutShort { at: 0 })]
        );
        // A length that overflows the address space is cut short, not a panic.
        let mut huge = 7u32.to_le_bytes().to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        assert_eq!(
            records(&huge).collect::<Vec<_>>(),
            [Err(MalformedHeld::RecordCutShort { at: 0 })]
        );
    }

    fn reply_with(payload: &[u8], section: &[u8]) -> Vec<u8> {
        let mut reply = ResponseHeader::reply(Ok(3)).encode().to_vec();
        reply.extend_from_slice(payload);
        reply.extend_from_slice(section);
        set_section_len(&mut reply, section.len());
        reply
    }

    #[test]
    fn splitting_gives_back_the_reply_as_the_daemon_expects_it_and_the_section() {
        let mut section = Vec::new();
        encode_record(5, b"tail write", &mut section);
        let mut reply = reply_with(b"answer", &section);
        assert_eq!(split_held(&mut reply), Ok(section));
        let mut plain = ResponseHeader::reply(Ok(3)).encode().to_vec();
        plain.extend_from_slice(b"answer");
        assert_eq!(reply, plain, "the header's note is cleared too");
        assert_eq!(split_held(&mut reply), Ok(Vec::new()), "none left");
    }

    #[test]
    fn a_section_longer_than_the_reply_or_the_limit_is_refused_and_nothing_is_cut() {
        let mut reply = reply_with(b"answer", b"");
        set_section_len(&mut reply, 7);
        let before = reply.clone();
        assert_eq!(
            split_held(&mut reply),
            Err(MalformedHeld::SectionLength {
                claimed: 7,
                available: 6
            })
        );
        assert_eq!(reply, before);
        let mut long = reply_with(&[0; MAX_HELD_LEN + 1], b"");
        set_section_len(&mut long, MAX_HELD_LEN + 1);
        assert!(split_held(&mut long).is_err());
        let mut short = vec![0; 3];
        assert_eq!(split_held(&mut short), Ok(Vec::new()));
        // A hello's magic is no section's length.
        let mut hello = HELLO_MAGIC.to_vec();
        hello.extend_from_slice(&[0; 8]);
        hello.extend_from_slice(b"events");
        let before = hello.clone();
        assert_eq!(split_held(&mut hello), Ok(Vec::new()));
        assert_eq!(hello, before);
    }

    #[test]
    fn nothing_is_held_until_a_supervisor_intercepts_the_channel() {
        // Unit tests never serve a replica under a supervisor.
        assert!(!hold(3, b"request"));
        assert!(!pending());
    }

    #[test]
    fn the_outbox_takes_only_what_fits_and_gives_it_back_in_order() {
        let mut outbox = Outbox::new();
        assert!(outbox.hold(3, b"one"));
        assert!(outbox.hold(4, b"two"));
        let room = MAX_HELD_LEN - (2 * RECORD_HEADER_LEN + 6) - RECORD_HEADER_LEN;
        assert!(!outbox.hold(3, &vec![0; room + 1]), "one byte too many");
        assert!(outbox.hold(3, &vec![0; room]), "exactly full");
        let mut out = vec![0; MAX_HELD_LEN];
        let len = outbox.take_into(&mut out);
        assert_eq!(len, MAX_HELD_LEN);
        let calls: Vec<_> = records(&out[..len]).collect::<Result<_, _>>().unwrap();
        assert_eq!((calls[0].fd, calls[0].request), (3, &b"one"[..]));
        assert_eq!((calls[1].fd, calls[1].request), (4, &b"two"[..]));
        assert_eq!(calls[2].request.len(), room);
        assert!(outbox.is_empty());
        assert_eq!(outbox.take_into(&mut out), 0);
    }
}
