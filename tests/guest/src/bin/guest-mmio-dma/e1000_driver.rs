//! The e1000 driver's role, run as the e1000 rule's uid: its BAR through `mmio:` (link
//! state, the Ethernet address from the receive address registers and from the EEPROM),
//! what the policy refuses it, malformed accesses, its DMA quota, and one frame sent
//! from `dma:` buffers.

use std::time::{Duration, Instant};

use dma_scheme::{BufferFlags, DmaBuffer};
use guest_harness::guest::daemons::{read_status, DMA_STATUS};
use guest_harness::guest::e1000::{
    address_from_eeprom, address_from_ral_rah, rah, ral, BAR0_SIZE, EEPROM_ETHERNET_ADDRESS_WORDS,
    EERD, EERD_ADDR_SHIFT, EERD_DATA_SHIFT, EERD_DONE, EERD_START, RAH_AV, STATUS, STATUS_LU,
};
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{test_frame, UART_DRIVER_LABEL};
use mmio_scheme::open_path::RegisterTarget;
use mmio_scheme::wire::{Batch, RegisterOp, Width, OP_SIZE};
use scheme_runtime::Handle;
use syscall::error::{EACCES, EDQUOT, EINVAL};

use crate::environment::Environment;
use crate::expect::{equal, refused};
use crate::tx_ring;

/// The EEPROM answers within microseconds; generous for TCG.
const EERD_TIMEOUT: Duration = Duration::from_millis(100);
/// A receive address entry nothing uses (its valid bit stays clear): a register the
/// bad-batch tests may write without effect on the NIC.
const SPARE_RAL: u32 = ral(1);

pub fn check(report: &mut Report, env: &Environment) {
    let bar0 = report.run("e1000-open-bar0", || Ok(Registers::open(env.e1000_bar(0))?));
    let bar0 = bar0.as_ref();
    report.run_after("e1000-status-link-up", bar0, |bar0| {
        let status = bar0.read32(STATUS)?;
        log::info!("STATUS {status:#010x}");
        if status & STATUS_LU == 0 {
            return Err(format!("STATUS {status:#010x} has link up (bit 1) clear").into());
        }
        Ok(())
    });
    report.run_after("e1000-mac-in-ral0-rah0", bar0, |bar0| {
        let mut batch = Batch::new();
        let low = batch.read(u64::from(ral(0)), Width::U32)?;
        let high = batch.read(u64::from(rah(0)), Width::U32)?;
        bar0.run(&mut batch)?;
        let (low, high) = (value32(&batch, low)?, value32(&batch, high)?);
        log::info!("RAL0 {low:#010x} RAH0 {high:#010x}");
        equal("RAH0 address valid", high & RAH_AV != 0, true)?;
        equal("RAL0/RAH0", address_from_ral_rah(low, high), env.mac)
    });
    report.run_after("e1000-mac-in-eeprom-via-eerd", bar0, |bar0| {
        let mut words = [0; EEPROM_ETHERNET_ADDRESS_WORDS as usize];
        for (address, word) in (0..).zip(&mut words) {
            *word = read_eeprom(bar0, address)?;
        }
        log::info!("EEPROM words 0-2 {words:04x?}");
        equal("EEPROM words 0-2", address_from_eeprom(words), env.mac)
    });
    denials(report, env);
    malformed_single_accesses(report, bar0);
    malformed_batches(report, bar0);
    report.run("dma-over-quota-refused", || over_quota(env.e1000_dma_quota));
    report.run_after("e1000-transmit-through-mmio-and-dma", bar0, |bar0| {
        bar0.start_bus_master()?;
        let took = tx_ring::transmit(bar0, &test_frame(env.mac))?;
        log::info!("transmit descriptor done {took:?} after the tail write");
        Ok(())
    });
}

/// Reads one EEPROM word through EERD: the start and the first poll in one batch,
/// further polls (if the EEPROM is slow) one read each.
fn read_eeprom(bar0: &Registers, address: u32) -> StepResult<u16> {
    let mut batch = Batch::new();
    batch.write(
        u64::from(EERD),
        Width::U32,
        (address << EERD_ADDR_SHIFT | EERD_START).into(),
    )?;
    let poll = batch.read(u64::from(EERD), Width::U32)?;
    bar0.run(&mut batch)?;
    let mut eerd = value32(&batch, poll)?;
    let started = Instant::now();
    while eerd & EERD_DONE == 0 {
        if started.elapsed() > EERD_TIMEOUT {
            return Err(format!(
                "EERD {eerd:#010x}: word {address} not done after {EERD_TIMEOUT:?}"
            )
            .into());
        }
        eerd = bar0.read32(EERD)?;
    }
    Ok((eerd >> EERD_DATA_SHIFT) as u16)
}

/// Registers the e1000 rule does not grant: EACCES at open.
fn denials(report: &mut Report, env: &Environment) {
    let refused_open = |target: RegisterTarget| refused(Registers::open(target), EACCES);
    report.run("mmio-denies-e1000-driver-bar1", || {
        refused_open(env.e1000_bar(1))
    });
    report.run("mmio-denies-e1000-driver-com2-ports", || {
        refused_open(env.com2_ports())
    });
    report.run("mmio-denies-e1000-driver-other-device", || {
        refused_open(RegisterTarget::Bar {
            bdf: env.other_function,
            bar: 0,
        })
    });
    report.run("mmio-denies-e1000-driver-acting-as-uart", || {
        refused(
            Registers::open_for(env.e1000_bar(0), UART_DRIVER_LABEL),
            EACCES,
        )
    });
}

