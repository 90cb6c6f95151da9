//! The `dma:` scheme: buffers owned by the client that opened them, checked on every operation.

use std::collections::BTreeMap;
use std::io;
use std::num::NonZeroU64;
use std::ptr;
use std::time::Instant;

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::{HandleTable, SchemeDaemon, ROOT_ID};
use syscall::error::{
    Error, Result, EACCES, EBADF, EDQUOT, EEXIST, EINVAL, EIO, ENOMEM, ENOTDIR, EOPNOTSUPP,
};
use syscall::schemev2::NewFdFlags;
use syscall::{Stat, MODE_FILE};

use crate::backend::{DmaBackend, DmaMemory};
use crate::info::{BufferInfo, KeepState, INFO_CALL};
use crate::keep::{Claim, Orphan, Orphans};
use crate::ledger::Ledger;
use crate::quarantine::{Freed, Quarantine, QuarantineConfig};
use crate::quota::QuotaSource;
use crate::request::{self, AllocRequest, KeepName, OpenRequest};
use crate::status;

/// The `dma:` scheme over a backend `B`, with quotas from `Q`.
///
/// A caller that `Q` does not let open `dma:` (a driver whose policy rule does
/// not list the scheme) gets `EACCES` for every path. A handle belongs to the
/// process that opened it: every operation from another pid gets `EBADF`, as if
/// the id did not exist. Its memory is charged to the opener's uid, whose
/// processes share one quota. Over quota is `EDQUOT`, not `ENOMEM`: the system
/// has memory, this caller may not have more of it, and it is the caller that
/// must free buffers. A backend out of memory is `ENOMEM`.
///
/// A freed buffer (its last handle closed, its owner dead) leaves the client's
/// quota at once but its memory goes back to the backend only after a
/// [`crate::quarantine`]: its device may still be writing into it until `mmio:`
/// has stopped it. The daemon calls [`SchemeDaemon::after_round`] on a tick
/// ([`DmaScheme::tick`]) to release what is due.
///
/// A kept buffer (`keep=<name>`) is not freed when its last handle closes but
/// waits, still charged to its uid, for an allocation of the same name, size
/// and flags by the same uid to adopt it ([`crate::keep`]). One uid has at most
/// one live buffer of a name: a second is `EEXIST`.
pub struct DmaScheme<B: DmaBackend, Q: QuotaSource> {
    backend: B,
    quota: Q,
    handles: HandleTable<Handle<B::Memory>>,
    ledger: Ledger,
    quarantine: Quarantine<B::Memory>,
    orphans: Orphans<B::Memory>,
    /// The handle of each live kept buffer, by (uid, name).
    kept_live: BTreeMap<(u32, KeepName), usize>,
}

struct Handle<M> {
    /// The pid that opened it, the only one that may use it.
    owner: usize,
    /// The uid its memory is charged to.
    owner_uid: u32,
    kind: HandleKind<M>,
}

enum HandleKind<M> {
    Buffer {
        memory: M,
        /// What it serves: the size is the buffer's, the request's rounded up.
        request: AllocRequest,
        keep: KeepState,
    },
    /// The status text as it was at open, read at offsets.
    Status(Vec<u8>),
}

impl<B: DmaBackend, Q: QuotaSource> DmaScheme<B, Q> {
    /// The scheme with the default quarantine ([`QuarantineConfig::default`]).
    pub fn new(backend: B, quota: Q) -> Self {
        Self::with_quarantine(backend, quota, QuarantineConfig::default())
    }

    pub fn with_quarantine(backend: B, quota: Q, quarantine: QuarantineConfig) -> Self {
        Self {
            backend,
            quota,
            handles: HandleTable::new(),
            ledger: Ledger::default(),
            quarantine: Quarantine::new(quarantine),
            orphans: Orphans::new(quarantine.keep),
            kept_live: BTreeMap::new(),
        }
    }

