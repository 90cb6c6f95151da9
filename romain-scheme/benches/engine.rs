//! The replication engine's cost per externalization event for N = 1, 2, 3 replicas:
//! a trapped port instruction, a trapped load from device memory, an intercepted
//! syscall, and a whole scheme call through the replicas, against baselines measured
//! in the same run (a native syscall, the same scheme call to the driver unreplicated,
//! and the floor: the least any replicated event costs, `romain_engine::floor`).
//!
//! Each event is measured on both of the engine's backends: replicas traced with
//! ptrace, and replicas whose own stub posts their events (the mechanism Redox can
//! run).
//!
//! Run with `cargo bench -p romain-scheme --bench engine`. Each layout is measured
//! twice: every process on one CPU (the layout DESIGN's numbers were taken in), and
//! unpinned, where wake-ups may cross CPUs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use romain_engine::trap::{MemoryDevice, PortDevice, ReplicaCommand, Width};
use romain_engine::{BackendKind, DeviceWindow, Devices, GroupConfig, GroupThread};
use scheme_runtime::{Handle, SCHEME_DIR_ENV};
use syscall::flag::O_RDWR;

const DRIVER: &str = env!("CARGO_BIN_EXE_romain-testdriver");
const WINDOW: u64 = 0x5000_0000_0000;
const SCHEME: &str = "events";
/// Events per request: enough that the request's own round trip is noise.
const EVENTS: usize = 2000;
const CALLS: usize = 500;

struct NoDevice;

impl PortDevice for NoDevice {
    fn read(&mut self, _port: u16, _width: Width) -> u32 {
        0xff
    }

    fn write(&mut self, _port: u16, _width: Width, _value: u32) {}
}

impl MemoryDevice for NoDevice {
    fn read(&mut self, offset: u64, _width: u8) -> u64 {
        offset
    }

    fn write(&mut self, _offset: u64, _width: u8, _value: u64) {}
}

