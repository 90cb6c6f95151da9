//! Where a caller's DMA quota comes from.

use redox_scheme::CallerCtx;

/// Answers how many bytes of DMA memory a caller may hold at once.
///
/// `None` means the caller may have no DMA memory at all (its allocations fail
/// with `EACCES`); `Some(0)` is a quota that nothing fits in (`EDQUOT`). The scheme
/// asks on every allocation, so a source may change its answers over time.
pub trait QuotaSource {
    fn quota(&self, ctx: &CallerCtx) -> Option<u64>;
}

/// The same quota for every caller, or none for anyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniformQuota(pub Option<u64>);

impl QuotaSource for UniformQuota {
    fn quota(&self, _ctx: &CallerCtx) -> Option<u64> {
        self.0
    }
}

/// Any `Fn(&CallerCtx) -> Option<u64>` is a quota source (a policy lookup, a test table).
impl<F: Fn(&CallerCtx) -> Option<u64>> QuotaSource for F {
    fn quota(&self, ctx: &CallerCtx) -> Option<u64> {
        self(ctx)
    }
}

/// The policy's answer: the `dma_quota` of the driver that runs as the caller's
/// uid; a caller with no rule gets no DMA memory.
impl QuotaSource for driver_policy::Policy {
    fn quota(&self, ctx: &CallerCtx) -> Option<u64> {
        self.driver_for_uid(ctx.uid).map(|rule| rule.dma_quota())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheme_runtime::caller_ctx;

    #[test]
    fn policy_quota_follows_the_callers_uid() {
        let policy: driver_policy::Policy =
            "[driver.e1000]\nuid = 1001\ndma_quota = \"4M\"\n\n[driver.uart]\nuid = 1002\n"
                .parse()
                .unwrap();
        assert_eq!(policy.quota(&caller_ctx(10, 1001, 1001)), Some(4 << 20));
        assert_eq!(
            policy.quota(&caller_ctx(10, 1002, 1002)),
            Some(0),
            "a rule without dma_quota grants none"
        );
        assert_eq!(
            policy.quota(&caller_ctx(10, 0, 0)),
            None,
            "root has no rule of its own"
        );
        assert_eq!(policy.quota(&caller_ctx(10, 4242, 0)), None);
    }
}
