//! The supervisor side: a scheme whose every call the replicas answer.
//!
//! The supervisor serves a [`Forwarder`] like any scheme (with the host server,
//! or on a Redox scheme socket), so clients, parking, readiness and callers'
//! identities are handled once, outside the replicas. Each call becomes one
//! message on the replica channel; how it reaches the replicas and how their
//! replies become one is the [`ReplicaLink`]'s business: a socket to a single
//! replica, or a tracer that intercepts every replica's `read` and `write` and
//! votes.

use std::io;
use std::time::Instant;

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use syscall::error::{Error, Result, EINVAL, EIO, EMSGSIZE, EPROTO};
use syscall::flag::EventFlags;
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use super::codec::{
    decode_reply, decode_round_answers, encode_request, encode_round, Hello, Interest, Reply,
    RequestHead, MAX_MESSAGE_LEN, MAX_REPLY_LEN,
};
use super::pacing::Pacing;
use crate::wire::{MalformedRequest, Opcode, MAX_PAYLOAD};
use crate::{Caller, SchemeDaemon};

/// How messages reach the replicas and their replies come back as one.
///
/// A replica writes its hello before its first read, so the first thing a link
/// does is receive, with nothing to deliver: [`ReplicaLink::receive_hello`].
/// From then on every message has exactly one reply: [`ReplicaLink::exchange`].
pub trait ReplicaLink {
    /// Gives the replicas `message` as their next read and puts their reply,
    /// their next write, in `reply` (replacing what it held).
    fn exchange(&mut self, message: &[u8], reply: &mut Vec<u8>) -> io::Result<()>;

    /// Puts the replicas' first write, their hello, in `reply` (replacing what
    /// it held).
    fn receive_hello(&mut self, reply: &mut Vec<u8>) -> io::Result<()>;

    /// Whether the replicas did more in the last exchange than answer it (a
    /// device access, a call to another scheme): a round that found work is
    /// followed by the next at once rather than paced.
    fn last_exchange_reached_out(&self) -> bool;
}

/// The forwarder's scheme root. Replicas open from their own roots, so it never
/// reaches them.
const ROOT_ID: usize = usize::MAX;

/// A scheme served by replicas behind a [`ReplicaLink`].
///
/// A failing link gives the client `EIO`, a reply that does not decode or does
/// not fit the call `EPROTO`; both are logged. `map_fd` stays unsupported:
/// a replica's descriptors are not the supervisor's to hand out.
pub struct Forwarder<L> {
    channel: Channel<L>,
    /// The scheme's name, for logs.
    name: String,
    /// The handles clients asked `fevent` about, with the flags they want: every
    /// round asks the replicas about them, since the platform re-queries each
    /// after every round and one exchange is far cheaper than one per handle.
    interests: Vec<Interest>,
    pacing: RoundPacing,
}

/// When the replicas run a round.
///
/// The platform asks for a round after every batch of requests and on every
/// tick. Through replicas a round costs as much as several requests, so rounds
/// are [paced](Pacing) by their own cost, except that a write or a call (which
/// may have handed the daemon work for its device, such as a frame to send), or
/// a round that reached out (a driver that polls its device with port accesses
/// does at every round), gets the next round at once. A round the pacing skips
/// answers every
/// readiness question with "not ready": the next round that runs then reports
/// whatever is ready as a new event, so no wake-up is lost, only delayed, and a
/// client that already read sees an extra event, which costs it one read.
#[derive(Default)]
struct RoundPacing {
    pacing: Pacing,
    /// A write or a call came since the last round.
    urgent: bool,
    /// The last round reached out.
    found_work: bool,
}

impl RoundPacing {
    fn due(&self, now: Instant) -> bool {
        self.urgent || self.found_work || self.pacing.due(now)
    }

    fn ran(&mut self, started: Instant, ended: Instant, found_work: bool) {
        self.pacing.ran(started, ended);
        self.urgent = false;
        self.found_work = found_work;
    }
}

/// The link and the buffers every call reuses.
struct Channel<L> {
    link: L,
    message: Vec<u8>,
    reply: Vec<u8>,
    /// What the last round answered about readiness: the replicas' own answers
    /// for as long as no other message has reached them since.
    answered: Vec<(Interest, Result<EventFlags>)>,
}

