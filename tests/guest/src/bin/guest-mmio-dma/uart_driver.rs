//! The uart driver's role, run as the uart rule's uid: COM2's registers through `mmio:`
//! (scratch register, a line to the host and its answer back), what the policy refuses
//! it, and malformed port accesses.

use std::thread::sleep;
use std::time::{Duration, Instant};

use driver_policy::PortRange;
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{COM2_GUEST_LINE, COM2_HOST_LINE};
use mmio_scheme::open_path::RegisterTarget;
use mmio_scheme::wire::{Batch, Width};
use syscall::error::{EACCES, EINVAL};

use crate::environment::Environment;
use crate::expect::{equal, refused};
use crate::uart_16550::{LCR, LCR_8N1, LSR, LSR_DR, LSR_THRE, RBR, SCR, THR};

const THRE_TIMEOUT: Duration = Duration::from_millis(100);
/// The host answers once QEMU passed our line on; generous for TCG.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// COM1, the console: the uart driver is granted COM2 only.
const COM1: (u16, u16) = (0x3f8, 0x3ff);

pub fn check(report: &mut Report, env: &Environment) {
    let com2 = report.run("com2-open-ports-and-set-line", || {
        let com2 = Registers::open(env.com2_ports())?;
        com2.write8(LCR, LCR_8N1)?;
        Ok(com2)
    });
    let com2 = com2.as_ref();
    report.run_after("com2-scratch-register", com2, |com2| {
        for pattern in [0x5a, 0xa5] {
            com2.write8(SCR, pattern)?;
            equal("the scratch register", com2.read8(SCR)?, pattern)?;
        }
        Ok(())
    });
    let sent = report.run_after("com2-send-line", com2, |com2| {
        COM2_GUEST_LINE
            .bytes()
            .try_for_each(|byte| send(com2, byte))
    });
    report.run_after("com2-receive-host-line", sent.and(com2), |com2| {
        let line = receive_line(com2)?;
        equal(
            "the host's line",
            String::from_utf8_lossy(&line).as_ref(),
            COM2_HOST_LINE,
        )
    });
    denials(report, env);
    report.run_after("mmio-rejects-8-byte-port-pread", com2, |com2| {
        refused(com2.handle().read_at(&mut [0; 8], 0), EINVAL)
    });
    report.run_after("mmio-rejects-out-of-range-port-pread", com2, |com2| {
        refused(com2.handle().read_at(&mut [0], SCR + 1), EINVAL)
    });
    report.run_after("mmio-rejects-port-batch-with-8-byte-op", com2, |com2| {
        com2.write8(SCR, 0x11)?;
        let mut batch = Batch::new();
        batch.write(SCR, Width::U8, 0x22)?;
        batch.read(0, Width::U64)?;
        refused(com2.run(&mut batch), EINVAL)?;
        equal(
            "the scratch register after the refused batch",
            com2.read8(SCR)?,
            0x11,
        )
    });
}

/// Ports and registers the uart rule does not grant: EACCES at open.
fn denials(report: &mut Report, env: &Environment) {
    let refused_ports = |first, last| -> StepResult<()> {
        let range = PortRange::new(first, last).ok_or("not a port range")?;
        refused(Registers::open(RegisterTarget::Ports(range)), EACCES)
    };
    report.run("mmio-denies-uart-driver-e1000-bar0", || {
        refused(Registers::open(env.e1000_bar(0)), EACCES)
    });
    report.run("mmio-denies-uart-driver-com1-ports", || {
        refused_ports(COM1.0, COM1.1)
    });
    report.run("mmio-denies-uart-driver-ports-beyond-com2", || {
        refused_ports(env.com2.first(), env.com2.last() + 1)
    });
}

fn send(com2: &Registers, byte: u8) -> StepResult<()> {
    let started = Instant::now();
    while com2.read8(LSR)? & LSR_THRE == 0 {
        if started.elapsed() > THRE_TIMEOUT {
            return Err(format!("THR not empty after {THRE_TIMEOUT:?}").into());
        }
    }
    Ok(com2.write8(THR, byte)?)
}

/// Bytes up to and including the first newline.
fn receive_line(com2: &Registers) -> StepResult<Vec<u8>> {
    let started = Instant::now();
    let mut line = Vec::new();
    while line.last() != Some(&b'\n') {
        if com2.read8(LSR)? & LSR_DR != 0 {
            line.push(com2.read8(RBR)?);
        } else if started.elapsed() > ANSWER_TIMEOUT {
            let so_far = String::from_utf8_lossy(&line);
            return Err(format!("no full line after {ANSWER_TIMEOUT:?}, got {so_far:?}").into());
        } else {
            sleep(Duration::from_micros(100));
        }
    }
    Ok(line)
}
