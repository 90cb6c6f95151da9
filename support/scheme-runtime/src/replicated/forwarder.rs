//! The supervisor side: a scheme whose every call the replicas answer.
//!
//! The supervisor serves a [`Forwarder`] like any scheme (with the host server,
//! or on a Redox scheme socket), so clients, parking, readiness and callers'
//! identities are handled once, outside the replicas. Each call becomes one
//! message on the replica channel; how it reaches the replicas and how their
//! replies become one is the [`ReplicaLink`]'s business: a socket to a single
//! replica, or a tracer that intercepts every replica's `read` and `write` and
//! votes.
//!
//! **Reads made ahead.** For a handle whose daemon allows it
//! (`SchemeDaemon::may_read_ahead`), each round lets the replicas read as much
//! as the handle's client read last time, when they find it readable; the
//! forwarder holds what they read and answers the client's next read from it
//! without a message, and tells the handle readable while it holds some. One
//! read's worth at most is held per handle: a round reads ahead only for a
//! handle that holds none.
//!
//! **Handles across a restart.** The supervisor may start the replicas afresh
//! (a group that lost its majority); the fresh ones know none of the handles
//! clients hold and number new ones from the start again. So the numbers
//! clients hold are the forwarder's own, handed out once and never reused, each
//! standing for the replicas' number in the [generation](ReplicaLink::generation)
//! of replicas that opened it. When the link's generation changes, every handle
//! opened before becomes stale: each operation on it fails with `ESTALE` ("stale
//! file handle", the error NFS gives for a handle its server no longer knows,
//! and the same number on Redox and Linux) without reaching the replicas, so it
//! can never reach a resource a handle opened since got; closing it closes
//! nothing in the replicas. `EBADF` would say the client never opened the
//! handle; `ESTALE` says it did, and should open it again. The request at hand
//! when the replicas restart fails with `EIO` (it reached none of the fresh
//! ones), and a request parked on a stale handle fails with `ESTALE` when the
//! platform retries it. Readiness is the one exception: a stale handle answers
//! that every flag asked for is ready, so that a client waiting on it wakes and
//! learns from its next operation, as `poll` reports a socket with an error as
//! readable.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use syscall::error::{
    Error, Result, EBADF, EINVAL, EIO, EMSGSIZE, ENFILE, EOPNOTSUPP, EPROTO, ESTALE,
};
use syscall::flag::{EventFlags, O_NONBLOCK, O_RDWR};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use super::codec::{
    append_round, decode_reply, decode_round_answers, decode_round_reply, encode_request,
    encode_round, read_aheads, Hello, Interest, Malformed, ReadAhead, Reply, RequestHead,
    RoundWait, MAX_MESSAGE_LEN, MAX_REPLY_LEN,
};
use super::pacing::Pacing;
use crate::wire::{MalformedRequest, Opcode, MAX_PAYLOAD};
use crate::{Caller, Handle, MapGrant, SchemeDaemon};

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

    /// How many times the replicas were started afresh. Fresh replicas know
    /// none of the handles opened before, so the forwarder takes a change as
    /// the end of every handle it gave out until then.
    ///
    /// A link starts the replicas afresh only inside an exchange that then
    /// fails: the message at hand reached none of the fresh replicas. One that
    /// never starts them afresh keeps the default.
    fn generation(&self) -> u64 {
        0
    }

    /// Descriptors of the link's own that need it between exchanges (a
    /// control socket): they wake the server as the relayed line does, and
    /// [`attend`](Self::attend) runs at the next round. Without them, a link
    /// heard only inside exchanges would wait for the replicas' next round,
    /// a second apart when nothing happens.
    fn wake_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    /// Runs at every round, whether or not the pacing lets the replicas run
    /// theirs.
    fn attend(&mut self) {}
}

/// The forwarder's scheme root. Replicas open from their own roots, so it never
/// reaches them.
const ROOT_ID: usize = usize::MAX;

/// A scheme served by replicas behind a [`ReplicaLink`].
///
/// A failing link gives the client `EIO`, a reply that does not decode or does
/// not fit the call `EPROTO`; both are logged. A handle opened before the
/// replicas were last started afresh gives `ESTALE` (see the module docs).
/// `map_fd` stays unsupported: a replica's descriptors are not the supervisor's
/// to hand out.
pub struct Forwarder<L> {
    channel: Channel<L>,
    /// The scheme's name, for logs.
    name: String,
    pacing: RoundPacing,
}

/// When the replicas run a round.
///
/// The platform asks for a round after every batch of requests and on every
/// tick. Through replicas a round costs as much as several requests, so rounds
/// are [paced](Pacing) by their own cost, except that a write or a call (which
/// may have handed the daemon work for its device, such as a frame to send), or
/// a round that reached out (a driver that polls its device with port accesses
/// does at every round), gets the next round at once. A write carries that
/// round in its own exchange where both fit one message. A round the pacing skips
/// keeps the answers of a round that ran since the last message (a write's
/// own); otherwise it answers every readiness question with "not ready": the
/// next round that runs then reports whatever is ready as a new event, so no
/// wake-up is lost, only delayed, and a client that already read sees an extra
/// event, which costs it one read.
#[derive(Default)]
struct RoundPacing {
    pacing: Pacing,
    /// A write or a call came since the last round.
    urgent: bool,
    /// The last round reached out.
    found_work: bool,
    /// When the last round ended.
    last_ended: Option<Instant>,
}

/// How often replicas whose line is relayed get a round that nothing asked
/// for: between rounds nothing changes for them but what their line, a
/// request or their own wish brings, so this is only a safety net. The
/// platform's tick for them need be no shorter.
pub const QUIET_ROUND: Duration = Duration::from_secs(1);