impl<L: ReplicaLink> Channel<L> {
    fn request(
        &mut self,
        name: &str,
        head: RequestHead,
        metadata: &[u64],
        payload: &[u8],
    ) -> Result<Reply<'_>> {
        encode_request(&head, metadata, payload, &mut self.message).map_err(|refused| {
            Error::new(match refused {
                MalformedRequest::TooMuchMetadata(_) => EINVAL,
                _ => EMSGSIZE,
            })
        })?;
        self.exchange(name)
    }

    /// Runs a round that also asks about `interests` (as many as one round
    /// carries), and keeps the answers for [`Self::answered`].
    fn round(&mut self, name: &str, interests: &[Interest]) -> Result<()> {
        let listed = encode_round(interests, &mut self.message);
        let reply = self.exchange(name)?;
        let count = reply.header.result()?;
        let answers: Vec<Result<EventFlags>> = decode_round_answers(reply.payload).collect();
        if count != listed || answers.len() != listed {
            log::error!(
                "{name}: a round about {listed} handles came back with {count} status and {} answers",
                answers.len()
            );
            return Err(Error::new(EPROTO));
        }
        self.answered = interests[..listed].iter().copied().zip(answers).collect();
        Ok(())
    }

    /// The last round's answer for `id` and `flags`, if no message reached the
    /// replicas since.
    fn answered(&self, id: usize, flags: EventFlags) -> Option<Result<EventFlags>> {
        self.answered
            .iter()
            .find(|(interest, _)| interest.id == id && interest.flags == flags)
            .map(|&(_, answer)| answer)
    }

    /// Sends the message in `self.message` and decodes the reply.
    fn exchange(&mut self, name: &str) -> Result<Reply<'_>> {
        self.answered.clear();
        if let Err(error) = self.link.exchange(&self.message, &mut self.reply) {
            log::error!("{name}: replica link failed: {error}");
            return Err(Error::new(EIO));
        }
        decode_reply(&self.reply).map_err(|malformed| {
            log::error!("{name}: malformed reply from the replicas: {malformed}");
            Error::new(EPROTO)
        })
    }
}

impl<L: ReplicaLink> Forwarder<L> {
    /// The link, for the supervisor to ask how its replicas are doing.
    pub fn link(&self) -> &L {
        &self.channel.link
    }

    /// Takes the replicas' hello from `link`: the forwarder for the scheme they
    /// serve, and the hello (its name and tick are for the supervisor to serve
    /// the scheme with).
    pub fn connect(mut link: L) -> io::Result<(Self, Hello)> {
        let mut reply = Vec::with_capacity(MAX_REPLY_LEN);
        link.receive_hello(&mut reply)?;
        let hello = Hello::decode(&reply).map_err(|malformed| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the replicas' first message is not a hello: {malformed}"),
            )
        })?;
        let forwarder = Self {
            channel: Channel {
                link,
                message: Vec::with_capacity(MAX_MESSAGE_LEN),
                reply,
                answered: Vec::new(),
            },
            name: hello.name.clone(),
            interests: Vec::new(),
            pacing: RoundPacing::default(),
        };
        Ok((forwarder, hello))
    }
}

fn caller(ctx: &CallerCtx) -> Caller {
    Caller {
        pid: ctx.pid,
        uid: ctx.uid,
        gid: ctx.gid,
    }
}

/// Copies a reply's payload where the call wants it. `exact`: the payload must
/// fill `into` (a call's payload, a `Stat`), not just fit in it (data read, a
/// path).
fn deliver(name: &str, method: &str, payload: &[u8], into: &mut [u8], exact: bool) -> Result<()> {
    let fits = if exact {
        payload.len() == into.len()
    } else {
        payload.len() <= into.len()
    };
    if !fits {
        log::error!(
            "{name}: {method} reply carries {} bytes for {}",
            payload.len(),
            into.len()
        );
        return Err(Error::new(EPROTO));
    }
    into[..payload.len()].copy_from_slice(payload);
    Ok(())
}

