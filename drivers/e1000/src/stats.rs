//! Statistics: the NIC's counters (read-to-clear registers, added up here) and the
//! driver's own, rendered as the `status` text of the scheme.

use std::fmt::Write as _;

use crate::io::RegOp;
use crate::regs::{
    BPRC, CRCERRS, GORCH, GORCL, GOTCH, GOTCL, GPRC, GPTC, MPC, MPRC, RNBC, STATUS, STATUS_FD,
    STATUS_LU, STATUS_SPEED_SHIFT, TPR, TPT,
};

/// One NIC counter: a register, or a low/high pair read low first.
struct Counter {
    name: &'static str,
    low: u32,
    high: Option<u32>,
}

const fn single(name: &'static str, reg: u32) -> Counter {
    Counter {
        name,
        low: reg,
        high: None,
    }
}

const fn pair(name: &'static str, low: u32, high: u32) -> Counter {
    Counter {
        name,
        low,
        high: Some(high),
    }
}

const COUNTERS: [Counter; 11] = [
    single("gprc", GPRC),
    single("gptc", GPTC),
    pair("gorc", GORCL, GORCH),
    pair("gotc", GOTCL, GOTCH),
    single("bprc", BPRC),
    single("mprc", MPRC),
    single("tpr", TPR),
    single("tpt", TPT),
    single("mpc", MPC),
    single("rnbc", RNBC),
    single("crcerrs", CRCERRS),
];

/// The NIC's counters since the driver started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    totals: [u64; COUNTERS.len()],
}

impl NicCounters {
    /// The reads that fetch every counter (and clear it in the NIC), in the order
    /// [`absorb`](Self::absorb) expects.
    pub fn read_ops() -> Vec<RegOp> {
        COUNTERS
            .iter()
            .flat_map(|counter| std::iter::once(counter.low).chain(counter.high))
            .map(RegOp::read)
            .collect()
    }

    /// Adds what the reads of [`read_ops`](Self::read_ops) returned.
    pub fn absorb(&mut self, ops: &[RegOp]) {
        let mut values = ops.iter().map(|op| u64::from(op.value));
        for (total, counter) in self.totals.iter_mut().zip(&COUNTERS) {
            let low = values.next().unwrap_or_default();
            let high = counter
                .high
                .map_or(0, |_| values.next().unwrap_or_default());
            *total += high << 32 | low;
        }
    }

    /// The total of counter `name` (a register name in lower case).
    pub fn get(&self, name: &str) -> Option<u64> {
        COUNTERS
            .iter()
            .position(|counter| counter.name == name)
            .map(|i| self.totals[i])
    }

    /// Every counter by name, in register order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        COUNTERS
            .iter()
            .zip(self.totals)
            .map(|(counter, total)| (counter.name, total))
    }

    /// Sets counter `name`'s total (a restored one); false for no such counter.
    pub fn set(&mut self, name: &str, total: u64) -> bool {
        match COUNTERS.iter().position(|counter| counter.name == name) {
            Some(i) => {
                self.totals[i] = total;
                true
            }
            None => false,
        }
    }

    fn render(&self, out: &mut String) {
        out.push_str("nic");
        for (counter, total) in COUNTERS.iter().zip(self.totals) {
            let _ = write!(out, " {}={total}", counter.name);
        }
        out.push('\n');
    }
}

/// What the driver itself counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames cut short because the reader's buffer was shorter.
    pub rx_truncated: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Writes refused with EWOULDBLOCK because every transmit descriptor was busy.
    pub tx_ring_full: u64,
    /// Writes refused with EINVAL: not an Ethernet frame of a legal size.
    pub tx_rejected: u64,
}

impl DriverCounters {
    fn render(&self, rx_dropped: u64, tx_in_flight: u16, out: &mut String) {
        let _ = writeln!(
            out,
            "driver rx_frames={} rx_bytes={} rx_truncated={} rx_dropped={rx_dropped} \
             tx_frames={} tx_bytes={} tx_ring_full={} tx_rejected={} tx_in_flight={tx_in_flight}",
            self.rx_frames,
            self.rx_bytes,
            self.rx_truncated,
            self.tx_frames,
            self.tx_bytes,
            self.tx_ring_full,
            self.tx_rejected,
        );
    }
}

/// How the driver learns that the NIC has work, and what its interrupt did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptCounters {
    /// Whether the driver waits for its interrupt line (or polls every tick).
    pub line: bool,
    /// Interrupts taken.
    pub taken: u64,
    /// ICR reads that followed them (each interrupt's causes, read once).
    pub cause_reads: u64,
    /// Link changes among the causes.
    pub link_changes: u64,
}

impl InterruptCounters {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "interrupts mode={} taken={} cause_reads={} link_changes={}",
            if self.line { "line" } else { "polling" },
            self.taken,
            self.cause_reads,
            self.link_changes
        );
    }
}

