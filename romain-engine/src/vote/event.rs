//! Externalization events: the effects a replica asks the supervisor to perform, with
//! every field that must agree between replicas before the effect reaches the device.

use std::fmt;

use super::Difference;

/// What a replica is about to do to the outside world. Widths are in bytes (1, 2, 4, 8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A system or scheme call, performed once by the supervisor.
    Syscall {
        number: u64,
        args: [u64; 6],
        /// The bytes the call hands out (a `write`'s buffer); empty when it hands out none.
        data: Vec<u8>,
    },
    /// `in`: reads `width` bytes from `port`.
    PortIn { port: u16, width: u8 },
    /// `out`: writes the low `width` bytes of `value` to `port`.
    PortOut { port: u16, width: u8, value: u32 },
    /// `ins`, possibly `rep`: reads `count` elements of `width` bytes from `port`.
    PortStringIn { port: u16, width: u8, count: u64 },
    /// `outs`, possibly `rep`: writes `data` to `port`, `width` bytes at a time.
    PortStringOut { port: u16, width: u8, data: Vec<u8> },
    /// A load from a page kept unmapped in replicas (device BAR, shared DMA buffer).
    MemoryRead { address: u64, width: u8 },
    /// A store of the low `width` bytes of `value` to such a page.
    MemoryWrite { address: u64, width: u8, value: u64 },
    /// `rdtsc` or `rdtscp`: reads the time stamp counter, an input every replica must
    /// get the same value of.
    TimeStamp,
}

/// The kind of an [`Event`], named as the instruction or call that raised it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Syscall,
    PortIn,
    PortOut,
    PortStringIn,
    PortStringOut,
    MemoryRead,
    MemoryWrite,
    TimeStamp,
}

/// One compared field of an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventField {
    SyscallNumber,
    /// The syscall argument at this position (0-5).
    Argument(usize),
    Port,
    Address,
    Width,
    Value,
    Count,
    /// The bytes handed out: a syscall's buffer or an `outs`'s data.
    Data,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Syscall { .. } => EventKind::Syscall,
            Event::PortIn { .. } => EventKind::PortIn,
            Event::PortOut { .. } => EventKind::PortOut,
            Event::PortStringIn { .. } => EventKind::PortStringIn,
            Event::PortStringOut { .. } => EventKind::PortStringOut,
            Event::MemoryRead { .. } => EventKind::MemoryRead,
            Event::MemoryWrite { .. } => EventKind::MemoryWrite,
            Event::TimeStamp => EventKind::TimeStamp,
        }
    }

    /// Appends to `out` how `found` differs from `self`, field by field.
    ///
    /// The patterns name every field without `..`, so a field added to [`Event`] fails to
    /// compile here instead of silently escaping the vote.
    pub(super) fn compare(&self, found: &Event, out: &mut Vec<Difference>) {
        let mut fields = FieldComparison { out };
        match (self, found) {
            (
                Event::Syscall { number, args, data },
                Event::Syscall {
                    number: found_number,
                    args: found_args,
                    data: found_data,
                },
            ) => {
                fields.value(EventField::SyscallNumber, *number, *found_number);
                for (i, (arg, found_arg)) in args.iter().zip(found_args).enumerate() {
                    fields.value(EventField::Argument(i), *arg, *found_arg);
                }
                fields.bytes(data, found_data);
            }
            (
                Event::PortIn { port, width },
                Event::PortIn {
                    port: found_port,
                    width: found_width,
                },
            ) => {
                fields.value(EventField::Port, (*port).into(), (*found_port).into());
                fields.value(EventField::Width, (*width).into(), (*found_width).into());
            }
            (
                Event::PortOut { port, width, value },
                Event::PortOut {
                    port: found_port,
                    width: found_width,
                    value: found_value,
                },
            ) => {
                fields.value(EventField::Port, (*port).into(), (*found_port).into());
                fields.value(EventField::Width, (*width).into(), (*found_width).into());
                fields.value(EventField::Value, (*value).into(), (*found_value).into());
            }
            (
                Event::PortStringIn { port, width, count },
                Event::PortStringIn {
                    port: found_port,
                    width: found_width,
                    count: found_count,
                },
            ) => {
                fields.value(EventField::Port, (*port).into(), (*found_port).into());
                fields.value(EventField::Width, (*width).into(), (*found_width).into());
                fields.value(EventField::Count, *count, *found_count);
            }
            (
                Event::PortStringOut { port, width, data },
                Event::PortStringOut {
                    port: found_port,
                    width: found_width,
                    data: found_data,
                },
            ) => {
                fields.value(EventField::Port, (*port).into(), (*found_port).into());
                fields.value(EventField::Width, (*width).into(), (*found_width).into());
                fields.bytes(data, found_data);
            }
            (
                Event::MemoryRead { address, width },
                Event::MemoryRead {
                    address: found_address,
                    width: found_width,
                },
            ) => {
                fields.value(EventField::Address, *address, *found_address);
                fields.value(EventField::Width, (*width).into(), (*found_width).into());
            }
            (
                Event::MemoryWrite {
                    address,
                    width,
                    value,
                },
                Event::MemoryWrite {
                    address: found_address,
                    width: found_width,
                    value: found_value,
                },
            ) => {
                fields.value(EventField::Address, *address, *found_address);
                fields.value(EventField::Width, (*width).into(), (*found_width).into());
                fields.value(EventField::Value, *value, *found_value);
            }
            (Event::TimeStamp, Event::TimeStamp) => {}
            _ => fields.out.push(Difference::EventKind {
                expected: self.kind(),
                found: found.kind(),
            }),
        }
    }
}

