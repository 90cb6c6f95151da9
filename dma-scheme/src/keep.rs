//! Kept buffers: what a dead driver leaves for its successor.
//!
//! When a driver crashes, `romain:` restarts it within tens of milliseconds. If
//! its buffers were freed, the successor would have to reset the device to take
//! it over: the device still holds the old rings' bus addresses, and a NIC keeps
//! writing received frames into them. A reset is slow (QEMU's e1000 refuses
//! receive for a second after its receive control register is written) and
//! drops whatever arrives meanwhile. So a driver may name a buffer
//! (`alloc?...&keep=<name>`): when its last handle closes, explicitly or
//! because its owner died, the buffer is not quarantined but kept, untouched,
//! as an orphan under (uid, name) for the keep period
//! ([`crate::QuarantineConfig::keep`]; 30 s unless the daemon's `--keep-ms`
//! says otherwise). The next allocation of that name by the same uid, with the
//! same size (rounded) and flags, adopts it: same memory, same bus address,
//! contents as left. The device never stops, and frames it receives during the
//! restart wait in the ring.
//!
//! An orphan stays charged to its uid's quota until it is adopted or released,
//! so dying cannot be used to hold more than the quota. It is released (into
//! the quarantine, as a freed buffer is) when its keep period is over, or when
//! its name is asked for with another size or flags, which is a driver that no
//! longer wants the old layout. The quarantine's reasoning still holds for an
//! orphan released this way: its device may write into it until `mmio:` has
//! stopped the device, so it waits out a hold before reuse like any freed
//! buffer. Only the same uid can adopt (a uid is a driver), so a name is no
//! secret: another driver asking for it gets a buffer of its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::backend::DmaMemory;
use crate::quarantine::Freed;
use crate::request::{AllocRequest, KeepName};

/// A kept buffer whose last handle has closed.
pub(crate) struct Orphan<M> {
    pub memory: M,
    /// What the buffer was allocated as: size rounded, flags, the keep name.
    pub request: AllocRequest,
    /// The handle that last held it, and so the uid it is charged to.
    pub freed: Freed,
    /// When its keep period is over.
    pub until: Instant,
}

/// What an allocation of a kept name finds among the orphans.
pub(crate) enum Claim<M> {
    /// No orphan of that (uid, name).
    Nothing,
    /// An orphan of the same size and flags: the caller's now.
    Adopt(Orphan<M>),
    /// An orphan of another size or flags, taken out to be released.
    Mismatch(Orphan<M>),
}

/// What the orphans have done since the daemon started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeptCounters {
    /// Orphans taken over by a successor.
    pub adopted: u64,
    /// Orphans sent to the quarantine unadopted: their keep period ran out or
    /// their name was asked for with another size or flags.
    pub released: u64,
}

/// Orphans by (uid, name), each waiting for its successor.
pub(crate) struct Orphans<M: DmaMemory> {
    keep: Duration,
    table: BTreeMap<(u32, KeepName), Orphan<M>>,
    counters: KeptCounters,
}

impl<M: DmaMemory> Orphans<M> {
    pub fn new(keep: Duration) -> Self {
        Self {
            keep,
            table: BTreeMap::new(),
            counters: KeptCounters::default(),
        }
    }

    pub fn keep(&self) -> Duration {
        self.keep
    }

    /// Keeps `memory`, allocated as `request` (which names it), from `now` for
    /// the keep period. Gives back an orphan of the same (uid, name) that this
    /// one displaces, for the caller to release; there is none while the
    /// scheme allows one live buffer per name.
    pub fn park(
        &mut self,
        name: KeepName,
        memory: M,
        request: AllocRequest,
        freed: Freed,
        now: Instant,
    ) -> Option<Orphan<M>> {
        let orphan = Orphan {
            memory,
            request,
            freed,
            until: now + self.keep,
        };
        let displaced = self.table.insert((freed.uid, name), orphan);
        if displaced.is_some() {
            self.counters.released += 1;
        }
        displaced
    }

    /// Takes the orphan of (`uid`, `name`) out, if any: to adopt if it was
    /// allocated as `wanted` asks (size, as rounded, flags and direction),
    /// otherwise to release.
    pub fn claim(&mut self, uid: u32, name: KeepName, wanted: AllocRequest) -> Claim<M> {
        let Some(orphan) = self.table.remove(&(uid, name)) else {
            return Claim::Nothing;
        };
        let made = orphan.request;
        if (made.size, made.flags, made.direction) == (wanted.size, wanted.flags, wanted.direction)
        {
            self.counters.adopted += 1;
            Claim::Adopt(orphan)
        } else {
            self.counters.released += 1;
            Claim::Mismatch(orphan)
        }
    }

