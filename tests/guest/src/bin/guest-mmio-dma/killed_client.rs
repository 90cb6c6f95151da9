//! A client killed in the middle of its calls: a child acting as the e1000 driver holds
//! DMA buffers and calls `mmio:` in a loop until SIGKILL ends it; then both daemons must
//! still serve, and the dead client's buffers and register handle must be gone.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use dma_scheme::{BufferFlags, DmaBuffer};
use guest_harness::guest::daemons::{read_status, DMA_STATUS, MMIO_STATUS};
use guest_harness::guest::e1000::{STATUS, STATUS_LU};
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::guest::roles;
use guest_harness::protocol::{TestLine, E1000_DRIVER_LABEL, GUEST_TEST_PREFIX};
use mmio_scheme::wire::{Batch, Width};
use nix::sys::signal::Signal;

use crate::environment::Environment;
use crate::Role;

/// The step the looping client reports once it holds everything and starts looping.
const READY_STEP: &str = "looping-client-ready";
const BUFFERS_HELD: usize = 2;
const OPS_PER_CALL: usize = 32;
/// How long the client loops before the kill, so that the kill lands mid-call.
const LOOP_BEFORE_KILL: Duration = Duration::from_millis(50);
/// How long the daemons may take to notice the hang-up.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The looping client's role: buffers and the BAR, a `ready` line, then calls forever.
pub fn hold_and_loop(report: &mut Report, env: &Environment) {
    let held = report.run(READY_STEP, || {
        let buffers = (0..BUFFERS_HELD)
            .map(|_| DmaBuffer::alloc(1, BufferFlags::SHARED))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((buffers, Registers::open(env.e1000_bar(0))?))
    });
    let Some((_buffers, bar0)) = held else {
        return;
    };
    let mut batch = Batch::with_capacity(OPS_PER_CALL);
    for _ in 0..OPS_PER_CALL {
        if batch.read(u64::from(STATUS), Width::U32).is_err() {
            return;
        }
    }
    while bar0.run(&mut batch).is_ok() {}
    log::error!("the looping client's call failed before the kill");
}

/// Kills the child however the test goes, so it never outlives the test program.
struct LoopingClient(Child);

impl Drop for LoopingClient {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The parent's side, as root.
pub fn check(report: &mut Report, env: &Environment) {
    let client = report.run("killed-client-started", || start(env));
    let client = report.run_after("killed-client-holds-dma-buffers", client, |client| {
        // dma: accounts per driver (uid); the client is the e1000 driver's only process.
        let line = format!("client uid={} buffers={BUFFERS_HELD} ", env.e1000_uid);
        let status = read_status(DMA_STATUS)?;
        if !status.contains(&line) {
            return Err(format!("dma:status lacks {line:?}:\n{status}").into());
        }
        Ok(client)
    });
    let killed = report.run_after("killed-client-sigkilled-mid-calls", client, |mut client| {
        sleep(LOOP_BEFORE_KILL);
        let pid = client.0.id();
        client.0.kill()?;
        let status = client.0.wait()?;
        if status.signal() != Some(Signal::SIGKILL as i32) {
            return Err(format!("the client ended with {status}, not by SIGKILL").into());
        }
        Ok(pid)
    });
    report.run_after("dma-frees-killed-clients-buffers", killed, |_| {
        wait_for(DMA_STATUS, |status| {
            !status.contains(&format!("client uid={} ", env.e1000_uid))
        })
    });
    report.run_after("mmio-closes-killed-clients-handle", killed, |pid| {
        wait_for(MMIO_STATUS, |status| {
            !status.contains(&format!(" pid {pid} "))
        })
    });
    report.run_after("mmio-serves-after-client-killed", killed, |_| {
        let bar0 = Registers::open_for(env.e1000_bar(0), E1000_DRIVER_LABEL)?;
        let status = bar0.read32(STATUS)?;
        if status & STATUS_LU == 0 {
            return Err(format!("STATUS {status:#010x} has link up clear").into());
        }
        Ok(())
    });
}

/// Starts the looping client as the e1000 driver and waits for its ready line.
fn start(env: &Environment) -> StepResult<LoopingClient> {
    let mut client = LoopingClient(roles::spawn(&Role::LoopingClient.name(), env.e1000_uid)?);
    let output = client
        .0
        .stdout
        .take()
        .ok_or("the client's output is not piped")?;
    let mut line = String::new();
    BufReader::new(output).read_line(&mut line)?;
    match TestLine::parse(GUEST_TEST_PREFIX, &line) {
        Some(ready) if ready.name == READY_STEP && ready.passed() => Ok(client),
        _ => Err(format!(
            "the client said {:?}, not that it is ready",
            line.trim_end()
        )
        .into()),
    }
}

/// Waits until the status text behind `path` satisfies `done`.
fn wait_for(path: &str, done: impl Fn(&str) -> bool) -> StepResult<()> {
    let started = Instant::now();
    loop {
        let status = read_status(path)?;
        if done(&status) {
            return Ok(());
        }
        if started.elapsed() > CLEANUP_TIMEOUT {
            return Err(format!("{path} after {CLEANUP_TIMEOUT:?}:\n{status}").into());
        }
        sleep(Duration::from_millis(10));
    }
}
