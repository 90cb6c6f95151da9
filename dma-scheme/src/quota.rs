//! What a caller may have from `dma:`: whether it may open the scheme, and its quota.

use driver_policy::Denial;
use redox_scheme::CallerCtx;

/// Answers whether a caller may open `dma:` at all, and how many bytes of DMA
/// memory its uid may hold at once.
///
/// `quota`: `None` means the caller may have no DMA memory at all (its
/// allocations fail with `EACCES`); `Some(0)` is a quota that nothing fits in
/// (`EDQUOT`). The quota is the uid's, shared by all its processes. The scheme
/// asks on every allocation, so a source may change its answers over time.
///
/// `may_open` is asked on every open, before the path is read: a refusal is
/// `EACCES` for every path, `status` included. Sources with no notion of which
/// schemes a caller may use keep the default, which lets everyone open.
pub trait QuotaSource {
    fn quota(&self, ctx: &CallerCtx) -> Option<u64>;

    fn may_open(&self, _ctx: &CallerCtx) -> Result<(), Denial> {
        Ok(())
    }
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
/// uid; a caller with no rule gets no DMA memory. A driver may open `dma:` only
/// if its rule lists it in `schemes`; a caller with no rule may open it (to read
/// `status`), since it gets no memory anyway.
impl QuotaSource for driver_policy::Policy {
    fn quota(&self, ctx: &CallerCtx) -> Option<u64> {
        self.driver_for_uid(ctx.uid).map(|rule| rule.dma_quota())
    }

    fn may_open(&self, ctx: &CallerCtx) -> Result<(), Denial> {
        match self.driver_for_uid(ctx.uid) {
            Some(rule) => rule.check_scheme(crate::SCHEME_NAME),
            None => Ok(()),
        }
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

    #[test]
    fn only_a_rule_that_lists_dma_lets_its_driver_open_it() {
        let policy: driver_policy::Policy = "[driver.e1000]\nuid = 1001\nschemes = [\"dma\"]\n\n\
             [driver.uart]\nuid = 1002\nschemes = [\"mmio\"]\n"
            .parse()
            .unwrap();
        assert_eq!(policy.may_open(&caller_ctx(10, 1001, 1001)), Ok(()));
        let denial = policy.may_open(&caller_ctx(10, 1002, 1002)).unwrap_err();
        assert_eq!(
            denial.to_string(),
            "driver uart: scheme dma not granted (schemes = [\"mmio\"])"
        );
        assert_eq!(policy.may_open(&caller_ctx(10, 0, 0)), Ok(()), "no rule");
        assert_eq!(
            UniformQuota(None).may_open(&caller_ctx(10, 1002, 1002)),
            Ok(())
        );
    }
}