    /// How often the server should run a round when idle so that quarantined
    /// buffers are released close to their time: a tenth of the hold, at least
    /// every 10 ms and at most every 100 ms.
    pub fn tick(&self) -> std::time::Duration {
        (self.quarantine.config().hold / 10).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(100),
        )
    }

    /// The status text as root reads it, every client included (see [`crate::status`]).
    pub fn status(&self) -> String {
        self.status_for(status::ROOT_UID)
    }

    /// The status text as a caller of `uid` reads it.
    fn status_for(&self, uid: u32) -> String {
        let (buffers, bytes) = self.quarantine.held();
        let quarantine = status::QuarantineStatus {
            buffers,
            bytes,
            counters: self.quarantine.counters(),
        };
        let (orphans, bytes) = self.orphans.held();
        let kept = status::KeptStatus {
            orphans,
            bytes,
            counters: self.orphans.counters(),
        };
        status::render(self.backend.name(), &self.ledger, &quarantine, &kept, uid)
    }

    /// Releases what is due at `now`: orphans past their keep period into the
    /// quarantine, then quarantined memory past its hold to the backend.
    fn release_due(&mut self, now: Instant) {
        for orphan in self.orphans.expire_due(now) {
            log::info!(
                "kept buffer {} of uid {} not adopted within {:?}: freed",
                orphan_name(&orphan),
                orphan.freed.uid,
                self.orphans.keep()
            );
            self.discard(orphan, now);
        }
        self.quarantine.release_due(now);
    }

    /// Frees an orphan as a closed buffer is freed: its uid's charge goes at
    /// once, its memory into the quarantine.
    fn discard(&mut self, orphan: Orphan<B::Memory>, now: Instant) {
        self.ledger
            .release(orphan.freed.uid, orphan.memory.size() as u64);
        self.quarantine.admit(orphan.memory, orphan.freed, now);
    }

    /// The orphan of `name` for `request` (rounded to `size`) by `uid`, if it
    /// can be adopted; one that cannot (another size, flags or direction) is freed.
    fn adopt(
        &mut self,
        name: KeepName,
        request: AllocRequest,
        size: NonZeroU64,
        ctx: &CallerCtx,
        now: Instant,
    ) -> Option<B::Memory> {
        match self
            .orphans
            .claim(ctx.uid, name, AllocRequest { size, ..request })
        {
            Claim::Nothing => None,
            Claim::Adopt(orphan) => {
                // The new buffer's own line says "adopted".
                log::debug!(
                    "pid {} (uid {}): kept buffer {name} adopted from buffer {} of pid {}",
                    ctx.pid,
                    ctx.uid,
                    orphan.freed.id,
                    orphan.freed.pid
                );
                Some(orphan.memory)
            }
            Claim::Mismatch(orphan) => {
                log::info!(
                    "pid {} (uid {}): {request} does not match the kept buffer {name} \
                     ({} bytes, flags [{}], dir {}): that one is freed, a new one allocated",
                    ctx.pid,
                    ctx.uid,
                    orphan.request.size,
                    orphan.request.flags,
                    orphan.request.direction
                );
                self.discard(orphan, now);
                None
            }
        }
    }

    fn alloc(&mut self, request: AllocRequest, ctx: &CallerCtx) -> Result<HandleKind<B::Memory>> {
        let (pid, uid) = (ctx.pid, ctx.uid);
        let Some(quota) = self.quota.quota(ctx) else {
            log::warn!("pid {pid} (uid {uid}): no DMA quota, {request} refused");
            return Err(Error::new(EACCES));
        };
        let rounded = self.backend.buffer_size(request.size.get());
        let Some(size) = rounded.and_then(|size| NonZeroU64::new(size as u64)) else {
            log::warn!(
                "pid {pid}: {request} refused: the {} backend makes buffers of at most {} bytes",
                self.backend.name(),
                self.backend.max_buffer_size()
            );
            return Err(Error::new(EINVAL));
        };
        // Memory whose quarantine is over goes back first, so that it can serve.
        let now = Instant::now();
        self.release_due(now);
        if let Some(name) = request.keep {
            if let Some(live) = self.kept_live.get(&(uid, name)) {
                log::warn!(
                    "pid {pid}: {request} refused: buffer {live} of uid {uid} is kept as {name}"
                );
                return Err(Error::new(EEXIST));
            }
            // Adopting charges nothing: the orphan is still charged to this uid.
            if let Some(memory) = self.adopt(name, request, size, ctx, now) {
                return Ok(HandleKind::Buffer {
                    memory,
                    request: AllocRequest { size, ..request },
                    keep: KeepState::Adopted,
                });
            }
        }
        if let Err(over) = self.ledger.charge(uid, size.get(), quota) {
            log::warn!(
                "pid {pid}: {request} ({size} bytes) refused over the quota of uid {uid}: {over}"
            );
            return Err(Error::new(EDQUOT));
        }
        let memory = match self
            .backend
            .allocate(size.get() as usize, request.direction)
        {
            Ok(memory) => memory,
            Err(e) => {
                self.ledger.release(uid, size.get());
                log::error!("pid {pid}: {request}: {} backend: {e}", self.backend.name());
                return Err(Error::new(if e.kind() == io::ErrorKind::OutOfMemory {
                    ENOMEM
                } else {
                    EIO
                }));
            }
        };
        // SAFETY: `memory` is mapped read-write for `size()` bytes in this process and
        // no client has seen it yet. Zeroed here whatever the backend promised.
        unsafe { ptr::write_bytes(memory.as_ptr(), 0, memory.size()) };
        Ok(HandleKind::Buffer {
            memory,
            request: AllocRequest { size, ..request },
            keep: if request.keep.is_some() {
                KeepState::Fresh
            } else {
                KeepState::NotKept
            },
        })
    }

    /// The handle `id` if `ctx` is its owner.
    fn handle(&self, id: usize, ctx: &CallerCtx) -> Result<&HandleKind<B::Memory>> {
        let handle = self.handles.get(id).ok_or(Error::new(EBADF))?;
        if handle.owner != ctx.pid {
            log::warn!(
                "pid {} used handle {id} of pid {}: refused",
                ctx.pid,
                handle.owner
            );
            return Err(Error::new(EBADF));
        }
        Ok(&handle.kind)
    }

    /// The memory of buffer `id` if `ctx` owns it and `size` bytes at `offset` lie within it.
    fn mappable(&self, id: usize, offset: u64, size: usize, ctx: &CallerCtx) -> Result<&B::Memory> {
        let HandleKind::Buffer { memory, .. } = self.handle(id, ctx)? else {
            return Err(Error::new(EOPNOTSUPP));
        };
        let within = offset.is_multiple_of(syscall::PAGE_SIZE as u64)
            && size != 0
            && offset
                .checked_add(size as u64)
                .is_some_and(|end| end <= memory.size() as u64);
        if !within {
            log::warn!(
                "pid {}: mapping {size} bytes at {offset:#x} of a {}-byte buffer refused",
                ctx.pid,
                memory.size()
            );
            return Err(Error::new(EINVAL));
        }
        Ok(memory)
    }
}

