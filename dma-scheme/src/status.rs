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
//! quota; on a client line, those refused while that uid held buffers. The text is
//! taken when the handle is opened.

use std::fmt::Write;

use crate::ledger::Ledger;

/// The uid that sees every client's line.
pub(crate) const ROOT_UID: u32 = 0;

/// The status text of a daemon serving from `backend`, as the caller `viewer`
/// (a uid) may see it.
pub(crate) fn render(backend: &str, ledger: &Ledger, viewer: u32) -> String {
    let (buffers, bytes) = ledger.totals();
    let mut text = format!(
        "backend={backend}\nbuffers={buffers}\nbytes={bytes}\nquota_hits={}\n",
        ledger.quota_hits()
    );
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

    const TOTALS: &str = "backend=hugetlb\nbuffers=3\nbytes=6291456\nquota_hits=1\n";
    const UID_1001: &str = "client uid=1001 buffers=2 bytes=4194304 quota=4194304 quota_hits=1\n";
    const UID_1002: &str = "client uid=1002 buffers=1 bytes=2097152 quota=8388608 quota_hits=0\n";

    #[test]
    fn root_sees_totals_and_every_client() {
        assert_eq!(
            render("hugetlb", &ledger(), ROOT_UID),
            format!("{TOTALS}{UID_1001}{UID_1002}")
        );
    }

    #[test]
    fn a_driver_sees_totals_and_its_own_line_only() {
        assert_eq!(
            render("hugetlb", &ledger(), 1002),
            format!("{TOTALS}{UID_1002}")
        );
        assert_eq!(render("hugetlb", &ledger(), 1003), TOTALS);
    }

    #[test]
    fn renders_an_idle_daemon() {
        assert_eq!(
            render("memfd", &Ledger::default(), ROOT_UID),
            "backend=memfd\nbuffers=0\nbytes=0\nquota_hits=0\n"
        );
    }
}
