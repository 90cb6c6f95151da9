//! The stranger's role, run as a uid the policy has no rule for: every register and
//! every DMA buffer is refused, and only the daemons' status stays open to it.

use dma_scheme::{BufferFlags, DmaBuffer};
use guest_harness::guest::daemons::{read_status, DMA_STATUS, MMIO_STATUS};
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::report::Report;
use syscall::error::EACCES;

use crate::environment::Environment;
use crate::expect::refused;

pub fn check(report: &mut Report, env: &Environment) {
    report.run("mmio-denies-stranger-e1000-bar0", || {
        refused(Registers::open(env.e1000_bar(0)), EACCES)
    });
    report.run("mmio-denies-stranger-com2-ports", || {
        refused(Registers::open(env.com2_ports()), EACCES)
    });
    report.run("dma-denies-stranger", || {
        refused(DmaBuffer::alloc(1, BufferFlags::SHARED), EACCES)
    });
    report.run("status-open-to-stranger", || {
        for path in [MMIO_STATUS, DMA_STATUS] {
            if read_status(path)?.is_empty() {
                return Err(format!("{path} is empty").into());
            }
        }
        Ok(())
    });
}