/// Out-of-range, misaligned and wrong-width single accesses: EINVAL. The writes aim at
/// a spare register, so a wrongly admitted one would do no harm.
fn malformed_single_accesses(report: &mut Report, bar0: Option<&Registers>) {
    type Request = fn(&Handle) -> std::io::Result<usize>;
    let requests: [(&str, Request); 6] = [
        ("mmio-rejects-out-of-range-pread", |bar0| {
            bar0.read_at(&mut [0; 4], BAR0_SIZE as u64)
        }),
        ("mmio-rejects-out-of-range-pwrite", |bar0| {
            bar0.write_at(&[0; 4], BAR0_SIZE as u64)
        }),
        ("mmio-rejects-misaligned-pread", |bar0| {
            bar0.read_at(&mut [0; 4], u64::from(STATUS) + 2)
        }),
        ("mmio-rejects-misaligned-pwrite", |bar0| {
            bar0.write_at(&[0; 4], u64::from(SPARE_RAL) + 2)
        }),
        ("mmio-rejects-wrong-width-pread", |bar0| {
            bar0.read_at(&mut [0; 3], u64::from(STATUS))
        }),
        ("mmio-rejects-wrong-width-pwrite", |bar0| {
            bar0.write_at(&[0; 3], u64::from(SPARE_RAL))
        }),
    ];
    for (name, request) in requests {
        report.run_after(name, bar0, |bar0| refused(request(bar0.handle()), EINVAL));
    }
}

/// A batch that writes the spare register and then holds one bad operation is refused
/// with EINVAL as a whole: the write before the bad operation never happens.
fn malformed_batches(report: &mut Report, bar0: Option<&Registers>) {
    type PushBadOp = fn(&mut Batch) -> StepResult<()>;
    let bad_ops: [(&str, PushBadOp); 3] = [
        ("mmio-rejects-batch-with-out-of-range-op", |batch| {
            batch.read(BAR0_SIZE as u64, Width::U32)?;
            Ok(())
        }),
        ("mmio-rejects-batch-with-misaligned-op", |batch| {
            batch.read(u64::from(STATUS) + 2, Width::U32)?;
            Ok(())
        }),
        ("mmio-rejects-batch-with-wrong-width-op", |batch| {
            // No width the client library encodes is wrong for a memory BAR, so the
            // record is patched: width byte 3.
            let index = batch.read(u64::from(STATUS), Width::U32)?;
            batch.payload_mut()[index * OP_SIZE + 6] = 3;
            Ok(())
        }),
    ];
    for (name, push_bad_op) in bad_ops {
        report.run_after(name, bar0, |bar0| {
            bar0.write32(SPARE_RAL, 0)?;
            let mut batch = Batch::new();
            batch.push(RegisterOp::write(
                u64::from(SPARE_RAL),
                Width::U32,
                0x5a5a_5a5a,
            ))?;
            push_bad_op(&mut batch)?;
            refused(bar0.run(&mut batch), EINVAL)?;
            equal(
                "the spare RAL after the refused batch",
                bar0.read32(SPARE_RAL)?,
                0,
            )
        });
    }
}

/// Allocates until the quota is full; the next allocation must be EDQUOT, and the
/// daemon must go on answering (its status counts the refusal). The quota counts
/// what the daemon grants (a whole huge page), not the page a client maps.
fn over_quota(quota: u64) -> StepResult<()> {
    let granted = |buffer: &DmaBuffer| buffer.info().size as usize;
    let mut held = Vec::new();
    let refusal = loop {
        match DmaBuffer::alloc(1, BufferFlags::SHARED) {
            Ok(buffer) => {
                held.push(buffer);
                let bytes: usize = held.iter().map(granted).sum();
                if bytes as u64 > quota {
                    return Err(format!("holds {bytes} bytes over a quota of {quota}").into());
                }
            }
            Err(err) => break err,
        }
    };
    refused(Err::<(), _>(refusal), EDQUOT)?;
    let bytes: usize = held.iter().map(granted).sum();
    let granule = held.first().map_or(0, granted);
    if held.is_empty() || (bytes + granule) as u64 <= quota {
        return Err(format!("refused while holding only {bytes} of {quota} bytes").into());
    }
    let status = read_status(DMA_STATUS)?;
    let line = format!(
        "client uid={} buffers={} bytes={bytes} quota={quota} quota_hits=1",
        nix::unistd::getuid(),
        held.len()
    );
    if !status.lines().any(|l| l == line) {
        return Err(format!("dma:status lacks {line:?}:\n{status}").into());
    }
    Ok(())
}

fn value32(batch: &Batch, index: usize) -> StepResult<u32> {
    let value = batch.value(index).ok_or("no such operation in the batch")?;
    Ok(u32::try_from(value)?)
}