/// Collects the differing fields of two events of the same kind.
struct FieldComparison<'a> {
    out: &'a mut Vec<Difference>,
}

impl FieldComparison<'_> {
    fn value(&mut self, field: EventField, expected: u64, found: u64) {
        if expected != found {
            self.out.push(Difference::EventValue {
                field,
                expected,
                found,
            });
        }
    }

    fn bytes(&mut self, expected: &[u8], found: &[u8]) {
        if expected == found {
            return;
        }
        // Where one buffer is a prefix of the other, the first difference is where the
        // shorter one ends.
        let first_at = expected
            .iter()
            .zip(found)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.len().min(found.len()));
        self.out.push(Difference::EventData {
            field: EventField::Data,
            first_at,
            expected_len: expected.len(),
            found_len: found.len(),
        });
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Syscall => "syscall",
            EventKind::PortIn => "in",
            EventKind::PortOut => "out",
            EventKind::PortStringIn => "ins",
            EventKind::PortStringOut => "outs",
            EventKind::MemoryRead => "read",
            EventKind::MemoryWrite => "write",
            EventKind::TimeStamp => "rdtsc",
        })
    }
}

impl fmt::Display for EventField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventField::SyscallNumber => f.write_str("syscall number"),
            EventField::Argument(i) => write!(f, "arg{i}"),
            EventField::Port => f.write_str("port"),
            EventField::Address => f.write_str("address"),
            EventField::Width => f.write_str("width"),
            EventField::Value => f.write_str("value"),
            EventField::Count => f.write_str("count"),
            EventField::Data => f.write_str("data"),
        }
    }
}

/// `out(0x2f8)`, `read(0xfebf0000)`, `syscall(1)`: the kind and where it goes.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            Event::Syscall { number, .. } => write!(f, "{kind}({number})"),
            Event::PortIn { port, .. }
            | Event::PortOut { port, .. }
            | Event::PortStringIn { port, .. }
            | Event::PortStringOut { port, .. } => write!(f, "{kind}({port:#x})"),
            Event::MemoryRead { address, .. } | Event::MemoryWrite { address, .. } => {
                write!(f, "{kind}({address:#x})")
            }
            Event::TimeStamp => write!(f, "{kind}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compare(expected: &Event, found: &Event) -> Vec<Difference> {
        let mut out = Vec::new();
        expected.compare(found, &mut out);
        out
    }

    #[test]
    fn equal_events_have_no_difference() {
        let event = Event::Syscall {
            number: 1,
            args: [1, 2, 3, 4, 5, 6],
            data: b"hi".to_vec(),
        };
        assert!(compare(&event, &event.clone()).is_empty());
    }

    #[test]
    fn names_each_differing_field() {
        let expected = Event::PortOut {
            port: 0x2f8,
            width: 1,
            value: 0x41,
        };
        let found = Event::PortOut {
            port: 0x3f8,
            width: 1,
            value: 0x43,
        };
        assert_eq!(
            compare(&expected, &found),
            vec![
                Difference::EventValue {
                    field: EventField::Port,
                    expected: 0x2f8,
                    found: 0x3f8
                },
                Difference::EventValue {
                    field: EventField::Value,
                    expected: 0x41,
                    found: 0x43
                },
            ]
        );
    }

    #[test]
    fn names_the_syscall_argument_position() {
        let expected = Event::Syscall {
            number: 0,
            args: [0; 6],
            data: Vec::new(),
        };
        let found = Event::Syscall {
            number: 0,
            args: [0, 0, 0, 9, 0, 0],
            data: Vec::new(),
        };
        assert_eq!(
            compare(&expected, &found),
            vec![Difference::EventValue {
                field: EventField::Argument(3),
                expected: 0,
                found: 9
            }]
        );
    }

    #[test]
    fn locates_the_first_differing_byte_of_data() {
        let outs = |data: &[u8]| Event::PortStringOut {
            port: 0x1f0,
            width: 2,
            data: data.to_vec(),
        };
        assert_eq!(
            compare(&outs(b"abcd"), &outs(b"abXd")),
            vec![Difference::EventData {
                field: EventField::Data,
                first_at: 2,
                expected_len: 4,
                found_len: 4
            }]
        );
        assert_eq!(
            compare(&outs(b"abcd"), &outs(b"ab")),
            vec![Difference::EventData {
                field: EventField::Data,
                first_at: 2,
                expected_len: 4,
                found_len: 2
            }]
        );
    }

    #[test]
    fn a_different_kind_is_one_difference() {
        let expected = Event::MemoryRead {
            address: 0x1000,
            width: 4,
        };
        let found = Event::MemoryWrite {
            address: 0x1000,
            width: 4,
            value: 0,
        };
        assert_eq!(
            compare(&expected, &found),
            vec![Difference::EventKind {
                expected: EventKind::MemoryRead,
                found: EventKind::MemoryWrite
            }]
        );
    }

    #[test]
    fn displays_kind_and_target() {
        assert_eq!(
            Event::PortOut {
                port: 0x2f8,
                width: 1,
                value: 0
            }
            .to_string(),
            "out(0x2f8)"
        );
        assert_eq!(
            Event::MemoryWrite {
                address: 0xfebf0000,
                width: 4,
                value: 0
            }
            .to_string(),
            "write(0xfebf0000)"
        );
        assert_eq!(
            Event::Syscall {
                number: 1,
                args: [0; 6],
                data: Vec::new()
            }
            .to_string(),
            "syscall(1)"
        );
    }
}
