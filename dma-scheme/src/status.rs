//! The text `dma:status` reads.
//!
//! One `key=value` per line for the daemon, then one line per client holding
//! buffers, by pid:
//!
//! ```text
//! backend=hugetlb
//! buffers=3
//! bytes=6291456
//! quota_hits=1
//! client pid=42 buffers=2 bytes=4194304 quota=8388608 quota_hits=1
//! client pid=57 buffers=1 bytes=2097152 quota=8388608 quota_hits=0
//! ```
//!
//! `quota_hits` on the daemon line counts every allocation ever refused over
//! quota; on a client line, those refused while that client held buffers.

use std::fmt::Write;

use crate::ledger::Ledger;

/// The status text of a daemon serving from `backend`.
pub(crate) fn render(backend: &str, ledger: &Ledger) -> String {
    let (buffers, bytes) = ledger
        .clients()
        .fold((0, 0), |(buffers, bytes), (_, usage)| {
            (buffers + usage.buffers, bytes + usage.bytes)
        });
    let mut text = format!(
        "backend={backend}\nbuffers={buffers}\nbytes={bytes}\nquota_hits={}\n",
        ledger.quota_hits()
    );
    for (pid, usage) in ledger.clients() {
        writeln!(
            text,
            "client pid={pid} buffers={} bytes={} quota={} quota_hits={}",
            usage.buffers, usage.bytes, usage.quota, usage.quota_hits
        )
        .expect("writing to a String");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_totals_and_clients() {
        let mut ledger = Ledger::default();
        ledger.charge(57, 2 << 20, 8 << 20).unwrap();
        ledger.charge(42, 2 << 20, 4 << 20).unwrap();
        ledger.charge(42, 2 << 20, 4 << 20).unwrap();
        ledger.charge(42, 1, 4 << 20).unwrap_err();
        assert_eq!(
            render("hugetlb", &ledger),
            "backend=hugetlb\nbuffers=3\nbytes=6291456\nquota_hits=1\n\
             client pid=42 buffers=2 bytes=4194304 quota=4194304 quota_hits=1\n\
             client pid=57 buffers=1 bytes=2097152 quota=8388608 quota_hits=0\n"
        );
    }

    #[test]
    fn renders_an_idle_daemon() {
        assert_eq!(
            render("memfd", &Ledger::default()),
            "backend=memfd\nbuffers=0\nbytes=0\nquota_hits=0\n"
        );
    }
}
