//! An interrupt line that a replica's supervisor waits on and relays.
//!
//! A replica cannot wait on a line itself: its rounds are its supervisor's. So
//! the daemon names its line in the hello ([`SchemeDaemon::relayed_line`]); the
//! supervisor opens it once for the group, wakes on it, and tells every replica
//! in the next round that it fired. A replica acknowledges in its round's reply,
//! and the supervisor unmasks the line once the replicas agree (the reply is
//! voted like any other).
//!
//! A daemon that reads its device's interrupt causes through a scheme call
//! (an `mmio:` register read) may name that call too
//! ([`RelayedLine::set_cause_read`]): the supervisor then makes it once when the
//! line fires, before the round that tells the replicas, and the round carries
//! its answer ([`RelayedLine::take_cause`]), where reading the causes in the
//! round would cost the group a meeting of its own.
//!
//! [`SchemeDaemon::relayed_line`]: crate::SchemeDaemon::relayed_line

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::codec::CauseRead;

/// The replica's side of a relayed line; clones share it, so the daemon keeps
/// one to take interrupts and the replica loop another to deliver them.
#[derive(Clone, Debug)]
pub struct RelayedLine {
    path: Rc<str>,
    fired: Rc<Cell<bool>>,
    acknowledged: Rc<Cell<bool>>,
    cause_read: Rc<RefCell<Option<CauseRead>>>,
    /// The answer to the cause read the last firing came with.
    cause: Rc<RefCell<Option<Vec<u8>>>>,
}

impl RelayedLine {
    /// The line at `path`, as `Handle::open` takes it (`/scheme/mmio/pci/<bdf>/irq`).
    pub fn new(path: &str) -> Self {
        Self {
            path: path.into(),
            fired: Rc::default(),
            acknowledged: Rc::default(),
            cause_read: Rc::default(),
            cause: Rc::default(),
        }
    }

    /// Asks the supervisor to make `request` on the connection `fd` (a call
    /// that reads the device's interrupt causes) whenever the line fires,
    /// before the round that says so; its answer comes with the firing
    /// ([`take_cause`](Self::take_cause)). Named before serving starts: the
    /// hello carries it.
    pub fn set_cause_read(&self, fd: u32, request: Vec<u8>) {
        *self.cause_read.borrow_mut() = Some(CauseRead { fd, request });
    }

    pub(crate) fn cause_read(&self) -> Option<CauseRead> {
        self.cause_read.borrow().clone()
    }

    /// The answer to the cause read, as the scheme left the call's payload,
    /// if the last firing came with one; taken once. A daemon that gets none
    /// (the supervisor could not make the call) reads the causes itself.
    pub fn take_cause(&self) -> Option<Vec<u8>> {
        self.cause.borrow_mut().take()
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the line fired since the last call: the supervisor said so in
    /// a round.
    pub fn take_fired(&self) -> bool {
        self.fired.replace(false)
    }

    /// Asks the supervisor to unmask the line after this round.
    pub fn acknowledge(&self) {
        self.acknowledged.set(true);
    }

    /// The supervisor says the line fired (before the round runs), with the
    /// cause read's answer (empty for none).
    pub(crate) fn fire(&self, cause: &[u8]) {
        self.fired.set(true);
        *self.cause.borrow_mut() = (!cause.is_empty()).then(|| cause.to_vec());
    }

    /// Whether the daemon acknowledged since the last call (after the round).
    pub(crate) fn take_acknowledged(&self) -> bool {
        self.acknowledged.replace(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firing_is_taken_once_and_an_acknowledgement_is_passed_on_once() {
        let daemons = RelayedLine::new("/scheme/mmio/pci/0000:00:03.0/irq");
        let loops = daemons.clone();
        assert_eq!(loops.path(), "/scheme/mmio/pci/0000:00:03.0/irq");
        assert!(!daemons.take_fired());
        loops.fire(&[]);
        assert!(daemons.take_fired());
        assert!(!daemons.take_fired(), "taken once");
        assert_eq!(daemons.take_cause(), None, "a firing without an answer");
        assert!(!loops.take_acknowledged());
        daemons.acknowledge();
        assert!(loops.take_acknowledged());
        assert!(!loops.take_acknowledged(), "passed on once");
    }

    #[test]
    fn a_cause_read_is_named_for_the_hello_and_its_answer_comes_once_with_a_firing() {
        let daemons = RelayedLine::new("/scheme/mmio/pci/0000:00:03.0/irq");
        let loops = daemons.clone();
        assert_eq!(loops.cause_read(), None);
        daemons.set_cause_read(7, b"read ICR".to_vec());
        assert_eq!(
            loops.cause_read(),
            Some(CauseRead {
                fd: 7,
                request: b"read ICR".to_vec()
            })
        );
        loops.fire(b"causes");
        assert!(daemons.take_fired());
        assert_eq!(daemons.take_cause().as_deref(), Some(&b"causes"[..]));
        assert_eq!(daemons.take_cause(), None, "taken once");
    }
}
