//! A replica's state at an externalization event and how two such states differ.

use std::fmt;

use super::{Event, EventField, EventKind, Register, Registers};

/// What the vote compares: the event a replica stopped at and its registers there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    pub event: Event,
    pub registers: Registers,
}

/// One way a replica's state differs from the reference state. `expected` is the
/// reference's value, `found` the replica's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The replicas stopped at different kinds of event; their fields are not compared.
    EventKind {
        expected: EventKind,
        found: EventKind,
    },
    /// A numeric event field (port, address, width, value, count, syscall number or argument).
    EventValue {
        field: EventField,
        expected: u64,
        found: u64,
    },
    /// Bytes handed out differ, from byte `first_at` on.
    EventData {
        field: EventField,
        first_at: usize,
        expected_len: usize,
        found_len: usize,
    },
    Register {
        register: Register,
        expected: u64,
        found: u64,
    },
}

impl ReplicaState {
    /// How `found` differs from `self`: event differences first, then registers in
    /// [`Register::ALL`] order. Empty exactly when the two states are equal.
    pub fn differences(&self, found: &ReplicaState) -> Vec<Difference> {
        let ReplicaState { event, registers } = self;
        let mut out = Vec::new();
        event.compare(&found.event, &mut out);
        out.extend(
            registers
                .differing(&found.registers)
                .map(|(register, expected, found)| Difference::Register {
                    register,
                    expected,
                    found,
                }),
        );
        out
    }
}

/// `RAX: 0x41 vs 0x43`, `port: 0x2f8 vs 0x3f8`: what differed, reference value first.
impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::EventKind { expected, found } => {
                write!(f, "event kind: {expected} vs {found}")
            }
            Difference::EventValue {
                field,
                expected,
                found,
            } => write!(f, "{field}: {expected:#x} vs {found:#x}"),
            Difference::EventData {
                field,
                first_at,
                expected_len,
                found_len,
            } => write!(
                f,
                "{field}: differs from byte {first_at} ({expected_len} vs {found_len} bytes)"
            ),
            Difference::Register {
                register,
                expected,
                found,
            } => write!(f, "{register}: {expected:#x} vs {found:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(value: u32, rax: u64) -> ReplicaState {
        ReplicaState {
            event: Event::PortOut {
                port: 0x2f8,
                width: 1,
                value,
            },
            registers: Registers {
                rax,
                ..Registers::default()
            },
        }
    }

    #[test]
    fn lists_event_then_register_differences() {
        assert_eq!(
            state(0x41, 0x41).differences(&state(0x43, 0x43)),
            vec![
                Difference::EventValue {
                    field: EventField::Value,
                    expected: 0x41,
                    found: 0x43
                },
                Difference::Register {
                    register: Register::Rax,
                    expected: 0x41,
                    found: 0x43
                },
            ]
        );
        assert!(state(1, 2).differences(&state(1, 2)).is_empty());
    }

    #[test]
    fn displays_for_the_log() {
        let shown: Vec<String> = state(0x41, 0x41)
            .differences(&state(0x43, 0x43))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["value: 0x41 vs 0x43", "RAX: 0x41 vs 0x43"]);
        let data = Difference::EventData {
            field: EventField::Data,
            first_at: 2,
            expected_len: 4,
            found_len: 3,
        };
        assert_eq!(data.to_string(), "data: differs from byte 2 (4 vs 3 bytes)");
        let kind = Difference::EventKind {
            expected: EventKind::PortIn,
            found: EventKind::Syscall,
        };
        assert_eq!(kind.to_string(), "event kind: in vs syscall");
    }
}