impl RoundPacing {
    fn due(&self, now: Instant) -> bool {
        self.urgent || self.found_work || self.pacing.due(now)
    }

    /// As [`due`](Self::due) for replicas whose line is relayed, which
    /// `wished` for an early round or not. Their line, a request or their wish
    /// tells of new work, so a round that reached out calls for no other.
    fn due_with_line(&self, now: Instant, wished: bool) -> bool {
        let quiet_for = |ended: Instant| now.duration_since(ended) >= QUIET_ROUND;
        self.urgent || (self.pacing.due(now) && (wished || self.last_ended.is_none_or(quiet_for)))
    }

    fn ran(&mut self, started: Instant, ended: Instant, found_work: bool) {
        self.pacing.ran(started, ended);
        self.urgent = false;
        self.found_work = found_work;
        self.last_ended = Some(ended);
    }
}

/// What a handle a client holds stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HandleState {
    /// Open in the replicas serving now, under their number.
    Live(usize),
    /// Opened in replicas since started afresh, which do not know it.
    Stale,
}

/// The handles clients hold, by the forwarder's numbers.
struct Handles {
    /// The link's generation when the handles marked live were opened.
    generation: u64,
    /// The number the next open gets. Numbers are never reused, so a stale
    /// one never names a handle opened later.
    next: usize,
    table: HashMap<usize, HandleState>,
}

impl Handles {
    fn new(generation: u64) -> Self {
        Self {
            generation,
            next: 1,
            table: HashMap::new(),
        }
    }

    /// Whether a number is left for another handle (always, in practice: one
    /// open a nanosecond takes centuries to use them up).
    fn room(&self) -> Result<()> {
        match self.next {
            ROOT_ID => Err(Error::new(ENFILE)),
            _ => Ok(()),
        }
    }

    /// Numbers a handle the replicas opened as `replicas_id`.
    fn add(&mut self, replicas_id: usize) -> Result<usize> {
        self.room()?;
        let id = self.next;
        self.next += 1;
        self.table.insert(id, HandleState::Live(replicas_id));
        Ok(id)
    }

    /// What handle `id` stands for; `EBADF` if no client holds it.
    fn state(&self, id: usize) -> Result<HandleState> {
        self.table.get(&id).copied().ok_or(Error::new(EBADF))
    }

    /// The replicas' number for handle `id`: `ESTALE` if the replicas that
    /// opened it are gone, `EBADF` if no client holds it.
    fn replicas_id(&self, id: usize) -> Result<usize> {
        match self.state(id)? {
            HandleState::Live(replicas_id) => Ok(replicas_id),
            HandleState::Stale => Err(Error::new(ESTALE)),
        }
    }

    fn remove(&mut self, id: usize) -> Option<HandleState> {
        self.table.remove(&id)
    }

    /// The replicas are of `generation` now: every handle opened before is
    /// stale. Returns how many were live.
    fn replicas_restarted(&mut self, generation: u64) -> usize {
        self.generation = generation;
        let mut live = 0;
        for state in self.table.values_mut() {
            if let HandleState::Live(_) = state {
                live += 1;
                *state = HandleState::Stale;
            }
        }
        live
    }
}

/// The link, what the forwarder knows of the replicas behind it, and the
/// buffers every call reuses. Everything here is in the replicas' numbers
/// except the handle table, which maps the clients' to them.
struct Channel<L> {
    link: L,
    handles: Handles,
    /// The handles clients asked `fevent` about, with the flags they want: every
    /// round asks the replicas about them, since the platform re-queries each
    /// after every round and one exchange is far cheaper than one per handle.
    interests: Vec<Interest>,
    message: Vec<u8>,
    reply: Vec<u8>,
    /// What the last round answered about readiness: the replicas' own answers
    /// for as long as no other message has reached them since.
    answered: Vec<(Interest, Result<EventFlags>)>,
    /// What the replicas asked of the next round at the end of the last.
    wait: RoundWait,
    /// Data the replicas read ahead for a handle's client (`SchemeDaemon::
    /// may_read_ahead`), held for the client's next read.
    ahead: HashMap<usize, Vec<u8>>,
    /// The length of each handle's last read: what a round may read ahead.
    read_lengths: HashMap<usize, u32>,
    /// The interrupt line the replicas asked this side to wait on and relay.
    line: Option<EngineLine>,
}

/// How often the forwarder asks a relayed line's count when no readiness
/// event came: a lost event must not leave the replicas' line masked for good.
const LINE_RECHECK: Duration = QUIET_ROUND;

/// A round's answers about its interests, in order, what the daemon asks of
/// the next round, and the data it read ahead, by handle.
type RoundAnswers = (Vec<Result<EventFlags>>, RoundWait, Vec<(usize, Vec<u8>)>);

/// Decodes the payload of a round's reply about `listed` interests.
fn decode_round_payload(name: &str, payload: &[u8], listed: usize) -> Result<RoundAnswers> {
    let refused = |malformed: Malformed| {
        log::error!("{name}: a round about {listed} handles came back with {malformed}");
        Error::new(EPROTO)
    };
    let (answers, wait, section) = decode_round_reply(payload, listed).map_err(refused)?;
    let read_ahead = read_aheads(section)
        .map(|record| record.map(|ReadAhead { id, data }| (id, data.to_vec())))
        .collect::<std::result::Result<_, _>>()
        .map_err(refused)?;
    Ok((decode_round_answers(answers).collect(), wait, read_ahead))
}

