//! The testbed scheme: a small but complete scheme for exercising the runtime.
//!
//! | path           | what a handle does                                              |
//! |----------------|-----------------------------------------------------------------|
//! | `queue/<name>` | a byte queue shared by everyone who opens the name: write appends (back-pressure at [`QUEUE_CAPACITY`]), read takes; readiness for both |
//! | `whoami`       | read gives the caller's `pid= uid= gid=` as the scheme saw them  |
//! | `stats`        | read gives `opened= closed= queues=`: handles opened and closed (stats handles not counted) and queues created, since the start |
//! | `shared`       | one page of memory every client maps (on Linux); a read plays a device that wrote to it: it stores the next number in the page's second 32-bit word and answers it (4 bytes, little-endian) |
//!
//! `call` with metadata `[CALL_REVERSE]` reverses the payload in place; on a
//! queue, `call` with `[CALL_APPEND]` appends the payload as `write` does (a
//! call a replicated driver may hold for its reply).
//!
//! A queue lives while a handle holds it or bytes wait in it: closing the last
//! handle of an empty queue forgets its name. At most [`MAX_QUEUES`] exist at
//! once; opening a new name beyond that is `ENOSPC`. So a client opening ever
//! new names cannot grow the daemon without bound: it holds at most
//! `MAX_QUEUES * QUEUE_CAPACITY` bytes of queues.
//!
//! Nothing here is per client beyond `whoami`, which tells each caller only
//! about itself; `stats` counts for the whole daemon.

#[cfg(target_os = "linux")]
pub mod process;

use std::collections::{HashMap, VecDeque};

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::{copy_at_offset, HandleTable, SchemeDaemon, ROOT_ID};
use syscall::error::{Error, Result, EBADF, EINVAL, ENOENT, ENOSPC, EWOULDBLOCK};
use syscall::flag::{EventFlags, MODE_FILE};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

/// Bytes a queue holds before writers are pushed back.
pub const QUEUE_CAPACITY: usize = 64 * 1024;
/// `call` metadata word: reverse the payload in place.
pub const CALL_REVERSE: u64 = 1;
/// `call` metadata: append the payload to the handle's queue.
pub const CALL_APPEND: u64 = 2;
/// Size of the `shared` page.
pub const SHARED_SIZE: usize = 4096;
/// Queues that may exist at once (held or holding bytes).
pub const MAX_QUEUES: usize = 256;

enum HandleKind {
    Queue(String),
    /// A text fixed at open or produced at read time, read by offset.
    WhoAmI(String),
    Stats,
    Shared,
}

/// A named queue: its bytes, and how many handles hold it.
struct Queue {
    bytes: VecDeque<u8>,
    holders: usize,
}

#[derive(Default)]
pub struct Testbed {
    handles: HandleTable<HandleKind>,
    queues: HashMap<String, Queue>,
    /// Queues created since the start (a name forgotten and opened again counts twice).
    queues_created: u64,
    opened: u64,
    closed: u64,
    #[cfg(target_os = "linux")]
    shared: Option<std::os::fd::OwnedFd>,
    /// The last number a read of `shared` stored in its page.
    #[cfg(target_os = "linux")]
    device_writes: u32,
}

impl Testbed {
    pub fn new() -> Self {
        Self::default()
    }

    fn handle(&self, id: usize) -> Result<&HandleKind> {
        self.handles.get(id).ok_or(Error::new(EBADF))
    }

    fn queue(&mut self, id: usize) -> Result<&mut VecDeque<u8>> {
        match self.handles.get(id) {
            // A held queue is never forgotten; were it missing, the handle is dead.
            Some(HandleKind::Queue(name)) => self
                .queues
                .get_mut(name)
                .map(|queue| &mut queue.bytes)
                .ok_or(Error::new(EBADF)),
            Some(_) => Err(Error::new(EINVAL)),
            None => Err(Error::new(EBADF)),
        }
    }

