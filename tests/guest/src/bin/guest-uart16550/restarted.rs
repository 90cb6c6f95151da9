//! The driver under `romain:` as a group of one (restart-only supervision) while a
//! client streams through it: killed mid-stream, then stopped so that it misses
//! its heartbeat. Each time the supervisor starts a successor, the client's
//! handle fails once with `ESTALE` and the client reopens it and goes on, and the
//! line settings a client set before come back with the successor from
//! `romain:`'s state store.
//!
//! The bytes go out to the host, which records them and checks nothing: what was
//! queued in the dead driver is lost with it, as on a real line.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use guest_harness::guest::report::{Report, StepResult};
use guest_harness::guest::romain::{RegistryEntry, Romain, RomainGroup, Supervision};
use guest_harness::protocol::{GUEST_BENCH_PREFIX, UART_DRIVER_LABEL};
use romain_engine::BackendKind;
use scheme_runtime::Handle;
use syscall::flag::{O_RDONLY, O_RDWR};

use crate::driver::{self, data_path, status_path};
use crate::UartRule;

/// The run's name: its scheme is `uart.com2-restarted`.
const RUN: &str = "restarted";
/// The driver's name in the registry.
const DRIVER: &str = "uart";
/// What the client sets, not the driver's defaults (115200 8N1).
const SETTINGS: &str = "baud=57600 data=8 parity=none stop=2";
/// Bytes the client gets through before the fault, and again after it.
const STREAMED: u64 = 2048;
/// How long the successor may take to serve, and the client to get its bytes
/// through; generous for TCG (a hang is found after a second).
const TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(10);
/// How long the replica engine's watchdog waits (unused by a group of one, but
/// every registry entry names it).
const WATCHDOG_MS: u32 = 2000;

/// Runs the steps, named `uart16550-restarted-<step>`.
pub fn run(report: &mut Report, program: &Path, rule: &UartRule) {
    let step = |name: &str| format!("uart16550-{RUN}-{name}");
    let target = report.run(&step("driver-serving-under-romain"), || {
        Target::start(program, rule)
    });
    let set = report.run_after(&step("settings-changed"), target.as_ref(), |_| {
        change_settings()
    });
    let killed = report.run_after(
        &step("killed-mid-stream-client-reopened"),
        target.as_ref().zip(set),
        |(target, ())| target.stream_through_fault("kill 0"),
    );
    report.run_after(&step("settings-kept-after-kill"), killed, |_| {
        settings_are_kept()
    });
    let hung = report.run_after(
        &step("hung-driver-replaced-client-reopened"),
        target.as_ref(),
        |target| target.stream_through_fault("stop 0"),
    );
    report.run_after(&step("settings-kept-after-hang"), hung, |_| {
        settings_are_kept()
    });
    report.run_after(&step("group-down"), target, Target::stop);
}

/// `romain serve` running the driver's group.
struct Target {
    romain: Romain,
    group: RomainGroup,
}

impl Target {
    fn start(program: &Path, rule: &UartRule) -> StepResult<Target> {
        let entry = RegistryEntry {
            driver: DRIVER.to_owned(),
            binary: program.display().to_string(),
            args: driver::driver_args("mmio", RUN, rule.ports).to_vec(),
            policy: UART_DRIVER_LABEL.to_owned(),
            uid: rule.uid,
            gid: rule.uid,
            watchdog_ms: WATCHDOG_MS,
            backend: BackendKind::Ptrace,
        };
        let supervision = Supervision::quick_restart(&status_path(RUN));
        let mut romain = Romain::start(&entry.supervised_registry(&supervision))?;
        let group = RomainGroup::up(DRIVER, 1)?;
        romain.wait_until(TIMEOUT, || {
            Handle::open(&status_path(RUN), O_RDONLY).is_ok()
        })?;
        Ok(Target { romain, group })
    }

