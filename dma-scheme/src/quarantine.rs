//! Freed buffers held back from reuse until their device has surely stopped.
//!
//! There is no IOMMU: a device keeps the bus addresses its driver gave it, and a
//! driver killed mid-transfer leaves its NIC writing received frames into them.
//! `mmio:` stops the device (clears its PCI command register's Bus Master
//! Enable) when the dead driver's register handles close, and `dma:` frees the
//! driver's buffers when its buffer handles close. The two daemons hear of the
//! death independently, in either order, so a buffer that went straight back to
//! the kernel could be handed to someone else while the device still writes
//! into it. Hence every freed buffer waits here for [`QuarantineConfig::hold`]
//! before its memory is released.
//!
//! Why the default hold (1 s) is enough: both daemons learn of the death from
//! the same event, the kernel closing the dead process's descriptors as it
//! exits, which hangs up its connections to `mmio:` and to `dma:` together. All
//! `mmio:` then has to do is one read and one write of the function's command
//! register (sysfs `config` on Linux), a few microseconds on hardware and a few
//! milliseconds in the TCG guest (the guest test measures it). A second is
//! hundreds of times that: `mmio:` would have to be starved of the CPU for a
//! whole second while `dma:` is not. The device's own writes already posted when
//! Bus Master Enable goes off complete within microseconds (a posted write does
//! not outlive a bus transaction). If `mmio:` itself is dead, no hold is enough;
//! that is a failure of the trusted base, which `mmio:` and `dma:` are.
//!
//! With `poison` (the daemon's `--quarantine-poison`, for tests) a buffer is
//! filled with [`POISON`] once its hold is over, when its device must have
//! stopped, kept for one more hold, and checked before release: a byte changed in
//! between is DMA that reached freed memory, logged and counted in `status`
//! (`poison_dirty`). Poisoning at the start of the hold instead would count
//! harmless writes made before `mmio:` got to stop the device.

use std::ptr;
use std::time::{Duration, Instant};

use crate::backend::DmaMemory;

/// The pattern a poisoned buffer holds, 8 bytes repeated (little-endian): not a
/// value a NIC's frame or descriptor write-back is likely to repeat.
pub const POISON: u64 = 0xd15e_a5ed_dead_d3a0;

/// How long freed buffers wait, and whether they are poisoned and checked; and
/// how long a kept buffer waits for its successor before it is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// How long a freed buffer is kept from reuse (see the module docs for why
    /// the default is enough).
    pub hold: Duration,
    /// Fill each buffer with [`POISON`] after its hold and check it one hold
    /// later (the buffer is then kept for two holds).
    pub poison: bool,
    /// How long a kept buffer ([`crate::keep`]) whose last handle closed waits
    /// for its successor before it enters the quarantine.
    pub keep: Duration,
}

impl QuarantineConfig {
    pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);
    /// A restart takes tens of milliseconds; a driver that takes longer than
    /// this to come back has not come back, and its memory is the system's again.
    pub const DEFAULT_KEEP: Duration = Duration::from_secs(30);
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            hold: Self::DEFAULT_HOLD,
            poison: false,
            keep: Self::DEFAULT_KEEP,
        }
    }
}

/// What the quarantine has done since the daemon started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuarantineCounters {
    /// Buffers released to the backend after their hold.
    pub released: u64,
    /// Poisoned buffers found unchanged when released.
    pub poison_clean: u64,
    /// Poisoned buffers something wrote into after they were poisoned.
    pub poison_dirty: u64,
}

/// Who freed a buffer, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freed {
    pub id: usize,
    pub pid: usize,
    pub uid: u32,
}

struct Entry<M> {
    memory: M,
    freed: Freed,
    /// When the current phase ends: the hold, then (poisoning) the check.
    until: Instant,
    poisoned: bool,
}

/// Freed buffers on their way back to the backend.
pub struct Quarantine<M: DmaMemory> {
    config: QuarantineConfig,
    entries: Vec<Entry<M>>,
    counters: QuarantineCounters,
}