impl<B: DmaBackend, Q: QuotaSource> SchemeSync for DmaScheme<B, Q> {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT_ID)
    }

    fn openat(
        &mut self,
        fd: usize,
        path: &str,
        _flags: usize,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        if fd != ROOT_ID {
            return Err(Error::new(ENOTDIR));
        }
        if let Err(denial) = self.quota.may_open(ctx) {
            log::warn!("pid {} (uid {}): open refused: {denial}", ctx.pid, ctx.uid);
            return Err(Error::new(EACCES));
        }
        // The error quotes the path cut short: one bounded line per refusal,
        // however long the path a client sends.
        let request = request::parse(path).map_err(|e| {
            log::warn!("pid {}: open refused: {e}", ctx.pid);
            Error::new(e.errno())
        })?;
        let (kind, flags) = match request {
            OpenRequest::Alloc(request) => (self.alloc(request, ctx)?, NewFdFlags::empty()),
            OpenRequest::Status => (
                HandleKind::Status(self.status_for(ctx.uid).into_bytes()),
                NewFdFlags::POSITIONED,
            ),
        };
        let id = self.handles.insert(Handle {
            owner: ctx.pid,
            owner_uid: ctx.uid,
            kind,
        })?;
        if let Some(Handle {
            kind:
                HandleKind::Buffer {
                    memory,
                    request,
                    keep,
                },
            ..
        }) = self.handles.get(id)
        {
            log::info!(
                "pid {} (uid {}): buffer {id}: {} bytes, bus address {}, flags [{}]{}",
                ctx.pid,
                ctx.uid,
                memory.size(),
                memory
                    .bus_addr()
                    .map_or("none".into(), |addr| format!("{addr:#x}")),
                request.flags,
                match (request.keep, keep) {
                    (Some(name), KeepState::Adopted) => format!(", kept as {name}, adopted"),
                    (Some(name), _) => format!(", kept as {name}"),
                    (None, _) => String::new(),
                }
            );
            if let Some(name) = request.keep {
                self.kept_live.insert((ctx.uid, name), id);
            }
        }
        Ok(OpenResult::ThisScheme { number: id, flags })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        let HandleKind::Status(text) = self.handle(id, ctx)? else {
            // A buffer is mapped, not read.
            return Err(Error::new(EOPNOTSUPP));
        };
        Ok(scheme_runtime::copy_at_offset(text, offset, buf))
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        metadata: &[u64],
        ctx: &CallerCtx,
    ) -> Result<usize> {
        let HandleKind::Buffer {
            memory,
            request,
            keep,
        } = self.handle(id, ctx)?
        else {
            return Err(Error::new(EOPNOTSUPP));
        };
        if metadata != [INFO_CALL] || payload.len() < BufferInfo::LEN {
            log::warn!(
                "pid {}: call with metadata {metadata:?}, {} payload bytes: want [{INFO_CALL}], {}+",
                ctx.pid,
                payload.len(),
                BufferInfo::LEN
            );
            return Err(Error::new(EINVAL));
        }
        let info = BufferInfo {
            bus_addr: memory.bus_addr(),
            size: memory.size() as u64,
            flags: request.flags,
            keep: *keep,
        };
        payload[..BufferInfo::LEN].copy_from_slice(&info.to_bytes());
        Ok(BufferInfo::LEN)
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, ctx: &CallerCtx) -> Result<()> {
        let (mode, size) = match self.handle(id, ctx)? {
            HandleKind::Buffer { memory, .. } => (MODE_FILE | 0o600, memory.size()),
            HandleKind::Status(text) => (MODE_FILE | 0o400, text.len()),
        };
        *stat = Stat {
            st_mode: mode,
            st_size: size as u64,
            st_blksize: syscall::PAGE_SIZE as u32,
            ..Stat::default()
        };
        Ok(())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], ctx: &CallerCtx) -> Result<usize> {
        let path = match self.handle(id, ctx)? {
            HandleKind::Buffer { request, .. } => {
                format!("/scheme/{}/{request}", crate::SCHEME_NAME)
            }
            HandleKind::Status(_) => format!("/scheme/{}/status", crate::SCHEME_NAME),
        };
        Ok(scheme_runtime::copy_at_offset(path.as_bytes(), 0, buf))
    }

    #[cfg(target_os = "redox")]
    fn mmap_prep(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        flags: syscall::MapFlags,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        if !flags.contains(syscall::MapFlags::MAP_SHARED) {
            // A private mapping would be a copy-on-write copy the device never sees.
            log::warn!(
                "pid {}: buffer {id} mapped without MAP_SHARED: refused",
                ctx.pid
            );
            return Err(Error::new(EINVAL));
        }
        let memory = self.mappable(id, offset, size, ctx)?;
        Ok(memory.as_ptr() as usize + offset as usize)
    }

    fn on_close(&mut self, id: usize) {
        let Some(handle) = self.handles.remove(id) else {
            return;
        };
        let HandleKind::Buffer {
            memory, request, ..
        } = handle.kind
        else {
            return;
        };
        let freed = Freed {
            id,
            pid: handle.owner,
            uid: handle.owner_uid,
        };
        let now = Instant::now();
        if let Some(name) = request.keep {
            self.kept_live.remove(&(handle.owner_uid, name));
            log::info!(
                "pid {} (uid {}): buffer {id} kept as {name} ({} bytes) for {:?}",
                handle.owner,
                handle.owner_uid,
                memory.size(),
                self.orphans.keep()
            );
            // Still charged: the uid holds it until it is adopted or freed.
            if let Some(displaced) = self.orphans.park(name, memory, request, freed, now) {
                log::error!(
                    "uid {}: kept buffer {name} displaced an orphan of the same name: freed",
                    handle.owner_uid
                );
                self.discard(displaced, now);
            }
            // A zero keep period frees at once, as a buffer that is not kept.
            self.release_due(now);
        } else {
            // The quota is the client's again at once (a restarted driver needs
            // it); the memory only after the quarantine.
            self.ledger.release(handle.owner_uid, memory.size() as u64);
            log::info!(
                "pid {} (uid {}): buffer {id} freed ({} bytes), quarantined for {:?}{}",
                handle.owner,
                handle.owner_uid,
                memory.size(),
                self.quarantine.config().hold,
                if self.quarantine.config().poison {
                    " and poisoned"
                } else {
                    ""
                }
            );
            self.quarantine.admit(memory, freed, now);
        }
    }
}

impl<B: DmaBackend, Q: QuotaSource> SchemeDaemon for DmaScheme<B, Q> {
    #[cfg(target_os = "linux")]
    fn map_fd(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        ctx: &CallerCtx,
    ) -> Result<scheme_runtime::MapGrant> {
        let memory = self.mappable(id, offset, size, ctx)?;
        let fd = memory.share_fd().map_err(|e| {
            log::error!("pid {}: sharing buffer {id}: {e}", ctx.pid);
            Error::new(EIO)
        })?;
        Ok(scheme_runtime::MapGrant { fd, offset })
    }

    fn after_round(&mut self) {
        self.release_due(Instant::now());
    }
}

/// An orphan's keep name, for the log.
fn orphan_name<M>(orphan: &Orphan<M>) -> &str {
    orphan.request.keep.as_ref().map_or("?", KeepName::as_str)
}
