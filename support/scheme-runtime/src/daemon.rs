//! What a daemon implements beyond `SchemeSync`.

use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

use redox_scheme::scheme::SchemeSync;
use redox_scheme::CallerCtx;
use syscall::error::{Error, Result, EOPNOTSUPP};

/// A memory object a client may map on the Linux host: the daemon hands out a
/// file descriptor (a memfd, a hugetlbfs file, a sysfs `resourceN`) and the offset
/// in it where the requested range starts.
pub struct MapGrant {
    pub fd: OwnedFd,
    pub offset: u64,
}

/// A scheme daemon: a `SchemeSync` plus the hooks the platform layer needs.
///
/// Readiness contract: `SchemeSync::fevent(id, flags)` registers interest in
/// `flags` and returns the subset that is ready now. The platform layer calls it
/// again after every round of requests for each handle with interest, and posts an
/// event when a flag becomes ready, so `fevent` must be cheap and idempotent.
///
/// Blocking contract: `read` and `write` return `EWOULDBLOCK` when they cannot
/// proceed. For a handle opened without `O_NONBLOCK` the platform layer parks the
/// request (other clients go on being served) and retries it after later rounds.
pub trait SchemeDaemon: SchemeSync {
    /// Linux host counterpart of `mmap_prep`: which file descriptor, at which
    /// offset, backs `size` bytes at `offset` of handle `id`.
    #[allow(unused_variables)]
    fn map_fd(&mut self, id: usize, offset: u64, size: usize, ctx: &CallerCtx) -> Result<MapGrant> {
        Err(Error::new(EOPNOTSUPP))
    }

    /// Called after every round of requests, before parked requests are retried:
    /// the place to poll a device or drain an internal queue.
    fn after_round(&mut self) {}

    /// Descriptors besides the scheme's own requests whose readability starts
    /// a round (an interrupt line, a handle that posts readiness events): the
    /// daemon drains them in [`after_round`](Self::after_round). Asked before
    /// every wait, so the set may change as handles come and go. A replica
    /// waits for its engine's rounds instead.
    fn wake_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    /// How soon the daemon wants its next round even if nothing wakes it,
    /// when sooner than its tick: a driver polling for a while after a burst
    /// of work. Asked before every wait; `None` leaves the tick alone. A
    /// replica waits for its engine's rounds instead.
    fn next_round_within(&self) -> Option<Duration> {
        None
    }

    /// The interrupt line a replica's supervisor should wait on and relay to
    /// it ([`crate::replicated::RelayedLine`]); asked once, when the replica
    /// says hello. A daemon serving on its own waits on its line through
    /// [`wake_fds`](Self::wake_fds) instead.
    fn relayed_line(&self) -> Option<crate::replicated::RelayedLine> {
        None
    }

    /// Whether a replica may read handle `id` for its client before the client
    /// asks, when a round finds it readable, and have the supervisor hold the
    /// data for the client's next read: a read that would otherwise cost the
    /// replicas a meeting of its own, right after the round that made the
    /// handle readable. Only for handles whose reads take what is there (a
    /// NIC's received frames), whatever the offset; the data is read with the
    /// length of the client's last read and handed out in order.
    #[allow(unused_variables)]
    fn may_read_ahead(&self, id: usize) -> bool {
        false
    }
}