    /// Takes a hold on queue `name`, creating it if there is room for one more.
    fn hold_queue(&mut self, name: &str) -> Result<()> {
        if let Some(queue) = self.queues.get_mut(name) {
            queue.holders += 1;
            return Ok(());
        }
        if self.queues.len() >= MAX_QUEUES {
            return Err(Error::new(ENOSPC));
        }
        self.queues.insert(
            name.to_owned(),
            Queue {
                bytes: VecDeque::new(),
                holders: 1,
            },
        );
        self.queues_created += 1;
        Ok(())
    }

    /// Lets go of queue `name`, forgetting it if that was the last hold and it is empty.
    fn release_queue(&mut self, name: &str) {
        let Some(queue) = self.queues.get_mut(name) else {
            return;
        };
        queue.holders = queue.holders.saturating_sub(1);
        if queue.holders == 0 && queue.bytes.is_empty() {
            self.queues.remove(name);
        }
    }

    fn stats_text(&self) -> String {
        format!(
            "opened={} closed={} queues={}\n",
            self.opened, self.closed, self.queues_created
        )
    }
}

impl SchemeSync for Testbed {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT_ID)
    }

    fn openat(
        &mut self,
        fd: usize,
        path: &str,
        _flags: usize,
        _fcntl: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        if fd != ROOT_ID {
            return Err(Error::new(EBADF));
        }
        let (kind, flags) = match path.trim_matches('/') {
            "whoami" => (
                HandleKind::WhoAmI(format!("pid={} uid={} gid={}\n", ctx.pid, ctx.uid, ctx.gid)),
                NewFdFlags::POSITIONED,
            ),
            "stats" => (HandleKind::Stats, NewFdFlags::POSITIONED),
            "shared" => (HandleKind::Shared, NewFdFlags::empty()),
            other => match other.strip_prefix("queue/") {
                Some(name) if !name.is_empty() && !name.contains('/') => {
                    self.hold_queue(name)?;
                    (HandleKind::Queue(name.to_owned()), NewFdFlags::empty())
                }
                _ => return Err(Error::new(ENOENT)),
            },
        };
        if !matches!(kind, HandleKind::Stats) {
            self.opened += 1;
        }
        let id = self.handles.insert(kind)?;
        Ok(OpenResult::ThisScheme { number: id, flags })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.handle(id)? {
            HandleKind::WhoAmI(text) => Ok(copy_at_offset(text.as_bytes(), offset, buf)),
            HandleKind::Stats => Ok(copy_at_offset(self.stats_text().as_bytes(), offset, buf)),
            HandleKind::Shared => self.write_as_the_device(buf),
            HandleKind::Queue(_) => {
                let queue = self.queue(id)?;
                if queue.is_empty() {
                    return Err(Error::new(EWOULDBLOCK));
                }
                let n = queue.len().min(buf.len());
                for (slot, byte) in buf.iter_mut().zip(queue.drain(..n)) {
                    *slot = byte;
                }
                Ok(n)
            }
        }
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        _offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        let queue = self.queue(id)?;
        let room = QUEUE_CAPACITY - queue.len();
        if room == 0 && !buf.is_empty() {
            return Err(Error::new(EWOULDBLOCK));
        }
        let n = room.min(buf.len());
        queue.extend(&buf[..n]);
        Ok(n)
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        metadata: &[u64],
        ctx: &CallerCtx,
    ) -> Result<usize> {
        self.handle(id)?;
        match metadata {
            [CALL_REVERSE] => {
                payload.reverse();
                Ok(payload.len())
            }
            [CALL_APPEND] => self.write(id, payload, 0, 0, ctx),
            _ => Err(Error::new(EINVAL)),
        }
    }

    fn fevent(&mut self, id: usize, flags: EventFlags, _ctx: &CallerCtx) -> Result<EventFlags> {
        let queue = self.queue(id)?;
        let mut ready = EventFlags::empty();
        if !queue.is_empty() {
            ready |= EventFlags::EVENT_READ;
        }
        if queue.len() < QUEUE_CAPACITY {
            ready |= EventFlags::EVENT_WRITE;
        }
        Ok(ready & flags)
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        let size = match self.handle(id)? {
            HandleKind::Queue(_) => self.queue(id)?.len(),
            HandleKind::WhoAmI(text) => text.len(),
            HandleKind::Stats => self.stats_text().len(),
            HandleKind::Shared => SHARED_SIZE,
        };
        stat.st_mode = MODE_FILE | 0o666;
        stat.st_size = size as u64;
        Ok(())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let path = match self.handle(id)? {
            HandleKind::Queue(name) => format!("testbed:queue/{name}"),
            HandleKind::WhoAmI(_) => "testbed:whoami".to_owned(),
            HandleKind::Stats => "testbed:stats".to_owned(),
            HandleKind::Shared => "testbed:shared".to_owned(),
        };
        Ok(copy_at_offset(path.as_bytes(), 0, buf))
    }

    fn on_close(&mut self, id: usize) {
        match self.handles.remove(id) {
            // Stats handles are not counted, so reading the counters leaves them be.
            None | Some(HandleKind::Stats) => {}
            Some(kind) => {
                self.closed += 1;
                if let HandleKind::Queue(name) = kind {
                    self.release_queue(&name);
                }
            }
        }
    }
}

