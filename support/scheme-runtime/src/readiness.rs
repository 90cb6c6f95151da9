//! Readiness events, shared by both platforms.
//!
//! A client registers interest with `fevent`; the platform layer then asks the
//! scheme again after every round of requests (see the readiness contract on
//! [`crate::SchemeDaemon`]) and reports each flag when it becomes ready, once per
//! rising edge, as Redox's event scheme does.

use redox_scheme::scheme::SchemeSync;
use syscall::flag::EventFlags;

use crate::caller_ctx;

/// Who made a request, as a scheme sees it. Kept with each interest so that the
/// scheme sees the same caller on every re-query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub pid: usize,
    pub uid: u32,
    pub gid: u32,
}

struct Interest<K> {
    key: K,
    id: usize,
    caller: Caller,
    wanted: EventFlags,
    reported: EventFlags,
}

/// The handles with registered interest. `K` says where to deliver an event: a
/// connection on the host, the handle id itself on Redox.
pub struct Readiness<K> {
    interests: Vec<Interest<K>>,
}

impl<K: Copy + PartialEq> Readiness<K> {
    pub fn new() -> Self {
        Self {
            interests: Vec::new(),
        }
    }

    /// Records interest in `wanted` for `key` (replacing an earlier one); `ready`
    /// is what the scheme's `fevent` just answered, which the caller has already
    /// seen in its reply, so it is not reported again.
    pub fn register(
        &mut self,
        key: K,
        id: usize,
        caller: Caller,
        wanted: EventFlags,
        ready: EventFlags,
    ) {
        self.forget(key);
        if !wanted.is_empty() {
            self.interests.push(Interest {
                key,
                id,
                caller,
                wanted,
                reported: ready & wanted,
            });
        }
    }

    /// The client of `key` read or wrote: `flags` count as not reported, so
    /// that a poll finding them ready tells again. Without this, readiness that
    /// a read used up and new data restored within one round (between two
    /// polls) would never be told, and a client waiting for the event would
    /// wait for good.
    pub fn rearm(&mut self, key: K, flags: EventFlags) {
        for interest in self.interests.iter_mut().filter(|i| i.key == key) {
            interest.reported -= flags;
        }
    }

    pub fn forget(&mut self, key: K) {
        self.interests.retain(|interest| interest.key != key);
    }

    /// Asks the scheme about every registered handle and calls `emit(key, id,
    /// newly_ready)` for each handle with a flag that has become ready.
    pub fn poll(
        &mut self,
        scheme: &mut impl SchemeSync,
        mut emit: impl FnMut(K, usize, EventFlags),
    ) {
        for interest in &mut self.interests {
            let Caller { pid, uid, gid } = interest.caller;
            let ready =
                match scheme.fevent(interest.id, interest.wanted, &caller_ctx(pid, uid, gid)) {
                    Ok(flags) => flags & interest.wanted,
                    Err(error) => {
                        log::debug!("fevent on handle {} failed: {error}", interest.id);
                        EventFlags::empty()
                    }
                };
            let newly = ready - interest.reported;
            interest.reported = ready;
            if !newly.is_empty() {
                emit(interest.key, interest.id, newly);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redox_scheme::CallerCtx;
    use syscall::error::Result;

    /// A scheme whose handles are ready for reading when their flag is set.
    struct Flags(Vec<bool>);

    impl SchemeSync for Flags {
        fn fevent(&mut self, id: usize, flags: EventFlags, _: &CallerCtx) -> Result<EventFlags> {
            Ok(if self.0[id] {
                flags & EventFlags::EVENT_READ
            } else {
                EventFlags::empty()
            })
        }
    }

    const CALLER: Caller = Caller {
        pid: 1,
        uid: 0,
        gid: 0,
    };

    fn poll(readiness: &mut Readiness<u32>, scheme: &mut Flags) -> Vec<(u32, usize, EventFlags)> {
        let mut events = Vec::new();
        readiness.poll(scheme, |key, id, flags| events.push((key, id, flags)));
        events
    }

    #[test]
    fn readiness_a_read_used_up_and_new_data_restored_is_told_again() {
        let mut scheme = Flags(vec![false, true]);
        let mut readiness = Readiness::new();
        readiness.register(7, 1, CALLER, EventFlags::EVENT_READ, EventFlags::empty());
        assert_eq!(
            poll(&mut readiness, &mut scheme),
            vec![(7, 1, EventFlags::EVENT_READ)]
        );
        // Within one round: the client reads what was there, and more arrives.
        readiness.rearm(7, EventFlags::EVENT_READ);
        assert_eq!(
            poll(&mut readiness, &mut scheme),
            vec![(7, 1, EventFlags::EVENT_READ)]
        );
        assert!(poll(&mut readiness, &mut scheme).is_empty(), "once");
        readiness.rearm(8, EventFlags::EVENT_READ);
        assert!(
            poll(&mut readiness, &mut scheme).is_empty(),
            "another key's read"
        );
    }

    #[test]
    fn reports_each_rising_edge_once() {
        let mut scheme = Flags(vec![false, false]);
        let mut readiness = Readiness::new();
        readiness.register(7, 1, CALLER, EventFlags::EVENT_READ, EventFlags::empty());
        assert!(poll(&mut readiness, &mut scheme).is_empty());

        scheme.0[1] = true;
        assert_eq!(
            poll(&mut readiness, &mut scheme),
            vec![(7, 1, EventFlags::EVENT_READ)]
        );
        assert!(
            poll(&mut readiness, &mut scheme).is_empty(),
            "no second report while still ready"
        );

        scheme.0[1] = false;
        assert!(poll(&mut readiness, &mut scheme).is_empty());
        scheme.0[1] = true;
        assert_eq!(
            poll(&mut readiness, &mut scheme).len(),
            1,
            "a new edge is reported"
        );
    }

    #[test]
    fn ready_at_registration_is_not_repeated_and_forget_stops_reports() {
        let mut scheme = Flags(vec![true]);
        let mut readiness = Readiness::new();
        readiness.register(3, 0, CALLER, EventFlags::EVENT_READ, EventFlags::EVENT_READ);
        assert!(poll(&mut readiness, &mut scheme).is_empty());

        scheme.0[0] = false;
        poll(&mut readiness, &mut scheme);
        readiness.forget(3);
        scheme.0[0] = true;
        assert!(poll(&mut readiness, &mut scheme).is_empty());

        scheme.0[0] = false;
        readiness.register(3, 0, CALLER, EventFlags::empty(), EventFlags::empty());
        scheme.0[0] = true;
        assert!(
            poll(&mut readiness, &mut scheme).is_empty(),
            "empty interest registers nothing"
        );
    }
}