impl<M: DmaMemory> Quarantine<M> {
    pub fn new(config: QuarantineConfig) -> Self {
        Self {
            config,
            entries: Vec::new(),
            counters: QuarantineCounters::default(),
        }
    }

    pub fn config(&self) -> QuarantineConfig {
        self.config
    }

    /// Takes a freed buffer at `now`.
    pub fn admit(&mut self, memory: M, freed: Freed, now: Instant) {
        self.entries.push(Entry {
            memory,
            freed,
            until: now + self.config.hold,
            poisoned: false,
        });
        // A zero hold without poison releases at once, as before the quarantine.
        self.release_due(now);
    }

    /// Poisons, checks and releases what is due at `now`.
    pub fn release_due(&mut self, now: Instant) {
        let (config, counters) = (self.config, &mut self.counters);
        self.entries.retain_mut(|entry| {
            if now < entry.until {
                return true;
            }
            if config.poison && !entry.poisoned {
                poison(&entry.memory);
                entry.poisoned = true;
                entry.until = now + config.hold;
                if now < entry.until {
                    return true;
                }
            }
            if entry.poisoned {
                check(entry, counters);
            }
            counters.released += 1;
            log::debug!(
                "buffer {} of pid {} (uid {}) released after quarantine",
                entry.freed.id,
                entry.freed.pid,
                entry.freed.uid
            );
            false
        });
    }

    /// Buffers held and their bytes.
    pub fn held(&self) -> (usize, u64) {
        (
            self.entries.len(),
            self.entries
                .iter()
                .map(|entry| entry.memory.size() as u64)
                .sum(),
        )
    }

    /// When the next buffer is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.iter().map(|entry| entry.until).min()
    }

    pub fn counters(&self) -> QuarantineCounters {
        self.counters
    }
}

/// Fills `memory` with [`POISON`].
fn poison<M: DmaMemory>(memory: &M) {
    let words = memory.size() / 8;
    let base = memory.as_ptr().cast::<u64>();
    for i in 0..words {
        // SAFETY: the buffer is mapped read-write for `size()` bytes in this
        // process and page-aligned; no client holds it any more (its handle is
        // closed), and the device may write it only through the bus, which the
        // volatile access does not assume anything about.
        unsafe { ptr::write_volatile(base.add(i), POISON) };
    }
}

