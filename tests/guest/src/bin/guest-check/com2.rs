//! COM2 (16550 UART at 0x2f8) checks through port I/O: the scratch register, a line sent
//! to the host, and the host's answer received.

use std::time::{Duration, Instant};

use guest_harness::guest::port_io::PortRange;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{COM2_GUEST_LINE, COM2_HOST_LINE};

const COM2_BASE: u16 = 0x2f8;
const UART_PORTS: u16 = 8;

// 16550 registers (offsets from the base) and bits.
const THR: u16 = 0;
const RBR: u16 = 0;
const LCR: u16 = 3;
const LSR: u16 = 5;
const SCR: u16 = 7;
/// 8 data bits, no parity, 1 stop bit, DLAB clear so offset 0 is THR/RBR.
const LCR_8N1: u8 = 0x03;
const LSR_DR: u8 = 1 << 0;
const LSR_THRE: u8 = 1 << 5;

const THRE_TIMEOUT: Duration = Duration::from_millis(100);
/// The host answers once QEMU passed our line on; generous for TCG.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub fn check(report: &mut Report) {
    let uart = report.run("com2-ioperm-and-line-setup", || {
        let uart = PortRange::request(COM2_BASE, UART_PORTS)?;
        uart.write8(LCR, LCR_8N1)?;
        Ok(uart)
    });
    report.run_after("com2-scratch-register", uart.as_ref(), |uart| {
        for pattern in [0x5a, 0xa5] {
            uart.write8(SCR, pattern)?;
            let read = uart.read8(SCR)?;
            if read != pattern {
                return Err(format!(
                    "scratch register reads {read:#04x} after writing {pattern:#04x}"
                )
                .into());
            }
        }
        Ok(())
    });
    let sent = report.run_after("com2-send-line", uart.as_ref(), |uart| {
        COM2_GUEST_LINE
            .bytes()
            .try_for_each(|byte| send(uart, byte))
    });
    report.run_after("com2-receive-host-line", sent.and(uart.as_ref()), |uart| {
        let line = receive_line(uart)?;
        if line != COM2_HOST_LINE.as_bytes() {
            return Err(format!("received {:?}", String::from_utf8_lossy(&line)).into());
        }
        Ok(())
    });
}

fn send(uart: &PortRange, byte: u8) -> StepResult<()> {
    let start = Instant::now();
    while uart.read8(LSR)? & LSR_THRE == 0 {
        if start.elapsed() > THRE_TIMEOUT {
            return Err(
                format!("transmit holding register not empty after {THRE_TIMEOUT:?}").into(),
            );
        }
        std::hint::spin_loop();
    }
    Ok(uart.write8(THR, byte)?)
}

/// Bytes up to and including the first newline.
fn receive_line(uart: &PortRange) -> StepResult<Vec<u8>> {
    let start = Instant::now();
    let mut line = Vec::new();
    while line.last() != Some(&b'\n') {
        if uart.read8(LSR)? & LSR_DR != 0 {
            line.push(uart.read8(RBR)?);
        } else if start.elapsed() > ANSWER_TIMEOUT {
            let so_far = String::from_utf8_lossy(&line);
            return Err(format!("no full line after {ANSWER_TIMEOUT:?}, got {so_far:?}").into());
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    Ok(line)
}