    /// Streams while `fault` goes to the group: the client gets [`STREAMED`]
    /// bytes through before it and as many after the successor serves, meeting
    /// `ESTALE` once on the way and reopening.
    fn stream_through_fault(&self, fault: &str) -> StepResult<String> {
        let generation = self.generation()?;
        let writer = Writer::start()?;
        writer.wait_for(STREAMED)?;
        self.group.command(fault)?;
        let started = Instant::now();
        while self.generation()? == generation {
            if started.elapsed() > TIMEOUT {
                return Err(format!("no successor {TIMEOUT:?} after {fault:?}").into());
            }
            sleep(POLL);
        }
        let before = writer.written();
        writer.wait_for(before + STREAMED)?;
        let reopened = writer.finish()?;
        if reopened != 1 {
            return Err(format!("the client reopened {reopened} times, not once").into());
        }
        let status = self.group.status()?;
        let restart_ms = status.value("restart_to_serving_last_ms")?.to_owned();
        println!(
            "{GUEST_BENCH_PREFIX} uart16550 {RUN}: after {fault:?} serving again in \
             {restart_ms} ms (romain's restart-to-serving time)"
        );
        Ok(format!(
            "generation {generation} -> {}, client reopened once, restart-to-serving \
             {restart_ms} ms",
            status.value("generation")?
        ))
    }

    fn generation(&self) -> StepResult<u64> {
        self.group.status()?.counter("generation")
    }

    fn stop(self) -> StepResult<()> {
        let Target { mut romain, group } = self;
        group.down(TIMEOUT)?;
        romain.stop(TIMEOUT)
    }
}

/// A client writing lines to the driver's `data` path on a thread of its own,
/// reopening its handle once for every `ESTALE`.
struct Writer {
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<io::Result<u64>>,
}

impl Writer {
    fn start() -> StepResult<Writer> {
        let mut handle = Handle::open(&data_path(RUN), O_RDWR)?;
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let (written, stop) = (Arc::clone(&written), Arc::clone(&stop));
            move || {
                let mut reopened = 0;
                let mut line = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let text = format!("uart16550 {RUN}: line {line:06}\n");
                    match handle.write(text.as_bytes()) {
                        Ok(n) => {
                            written.fetch_add(n as u64, Ordering::Relaxed);
                            line += 1;
                        }
                        Err(e) if e.raw_os_error() == Some(syscall::error::ESTALE) => {
                            handle.reopen(TIMEOUT)?;
                            reopened += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(reopened)
            }
        });
        Ok(Writer {
            written,
            stop,
            thread,
        })
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits until `bytes` in all were written; an error if the writer failed.
    fn wait_for(&self, bytes: u64) -> StepResult<()> {
        let started = Instant::now();
        while self.written() < bytes {
            if self.thread.is_finished() {
                return Err("the writer ended early".into());
            }
            if started.elapsed() > TIMEOUT {
                return Err(format!(
                    "{} of {bytes} bytes written after {TIMEOUT:?}",
                    self.written()
                )
                .into());
            }
            sleep(POLL);
        }
        Ok(())
    }

    /// Stops the writer; how often it reopened.
    fn finish(self) -> StepResult<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(result) => Ok(result.map_err(|e| format!("the writer failed: {e}"))?),
            Err(_) => Err("the writer panicked".into()),
        }
    }
}

fn change_settings() -> StepResult<()> {
    let settings = Handle::open(&settings_path(), O_RDWR)?;
    settings.write(SETTINGS.as_bytes())?;
    settings_are(SETTINGS).map(drop)
}

/// The successor serves the settings the client set before the restart.
fn settings_are_kept() -> StepResult<String> {
    settings_are(SETTINGS)
}

fn settings_are(expected: &str) -> StepResult<String> {
    let handle = Handle::open(&settings_path(), O_RDONLY)?;
    let mut buf = [0u8; 256];
    let n = handle.read(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
    match text == expected {
        true => Ok(text),
        false => Err(format!("the driver's settings are {text:?}, not {expected:?}").into()),
    }
}

fn settings_path() -> String {
    format!("/scheme/{}/settings", driver::scheme(RUN))
}