/// Checks a poisoned entry, counts and logs the outcome; true if it was
/// written into. Counted once: the entry is released right after.
fn check<M: DmaMemory>(entry: &Entry<M>, counters: &mut QuarantineCounters) -> bool {
    let words = entry.memory.size() / 8;
    let base = entry.memory.as_ptr().cast::<u64>();
    let mut changed = 0usize;
    let mut first = None;
    for i in 0..words {
        // SAFETY: as in `poison`; the read is volatile because a device may have
        // written the memory behind the compiler's back.
        let word = unsafe { ptr::read_volatile(base.add(i)) };
        if word != POISON {
            changed += 1;
            first.get_or_insert(i * 8);
        }
    }
    let Freed { id, pid, uid } = entry.freed;
    match first {
        None => {
            counters.poison_clean += 1;
            false
        }
        Some(offset) => {
            counters.poison_dirty += 1;
            log::error!(
                "buffer {id} of pid {pid} (uid {uid}) was written while in quarantine: \
                 {changed} of {words} words changed, the first at offset {offset:#x} \
                 (DMA after its driver's device should have stopped)"
            );
            true
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::backend::{DmaBackend, MappedMemfd, MemfdBackend};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const HOLD: Duration = Duration::from_millis(100);

    fn buffer() -> MappedMemfd {
        MemfdBackend.allocate(8192, crate::Direction::Both).unwrap()
    }

    fn freed(id: usize) -> Freed {
        Freed {
            id,
            pid: 40,
            uid: 1001,
        }
    }

    fn config(poison: bool) -> QuarantineConfig {
        QuarantineConfig {
            hold: HOLD,
            poison,
            ..QuarantineConfig::default()
        }
    }

    /// Memory that counts its drops, to see when the backend gets it back.
    struct Counted<'a>(MappedMemfd, &'a AtomicUsize);

    impl DmaMemory for Counted<'_> {
        fn as_ptr(&self) -> *mut u8 {
            self.0.as_ptr()
        }
        fn size(&self) -> usize {
            self.0.size()
        }
        fn bus_addr(&self) -> Option<u64> {
            None
        }
        fn share_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
            self.0.share_fd()
        }
    }

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_freed_buffer_is_released_only_after_its_hold() {
        let dropped = AtomicUsize::new(0);
        let mut quarantine = Quarantine::new(config(false));
        let start = Instant::now();
        quarantine.admit(Counted(buffer(), &dropped), freed(1), start);
        assert_eq!(quarantine.held(), (1, 8192));

        quarantine.release_due(start + HOLD - Duration::from_millis(1));
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "still held");
        assert_eq!(quarantine.next_due(), Some(start + HOLD));

        quarantine.release_due(start + HOLD);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(quarantine.held(), (0, 0));
        assert_eq!(quarantine.counters().released, 1);
        assert_eq!(quarantine.next_due(), None);
    }

    #[test]
    fn a_zero_hold_without_poison_releases_at_once() {
        let dropped = AtomicUsize::new(0);
        let mut quarantine = Quarantine::new(QuarantineConfig {
            hold: Duration::ZERO,
            poison: false,
            ..QuarantineConfig::default()
        });
        quarantine.admit(Counted(buffer(), &dropped), freed(1), Instant::now());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_poisoned_buffer_nothing_wrote_is_counted_clean_after_two_holds() {
        let memory = buffer();
        let base = memory.as_ptr();
        let mut quarantine = Quarantine::new(config(true));
        let start = Instant::now();
        quarantine.admit(memory, freed(1), start);

        // A write while the device may still be stopping is no fault.
        // SAFETY: the buffer is still mapped: the quarantine holds it.
        unsafe { base.add(100).write_volatile(0x42) };
        quarantine.release_due(start + HOLD);
        assert_eq!(quarantine.held().0, 1, "poisoned, held for the check");
        // SAFETY: as above.
        let word = unsafe { base.cast::<u64>().add(12).read_volatile() };
        assert_eq!(word, POISON, "the early write is under the poison");

        quarantine.release_due(start + 2 * HOLD);
        assert_eq!(quarantine.held().0, 0);
        assert_eq!(
            quarantine.counters(),
            QuarantineCounters {
                released: 1,
                poison_clean: 1,
                poison_dirty: 0
            }
        );
    }

    #[test]
    fn a_write_into_a_poisoned_buffer_is_counted_dirty() {
        let memory = buffer();
        let base = memory.as_ptr();
        let mut quarantine = Quarantine::new(config(true));
        let start = Instant::now();
        quarantine.admit(memory, freed(7), start);
        quarantine.release_due(start + HOLD);

        // What a NIC still mastering the bus does: a frame into a freed buffer.
        // SAFETY: the buffer is still mapped: the quarantine holds it.
        unsafe { base.add(4097).write_volatile(0x00) };
        quarantine.release_due(start + 2 * HOLD);
        assert_eq!(
            quarantine.counters(),
            QuarantineCounters {
                released: 1,
                poison_clean: 0,
                poison_dirty: 1
            }
        );
    }

    #[test]
    fn buffers_are_released_each_on_its_own_time() {
        let dropped = AtomicUsize::new(0);
        let mut quarantine = Quarantine::new(config(false));
        let start = Instant::now();
        quarantine.admit(Counted(buffer(), &dropped), freed(1), start);
        quarantine.admit(Counted(buffer(), &dropped), freed(2), start + HOLD / 2);
        quarantine.release_due(start + HOLD);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(quarantine.next_due(), Some(start + HOLD / 2 + HOLD));
        quarantine.release_due(start + 2 * HOLD);
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
    }
}
