//! The text `dma:status` reads.
//!
//! One `key=value` per line for the daemon, then one line per client (a uid: a
//! driver and all its processes, see [`crate::ledger`]) holding buffers, by uid:
//!
//! ```text
//! backend=hugetlb
//! buffers=3
//! bytes=6291456
//! quota_hits=1
//! quarantined=1
//! quarantined_bytes=2097152
//! quarantine_released=4
//! poison_clean=0
//! poison_dirty=0
//! kept_orphans=1
//! kept_orphan_bytes=2097152
//! kept_adopted=3
//! kept_released=0
//! client uid=1001 buffers=2 bytes=4194304 quota=8388608 quota_hits=1
//! client uid=1002 buffers=1 bytes=2097152 quota=8388608 quota_hits=0
//! ```
//!
//! Who sees which client lines: root (uid 0) sees every one; any other caller
//! sees only the line of its own uid, if that uid holds buffers. What one driver
//! holds and how often it hit its quota is no other driver's business. The daemon
//! lines (totals over every client) are the same for everyone.
//!
//! `quota_hits` on the daemon line counts every allocation ever refused over
//! quota; on a client line, those refused while that uid held buffers.
//! `buffers` and `bytes` count what clients hold; freed buffers waiting in the
//! [`crate::quarantine`] are `quarantined` (and `quarantined_bytes`), and
//! `quarantine_released` counts those released since start. `poison_clean` and
//! `poison_dirty` count the poisoned buffers (`--quarantine-poison`) found
//! unchanged and written into. Kept buffers ([`crate::keep`]) whose last
//! handle has closed and that wait for a successor are `kept_orphans` (and
//! `kept_orphan_bytes`); they stay charged to their uid, so they are also in
//! `buffers`, `bytes` and the uid's client line. `kept_adopted` counts orphans
//! taken over since start, `kept_released` those sent to the quarantine
//! unadopted. The text is taken when the handle is opened.

use std::fmt::Write;

use crate::keep::KeptCounters;
use crate::ledger::Ledger;
use crate::quarantine::QuarantineCounters;

/// What the quarantine holds and has done, for the status.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QuarantineStatus {
    pub buffers: usize,
    pub bytes: u64,
    pub counters: QuarantineCounters,
}

/// What the orphaned kept buffers are and have done, for the status.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeptStatus {
    pub orphans: usize,
    pub bytes: u64,
    pub counters: KeptCounters,
}

/// The uid that sees every client's line.
pub(crate) const ROOT_UID: u32 = 0;

/// The status text of a daemon serving from `backend`, as the caller `viewer`
/// (a uid) may see it.
pub(crate) fn render(
    backend: &str,
    ledger: &Ledger,
    quarantine: &QuarantineStatus,
    kept: &KeptStatus,
    viewer: u32,
) -> String {
    let (buffers, bytes) = ledger.totals();
    let mut text = format!(
        "backend={backend}\nbuffers={buffers}\nbytes={bytes}\nquota_hits={}\n",
        ledger.quota_hits()
    );
    let QuarantineCounters {
        released,
        poison_clean,
        poison_dirty,
    } = quarantine.counters;
    writeln!(
        text,
        "quarantined={}\nquarantined_bytes={}\nquarantine_released={released}\n\
         poison_clean={poison_clean}\npoison_dirty={poison_dirty}",
        quarantine.buffers, quarantine.bytes
    )
    .expect("writing to a String");
    let KeptCounters { adopted, released } = kept.counters;
    writeln!(
        text,
        "kept_orphans={}\nkept_orphan_bytes={}\nkept_adopted={adopted}\nkept_released={released}",
        kept.orphans, kept.bytes
    )
    .expect("writing to a String");
    let visible = ledger
        .clients()
        .filter(|&(uid, _)| viewer == ROOT_UID || uid == viewer);
    for (uid, usage) in visible {
        writeln!(
            text,
            "client uid={uid} buffers={} bytes={} quota={} quota_hits={}",
            usage.buffers, usage.bytes, usage.quota, usage.quota_hits
        )
        .expect("writing to a String");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        let mut ledger = Ledger::default();
        ledger.charge(1002, 2 << 20, 8 << 20).unwrap();
        ledger.charge(1001, 2 << 20, 4 << 20).unwrap();
        ledger.charge(1001, 2 << 20, 4 << 20).unwrap();
        ledger.charge(1001, 1, 4 << 20).unwrap_err();
        ledger
    }

    const TOTALS: &str = "backend=hugetlb\nbuffers=3\nbytes=6291456\nquota_hits=1\n\
         quarantined=0\nquarantined_bytes=0\nquarantine_released=0\npoison_clean=0\npoison_dirty=0\n\
         kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=0\nkept_released=0\n";
    const UID_1001: &str = "client uid=1001 buffers=2 bytes=4194304 quota=4194304 quota_hits=1\n";
    const UID_1002: &str = "client uid=1002 buffers=1 bytes=2097152 quota=8388608 quota_hits=0\n";

    #[test]
    fn root_sees_totals_and_every_client() {
        assert_eq!(
            render(
                "hugetlb",
                &ledger(),
                &QuarantineStatus::default(),
                &KeptStatus::default(),
                ROOT_UID
            ),
            format!("{TOTALS}{UID_1001}{UID_1002}")
        );
    }

    #[test]
    fn a_driver_sees_totals_and_its_own_line_only() {
        assert_eq!(
            render(
                "hugetlb",
                &ledger(),
                &QuarantineStatus::default(),
                &KeptStatus::default(),
                1002
            ),
            format!("{TOTALS}{UID_1002}")
        );
        assert_eq!(
            render(
                "hugetlb",
                &ledger(),
                &QuarantineStatus::default(),
                &KeptStatus::default(),
                1003
            ),
            TOTALS
        );
    }

    #[test]
    fn renders_the_quarantine_after_the_totals() {
        assert_eq!(
            render(
                "memfd",
                &Ledger::default(),
                &QuarantineStatus {
                    buffers: 1,
                    bytes: 4096,
                    counters: QuarantineCounters {
                        released: 2,
                        poison_clean: 1,
                        poison_dirty: 0
                    }
                },
                &KeptStatus::default(),
                ROOT_UID
            ),
            "backend=memfd\nbuffers=0\nbytes=0\nquota_hits=0\nquarantined=1\n\
             quarantined_bytes=4096\nquarantine_released=2\npoison_clean=1\npoison_dirty=0\n\
             kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=0\nkept_released=0\n"
        );
    }

    #[test]
    fn renders_the_kept_orphans_after_the_quarantine() {
        let text = render(
            "memfd",
            &ledger(),
            &QuarantineStatus::default(),
            &KeptStatus {
                orphans: 2,
                bytes: 12288,
                counters: KeptCounters {
                    adopted: 3,
                    released: 1,
                },
            },
            1002,
        );
        assert!(
            text.contains(
                "poison_dirty=0\nkept_orphans=2\nkept_orphan_bytes=12288\nkept_adopted=3\n\
                 kept_released=1\nclient uid=1002 "
            ),
            "{text}"
        );
    }
}
