//! What `mmio:status` reports: counters since start, then one line per open
//! register or interrupt handle the reader may see (root: every handle; a driver: its own;
//! anyone else: none). The counters, `handles` included, count every handle.

use std::fmt::Write;

/// Counters since the scheme started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Register handles opened.
    pub opens: u64,
    /// Opens and mappings the policy refused.
    pub denials: u64,
    /// Register operations performed (single accesses and batch operations).
    pub accesses: u64,
    /// Batches run.
    pub batches: u64,
    /// Requests refused as malformed (out of range, misaligned, wrong width, bad
    /// batch) or as writes through a read-only handle.
    pub invalid: u64,
    /// Device or backend failures.
    pub errors: u64,
    /// Times a PCI function's bus mastering was stopped because the last
    /// handle on its BARs closed (its driver exited or died).
    pub bus_master_stops: u64,
    /// Times a driver started its function's bus mastering.
    pub bus_master_starts: u64,
    /// Interrupts the lines saw fire.
    pub interrupts: u64,
    /// Interrupts drivers acknowledged (lines unmasked).
    pub interrupt_acks: u64,
}

/// The status text: `key: value` lines (`handles` is `open_handles`), then
/// `lines`, those of the open handles the reader may see.
pub fn render(counters: &Counters, open_handles: usize, lines: &[String]) -> String {
    let Counters {
        opens,
        denials,
        accesses,
        batches,
        invalid,
        errors,
        bus_master_stops,
        bus_master_starts,
        interrupts,
        interrupt_acks,
    } = counters;
    let mut text = String::new();
    for (key, value) in [
        ("handles", open_handles as u64),
        ("opens", *opens),
        ("denials", *denials),
        ("accesses", *accesses),
        ("batches", *batches),
        ("invalid", *invalid),
        ("errors", *errors),
        ("bus_master_stops", *bus_master_stops),
        ("bus_master_starts", *bus_master_starts),
        ("interrupts", *interrupts),
        ("interrupt_acks", *interrupt_acks),
    ] {
        let _ = writeln!(text, "{key}: {value}");
    }
    for line in lines {
        let _ = writeln!(text, "{line}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_then_handles() {
        let counters = Counters {
            opens: 3,
            denials: 1,
            accesses: 70,
            batches: 2,
            invalid: 4,
            errors: 0,
            bus_master_stops: 1,
            bus_master_starts: 5,
            interrupts: 9,
            interrupt_acks: 8,
        };
        let text = render(&counters, 2, &["handle 1: driver uart".into()]);
        assert_eq!(
            text,
            "handles: 2\nopens: 3\ndenials: 1\naccesses: 70\nbatches: 2\ninvalid: 4\nerrors: 0\nbus_master_stops: 1\nbus_master_starts: 5\ninterrupts: 9\ninterrupt_acks: 8\nhandle 1: driver uart\n"
        );
    }
}
