//! An interrupt line that a replica's supervisor waits on and relays.
//!
//! A replica cannot wait on a line itself: its rounds are its supervisor's. So
//! the daemon names its line in the hello ([`SchemeDaemon::relayed_line`]); the
//! supervisor opens it once for the group, wakes on it, and tells every replica
//! in the next round that it fired. A replica acknowledges in its round's reply,
//! and the supervisor unmasks the line once the replicas agree (the reply is
//! voted like any other).
//!
//! [`SchemeDaemon::relayed_line`]: crate::SchemeDaemon::relayed_line

use std::cell::Cell;
use std::rc::Rc;

/// The replica's side of a relayed line; clones share it, so the daemon keeps
/// one to take interrupts and the replica loop another to deliver them.
#[derive(Clone, Debug)]
pub struct RelayedLine {
    path: Rc<str>,
    fired: Rc<Cell<bool>>,
    acknowledged: Rc<Cell<bool>>,
}

impl RelayedLine {
    /// The line at `path`, as `Handle::open` takes it (`/scheme/mmio/pci/<bdf>/irq`).
    pub fn new(path: &str) -> Self {
        Self {
            path: path.into(),
            fired: Rc::default(),
            acknowledged: Rc::default(),
        }
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

    /// The supervisor says the line fired (before the round runs).
    pub(crate) fn fire(&self) {
        self.fired.set(true);
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
        loops.fire();
        assert!(daemons.take_fired());
        assert!(!daemons.take_fired(), "taken once");
        assert!(!loops.take_acknowledged());
        daemons.acknowledge();
        assert!(loops.take_acknowledged());
        assert!(!loops.take_acknowledged(), "passed on once");
    }
}
