//! The hand-over of one event between a replica's stub and the engine, the
//! same on every platform: the stub posts the event to its slot, rings the
//! bell and waits; the engine answers with a [`Command`]. What differs per
//! platform (the futex calls, how a copy is forked) is a [`Kernel`].

use core::sync::atomic::{AtomicU32, Ordering};

use crate::slot::{Bell, Command, Slot, SlotState, StopKind, REGISTER_WORDS};

/// What a stub caught, as it posts it.
pub struct Record {
    pub stop: StopKind,
    pub code: u32,
    pub address: u64,
    pub regs: [u64; REGISTER_WORDS],
}

/// Who forked, after [`Kernel::fork_copy`].
pub enum Forked {
    /// The replica that was asked to fork; the copy's process id, or a
    /// negative errno.
    Parent(i64),
    /// The copy, which has taken its own slot.
    Copy,
}

/// The platform's calls the hand-over needs; all async-signal-safe.
pub trait Kernel {
    /// Sleeps while `word` holds `value` (or until woken).
    fn wait(&self, word: &AtomicU32, value: u32);
    /// Wakes whoever sleeps on `word`.
    fn wake(&self, word: &AtomicU32);
    /// Forks a copy of this replica that takes the slot `slot`'s fork fields
    /// name.
    fn fork_copy(&self, slot: &Slot) -> Forked;
    /// The slot of this replica (a copy's changes when it forks).
    fn slot(&self) -> &'static Slot;
}

/// Posts `record` to the replica's slot and waits until the engine tells
/// it to go on; forks on the way when asked. Returns the slot the answer is
/// in (a copy's own).
pub fn hand_over(record: &Record, bell: &Bell, kernel: &impl Kernel) -> &'static Slot {
    let slot = kernel.slot();
    slot.stop.store(record.stop as u32, Ordering::Relaxed);
    slot.code.store(record.code, Ordering::Relaxed);
    slot.address.store(record.address, Ordering::Relaxed);
    for (field, word) in slot.regs.iter().zip(record.regs) {
        field.store(word, Ordering::Relaxed);
    }
    let mut post = true;
    loop {
        let slot = kernel.slot();
        if post {
            slot.state
                .store(SlotState::Posted as u32, Ordering::Release);
            bell.rung.fetch_add(1, Ordering::Release);
            kernel.wake(&bell.rung);
        }
        while slot.state.load(Ordering::Acquire) == SlotState::Posted as u32 {
            kernel.wait(&slot.state, SlotState::Posted as u32);
        }
        match Command::from_word(slot.command.load(Ordering::Relaxed)) {
            Some(Command::Fork) => match kernel.fork_copy(slot) {
                Forked::Parent(child) => {
                    slot.forked.store(child, Ordering::Relaxed);
                    post = true;
                }
                // The engine filled the copy's slot with this event: it
                // waits there like the replica it came from.
                Forked::Copy => post = false,
            },
            _ => return slot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicI64, AtomicU64};
    use std::sync::Arc;
    use std::thread;

    fn leaked_slot() -> &'static Slot {
        Box::leak(Box::new(Slot {
            state: AtomicU32::new(0),
            command: AtomicU32::new(0),
            stop: AtomicU32::new(0),
            code: AtomicU32::new(0),
            address: AtomicU64::new(0),
            fork_pid: AtomicU32::new(0),
            fork_fd: AtomicU32::new(0),
            forked: AtomicI64::new(0),
            stack_start: AtomicU64::new(0),
            stack_len: AtomicU64::new(0),
            regs: std::array::from_fn(|_| AtomicU64::new(0)),
        }))
    }

    /// A kernel whose futex spins, and whose fork says what it was told.
    struct Spinning {
        slot: &'static Slot,
        forked: i64,
    }

    impl Kernel for Spinning {
        fn wait(&self, word: &AtomicU32, value: u32) {
            while word.load(Ordering::Acquire) == value {
                thread::yield_now();
            }
        }
        fn wake(&self, _word: &AtomicU32) {}
        fn fork_copy(&self, _slot: &Slot) -> Forked {
            Forked::Parent(self.forked)
        }
        fn slot(&self) -> &'static Slot {
            self.slot
        }
    }

    /// Plays the engine: waits for `posts` posts, answering each with
    /// `commands` in turn, and returns the registers each post carried.
    fn engine(slot: &'static Slot, commands: Vec<Command>) -> thread::JoinHandle<Vec<u64>> {
        thread::spawn(move || {
            let mut seen = Vec::new();
            for command in commands {
                while slot.state.load(Ordering::Acquire) != SlotState::Posted as u32 {
                    thread::yield_now();
                }
                seen.push(slot.regs[0].load(Ordering::Relaxed));
                slot.regs[0].store(0xa0 + seen.len() as u64, Ordering::Relaxed);
                slot.command.store(command as u32, Ordering::Relaxed);
                slot.state
                    .store(SlotState::Running as u32, Ordering::Release);
            }
            seen
        })
    }

    fn record() -> Record {
        let mut regs = [0; REGISTER_WORDS];
        regs[0] = 7;
        Record {
            stop: StopKind::Fault,
            code: 0x80,
            address: 0,
            regs,
        }
    }

    #[test]
    fn a_posted_event_waits_for_the_answer_and_returns_its_registers() {
        let slot = leaked_slot();
        let bell = Arc::new(Bell {
            rung: AtomicU32::new(0),
        });
        let engine = engine(slot, vec![Command::Resume]);
        let answered = hand_over(&record(), &bell, &Spinning { slot, forked: 0 });
        assert_eq!(engine.join().unwrap(), [7]);
        assert_eq!(answered.regs[0].load(Ordering::Relaxed), 0xa1);
        assert_eq!(answered.code.load(Ordering::Relaxed), 0x80);
        assert_eq!(bell.rung.load(Ordering::Relaxed), 1, "one post, one ring");
    }

    #[test]
    fn a_fork_reports_the_copy_and_posts_again_without_rewriting_the_answer() {
        let slot = leaked_slot();
        let bell = Bell {
            rung: AtomicU32::new(0),
        };
        let engine = engine(slot, vec![Command::Fork, Command::Resume]);
        let answered = hand_over(&record(), &bell, &Spinning { slot, forked: 4242 });
        // The second post carries what the engine wrote at the first, not
        // the replica's own registers again.
        assert_eq!(engine.join().unwrap(), [7, 0xa1]);
        assert_eq!(answered.forked.load(Ordering::Relaxed), 4242);
        assert_eq!(answered.regs[0].load(Ordering::Relaxed), 0xa2);
        assert_eq!(bell.rung.load(Ordering::Relaxed), 2);
    }
}