/// A relayed interrupt line, as this side holds it.
struct EngineLine {
    handle: Handle,
    /// It fired and no round has told the replicas yet.
    pending: bool,
    last_asked: Instant,
}

impl EngineLine {
    /// Opens the line at `path`, non-blocking, with interest in its readiness.
    fn open(path: &str) -> io::Result<Self> {
        let handle = Handle::open(path, O_RDWR | O_NONBLOCK).map_err(|e| {
            io::Error::new(e.kind(), format!("opening the relayed line {path}: {e}"))
        })?;
        handle.fevent(EventFlags::EVENT_READ)?;
        Ok(Self {
            handle,
            pending: false,
            last_asked: Instant::now(),
        })
    }

    /// Notes whether the line fired: its readiness event, or, without one for
    /// [`LINE_RECHECK`], its count. Returns whether a firing waits for a round.
    fn poll(&mut self, now: Instant) -> bool {
        match self.handle.take_events() {
            Ok(events) if events.contains(EventFlags::EVENT_READ) => self.pending = true,
            Ok(_) => {}
            Err(error) => log::error!("waiting on the relayed line: {error}"),
        }
        if !self.pending && now.duration_since(self.last_asked) >= LINE_RECHECK {
            self.last_asked = now;
            let mut count = [0; 8];
            match self.handle.read(&mut count) {
                Ok(_) => self.pending = u64::from_le_bytes(count) > 0,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => log::error!("asking the relayed line: {error}"),
            }
        }
        self.pending
    }

    /// Unmasks the line: the replicas acknowledged.
    fn acknowledge(&mut self) {
        if let Err(error) = self.handle.write(&[0; 8]) {
            log::error!("acknowledging the relayed line: {error}");
        }
    }
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

    /// Runs a round that also asks about the interests (as many as one round
    /// carries), and keeps the answers for [`Self::answered`].
    fn round(&mut self, name: &str) -> Result<()> {
        self.ask_to_read_ahead();
        let line_fired = self.line_fired();
        let listed = encode_round(&self.interests, line_fired, &mut self.message);
        let reply = self.exchange(name)?;
        let count = reply.header.result()?;
        if count != listed {
            log::error!("{name}: a round about {listed} handles came back with {count} status");
            return Err(Error::new(EPROTO));
        }
        let ran = decode_round_payload(name, reply.payload, listed)?;
        self.round_ran(listed, ran);
        Ok(())
    }

    /// Writes `payload` to the replicas' handle of `head` and runs a round
    /// after it in the same exchange, where it fits one message; otherwise
    /// the write alone (the caller's pacing then runs the round). Returns
    /// the write's result and whether the round ran.
    fn write_then_round(
        &mut self,
        name: &str,
        head: RequestHead,
        payload: &[u8],
    ) -> Result<(Result<usize>, bool)> {
        encode_request(&head, &[], payload, &mut self.message).map_err(|_| Error::new(EMSGSIZE))?;
        self.ask_to_read_ahead();
        let line_fired = self.line_fired();
        let Some(listed) = append_round(&self.interests, line_fired, &mut self.message) else {
            return Ok((self.exchange(name)?.header.result(), false));
        };
        let reply = self.exchange(name)?;
        let written = reply.header.result();
        let ran = decode_round_payload(name, reply.payload, listed)?;
        self.round_ran(listed, ran);
        Ok((written, true))
    }

    /// Lets the next round read ahead, for each handle whose client holds no
    /// data read ahead yet, as much as that client last read.
    fn ask_to_read_ahead(&mut self) {
        for interest in &mut self.interests {
            interest.read_ahead = match self.ahead.contains_key(&interest.id) {
                true => 0,
                false => self.read_lengths.get(&interest.id).copied().unwrap_or(0),
            };
        }
    }

    /// Up to `want` bytes read ahead for the replicas' handle `id`; the rest
    /// stays for the next read.
    fn take_ahead(&mut self, id: usize, want: usize) -> Option<Vec<u8>> {
        let mut data = self.ahead.remove(&id)?;
        if data.len() > want {
            self.ahead.insert(id, data.split_off(want));
        }
        Some(data)
    }

    /// `answer` about the replicas' handle `id`, readable too while data read
    /// ahead waits for its client.
    fn with_ahead(
        &self,
        id: usize,
        flags: EventFlags,
        answer: Result<EventFlags>,
    ) -> Result<EventFlags> {
        match self.ahead.contains_key(&id) {
            true => answer.map(|ready| ready | (flags & EventFlags::EVENT_READ)),
            false => answer,
        }
    }

    /// Forgets what is held for the replicas' handle `id`.
    fn forget(&mut self, id: usize) {
        self.interests.retain(|interest| interest.id != id);
        self.read_lengths.remove(&id);
        if let Some(data) = self.ahead.remove(&id) {
            log::debug!(
                "{} bytes read ahead for handle {id} dropped with it",
                data.len()
            );
        }
    }

    fn line_fired(&self) -> bool {
        self.line.as_ref().is_some_and(|line| line.pending)
    }

    /// Keeps what a round about the first `listed` interests answered.
    fn round_ran(&mut self, listed: usize, (answers, wait, read_ahead): RoundAnswers) {
        self.wait = wait;
        for (id, data) in read_ahead {
            self.ahead.entry(id).or_default().extend(data);
        }
        if let Some(line) = &mut self.line {
            line.pending = false;
            if wait.acknowledge {
                line.acknowledge();
            }
        }
        self.answered = self.interests[..listed]
            .iter()
            .copied()
            .zip(answers)
            .collect();
    }

