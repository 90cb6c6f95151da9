//! Per-driver accounting of DMA memory against quotas.
//!
//! A driver is recognised by its uid (the policy names drivers by uid), so the
//! ledger charges a uid, not a process: every process of the e1000's uid draws on
//! the e1000's one quota. Which process may use a buffer is the scheme's business
//! (a handle belongs to the pid that opened it), not the ledger's.

use std::collections::BTreeMap;
use std::fmt;

/// What one client, a uid and all its processes, holds. A uid has an entry only
/// while it holds buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientUsage {
    pub buffers: usize,
    pub bytes: u64,
    /// The quota its latest allocation was checked against.
    pub quota: u64,
    /// Allocations refused over quota while it held buffers.
    pub quota_hits: u64,
}

/// An allocation that would take a uid past its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverQuota {
    pub held: u64,
    pub requested: u64,
    pub quota: u64,
}

impl fmt::Display for OverQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "holds {} bytes, asks for {} more, quota is {}",
            self.held, self.requested, self.quota
        )
    }
}

/// Buffers and bytes held per uid, and the quota hits.
#[derive(Debug, Default)]
pub struct Ledger {
    clients: BTreeMap<u32, ClientUsage>,
    quota_hits: u64,
}

impl Ledger {
    /// Charges one buffer of `bytes` to `uid` if it stays within `quota`.
    pub fn charge(&mut self, uid: u32, bytes: u64, quota: u64) -> Result<(), OverQuota> {
        let held = self.clients.get(&uid).map_or(0, |usage| usage.bytes);
        let within = held.checked_add(bytes).is_some_and(|total| total <= quota);
        if !within {
            self.quota_hits += 1;
            if let Some(usage) = self.clients.get_mut(&uid) {
                usage.quota_hits += 1;
            }
            return Err(OverQuota {
                held,
                requested: bytes,
                quota,
            });
        }
        let usage = self.clients.entry(uid).or_default();
        usage.buffers += 1;
        usage.bytes += bytes;
        usage.quota = quota;
        Ok(())
    }

    /// Gives back one buffer of `bytes` that `uid` was charged for.
    pub fn release(&mut self, uid: u32, bytes: u64) {
        let Some(usage) = self.clients.get_mut(&uid) else {
            log::error!("ledger: uid {uid} releases {bytes} bytes it was never charged");
            return;
        };
        usage.buffers -= 1;
        usage.bytes -= bytes;
        if usage.buffers == 0 {
            self.clients.remove(&uid);
        }
    }

    /// Uids holding buffers, in uid order.
    pub fn clients(&self) -> impl Iterator<Item = (u32, &ClientUsage)> {
        self.clients.iter().map(|(&uid, usage)| (uid, usage))
    }

    /// Buffers and bytes held by every uid together.
    pub fn totals(&self) -> (usize, u64) {
        self.clients
            .values()
            .fold((0, 0), |(buffers, bytes), usage| {
                (buffers + usage.buffers, bytes + usage.bytes)
            })
    }

    /// Allocations refused over quota, by any client, ever.
    pub fn quota_hits(&self) -> u64 {
        self.quota_hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(ledger: &Ledger, uid: u32) -> Option<ClientUsage> {
        ledger
            .clients()
            .find(|&(u, _)| u == uid)
            .map(|(_, usage)| *usage)
    }

    #[test]
    fn charges_up_to_exact_fit() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.charge(7, 4096, 8192), Ok(()));
        assert_eq!(ledger.charge(7, 4096, 8192), Ok(()));
        assert_eq!(
            usage(&ledger, 7),
            Some(ClientUsage {
                buffers: 2,
                bytes: 8192,
                quota: 8192,
                quota_hits: 0
            })
        );
        assert_eq!(
            ledger.charge(7, 1, 8192),
            Err(OverQuota {
                held: 8192,
                requested: 1,
                quota: 8192
            })
        );
        assert_eq!(usage(&ledger, 7).unwrap().quota_hits, 1);
        assert_eq!(usage(&ledger, 7).unwrap().bytes, 8192);
        assert_eq!(ledger.quota_hits(), 1);
        assert_eq!(ledger.totals(), (2, 8192));
    }

    #[test]
    fn release_frees_room_and_forgets_idle_clients() {
        let mut ledger = Ledger::default();
        ledger.charge(7, 4096, 4096).unwrap();
        ledger.charge(8, 4096, 4096).unwrap();
        ledger.release(7, 4096);
        assert_eq!(usage(&ledger, 7), None);
        assert_eq!(
            ledger.clients().map(|(uid, _)| uid).collect::<Vec<_>>(),
            [8]
        );
        assert_eq!(ledger.charge(7, 4096, 4096), Ok(()));
    }

    #[test]
    fn quotas_are_per_uid() {
        let mut ledger = Ledger::default();
        ledger.charge(7, 4096, 4096).unwrap();
        assert_eq!(ledger.charge(8, 4096, 4096), Ok(()));
        assert!(ledger.charge(7, 4096, 4096).is_err());
    }

    #[test]
    fn over_quota_of_a_new_client_counts_but_creates_no_entry() {
        let mut ledger = Ledger::default();
        assert!(ledger.charge(9, 8192, 4096).is_err());
        assert!(ledger.charge(9, 1, 0).is_err());
        assert_eq!(usage(&ledger, 9), None);
        assert_eq!(ledger.quota_hits(), 2);
    }

    #[test]
    fn overflow_is_over_quota() {
        let mut ledger = Ledger::default();
        ledger.charge(7, u64::MAX, u64::MAX).unwrap();
        assert!(ledger.charge(7, 1, u64::MAX).is_err());
    }
}