fn scheme_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("romain-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join(SCHEME).exists() {
        assert!(Instant::now() < deadline, "the events driver never served");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn driver_args() -> [String; 4] {
    [
        "events".into(),
        SCHEME.into(),
        "--window".into(),
        format!("{WINDOW:#x}"),
    ]
}

/// Microseconds per event of `kind`, over `EVENTS` events in one request.
fn per_event(handle: &Handle, kind: &str) -> f64 {
    let request = format!("{kind} {EVENTS}");
    handle.write(request.as_bytes()).unwrap();
    let start = Instant::now();
    handle.write(request.as_bytes()).unwrap();
    start.elapsed().as_secs_f64() * 1e6 / EVENTS as f64
}

/// Microseconds per scheme call that makes no event of its own.
fn per_call(handle: &Handle) -> f64 {
    handle.write(b"none 0").unwrap();
    let start = Instant::now();
    for _ in 0..CALLS {
        handle.write(b"none 0").unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / CALLS as f64
}

/// One figure of a row.
type Measure = dyn Fn(&Row) -> f64;

struct Row {
    floor: f64,
    port: f64,
    mmio: f64,
    syscall: f64,
    call: f64,
}

fn replicated(replicas: usize, backend: BackendKind) -> Row {
    let floor = romain_engine::floor::measure(replicas, EVENTS as u32).unwrap();
    let dir = scheme_dir(&format!("n{replicas}-{backend}"));
    let mut command = ReplicaCommand::new(DRIVER);
    command.args(driver_args());
    let config = GroupConfig {
        command,
        replicas,
        watchdog: Duration::from_secs(5),
        device_window: Some(WINDOW..WINDOW + 4096),
        backend,
    };
    let devices = Devices {
        ports: Box::new(NoDevice),
        memory: Some(DeviceWindow {
            window: WINDOW..WINDOW + 4096,
            device: Box::new(NoDevice),
        }),
    };
    let group = GroupThread::spawn(config, devices, dir.clone()).unwrap();
    wait_for(&dir);
    let handle = Handle::open_in(&dir, &format!("{SCHEME}:"), O_RDWR).unwrap();
    let row = Row {
        floor: floor.as_secs_f64() * 1e6,
        port: per_event(&handle, "port"),
        mmio: per_event(&handle, "mmio"),
        syscall: per_event(&handle, "syscall"),
        call: per_call(&handle),
    };
    let status = group.command("status").unwrap();
    assert!(status.contains("divergences: 0"), "{status}");
    drop(handle);
    drop(group);
    let _ = std::fs::remove_dir_all(&dir);
    row
}

/// The same driver as a plain process: its scheme calls, and a native syscall.
fn unreplicated() -> (f64, f64) {
    let dir = scheme_dir("plain");
    let mut child: Child = Command::new(DRIVER)
        .args(driver_args())
        .env(SCHEME_DIR_ENV, &dir)
        .spawn()
        .unwrap();
    wait_for(&dir);
    let handle = Handle::open_in(&dir, &format!("{SCHEME}:"), O_RDWR).unwrap();
    let call = per_call(&handle);
    let start = Instant::now();
    for _ in 0..EVENTS * 10 {
        // SAFETY: getppid has no arguments and no memory effects.
        std::hint::black_box(unsafe { nix::libc::getppid() });
    }
    let syscall = start.elapsed().as_secs_f64() * 1e6 / (EVENTS * 10) as f64;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    (call, syscall)
}

fn table(layout: &str) {
    let (plain_call, native_syscall) = unreplicated();
    let rows: Vec<Row> = (1..=3)
        .map(|n| replicated(n, BackendKind::Ptrace))
        .collect();
    let stub: Vec<Row> = (1..=3).map(|n| replicated(n, BackendKind::Stub)).collect();
    println!("\nreplication engine, µs per event ({layout}); ratios against N=1 and against the unreplicated driver");
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9}   baseline",
        "event", "N=1", "N=2", "N=3", "N=3/N=1"
    );
    let line_of = |rows: &[Row], name: &str, value: &Measure, baseline: String| {
        let [one, two, three] = [value(&rows[0]), value(&rows[1]), value(&rows[2])];
        println!(
            "{name:<22} {one:>9.2} {two:>9.2} {three:>9.2} {:>8.2}x   {baseline}",
            three / one
        );
    };
    let line =
        |name: &str, value: &Measure, baseline: String| line_of(&rows, name, value, baseline);
    line(
        "floor (rendezvous)",
        &|row| row.floor,
        "N replicas stopped at a call, compared, answered".into(),
    );
    line(
        "trapped port I/O",
        &|row| row.port,
        "native: needs port rights; none".into(),
    );
    line(
        "trapped MMIO load",
        &|row| row.mmio,
        "native: a plain load".into(),
    );
    line(
        "intercepted syscall",
        &|row| row.syscall,
        format!(
            "native getppid {native_syscall:.3} µs (N=3: {:.0}x); the floor: N=1 {:.2}x, N=3 {:.2}x",
            rows[2].syscall / native_syscall,
            rows[0].syscall / rows[0].floor,
            rows[2].syscall / rows[2].floor
        ),
    );
    line(
        "scheme call",
        &|row| row.call,
        format!(
            "unreplicated {plain_call:.2} µs (N=1 {:.2}x, N=3 {:.2}x)",
            rows[0].call / plain_call,
            rows[2].call / plain_call
        ),
    );
    let against_ptrace = |value: &Measure| {
        format!(
            "against ptrace: N=1 {:.2}x, N=3 {:.2}x",
            value(&stub[0]) / value(&rows[0]),
            value(&stub[2]) / value(&rows[2])
        )
    };
    let events: [(&str, &Measure); 4] = [
        ("stub: port I/O", &|row| row.port),
        ("stub: MMIO load", &|row| row.mmio),
        ("stub: syscall", &|row| row.syscall),
        ("stub: scheme call", &|row| row.call),
    ];
    for (name, value) in events {
        line_of(&stub, name, value, against_ptrace(value));
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let mut one_cpu = CpuSet::new();
    one_cpu.set(0).unwrap();
    let all = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
    // The bench's threads and the replicas they spawn inherit the mask.
    sched_setaffinity(Pid::from_raw(0), &one_cpu).unwrap();
    table("all processes on CPU 0");
    sched_setaffinity(Pid::from_raw(0), &all).unwrap();
    table("unpinned");
}