    /// The last round's answer for the replicas' handle `id` and `flags`, if no
    /// message reached the replicas since.
    fn answered(&self, id: usize, flags: EventFlags) -> Option<Result<EventFlags>> {
        self.answered
            .iter()
            .find(|(interest, _)| interest.id == id && interest.flags == flags)
            .map(|&(_, answer)| answer)
    }

    /// Sends the message in `self.message` and decodes the reply.
    fn exchange(&mut self, name: &str) -> Result<Reply<'_>> {
        self.answered.clear();
        let exchanged = self.link.exchange(&self.message, &mut self.reply);
        let generation = self.link.generation();
        if generation != self.handles.generation {
            // The replicas that knew the handles and interests are gone.
            let stale = self.handles.replicas_restarted(generation);
            self.interests.clear();
            self.ahead.clear();
            self.read_lengths.clear();
            log::warn!(
                "{name}: the replicas were started afresh; the {stale} handles opened before \
                 fail with ESTALE from now on"
            );
            // Whatever the link says, the message did not reach the replicas
            // that knew its handle: it must not count as done.
            if let Err(error) = exchanged {
                log::error!("{name}: replica link failed: {error}");
            }
            return Err(Error::new(EIO));
        }
        if let Err(error) = exchanged {
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
        let line = hello.line.as_deref().map(EngineLine::open).transpose()?;
        if let Some(path) = &hello.line {
            log::info!("{}: waiting on {path} for the replicas", hello.name);
        }
        let generation = link.generation();
        let forwarder = Self {
            channel: Channel {
                link,
                handles: Handles::new(generation),
                interests: Vec::new(),
                message: Vec::with_capacity(MAX_MESSAGE_LEN),
                reply,
                answered: Vec::new(),
                wait: RoundWait::default(),
                ahead: HashMap::new(),
                read_lengths: HashMap::new(),
                line,
            },
            name: hello.name.clone(),
            pacing: RoundPacing::default(),
        };
        Ok((forwarder, hello))
    }