/// Link state as STATUS reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub mbps: u16,
    pub full_duplex: bool,
}

impl Link {
    pub fn from_status(status: u32) -> Self {
        Self {
            up: status & STATUS_LU != 0,
            mbps: match (status >> STATUS_SPEED_SHIFT) & 3 {
                0 => 10,
                1 => 100,
                _ => 1000,
            },
            full_duplex: status & STATUS_FD != 0,
        }
    }

    /// The read of STATUS that [`from_status`](Self::from_status) decodes.
    pub const fn read_op() -> RegOp {
        RegOp::read(STATUS)
    }
}

impl std::fmt::Display for Link {
    /// `up speed=1000 duplex=full`, as the status line has it after `link=`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} speed={} duplex={}",
            if self.up { "up" } else { "down" },
            self.mbps,
            if self.full_duplex { "full" } else { "half" }
        )
    }
}

/// Everything the `status` path shows.
pub struct StatusReport<'a> {
    pub scheme: &'a str,
    pub access: &'a str,
    pub mac: [u8; 6],
    pub link: Option<Link>,
    pub failure: Option<&'a str>,
    pub driver: &'a DriverCounters,
    pub rx_dropped: u64,
    pub tx_in_flight: u16,
    pub nic: &'a NicCounters,
    pub interrupts: InterruptCounters,
}

impl StatusReport<'_> {
    /// One `key=value` line per topic: `scheme`, `link`, `driver`, `nic`,
    /// `interrupts`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scheme={} access={} mac={}",
            self.scheme,
            self.access,
            format_mac(self.mac)
        );
        match (self.failure, self.link) {
            (Some(why), _) => {
                let _ = writeln!(out, "device=failed error={why}");
            }
            (None, Some(link)) => {
                let _ = writeln!(out, "link={link}");
            }
            (None, None) => out.push_str("link=unknown\n"),
        }
        self.driver
            .render(self.rx_dropped, self.tx_in_flight, &mut out);
        self.nic.render(&mut out);
        self.interrupts.render(&mut out);
        out
    }
}

/// `52:54:00:12:34:56`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_read_low_then_high_and_totals_add_up() {
        let mut ops = NicCounters::read_ops();
        assert_eq!(ops.len(), COUNTERS.len() + 2);
        let gorc = ops.iter().position(|op| op.reg == GORCL).unwrap();
        assert_eq!(ops[gorc + 1].reg, GORCH);
        for op in &mut ops {
            op.value = match op.reg {
                GPRC => 3,
                GORCL => 0xffff_fff0,
                GORCH => 1,
                _ => 0,
            };
        }
        let mut counters = NicCounters::default();
        counters.absorb(&ops);
        counters.absorb(&ops);
        assert_eq!(counters.get("gprc"), Some(6));
        assert_eq!(counters.get("gorc"), Some(2 * 0x1_ffff_fff0));
        assert_eq!(counters.get("gptc"), Some(0));
        assert_eq!(counters.get("nope"), None);
    }

    #[test]
    fn link_decodes_status() {
        let qemu = Link::from_status(0x8008_0783);
        assert_eq!(
            qemu,
            Link {
                up: true,
                mbps: 1000,
                full_duplex: true
            }
        );
        assert!(!Link::from_status(0).up);
        assert_eq!(Link::from_status(1 << 6).mbps, 100);
    }

    #[test]
    fn report_shows_failure_instead_of_link() {
        let driver = DriverCounters {
            tx_frames: 2,
            ..DriverCounters::default()
        };
        let nic = NicCounters::default();
        let mut report = StatusReport {
            scheme: "network.e1000",
            access: "mmio",
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            link: Some(Link::from_status(0x8008_0783)),
            failure: None,
            driver: &driver,
            rx_dropped: 1,
            tx_in_flight: 0,
            nic: &nic,
            interrupts: InterruptCounters {
                line: true,
                taken: 4,
                cause_reads: 4,
                link_changes: 1,
            },
        };
        let text = report.render();
        assert!(text.starts_with("scheme=network.e1000 access=mmio mac=52:54:00:12:34:56\nlink=up speed=1000 duplex=full\n"), "{text}");
        assert!(text.contains(" tx_frames=2 "), "{text}");
        assert!(text.contains(" rx_dropped=1 "), "{text}");
        assert!(text.contains("nic gprc=0 gptc=0 gorc=0"), "{text}");
        assert!(
            text.ends_with("\ninterrupts mode=line taken=4 cause_reads=4 link_changes=1\n"),
            "{text}"
        );
        report.failure = Some("mmio: gone");
        assert!(report
            .render()
            .contains("\ndevice=failed error=mmio: gone\n"));
    }
}