    /// Takes out the orphans whose keep period is over at `now`, for the
    /// caller to release.
    pub fn expire_due(&mut self, now: Instant) -> Vec<Orphan<M>> {
        let due: Vec<_> = self
            .table
            .iter()
            .filter(|(_, orphan)| orphan.until <= now)
            .map(|(&key, _)| key)
            .collect();
        let expired: Vec<_> = due
            .into_iter()
            .filter_map(|key| self.table.remove(&key))
            .collect();
        self.counters.released += expired.len() as u64;
        expired
    }

    /// Orphans held and their bytes.
    pub fn held(&self) -> (usize, u64) {
        (
            self.table.len(),
            self.table
                .values()
                .map(|orphan| orphan.memory.size() as u64)
                .sum(),
        )
    }

    pub fn counters(&self) -> KeptCounters {
        self.counters
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::backend::{DmaBackend, MappedMemfd, MemfdBackend};
    use crate::{BufferFlags, Direction};
    use std::num::NonZeroU64;

    const KEEP: Duration = Duration::from_millis(100);

    fn name(text: &str) -> KeepName {
        KeepName::new(text).unwrap()
    }

    fn request(size: u64, flags: BufferFlags, keep: &str) -> AllocRequest {
        AllocRequest {
            size: NonZeroU64::new(size).unwrap(),
            flags,
            direction: Direction::Both,
            keep: Some(name(keep)),
        }
    }

    fn freed(uid: u32) -> Freed {
        Freed {
            id: 1,
            pid: 40,
            uid,
        }
    }

    fn memory(size: usize) -> MappedMemfd {
        MemfdBackend.allocate(size, Direction::Both).unwrap()
    }

    fn park(orphans: &mut Orphans<MappedMemfd>, uid: u32, keep: &str, now: Instant) {
        let displaced = orphans.park(
            name(keep),
            memory(8192),
            request(8192, BufferFlags::SHARED, keep),
            freed(uid),
            now,
        );
        assert!(displaced.is_none());
    }

    #[test]
    fn an_orphan_is_adopted_only_by_its_uid_with_its_size_flags_and_direction() {
        let mut orphans = Orphans::new(KEEP);
        let now = Instant::now();
        park(&mut orphans, 1001, "rx", now);
        assert_eq!(orphans.held(), (1, 8192));
        let rx = name("rx");
        assert!(matches!(
            orphans.claim(1002, rx, request(8192, BufferFlags::SHARED, "rx")),
            Claim::Nothing
        ));
        assert!(matches!(
            orphans.claim(1001, name("tx"), request(8192, BufferFlags::SHARED, "rx")),
            Claim::Nothing
        ));
        assert!(matches!(
            orphans.claim(1001, rx, request(8192, BufferFlags::SHARED, "rx")),
            Claim::Adopt(_)
        ));
        assert_eq!(orphans.held(), (0, 0));

        park(&mut orphans, 1001, "rx", now);
        assert!(matches!(
            orphans.claim(1001, rx, request(8192, BufferFlags::empty(), "rx")),
            Claim::Mismatch(_)
        ));
        park(&mut orphans, 1001, "rx", now);
        assert!(matches!(
            orphans.claim(1001, rx, request(4096, BufferFlags::SHARED, "rx")),
            Claim::Mismatch(_)
        ));
        park(&mut orphans, 1001, "rx", now);
        let toward_the_device = AllocRequest {
            direction: Direction::ToDevice,
            ..request(8192, BufferFlags::SHARED, "rx")
        };
        assert!(matches!(
            orphans.claim(1001, rx, toward_the_device),
            Claim::Mismatch(_)
        ));
        assert_eq!(
            orphans.counters(),
            KeptCounters {
                adopted: 1,
                released: 3
            }
        );
    }

    #[test]
    fn orphans_expire_each_at_the_end_of_its_keep_period() {
        let mut orphans = Orphans::new(KEEP);
        let start = Instant::now();
        park(&mut orphans, 1001, "rx", start);
        park(&mut orphans, 1001, "tx", start + KEEP / 2);
        assert!(orphans
            .expire_due(start + KEEP - Duration::from_millis(1))
            .is_empty());
        let expired = orphans.expire_due(start + KEEP);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].request.keep, Some(name("rx")));
        assert_eq!(orphans.held(), (1, 8192));
        assert_eq!(orphans.expire_due(start + 2 * KEEP).len(), 1);
        assert_eq!(orphans.counters().released, 2);
    }

    #[test]
    fn a_zero_keep_period_expires_at_once() {
        let mut orphans = Orphans::new(Duration::ZERO);
        let now = Instant::now();
        park(&mut orphans, 1001, "rx", now);
        assert_eq!(orphans.expire_due(now).len(), 1);
    }
}