    /// A request of `caller`'s about the client's handle `id`, in the replicas'
    /// number.
    fn head(&self, opcode: Opcode, id: usize, ctx: &CallerCtx) -> Result<RequestHead> {
        let replicas_id = self.channel.handles.replicas_id(id)?;
        Ok(RequestHead::new(opcode, replicas_id, caller(ctx)))
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
        // Checked first: a handle the replicas opened must get a number.
        self.channel.handles.room()?;
        let mut head = RequestHead::new(Opcode::Open, 0, caller(ctx));
        head.header.flags = flags as u64;
        head.fcntl_flags = fcntl_flags;
        let reply = self
            .channel
            .request(&self.name, head, &[], path.as_bytes())?;
        let replicas_id = reply.header.result()?;
        let flags = NewFdFlags::from_bits_truncate(reply.header.extra);
        Ok(OpenResult::ThisScheme {
            number: self.channel.handles.add(replicas_id)?,
            flags,
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
        let mut head = self.head(Opcode::Read, id, ctx)?;
        if let Some(data) = self.channel.take_ahead(head.id, want) {
            buf[..data.len()].copy_from_slice(&data);
            return Ok(data.len());
        }
        self.channel.read_lengths.insert(head.id, want as u32);
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
        let mut head = self.head(Opcode::Write, id, ctx)?;
        head.header.offset = offset;
        head.header.len = buf.len() as u64;
        head.fcntl_flags = fcntl_flags;
        let started = Instant::now();
        let (written, round_ran) = self.channel.write_then_round(&self.name, head, buf)?;
        match round_ran {
            // The round the write calls for ran with it.
            true => self.pacing.ran(started, Instant::now(), false),
            false => self.pacing.urgent = true,
        }
        written
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        metadata: &[u64],
        ctx: &CallerCtx,
    ) -> Result<usize> {
        let head = self.head(Opcode::Call, id, ctx)?;
        self.pacing.urgent = true;
        let reply = self.channel.request(&self.name, head, metadata, payload)?;
        // The payload comes back as the scheme left it, whatever the result.
        deliver(&self.name, "call", reply.payload, payload, true)?;
        reply.header.result()
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, ctx: &CallerCtx) -> Result<()> {
        let head = self.head(Opcode::Fstat, id, ctx)?;
        let reply = self.channel.request(&self.name, head, &[], &[])?;
        reply.header.result()?;
        deliver(&self.name, "fstat", reply.payload, stat, true)
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], ctx: &CallerCtx) -> Result<usize> {
        let want = buf.len().min(MAX_PAYLOAD);
        let mut head = self.head(Opcode::Fpath, id, ctx)?;
        head.header.len = want as u64;
        let reply = self.channel.request(&self.name, head, &[], &[])?;
        let count = reply.header.result()?;
        deliver(&self.name, "fpath", reply.payload, &mut buf[..want], false)?;
        Ok(count)
    }

    fn fevent(&mut self, id: usize, flags: EventFlags, ctx: &CallerCtx) -> Result<EventFlags> {
        let replicas_id = match self.channel.handles.state(id)? {
            HandleState::Live(replicas_id) => replicas_id,
            // Ready, so that whoever waits on it tries it and learns it is stale.
            HandleState::Stale => return Ok(flags),
        };
        if let Some(answer) = self.channel.answered(replicas_id, flags) {
            return self.channel.with_ahead(replicas_id, flags, answer);
        }
        let mut head = RequestHead::new(Opcode::Fevent, replicas_id, caller(ctx));
        head.header.flags = flags.bits() as u64;
        self.channel
            .interests
            .retain(|interest| interest.id != replicas_id);
        let reply = self.channel.request(&self.name, head, &[], &[])?;
        let ready = EventFlags::from_bits_truncate(reply.header.result()?);
        if !flags.is_empty() {
            self.channel.interests.push(Interest {
                id: replicas_id,
                flags,
                caller: caller(ctx),
                read_ahead: 0,
            });
        }
        self.channel.with_ahead(replicas_id, flags, Ok(ready))
    }

    fn on_close(&mut self, id: usize) {
        let replicas_id = match self.channel.handles.remove(id) {
            Some(HandleState::Live(replicas_id)) => replicas_id,
            // The replicas that knew it are gone: nothing of theirs to close,
            // least of all the handle a fresh replica gave the same number.
            Some(HandleState::Stale) => return,
            None => {
                log::warn!("{}: close of handle {id}, which no client holds", self.name);
                return;
            }
        };
        self.channel.forget(replicas_id);
        // The platform closes on behalf of no caller in particular.
        let nobody = Caller {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let head = RequestHead::new(Opcode::Close, replicas_id, nobody);
        let closed = self.channel.request(&self.name, head, &[], &[]);
        if let Err(error) = closed.and_then(|reply| reply.header.result()) {
            log::error!("{}: close of handle {id} failed: {error}", self.name);
        }
    }
}

impl<L: ReplicaLink> SchemeDaemon for Forwarder<L> {
    /// Unsupported, but a stale handle says so first.
    fn map_fd(
        &mut self,
        id: usize,
        _offset: u64,
        _size: usize,
        _ctx: &CallerCtx,
    ) -> Result<MapGrant> {
        self.channel.handles.replicas_id(id)?;
        Err(Error::new(EOPNOTSUPP))
    }

    fn after_round(&mut self) {
        self.channel.link.attend();
        let started = Instant::now();
        let fired = self
            .channel
            .line
            .as_mut()
            .is_some_and(|line| line.poll(started));
        let due = match &self.channel.line {
            Some(_) => self
                .pacing
                .due_with_line(started, self.channel.wait.within.is_some()),
            None => self.pacing.due(started),
        };
        if !fired && !due {
            // Every idle tick comes here: the answers' buffer is reused. What a
            // round answered since the last message (a write's own round) holds.
            let Channel {
                answered,
                interests,
                ..
            } = &mut self.channel;
            if !answered.is_empty() {
                return;
            }
            answered.extend(
                interests
                    .iter()
                    .map(|&interest| (interest, Ok(EventFlags::empty()))),
            );
            return;
        }
        let round = self.channel.round(&self.name);
        let found_work = self.channel.link.last_exchange_reached_out();
        self.pacing.ran(started, Instant::now(), found_work);
        if let Err(error) = round {
            log::error!("{}: round failed: {error}", self.name);
        }
    }

    /// The relayed line: it wakes the forwarder, which then runs the
    /// replicas' round.
    fn wake_fds(&self) -> Vec<RawFd> {
        let line = self
            .channel
            .line
            .as_ref()
            .and_then(|line| line.handle.events_fd());
        line.into_iter()
            .chain(self.channel.link.wake_fds())
            .collect()
    }

    fn next_round_within(&self) -> Option<Duration> {
        self.channel.wait.within
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{decode_message, Message, ReplyBuffer, Round};
    use super::super::replica::Replica;
    use super::super::test_scheme::Notes;
    use super::*;
    use crate::caller_ctx;
    use std::time::Duration;
    use syscall::error::{ENOENT, EWOULDBLOCK};

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
            encode_hello("notes", reply)
        }

        fn last_exchange_reached_out(&self) -> bool {
            false
        }
    }

    /// Answers every message with the same reply, or fails; keeps what was
    /// sent; counts the rounds it was attended at.
    struct Canned {
        reply: io::Result<Vec<u8>>,
        sent: Vec<Vec<u8>>,
        generation: u64,
        attended: usize,
    }

    impl Canned {
        fn replying(result: Result<usize>, payload: &[u8]) -> Forwarder<Self> {
            let mut buffer = ReplyBuffer::default();
            buffer.body()[..payload.len()].copy_from_slice(payload);
            Self::with(Ok(buffer.finish(result, 0, payload.len()).to_vec()))
        }

        /// The forwarder holds handle 1, which is 1 in the replicas too.
        fn with(reply: io::Result<Vec<u8>>) -> Forwarder<Self> {
            let link = Canned {
                reply,
                sent: Vec::new(),
                generation: 0,
                attended: 0,
            };
            let mut forwarder = Forwarder::connect(link).unwrap().0;
            assert_eq!(forwarder.channel.handles.add(1), Ok(1));
            forwarder
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
            encode_hello("canned", reply)
        }

        fn last_exchange_reached_out(&self) -> bool {
            false
        }

        fn generation(&self) -> u64 {
            self.generation
        }

        fn wake_fds(&self) -> Vec<RawFd> {
            vec![CANNED_WAKE_FD]
        }

        fn attend(&mut self) {
            self.attended += 1;
        }
    }

    /// The descriptor a [`Canned`] link asks to be woken by.
    const CANNED_WAKE_FD: RawFd = 42;

    /// A replica of its own `Notes` in this thread, which a test can have
    /// started afresh: the next exchange then fails, as the engine's does when
    /// it restarts its group, and fresh `Notes` answer from then on.
    #[derive(Default)]
    struct Restarting {
        notes: Notes,
        generation: u64,
        restart_at_next: bool,
        sent: Vec<Vec<u8>>,
    }

    impl ReplicaLink for Restarting {
        fn exchange(&mut self, message: &[u8], reply: &mut Vec<u8>) -> io::Result<()> {
            self.sent.push(message.to_vec());
            if std::mem::take(&mut self.restart_at_next) {
                self.notes = Notes::default();
                self.generation += 1;
                return Err(io::Error::other("no majority"));
            }
            let mut message = message.to_vec();
            let mut replica = Replica::new(&mut self.notes)?;
            reply.clear();
            reply.extend_from_slice(replica.answer(&mut message));
            Ok(())
        }

        fn receive_hello(&mut self, reply: &mut Vec<u8>) -> io::Result<()> {
            encode_hello("notes", reply)
        }

        fn last_exchange_reached_out(&self) -> bool {
            false
        }

        fn generation(&self) -> u64 {
            self.generation
        }
    }

    /// The hello of replicas that serve `name` with no tick.
    fn encode_hello(name: &str, reply: &mut Vec<u8>) -> io::Result<()> {
        let hello = Hello {
            tick: None,
            name: name.into(),
            line: None,
            cause_read: None,
        };
        hello
            .encode(reply)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// A forwarder to a replica of `notes` in this thread.
    fn loopback(notes: &mut Notes) -> Forwarder<Loopback<'_>> {
        let link = Loopback {
            replica: Replica::new(notes).unwrap(),
            exchanges: 0,
        };
        Forwarder::connect(link).unwrap().0
    }

    #[test]
    fn data_the_replicas_read_ahead_answers_the_clients_next_read_with_no_exchange() {
        let mut notes = Notes::taking();
        let mut forwarder = loopback(&mut notes);
        let id = open_note(&mut forwarder);
        let ctx = ctx();
        assert_eq!(
            forwarder.fevent(id, EventFlags::EVENT_READ, &ctx),
            Ok(EventFlags::empty())
        );
        assert_eq!(forwarder.write(id, b"hello world", 0, 0, &ctx), Ok(11));
        let mut buf = [0u8; 5];
        // The first read goes to the replicas and tells how much to read ahead.
        assert_eq!(forwarder.read(id, &mut buf, 0, 0, &ctx), Ok(5));
        assert_eq!(&buf, b"hello");
        forwarder.channel.round("notes").unwrap();
        let exchanges = forwarder.channel.link.exchanges;
        assert_eq!(
            forwarder.fevent(id, EventFlags::EVENT_READ, &ctx),
            Ok(EventFlags::EVENT_READ)
        );
        assert_eq!(forwarder.read(id, &mut buf, 0, 0, &ctx), Ok(5));
        assert_eq!(&buf, b" worl");
        assert_eq!(
            forwarder.channel.link.exchanges, exchanges,
            "answered from what the round read"
        );
        // Held data goes out in order even to a shorter read.
        forwarder.channel.round("notes").unwrap();
        let mut short = [0u8; 3];
        assert_eq!(forwarder.read(id, &mut short, 0, 0, &ctx), Ok(1));
        assert_eq!(&short[..1], b"d");
        assert_eq!(
            forwarder.read(id, &mut short, 0, 0, &ctx),
            Err(Error::new(EWOULDBLOCK))
        );
    }

    #[test]
    fn a_handle_holding_data_read_ahead_is_readable_until_its_client_reads_it() {
        let mut notes = Notes::taking();
        let mut forwarder = loopback(&mut notes);
        let id = open_note(&mut forwarder);
        let ctx = ctx();
        forwarder.fevent(id, EventFlags::EVENT_READ, &ctx).unwrap();
        assert_eq!(forwarder.write(id, b"a", 0, 0, &ctx), Ok(1));
        let mut buf = [0u8; 64];
        assert_eq!(forwarder.read(id, &mut buf, 0, 0, &ctx), Ok(1));
        assert_eq!(forwarder.write(id, b"bc", 0, 0, &ctx), Ok(2));
        forwarder.channel.round("notes").unwrap();
        // The replicas' note is empty now; the data waits here.
        assert_eq!(
            forwarder.fevent(id, EventFlags::EVENT_READ, &ctx),
            Ok(EventFlags::EVENT_READ)
        );
        assert_eq!(forwarder.read(id, &mut buf, 0, 0, &ctx), Ok(2));
        assert_eq!(&buf[..2], b"bc");
        forwarder.channel.round("notes").unwrap();
        assert_eq!(
            forwarder.fevent(id, EventFlags::EVENT_READ, &ctx),
            Ok(EventFlags::empty())
        );
    }

    #[test]
    fn closing_a_handle_drops_what_was_read_ahead_for_it() {
        let mut notes = Notes::taking();
        let mut forwarder = loopback(&mut notes);
        let id = open_note(&mut forwarder);
        let ctx = ctx();
        forwarder.fevent(id, EventFlags::EVENT_READ, &ctx).unwrap();
        assert_eq!(forwarder.write(id, b"a", 0, 0, &ctx), Ok(1));
        let mut buf = [0u8; 64];
        assert_eq!(forwarder.read(id, &mut buf, 0, 0, &ctx), Ok(1));
        assert_eq!(forwarder.write(id, b"b", 0, 0, &ctx), Ok(1));
        forwarder.channel.round("notes").unwrap();
        assert_eq!(forwarder.channel.ahead.len(), 1);
        forwarder.on_close(id);
        assert!(forwarder.channel.ahead.is_empty());
        assert!(forwarder.channel.read_lengths.is_empty());
    }

    /// Opens a new note through `forwarder`.
    fn open_note<L: ReplicaLink>(forwarder: &mut Forwarder<L>) -> usize {
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
        // The write's round, and the one asked for.
        assert_eq!((notes.rounds, notes.closed.as_slice()), (2, &[id][..]));
        assert_eq!(notes.last_pid, 42);
    }

    #[test]
    fn replicas_with_a_relayed_line_get_unasked_rounds_only_after_a_quiet_second() {
        let start = Instant::now();
        let later = |ms| start + Duration::from_millis(ms);
        let mut pacing = RoundPacing::default();
        assert!(pacing.due_with_line(start, false), "the first round");
        pacing.ran(start, start, false);
        assert!(!pacing.due_with_line(later(500), false));
        assert!(pacing.due(later(500)), "without a line it would run");
        assert!(pacing.due_with_line(later(500), true), "wished for");
        assert!(pacing.due_with_line(later(1000), false), "a quiet second");
        pacing.urgent = true;
        assert!(pacing.due_with_line(later(1), false), "a write came");
        pacing.ran(later(1), later(2), true);
        assert!(
            !pacing.due_with_line(later(3), false),
            "a round that reached out calls for no other: the line tells of work"
        );
    }

    #[test]
    fn the_replicas_wish_for_an_early_round_reaches_the_platform() {
        let mut notes = Notes::default();
        notes.next_round_within = Some(Duration::from_micros(100));
        let mut forwarder = loopback(&mut notes);
        assert_eq!(
            forwarder.next_round_within(),
            None,
            "nothing asked before a round"
        );
        forwarder.after_round();
        assert_eq!(
            forwarder.next_round_within(),
            Some(Duration::from_micros(100))
        );
        assert!(forwarder.wake_fds().is_empty(), "no line to wait on");
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

        // A closed handle is asked about no more, and refused without asking.
        forwarder.on_close(watched);
        forwarder.pacing.urgent = true;
        forwarder.after_round();
        let before = exchanges(&forwarder);
        assert_eq!(errno(forwarder.fevent(watched, wanted, &ctx)), EBADF);
        assert_eq!(exchanges(&forwarder), before);
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
        // A read reaches the replicas: the write's round no longer answers.
        assert_eq!(forwarder.read(id, &mut [0; 1], 0, 0, &ctx), Ok(1));
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
        // A write carries its round, and the truth with it, in one exchange;
        // the pacing then skips the next, which keeps that answer.
        assert_eq!(forwarder.write(id, b"y", 0, 0, &ctx), Ok(1));
        forwarder.pacing.ran(
            Instant::now(),
            Instant::now() + Duration::from_secs(3600),
            false,
        );
        forwarder.after_round();
        assert_eq!(forwarder.fevent(id, wanted, &ctx), Ok(wanted));
        assert_eq!(forwarder.channel.link.exchanges, before + 1);
        drop(forwarder);
        assert_eq!(notes.rounds, 2);
    }

    #[test]
    fn the_links_own_descriptors_wake_the_server_and_it_is_attended_at_every_round() {
        let mut forwarder = Canned::replying(Ok(0), b"");
        assert_eq!(forwarder.wake_fds(), [CANNED_WAKE_FD]);
        forwarder.after_round();
        let exchanges = forwarder.channel.link.sent.len();
        // As if the last round had just ended after an hour's work: the
        // pacing skips the next, the link is attended all the same.
        forwarder.pacing.ran(
            Instant::now(),
            Instant::now() + Duration::from_secs(3600),
            false,
        );
        forwarder.after_round();
        assert_eq!(forwarder.channel.link.sent.len(), exchanges, "skipped");
        assert_eq!(forwarder.channel.link.attended, 2);
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

    /// A forwarder to its own replica of `Notes`, which the test may restart.
    fn restarting() -> Forwarder<Restarting> {
        Forwarder::connect(Restarting::default()).unwrap().0
    }

    /// Has the replicas started afresh at the next exchange, `request`, which
    /// fails once with `EIO`: it reached none of the fresh replicas.
    fn restart_during<T: std::fmt::Debug>(
        forwarder: &mut Forwarder<Restarting>,
        request: impl FnOnce(&mut Forwarder<Restarting>) -> Result<T>,
    ) {
        forwarder.channel.link.restart_at_next = true;
        assert_eq!(errno(request(forwarder)), EIO, "the request at hand");
        assert_eq!(forwarder.channel.link.generation, 1);
    }

    #[test]
    fn a_handle_from_before_the_replicas_restart_is_stale_and_never_reaches_one_opened_after() {
        let ctx = ctx();
        let mut forwarder = restarting();
        let b = open_note(&mut forwarder);
        assert_eq!(forwarder.channel.handles.replicas_id(b), Ok(1));
        assert_eq!(forwarder.write(b, b"b's", 0, 0, &ctx), Ok(3));
        restart_during(&mut forwarder, |f| f.write(b, b"in flight", 0, 0, &ctx));

        let a = open_note(&mut forwarder);
        assert_ne!(a, b, "numbers are never handed out twice");
        assert_eq!(
            forwarder.channel.handles.replicas_id(a),
            Ok(1),
            "the fresh replicas gave A's handle the number B's had"
        );
        assert_eq!(forwarder.write(a, b"a's secret", 0, 0, &ctx), Ok(10));

        let sent = forwarder.channel.link.sent.len();
        let mut buf = [0u8; 16];
        assert_eq!(errno(forwarder.read(b, &mut buf, 0, 0, &ctx)), ESTALE);
        assert_eq!(errno(forwarder.write(b, b"x", 0, 0, &ctx)), ESTALE);
        assert_eq!(errno(forwarder.call(b, &mut [1, 2], &[], &ctx)), ESTALE);
        assert_eq!(
            errno(forwarder.fstat(b, &mut Stat::default(), &ctx)),
            ESTALE
        );
        assert_eq!(errno(forwarder.fpath(b, &mut buf, &ctx)), ESTALE);
        assert_eq!(errno(forwarder.map_fd(b, 0, 4096, &ctx).map(drop)), ESTALE);
        assert_eq!(
            forwarder.channel.link.sent.len(),
            sent,
            "nothing about B's handle reaches the fresh replicas"
        );
        assert_eq!(buf, [0; 16]);

        assert_eq!(forwarder.read(a, &mut buf, 0, 0, &ctx), Ok(10));
        assert_eq!(&buf[..10], b"a's secret");
        // Handles opened after the restart work as ever.
        assert_eq!(forwarder.write(a, b"!", 0, 0, &ctx), Ok(1));
        assert_eq!(
            forwarder.fevent(a, EventFlags::EVENT_READ, &ctx),
            Ok(EventFlags::EVENT_READ)
        );
    }

    #[test]
    fn closing_a_stale_handle_closes_nothing_in_the_fresh_replicas() {
        let ctx = ctx();
        let mut forwarder = restarting();
        let b = open_note(&mut forwarder);
        restart_during(&mut forwarder, |f| f.fstat(b, &mut Stat::default(), &ctx));
        let a = open_note(&mut forwarder);

        let sent = forwarder.channel.link.sent.len();
        forwarder.on_close(b);
        assert_eq!(forwarder.channel.link.sent.len(), sent, "no close was sent");
        assert!(forwarder.channel.link.notes.closed.is_empty());
        assert_eq!(
            errno(forwarder.write(b, b"x", 0, 0, &ctx)),
            EBADF,
            "closed is closed, stale or not"
        );
        assert_eq!(forwarder.write(a, b"still open", 0, 0, &ctx), Ok(10));

        forwarder.on_close(a);
        assert_eq!(forwarder.channel.link.notes.closed, [1]);
    }

    #[test]
    fn a_stale_handle_reads_as_ready_so_that_whoever_waits_on_it_tries_it() {
        let ctx = ctx();
        let mut forwarder = restarting();
        let waiting = open_note(&mut forwarder);
        let wanted = EventFlags::EVENT_READ;
        assert_eq!(
            forwarder.fevent(waiting, wanted, &ctx),
            Ok(EventFlags::empty())
        );
        assert_eq!(forwarder.channel.interests.len(), 1);
        // The round is what finds the group broken here.
        forwarder.pacing.urgent = true;
        forwarder.channel.link.restart_at_next = true;
        forwarder.after_round();
        assert_eq!(forwarder.channel.link.generation, 1);
        assert!(
            forwarder.channel.interests.is_empty(),
            "the fresh replicas are asked about none of the old handles"
        );

        let sent = forwarder.channel.link.sent.len();
        assert_eq!(forwarder.fevent(waiting, wanted, &ctx), Ok(wanted));
        assert_eq!(forwarder.channel.link.sent.len(), sent, "nothing asked");
        let mut buf = [0u8; 4];
        assert_eq!(
            errno(forwarder.read(waiting, &mut buf, 0, 0, &ctx)),
            ESTALE,
            "and its read says why"
        );

        // The next round lists no handle of the replicas that are gone.
        let fresh = open_note(&mut forwarder);
        assert_eq!(
            forwarder.fevent(fresh, wanted, &ctx),
            Ok(EventFlags::empty())
        );
        forwarder.pacing.urgent = true;
        forwarder.after_round();
        let mut round = forwarder.channel.link.sent.last().unwrap().clone();
        let Ok(Message::Round(Round { interests, .. })) = decode_message(&mut round) else {
            panic!("a round was sent");
        };
        assert_eq!(
            interests
                .iter()
                .map(|interest| interest.id)
                .collect::<Vec<_>>(),
            [1],
            "only the fresh handle, by the fresh replicas' number"
        );
    }

    #[test]
    fn a_reply_from_replicas_of_another_generation_is_not_taken_as_done() {
        let ctx = ctx();
        let mut forwarder = Canned::replying(Ok(3), b"");
        // A link that restarted its replicas but answered anyway.
        forwarder.channel.link.generation = 1;
        assert_eq!(errno(forwarder.write(1, b"abc", 0, 0, &ctx)), EIO);
        assert_eq!(errno(forwarder.write(1, b"abc", 0, 0, &ctx)), ESTALE);
        assert_eq!(forwarder.channel.link.sent.len(), 1);
    }

    #[test]
    fn a_handle_no_client_holds_is_refused_without_asking_the_replicas() {
        let ctx = ctx();
        let mut forwarder = Canned::replying(Ok(0), b"");
        for id in [0, 2, ROOT_ID] {
            assert_eq!(errno(forwarder.write(id, b"x", 0, 0, &ctx)), EBADF);
            assert_eq!(errno(forwarder.fevent(id, EventFlags::all(), &ctx)), EBADF);
            forwarder.on_close(id);
        }
        assert!(forwarder.channel.link.sent.is_empty());
    }

    #[test]
    fn opening_stops_before_the_replicas_when_no_number_is_left() {
        let ctx = ctx();
        let mut forwarder = Canned::replying(Ok(7), b"");
        forwarder.channel.handles.next = ROOT_ID;
        let root = forwarder.scheme_root().unwrap();
        assert_eq!(
            errno(forwarder.openat(root, "note", 0, 0, &ctx).map(drop)),
            ENFILE
        );
        assert!(forwarder.channel.link.sent.is_empty());
    }
}