impl<L: ReplicaLink> SchemeSync for Forwarder<L> {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT_ID)
    }

    fn openat(
        &mut self,
        _dir: usize,
        path: &str,
        flags: usize,
        fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        let mut head = RequestHead::new(Opcode::Open, 0, caller(ctx));
        head.header.flags = flags as u64;
        head.fcntl_flags = fcntl_flags;
        let reply = self
            .channel
            .request(&self.name, head, &[], path.as_bytes())?;
        Ok(OpenResult::ThisScheme {
            number: reply.header.result()?,
            flags: NewFdFlags::from_bits_truncate(reply.header.extra),
        })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        let want = buf.len().min(MAX_PAYLOAD);
        let mut head = RequestHead::new(Opcode::Read, id, caller(ctx));
        head.header.offset = offset;
        head.header.len = want as u64;
        head.fcntl_flags = fcntl_flags;
        let reply = self.channel.request(&self.name, head, &[], &[])?;
        let count = reply.header.result()?;
        deliver(&self.name, "read", reply.payload, &mut buf[..want], false)?;
        Ok(count)
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        offset: u64,
        fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        let mut head = RequestHead::new(Opcode::Write, id, caller(ctx));
        head.header.offset = offset;
        head.header.len = buf.len() as u64;
        head.fcntl_flags = fcntl_flags;
        self.pacing.urgent = true;
        self.channel
            .request(&self.name, head, &[], buf)?
            .header
            .result()
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        metadata: &[u64],
        ctx: &CallerCtx,
    ) -> Result<usize> {
        let head = RequestHead::new(Opcode::Call, id, caller(ctx));
        self.pacing.urgent = true;
        let reply = self.channel.request(&self.name, head, metadata, payload)?;
        // The payload comes back as the scheme left it, whatever the result.
        deliver(&self.name, "call", reply.payload, payload, true)?;
        reply.header.result()
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, ctx: &CallerCtx) -> Result<()> {
        let head = RequestHead::new(Opcode::Fstat, id, caller(ctx));
        let reply = self.channel.request(&self.name, head, &[], &[])?;
        reply.header.result()?;
        deliver(&self.name, "fstat", reply.payload, stat, true)
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], ctx: &CallerCtx) -> Result<usize> {
        let want = buf.len().min(MAX_PAYLOAD);
        let mut head = RequestHead::new(Opcode::Fpath, id, caller(ctx));
        head.header.len = want as u64;
        let reply = self.channel.request(&self.name, head, &[], &[])?;
        let count = reply.header.result()?;
        deliver(&self.name, "fpath", reply.payload, &mut buf[..want], false)?;
        Ok(count)
    }

    fn fevent(&mut self, id: usize, flags: EventFlags, ctx: &CallerCtx) -> Result<EventFlags> {
        if let Some(answer) = self.channel.answered(id, flags) {
            return answer;
        }
        let mut head = RequestHead::new(Opcode::Fevent, id, caller(ctx));
        head.header.flags = flags.bits() as u64;
        self.interests.retain(|interest| interest.id != id);
        let reply = self.channel.request(&self.name, head, &[], &[])?;
        let ready = EventFlags::from_bits_truncate(reply.header.result()?);
        if !flags.is_empty() {
            self.interests.push(Interest {
                id,
                flags,
                caller: caller(ctx),
            });
        }
        Ok(ready)
    }

    fn on_close(&mut self, id: usize) {
        self.interests.retain(|interest| interest.id != id);
        // The platform closes on behalf of no caller in particular.
        let nobody = Caller {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let head = RequestHead::new(Opcode::Close, id, nobody);
        let closed = self.channel.request(&self.name, head, &[], &[]);
        if let Err(error) = closed.and_then(|reply| reply.header.result()) {
            log::error!("{}: close of handle {id} failed: {error}", self.name);
        }
    }
}