impl Testbed {
    /// A device's write into the `shared` page, then the register read that
    /// tells of it: a driver that sees the number must find it in its memory.
    #[cfg(target_os = "linux")]
    fn write_as_the_device(&mut self, buf: &mut [u8]) -> Result<usize> {
        // Before anyone mapped the page there is no device memory to write.
        let memory = self.shared.as_ref().ok_or(Error::new(EINVAL))?;
        let answer = buf.get_mut(..4).ok_or(Error::new(EINVAL))?;
        let written = self.device_writes.wrapping_add(1);
        nix::sys::uio::pwrite(memory, &written.to_le_bytes(), 4)
            .map_err(|e| Error::new(e as i32))?;
        self.device_writes = written;
        answer.copy_from_slice(&written.to_le_bytes());
        Ok(4)
    }

    #[cfg(not(target_os = "linux"))]
    fn write_as_the_device(&mut self, _buf: &mut [u8]) -> Result<usize> {
        Err(Error::new(EINVAL))
    }
}

impl SchemeDaemon for Testbed {
    #[cfg(target_os = "linux")]
    fn map_fd(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        _ctx: &CallerCtx,
    ) -> Result<scheme_runtime::MapGrant> {
        if !matches!(self.handle(id)?, HandleKind::Shared) {
            return Err(Error::new(EINVAL));
        }
        if offset != 0 || size == 0 || size > SHARED_SIZE {
            return Err(Error::new(EINVAL));
        }
        if self.shared.is_none() {
            self.shared = Some(
                scheme_runtime::sealed_memfd(
                    "testbed-shared",
                    SHARED_SIZE,
                    nix::sys::memfd::MFdFlags::empty(),
                )
                .map_err(|e| Error::new(e.raw_os_error().unwrap_or(syscall::error::EIO)))?,
            );
        }
        let fd = self
            .shared
            .as_ref()
            .expect("created above")
            .try_clone()
            .map_err(|_| Error::new(syscall::error::EMFILE))?;
        Ok(scheme_runtime::MapGrant { fd, offset: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheme_runtime::caller_ctx;

    fn open(bed: &mut Testbed, path: &str) -> Result<usize> {
        match bed.openat(ROOT_ID, path, 0, 0, &caller_ctx(1, 2, 3))? {
            OpenResult::ThisScheme { number, .. } => Ok(number),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn queue_back_pressure_and_readiness() {
        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        let q = open(&mut bed, "queue/a").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            bed.read(q, &mut buf, 0, 0, &ctx).unwrap_err().errno,
            EWOULDBLOCK
        );
        assert_eq!(
            bed.fevent(q, EventFlags::all(), &ctx).unwrap(),
            EventFlags::EVENT_WRITE
        );

        let big = vec![7u8; QUEUE_CAPACITY + 10];
        assert_eq!(bed.write(q, &big, 0, 0, &ctx).unwrap(), QUEUE_CAPACITY);
        assert_eq!(
            bed.write(q, b"x", 0, 0, &ctx).unwrap_err().errno,
            EWOULDBLOCK
        );
        assert_eq!(
            bed.fevent(q, EventFlags::all(), &ctx).unwrap(),
            EventFlags::EVENT_READ
        );
        assert_eq!(bed.read(q, &mut buf, 0, 0, &ctx).unwrap(), 8);
        assert_eq!(bed.write(q, b"xy", 0, 0, &ctx).unwrap(), 2);
    }

    #[test]
    fn bad_paths_and_handles() {
        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        for path in ["", "queue/", "queue/a/b", "nope"] {
            assert_eq!(open(&mut bed, path).unwrap_err().errno, ENOENT, "{path:?}");
        }
        assert_eq!(
            bed.openat(99, "whoami", 0, 0, &ctx).unwrap_err().errno,
            EBADF
        );
        assert_eq!(
            bed.read(42, &mut [0; 4], 0, 0, &ctx).unwrap_err().errno,
            EBADF
        );
        let who = open(&mut bed, "whoami").unwrap();
        assert_eq!(bed.write(who, b"x", 0, 0, &ctx).unwrap_err().errno, EINVAL);
        assert_eq!(
            bed.call(who, &mut [1, 2], &[77], &ctx).unwrap_err().errno,
            EINVAL
        );
    }

    #[test]
    fn an_append_call_on_a_queue_adds_its_payload_as_a_write_does() {
        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        let queue = open(&mut bed, "queue/held").unwrap();
        let mut payload = *b"ab";
        assert_eq!(bed.call(queue, &mut payload, &[CALL_APPEND], &ctx), Ok(2));
        assert_eq!(bed.write(queue, b"c", 0, 0, &ctx), Ok(1));
        let mut buf = [0u8; 8];
        assert_eq!(bed.read(queue, &mut buf, 0, 0, &ctx), Ok(3));
        assert_eq!(&buf[..3], b"abc");
        let who = open(&mut bed, "whoami").unwrap();
        assert_eq!(
            bed.call(who, &mut payload, &[CALL_APPEND], &ctx)
                .map_err(|e| e.errno),
            Err(EINVAL),
            "only a queue takes an append"
        );
    }

    #[test]
    fn whoami_call_and_close_accounting() {
        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        let who = open(&mut bed, "whoami").unwrap();
        let mut buf = [0u8; 64];
        let n = bed.read(who, &mut buf, 0, 0, &ctx).unwrap();
        assert_eq!(&buf[..n], b"pid=1 uid=2 gid=3\n");
        assert_eq!(bed.read(who, &mut buf, 4, 0, &ctx).unwrap(), n - 4);

        let mut payload = *b"abc";
        assert_eq!(
            bed.call(who, &mut payload, &[CALL_REVERSE], &ctx).unwrap(),
            3
        );
        assert_eq!(&payload, b"cba");

        let stats = open(&mut bed, "stats").unwrap();
        bed.on_close(who);
        bed.on_close(who);
        bed.on_close(stats);
        assert_eq!(bed.stats_text(), "opened=1 closed=1 queues=0\n");
    }

    #[test]
    fn an_empty_queue_nobody_holds_is_forgotten_on_close() {
        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        let q = open(&mut bed, "queue/a").unwrap();
        assert_eq!(bed.write(q, b"x", 0, 0, &ctx).unwrap(), 1);
        assert_eq!(bed.read(q, &mut [0; 4], 0, 0, &ctx).unwrap(), 1);
        bed.on_close(q);
        assert!(bed.queues.is_empty(), "{:?}", bed.queues.keys());
    }

    #[test]
    fn a_queue_with_bytes_waiting_outlives_its_handles() {
        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        let q = open(&mut bed, "queue/mail").unwrap();
        bed.write(q, b"for later", 0, 0, &ctx).unwrap();
        bed.on_close(q);
        let q = open(&mut bed, "queue/mail").unwrap();
        let mut buf = [0; 16];
        let n = bed.read(q, &mut buf, 0, 0, &ctx).unwrap();
        assert_eq!(&buf[..n], b"for later");
    }

    #[test]
    fn an_empty_queue_stays_while_another_handle_holds_it() {
        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        let reader = open(&mut bed, "queue/a").unwrap();
        let writer = open(&mut bed, "queue/a").unwrap();
        bed.on_close(writer);
        let writer = open(&mut bed, "queue/a").unwrap();
        bed.write(writer, b"hi", 0, 0, &ctx).unwrap();
        assert_eq!(bed.read(reader, &mut [0; 4], 0, 0, &ctx).unwrap(), 2);
    }

    #[test]
    fn queues_are_bounded_and_one_more_name_is_enospc() {
        let mut bed = Testbed::new();
        let held: Vec<usize> = (0..MAX_QUEUES)
            .map(|i| open(&mut bed, &format!("queue/q{i}")).unwrap())
            .collect();
        assert_eq!(
            open(&mut bed, "queue/one-too-many").unwrap_err().errno,
            ENOSPC
        );
        // A name that exists still opens, and a forgotten queue makes room.
        let again = open(&mut bed, "queue/q0").unwrap();
        bed.on_close(again);
        bed.on_close(held[7]);
        open(&mut bed, "queue/one-too-many").unwrap();
        assert_eq!(open(&mut bed, "queue/q7").unwrap_err().errno, ENOSPC);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_client_cannot_resize_the_shared_page_under_the_others() {
        use nix::errno::Errno;
        use nix::unistd::ftruncate;

        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        let shared = open(&mut bed, "shared").unwrap();
        let mallory = bed.map_fd(shared, 0, SHARED_SIZE, &ctx).unwrap();
        // Shrinking would make every other client's mapping die with SIGBUS.
        assert_eq!(ftruncate(&mallory.fd, 0), Err(Errno::EPERM));
        assert_eq!(ftruncate(&mallory.fd, 1 << 30), Err(Errno::EPERM));
        let alice = bed.map_fd(shared, 0, SHARED_SIZE, &ctx).unwrap();
        assert_eq!(
            nix::sys::stat::fstat(&alice.fd).unwrap().st_size,
            SHARED_SIZE as i64
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_read_of_the_shared_page_stores_the_next_number_in_it_and_answers_it() {
        let mut bed = Testbed::new();
        let ctx = caller_ctx(1, 2, 3);
        let shared = open(&mut bed, "shared").unwrap();
        let mut answer = [0; 4];
        assert_eq!(
            bed.read(shared, &mut answer, 0, 0, &ctx).unwrap_err().errno,
            EINVAL,
            "no memory before the first map"
        );
        let grant = bed.map_fd(shared, 0, SHARED_SIZE, &ctx).unwrap();
        for expected in 1..=2_u32 {
            assert_eq!(bed.read(shared, &mut answer, 0, 0, &ctx), Ok(4));
            assert_eq!(u32::from_le_bytes(answer), expected);
            let mut stored = [0; 4];
            nix::sys::uio::pread(&grant.fd, &mut stored, 4).unwrap();
            assert_eq!(u32::from_le_bytes(stored), expected, "in the second word");
        }
        assert_eq!(
            bed.read(shared, &mut [0; 3], 0, 0, &ctx).unwrap_err().errno,
            EINVAL,
            "no room for the answer"
        );
    }
}