impl<L: ReplicaLink> SchemeDaemon for Forwarder<L> {
    fn after_round(&mut self) {
        let started = Instant::now();
        if !self.pacing.due(started) {
            // Every idle tick comes here: the answers' buffer is reused.
            let answered = &mut self.channel.answered;
            answered.clear();
            answered.extend(
                self.interests
                    .iter()
                    .map(|&interest| (interest, Ok(EventFlags::empty()))),
            );
            return;
        }
        let round = self.channel.round(&self.name, &self.interests);
        let found_work = self.channel.link.last_exchange_reached_out();
        self.pacing.ran(started, Instant::now(), found_work);
        if let Err(error) = round {
            log::error!("{}: round failed: {error}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{decode_message, Message, ReplyBuffer};
    use super::super::replica::Replica;
    use super::super::test_scheme::Notes;
    use super::*;
    use crate::caller_ctx;
    use std::time::Duration;
    use syscall::error::{EBADF, ENOENT, EOPNOTSUPP, EWOULDBLOCK};

    /// The replica in this thread: each exchange is answered on the spot.
    struct Loopback<'d> {
        replica: Replica<'d, Notes>,
        exchanges: usize,
    }

    impl ReplicaLink for Loopback<'_> {
        fn exchange(&mut self, message: &[u8], reply: &mut Vec<u8>) -> io::Result<()> {
            self.exchanges += 1;
            let mut message = message.to_vec();
            reply.clear();
            reply.extend_from_slice(self.replica.answer(&mut message));
            Ok(())
        }

        fn receive_hello(&mut self, reply: &mut Vec<u8>) -> io::Result<()> {
            let hello = Hello {
                tick: None,
                name: "notes".into(),
            };
            hello
                .encode(reply)
                .map_err(|e| io::Error::other(e.to_string()))
        }

        fn last_exchange_reached_out(&self) -> bool {
            false
        }
    }

    /// Answers every message with the same reply, or fails; keeps what was sent.
    struct Canned {
        reply: io::Result<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    impl Canned {
        fn replying(result: Result<usize>, payload: &[u8]) -> Forwarder<Self> {
            let mut buffer = ReplyBuffer::default();
            buffer.body()[..payload.len()].copy_from_slice(payload);
            Self::with(Ok(buffer.finish(result, 0, payload.len()).to_vec()))
        }

        fn with(reply: io::Result<Vec<u8>>) -> Forwarder<Self> {
            let link = Canned {
                reply,
                sent: Vec::new(),
            };
            Forwarder::connect(link).unwrap().0
        }
    }

    impl ReplicaLink for Canned {
        fn exchange(&mut self, message: &[u8], reply: &mut Vec<u8>) -> io::Result<()> {
            self.sent.push(message.to_vec());
            match &self.reply {
                Ok(bytes) => {
                    reply.clone_from(bytes);
                    Ok(())
                }
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            }
        }

        fn receive_hello(&mut self, reply: &mut Vec<u8>) -> io::Result<()> {
            let hello = Hello {
                tick: None,
                name: "canned".into(),
            };
            hello
                .encode(reply)
                .map_err(|e| io::Error::other(e.to_string()))
        }

        fn last_exchange_reached_out(&self) -> bool {
            false
        }
    }

    /// A forwarder to a replica of `notes` in this thread.
    fn loopback(notes: &mut Notes) -> Forwarder<Loopback<'_>> {
        let link = Loopback {
            replica: Replica::new(notes).unwrap(),
            exchanges: 0,
        };
        Forwarder::connect(link).unwrap().0
    }

    /// Opens a new note through `forwarder`.
    fn open_note(forwarder: &mut Forwarder<Loopback<'_>>) -> usize {
        let root = forwarder.scheme_root().unwrap();
        match forwarder.openat(root, "note", 0, 0, &ctx()).unwrap() {
            OpenResult::ThisScheme { number, .. } => number,
            _ => panic!("not opened in this scheme"),
        }
    }

    fn ctx() -> CallerCtx {
        caller_ctx(42, 1, 2)
    }

    fn errno<T: std::fmt::Debug>(result: Result<T>) -> i32 {
        result.unwrap_err().errno
    }

    #[test]
    fn every_method_reaches_the_replica_and_comes_back() {
        let mut notes = Notes::default();
        let link = Loopback {
            replica: Replica::new(&mut notes).unwrap(),
            exchanges: 0,
        };
        let (mut forwarder, hello) = Forwarder::connect(link).unwrap();
        assert_eq!(hello.name, "notes");
        let root = forwarder.scheme_root().unwrap();
        assert_eq!(
            forwarder.channel.link.exchanges, 0,
            "the root is not asked for"
        );

        let ctx = ctx();
        let OpenResult::ThisScheme { number: id, flags } =
            forwarder.openat(root, "note", 0, 0, &ctx).unwrap()
        else {
            panic!("not opened in this scheme");
        };
        assert_eq!(flags, NewFdFlags::POSITIONED);
        assert_eq!(errno(forwarder.openat(root, "missing", 0, 0, &ctx)), ENOENT);
        assert_eq!(
            errno(forwarder.openat(root, "elsewhere", 0, 0, &ctx)),
            EOPNOTSUPP
        );

        let mut buf = [0u8; 8];
        assert_eq!(errno(forwarder.read(id, &mut buf, 0, 0, &ctx)), EWOULDBLOCK);
        assert_eq!(
            forwarder.fevent(id, EventFlags::all(), &ctx).unwrap(),
            EventFlags::EVENT_WRITE
        );
        assert_eq!(forwarder.write(id, b"hello", 0, 0, &ctx), Ok(5));
        assert_eq!(forwarder.read(id, &mut buf[..3], 1, 0, &ctx), Ok(3));
        assert_eq!(&buf[..3], b"ell");

        let mut payload = *b"abc";
        assert_eq!(forwarder.call(id, &mut payload, &[1, 2], &ctx), Ok(2));
        assert_eq!(&payload, b"cba");

        let mut stat = Stat::default();
        forwarder.fstat(id, &mut stat, &ctx).unwrap();
        assert_eq!(stat.st_size, 5);
        let mut path = [0u8; 64];
        let n = forwarder.fpath(id, &mut path, &ctx).unwrap();
        assert_eq!(&path[..n], format!("notes:note/{id}").as_bytes());

        forwarder.after_round();
        forwarder.on_close(id);
        assert_eq!(errno(forwarder.fstat(id, &mut stat, &ctx)), EBADF);
        drop(forwarder);
        assert_eq!((notes.rounds, notes.closed.as_slice()), (1, &[id][..]));
        assert_eq!(notes.last_pid, 42);
    }

    #[test]
    fn a_round_answers_the_readiness_queries_that_follow_it() {
        let mut notes = Notes::default();
        let mut forwarder = loopback(&mut notes);
        let ctx = ctx();
        let (watched, other) = (open_note(&mut forwarder), open_note(&mut forwarder));
        let wanted = EventFlags::EVENT_READ;
        assert_eq!(
            forwarder.fevent(watched, wanted, &ctx),
            Ok(EventFlags::empty())
        );
        let exchanges = |forwarder: &Forwarder<Loopback>| forwarder.channel.link.exchanges;

        forwarder.after_round();
        let after_round = exchanges(&forwarder);
        assert_eq!(
            forwarder.fevent(watched, wanted, &ctx),
            Ok(EventFlags::empty())
        );
        assert_eq!(
            exchanges(&forwarder),
            after_round,
            "the round answered the re-query"
        );
        // Other handles and other flags are asked for as before.
        assert_eq!(
            forwarder.fevent(other, EventFlags::empty(), &ctx),
            Ok(EventFlags::empty())
        );
        assert_eq!(exchanges(&forwarder), after_round + 1);

        // A request may change readiness: what the round said no longer holds.
        assert_eq!(forwarder.write(watched, b"x", 0, 0, &ctx), Ok(1));
        assert_eq!(
            forwarder.fevent(watched, wanted, &ctx),
            Ok(EventFlags::EVENT_READ)
        );
        forwarder.after_round();
        assert_eq!(
            forwarder.fevent(watched, wanted, &ctx),
            Ok(EventFlags::EVENT_READ)
        );

        // A closed handle is asked about no more.
        forwarder.on_close(watched);
        forwarder.pacing.urgent = true;
        forwarder.after_round();
        let before = exchanges(&forwarder);
        assert_eq!(errno(forwarder.fevent(watched, wanted, &ctx)), EBADF);
        assert_eq!(exchanges(&forwarder), before + 1);
    }

    #[test]
    fn a_write_or_call_or_a_round_that_found_work_gets_the_next_round_at_once() {
        let start = Instant::now();
        let mut pacing = RoundPacing::default();
        let ended = start + Duration::from_millis(10);
        pacing.ran(start, ended, false);
        assert!(!pacing.due(ended));
        pacing.urgent = true;
        assert!(pacing.due(ended));
        pacing.ran(ended, ended + Duration::from_millis(1), false);
        assert!(!pacing.urgent, "a round that ran settles the write");
        pacing.ran(ended, ended + Duration::from_millis(10), true);
        assert!(pacing.due(ended + Duration::from_millis(10)));
    }

    #[test]
    fn a_skipped_round_asks_nothing_and_answers_not_ready() {
        let mut notes = Notes::default();
        let mut forwarder = loopback(&mut notes);
        let ctx = ctx();
        let id = open_note(&mut forwarder);
        assert_eq!(forwarder.write(id, b"x", 0, 0, &ctx), Ok(1));
        let wanted = EventFlags::EVENT_READ;
        assert_eq!(forwarder.fevent(id, wanted, &ctx), Ok(wanted));
        // As if the last round had just ended after an hour's work.
        forwarder.pacing.ran(
            Instant::now(),
            Instant::now() + Duration::from_secs(3600),
            false,
        );
        let before = forwarder.channel.link.exchanges;
        forwarder.after_round();
        assert_eq!(
            forwarder.fevent(id, wanted, &ctx),
            Ok(EventFlags::empty()),
            "not ready until a round says so"
        );
        assert_eq!(forwarder.channel.link.exchanges, before, "nothing asked");
        // A write gets the next round at once, and the truth with it.
        assert_eq!(forwarder.write(id, b"y", 0, 0, &ctx), Ok(1));
        forwarder.after_round();
        assert_eq!(forwarder.fevent(id, wanted, &ctx), Ok(wanted));
        assert_eq!(forwarder.channel.link.exchanges, before + 2);
        drop(forwarder);
        assert_eq!(notes.rounds, 1);
    }

    #[test]
    fn a_failing_link_is_eio_and_a_bad_reply_eproto() {
        let ctx = ctx();
        let mut broken = Canned::with(Err(io::Error::other("replica gone")));
        assert_eq!(errno(broken.write(1, b"x", 0, 0, &ctx)), EIO);
        broken.after_round();
        broken.on_close(1);
        assert_eq!(broken.channel.link.sent.len(), 3);

        let mut garbage = Canned::with(Ok(b"junk".to_vec()));
        assert_eq!(errno(garbage.fevent(1, EventFlags::all(), &ctx)), EPROTO);

        // Replies that decode but do not fit the call.
        let mut too_much = Canned::replying(Ok(4), b"four");
        assert_eq!(errno(too_much.read(1, &mut [0u8; 3], 0, 0, &ctx)), EPROTO);
        assert_eq!(errno(too_much.call(1, &mut [0u8; 3], &[], &ctx)), EPROTO);
        assert_eq!(errno(too_much.fstat(1, &mut Stat::default(), &ctx)), EPROTO);
        assert_eq!(errno(too_much.fpath(1, &mut [0u8; 2], &ctx)), EPROTO);
    }

    #[test]
    fn what_the_channel_cannot_carry_never_reaches_the_link() {
        let ctx = ctx();
        let mut forwarder = Canned::replying(Ok(0), b"");
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert_eq!(errno(forwarder.write(1, &big, 0, 0, &ctx)), EMSGSIZE);
        assert_eq!(
            errno(forwarder.call(1, &mut [0u8; 4], &[0; crate::wire::MAX_METADATA + 1], &ctx)),
            EINVAL
        );
        assert!(forwarder.channel.link.sent.is_empty());
        // A read larger than a reply can carry asks for what can be carried.
        assert_eq!(forwarder.read(1, &mut big.clone(), 0, 0, &ctx), Ok(0));
        let mut sent = forwarder.channel.link.sent[0].clone();
        let Ok(Message::Request(request)) = decode_message(&mut sent) else {
            panic!("a request was sent");
        };
        assert_eq!(request.head.header.len, MAX_PAYLOAD as u64);
    }

    #[test]
    fn the_first_message_must_be_a_hello() {
        struct Rude;
        impl ReplicaLink for Rude {
            fn exchange(&mut self, _: &[u8], _: &mut Vec<u8>) -> io::Result<()> {
                unreachable!("no exchange before the hello")
            }
            fn receive_hello(&mut self, reply: &mut Vec<u8>) -> io::Result<()> {
                let mut buffer = ReplyBuffer::default();
                reply.clear();
                reply.extend_from_slice(buffer.finish(Ok(0), 0, 0));
                Ok(())
            }

            fn last_exchange_reached_out(&self) -> bool {
                false
            }
        }
        let error = Forwarder::connect(Rude).err().expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
