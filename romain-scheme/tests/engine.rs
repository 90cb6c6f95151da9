//! The replication engine with the real UART driver (`uart16550 --access direct`):
//! its port instructions trap to the engine, which performs them once on a software
//! 16550 (the same chip model the driver's own host tests use; the guest tests drive
//! QEMU's real one). Clients use the driver's scheme exactly as they would the
//! unreplicated driver's.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redox_scheme::scheme::SchemeSync;
use redox_scheme::OpenResult;
use romain_engine::trap::{MemoryDevice, PortDevice, ReplicaCommand, Width};
use romain_engine::{BackendKind, DeviceWindow, Devices, GroupConfig, GroupThread};
use scheme_runtime::{caller_ctx, Handle};
use syscall::flag::O_RDWR;
use uart16550::access::PortIo;
use uart16550::poll::PollPolicy;
use uart16550::port::SerialPort;
use uart16550::soft::Soft16550;
use uart16550::uart::Uart;
use uart16550::{LineSettings, UartScheme};

mod common;
use common::{unique_dir, workspace_binary};

const BASE: u16 = 0x2f8;
const SCHEME: &str = "uart.engine";

/// The software chip behind the engine's port device.
struct SoftPorts(Soft16550);

impl PortDevice for SoftPorts {
    fn read(&mut self, port: u16, _width: Width) -> u32 {
        let offset = u8::try_from(port - BASE).expect("the driver stays in its range");
        self.0.read(offset).map_or(0xff, u32::from)
    }

    fn write(&mut self, port: u16, _width: Width, value: u32) {
        let offset = u8::try_from(port - BASE).expect("the driver stays in its range");
        self.0
            .write(offset, value as u8)
            .expect("the software chip takes writes");
    }
}

/// A replicated UART driver served in a private scheme directory, with the control
/// socket `romain:` would hold.
struct Replicated {
    dir: PathBuf,
    chip: Soft16550,
    group: GroupThread,
}

impl Replicated {
    fn start(replicas: usize, watchdog: Duration) -> Self {
        Self::start_on(BackendKind::Ptrace, replicas, watchdog)
    }

    fn start_on(backend: BackendKind, replicas: usize, watchdog: Duration) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let dir = unique_dir("group");
        let chip = Soft16550::new();
        let mut command = ReplicaCommand::new(workspace_binary("uart16550"));
        command
            .args(["--access", "direct", "--scheme", SCHEME])
            .args(["--poll-interval", "2000", "--linger", "0"])
            .env("RUST_LOG", "error");
        let config = GroupConfig {
            command,
            replicas,
            watchdog,
            device_window: None,
            backend,
        };
        let devices = Devices {
            ports: Box::new(SoftPorts(chip.clone())),
            memory: None,
        };
        let group = GroupThread::spawn(config, devices, dir.clone()).unwrap();
        wait_for_scheme(&dir, SCHEME, &group);
        let replicated = Self { dir, chip, group };
        let status = replicated.status();
        assert_eq!(status["backend"], backend.to_string(), "{status:?}");
        if backend == BackendKind::Stub {
            // Serving, the replicas post their events themselves: none is traced.
            for pid in pids(&replicated) {
                assert_eq!(tracer_of(pid), 0, "replica {pid} is traced");
            }
        }
        replicated
    }

    fn command(&self, text: &str) -> String {
        self.group.command(text).unwrap()
    }

    fn status(&self) -> HashMap<String, String> {
        status(&self.group)
    }

    fn counter(&self, key: &str) -> u64 {
        status_counter(&self.group, key)
    }

    fn inject(&self, fault: &str) {
        let answer = self.command(fault);
        assert!(answer.starts_with("ok"), "{fault}: {answer}");
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `scheme` answers: its socket file appears a moment before it
/// takes connections.
fn wait_for_scheme(dir: &Path, scheme: &str, group: &GroupThread) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !common::takes_connections(&dir.join(scheme)) {
        assert!(
            !group.is_finished(),
            "the replica group ended before serving"
        );
        assert!(
            Instant::now() < deadline,
            "the replicated driver never served"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn status(group: &GroupThread) -> HashMap<String, String> {
    let text = group.command("status").unwrap();
    assert!(text.starts_with("ok"), "{text}");
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn status_counter(group: &GroupThread, key: &str) -> u64 {
    status(group)[key].parse().unwrap()
}

/// Sends `messages` through the scheme in `dir`, one write each, and waits until the
/// chip has sent `expected` bytes; returns what went out on the line.
fn send_all(dir: &Path, chip: &Soft16550, messages: &[Vec<u8>]) -> Vec<u8> {
    let data = Handle::open_in(dir, &format!("{SCHEME}:data"), O_RDWR).unwrap();
    let expected: usize = messages.iter().map(Vec::len).sum();
    let mut sent = Vec::new();
    for message in messages {
        let mut rest = &message[..];
        while !rest.is_empty() {
            let written = data.write(rest).unwrap();
            rest = &rest[written..];
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.len() < expected && Instant::now() < deadline {
        sent.extend(chip.take_transmitted());
        thread::sleep(Duration::from_millis(5));
    }
    sent
}

fn messages(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("message {i:04}: the quick brown fox\r\n").into_bytes())
        .collect()
}

/// The line settings registers, which a wrong write would change.
fn chip_settings(chip: &Soft16550) -> (u16, u8, u8, u8) {
    (chip.divisor(), chip.lcr(), chip.ier(), chip.mcr())
}

/// The unreplicated driver on its own chip, served in-process.
fn unreplicated_output(messages: &[Vec<u8>]) -> (Vec<u8>, (u16, u8, u8, u8)) {
    let chip = Soft16550::new();
    let settings = LineSettings::default();
    let uart = Uart::open(chip.clone(), settings).unwrap();
    let policy = PollPolicy {
        linger: Duration::ZERO,
        budget: Duration::from_secs(10),
    };
    let mut scheme = UartScheme::new(
        SCHEME,
        "software 16550".into(),
        SerialPort::new(uart, settings),
        policy,
    );
    let root = scheme.scheme_root().unwrap();
    let ctx = caller_ctx(10, 0, 0);
    let OpenResult::ThisScheme { number, .. } =
        scheme.openat(root, "data", O_RDWR, 0, &ctx).unwrap()
    else {
        panic!("data is a handle of the scheme");
    };
    let mut sent = Vec::new();
    for message in messages {
        let mut rest = &message[..];
        while !rest.is_empty() {
            match scheme.write(number, rest, 0, 0, &ctx) {
                Ok(written) => rest = &rest[written..],
                Err(_) => {
                    scheme_runtime::SchemeDaemon::after_round(&mut scheme);
                    sent.extend(chip.take_transmitted());
                }
            }
        }
    }
    for _ in 0..100 {
        scheme_runtime::SchemeDaemon::after_round(&mut scheme);
        sent.extend(chip.take_transmitted());
    }
    (sent, chip_settings(&chip))
}

#[test]
fn one_two_or_three_replicas_send_what_the_unreplicated_driver_sends() {
    same_output_as_the_unreplicated_driver(BackendKind::Ptrace);
}

#[test]
fn on_the_stub_backend_one_two_or_three_replicas_send_what_the_unreplicated_driver_sends() {
    same_output_as_the_unreplicated_driver(BackendKind::Stub);
}

fn same_output_as_the_unreplicated_driver(backend: BackendKind) {
    let messages = messages(20);
    let (expected, settings) = unreplicated_output(&messages);
    assert_eq!(expected, messages.concat());
    for replicas in 1..=3 {
        let group = Replicated::start_on(backend, replicas, Duration::from_secs(2));
        let sent = send_all(&group.dir, &group.chip, &messages);
        assert_eq!(sent, expected, "{replicas} replicas");
        assert_eq!(chip_settings(&group.chip), settings, "{replicas} replicas");
        let status = group.status();
        assert_eq!(status["replicas"], replicas.to_string());
        assert_eq!(status["divergences"], "0", "{status:?}");
        assert_eq!(status["recovery-us"], "0", "nothing to recover from");
        assert!(group.counter("events") > 100, "{status:?}");
    }
}

/// A small deterministic generator, so a failing fault sequence can be replayed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

const REGISTERS: [&str; 20] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip", "rflags", "fs_base", "gs_base",
];

/// A register and a bit of it; segment bases keep to the canonical addresses the CPU
/// can hold (the kernel refuses others).
fn random_register_bit(random: &mut XorShift) -> (&'static str, u64) {
    let register = REGISTERS[random.below(REGISTERS.len() as u64) as usize];
    let bits = if register.ends_with("_base") { 47 } else { 64 };
    (register, random.below(bits))
}

/// Writes `message` through a fresh handle, retrying while the group restarts.
fn write_message(dir: &Path, message: &[u8]) -> bool {
    let Ok(data) = Handle::open_in(dir, &format!("{SCHEME}:data"), O_RDWR) else {
        return false;
    };
    let mut rest = message;
    while !rest.is_empty() {
        match data.write(rest) {
            Ok(written) => rest = &rest[written..],
            Err(_) => return false,
        }
    }
    true
}

fn drain(chip: &Soft16550, expected: usize) -> Vec<u8> {
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.len() < expected && Instant::now() < deadline {
        sent.extend(chip.take_transmitted());
        thread::sleep(Duration::from_millis(5));
    }
    sent
}

#[test]
fn with_three_replicas_every_register_flip_is_masked_or_repaired() {
    with_three_replicas_every_register_flip_is_masked_or_repaired_on(BackendKind::Ptrace);
}

#[test]
fn on_the_stub_backend_with_three_replicas_every_register_flip_is_masked_or_repaired() {
    with_three_replicas_every_register_flip_is_masked_or_repaired_on(BackendKind::Stub);
}

fn with_three_replicas_every_register_flip_is_masked_or_repaired_on(backend: BackendKind) {
    let group = Replicated::start_on(backend, 3, Duration::from_millis(300));
    let settings = chip_settings(&group.chip);
    let messages = messages(100);
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    for message in &messages {
        let replica = random.below(3);
        let (register, bit) = random_register_bit(&mut random);
        group.inject(&format!("flip {replica} reg {register} {bit}"));
        assert!(write_message(&group.dir, message), "a client write failed");
    }
    let sent = drain(&group.chip, messages.concat().len());
    assert_eq!(
        String::from_utf8_lossy(&sent),
        String::from_utf8_lossy(&messages.concat())
    );
    assert_eq!(chip_settings(&group.chip), settings);
    let status = group.status();
    assert_eq!(status["injected"], "100", "{status:?}");
    assert_eq!(status["no-majority"], "0", "{status:?}");
    let caught: u64 = ["divergences", "crashes", "hangs"]
        .iter()
        .map(|key| status[*key].parse::<u64>().unwrap())
        .sum();
    assert!(caught > 0, "no flip was ever live: {status:?}");
    assert!(
        !status["pids"].contains('-'),
        "every place is filled: {status:?}"
    );
}

#[test]
fn with_two_replicas_a_flip_never_reaches_the_device() {
    with_two_replicas_a_flip_never_reaches_the_device_on(BackendKind::Ptrace);
}

#[test]
fn on_the_stub_backend_with_two_replicas_a_flip_never_reaches_the_device() {
    with_two_replicas_a_flip_never_reaches_the_device_on(BackendKind::Stub);
}

fn with_two_replicas_a_flip_never_reaches_the_device_on(backend: BackendKind) {
    let group = Replicated::start_on(backend, 2, Duration::from_millis(300));
    let settings = chip_settings(&group.chip);
    let messages = messages(40);
    let alphabet: std::collections::BTreeSet<u8> = messages.concat().into_iter().collect();
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    for message in &messages {
        let replica = random.below(2);
        let (register, bit) = random_register_bit(&mut random);
        group.inject(&format!("flip {replica} reg {register} {bit}"));
        // A write the group could not vote on fails, as it would with a crashed driver.
        write_message(&group.dir, message);
    }
    thread::sleep(Duration::from_millis(500));
    let sent = group.chip.take_transmitted();
    let foreign: Vec<u8> = sent
        .iter()
        .copied()
        .filter(|b| !alphabet.contains(b))
        .collect();
    assert!(foreign.is_empty(), "bytes no client sent: {foreign:x?}");
    assert_eq!(chip_settings(&group.chip), settings);
    let status = group.status();
    assert!(
        status["no-majority"].parse::<u64>().unwrap() > 0,
        "no flip was ever live: {status:?}"
    );
    assert_eq!(
        status["no-majority"], status["group-restarts"],
        "{status:?}"
    );
    // The group still works after its restarts.
    assert!(write_message(&group.dir, b"after\r\n"));
    let tail = drain(&group.chip, 7);
    assert_eq!(tail, b"after\r\n");
}

/// The writable private memory of `pid`, as `(start, end)`.
fn writable_regions(pid: i32) -> Vec<(u64, u64)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("rw-p"))
        .filter(|line| !line.ends_with("[vvar]") && !line.ends_with("[vsyscall]"))
        .map(|line| {
            let range = line.split_whitespace().next().unwrap();
            let (start, end) = range.split_once('-').unwrap();
            (
                u64::from_str_radix(start, 16).unwrap(),
                u64::from_str_radix(end, 16).unwrap(),
            )
        })
        .collect()
}

/// The process tracing `pid` (0: none), from `/proc/<pid>/status`.
fn tracer_of(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("TracerPid:"))
        .map(|value| value.trim().parse().unwrap())
        .unwrap()
}

/// Where the mapping of `pid` whose name ends with `name` starts.
fn mapping_of(pid: i32, name: &str) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let line = maps
        .lines()
        .find(|line| line.trim_end().ends_with(name))
        .unwrap_or_else(|| panic!("no mapping {name} in {maps}"));
    u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap()
}

#[test]
fn on_the_stub_backend_a_replica_whose_slot_or_stub_is_corrupted_is_outvoted_and_replaced() {
    let group = Replicated::start_on(BackendKind::Stub, 3, Duration::from_millis(300));
    // The slot's copy of RIP (word 16 of the registers at byte 56) is what
    // replica 1 goes on with; the stub's own `syscall` instruction is the
    // first byte of its site page.
    let slot = mapping_of(pids(&group)[1], "/memfd:romain-slot (deleted)");
    group.inject(&format!("flip 1 mem {:#x} 3", slot + 56 + 16 * 8 + 1));
    assert!(write_message(&group.dir, b"slot\r\n"));
    assert_eq!(drain(&group.chip, 6), b"slot\r\n");
    group.inject(&format!("flip 2 mem {:#x} 0", romain_stub::SITE_PAGE));
    assert!(write_message(&group.dir, b"stub\r\n"));
    assert_eq!(drain(&group.chip, 6), b"stub\r\n");
    let status = group.status();
    assert_eq!(status["injected"], "2", "{status:?}");
    assert_eq!(status["no-majority"], "0", "{status:?}");
    let caught: u64 = ["divergences", "crashes", "hangs"]
        .iter()
        .map(|key| status[*key].parse::<u64>().unwrap())
        .sum();
    assert_eq!(caught, 2, "both faults were caught: {status:?}");
    assert!(
        !status["pids"].contains('-'),
        "every place is filled: {status:?}"
    );
    assert!(write_message(&group.dir, b"after\r\n"));
    assert_eq!(drain(&group.chip, 7), b"after\r\n");
    assert_eq!(group.counter("no-majority"), 0);
}

fn pids(group: &Replicated) -> Vec<i32> {
    group.status()["pids"]
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect()
}

#[test]
fn memory_flips_are_repaired_and_do_not_reach_the_device() {
    memory_flips_are_repaired_and_do_not_reach_the_device_on(BackendKind::Ptrace);
}

#[test]
fn on_the_stub_backend_memory_flips_are_repaired_and_do_not_reach_the_device() {
    memory_flips_are_repaired_and_do_not_reach_the_device_on(BackendKind::Stub);
}

fn memory_flips_are_repaired_and_do_not_reach_the_device_on(backend: BackendKind) {
    let group = Replicated::start_on(backend, 3, Duration::from_millis(300));
    let messages = messages(30);
    let mut random = XorShift(0x1234_5678_9abc_def1);
    for message in &messages {
        let replica = random.below(3) as usize;
        let regions = writable_regions(pids(&group)[replica]);
        let (start, end) = regions[random.below(regions.len() as u64) as usize];
        let address = start + random.below(end - start);
        group.inject(&format!(
            "flip {replica} mem {address:#x} {}",
            random.below(8)
        ));
        assert!(write_message(&group.dir, message), "a client write failed");
    }
    let sent = drain(&group.chip, messages.concat().len());
    assert_eq!(sent, messages.concat());
    // Flips that no event showed are still there: scrubbing finds and repairs them.
    let answer = group.command("scrub");
    assert!(answer.starts_with("ok"), "{answer}");
    let answer = group.command("scrub");
    assert_eq!(answer, "ok scrubbed: 0 replicas repaired");
    let status = group.status();
    assert_eq!(status["injected"], "30", "{status:?}");
    assert!(status["repairs"].parse::<u64>().unwrap() > 0, "{status:?}");
}

#[test]
fn a_killed_replica_is_replaced_by_a_copy_of_a_healthy_one() {
    a_killed_replica_is_replaced_by_a_copy_of_a_healthy_one_on(BackendKind::Ptrace);
}

#[test]
fn on_the_stub_backend_a_killed_replica_is_replaced_by_a_copy_of_a_healthy_one() {
    a_killed_replica_is_replaced_by_a_copy_of_a_healthy_one_on(BackendKind::Stub);
}

fn a_killed_replica_is_replaced_by_a_copy_of_a_healthy_one_on(backend: BackendKind) {
    let group = Replicated::start_on(backend, 3, Duration::from_secs(2));
    let before = pids(&group);
    group.inject("kill 1");
    let messages = messages(5);
    for message in &messages {
        assert!(write_message(&group.dir, message));
    }
    assert_eq!(
        drain(&group.chip, messages.concat().len()),
        messages.concat()
    );
    let after = pids(&group);
    assert_eq!((after[0], after[2]), (before[0], before[2]));
    assert_ne!(after[1], before[1], "replica 1 is a new process");
    let status = group.status();
    assert_eq!(status["replacements"], "1", "{status:?}");
    assert_eq!(status["crashes"], "1", "{status:?}");
    assert!(
        status["recovery-us"].parse::<u64>().unwrap() > 0,
        "the replacement's stall is counted: {status:?}"
    );
    // The copy votes like the others from then on.
    group.inject("flip 0 reg rax 5");
    assert!(write_message(&group.dir, b"still three\r\n"));
    assert_eq!(drain(&group.chip, 13), b"still three\r\n");
    assert_eq!(group.counter("no-majority"), 0);
}

#[test]
fn a_replica_in_an_endless_loop_or_stopped_is_caught_by_the_watchdog() {
    a_replica_in_an_endless_loop_or_stopped_is_caught_by_the_watchdog_on(BackendKind::Ptrace);
}

#[test]
fn on_the_stub_backend_a_replica_in_an_endless_loop_or_stopped_is_caught_by_the_watchdog() {
    a_replica_in_an_endless_loop_or_stopped_is_caught_by_the_watchdog_on(BackendKind::Stub);
}

fn a_replica_in_an_endless_loop_or_stopped_is_caught_by_the_watchdog_on(backend: BackendKind) {
    let watchdog = Duration::from_millis(200);
    let group = Replicated::start_on(backend, 3, watchdog);
    group.inject("hang 2");
    assert!(write_message(&group.dir, b"one\r\n"));
    assert_eq!(drain(&group.chip, 5), b"one\r\n");
    assert_eq!(group.counter("hangs"), 1);
    group.inject("stop 0");
    assert!(write_message(&group.dir, b"two\r\n"));
    assert_eq!(drain(&group.chip, 5), b"two\r\n");
    let status = group.status();
    assert_eq!(status["hangs"], "2", "{status:?}");
    // A stub's registers are in reach only while it waits at an event: a
    // hung replica there is replaced by a copy instead of repaired.
    let recovered = match backend {
        BackendKind::Ptrace => "repairs",
        BackendKind::Stub => "replacements",
    };
    assert_eq!(status[recovered], "2", "{status:?}");
    assert!(status["last-fault"].contains("hung"), "{status:?}");
}

/// A device register file: loads read `0x1000 + offset`; every access is counted.
struct CountingRegisters(Arc<AtomicU64>);

impl MemoryDevice for CountingRegisters {
    fn read(&mut self, offset: u64, _width: u8) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed);
        0x1000 + offset
    }

    fn write(&mut self, _offset: u64, _width: u8, _value: u64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

const WINDOW: u64 = 0x5000_0000_0000;

/// `command` as three replicas with a 2 s watchdog, no device window and a chip
/// nothing uses, served in `dir`.
fn three_without_devices(command: ReplicaCommand, dir: &Path) -> GroupThread {
    group_without_devices(3, command, dir)
}

fn group_without_devices(replicas: usize, command: ReplicaCommand, dir: &Path) -> GroupThread {
    let config = GroupConfig {
        command,
        replicas,
        watchdog: Duration::from_secs(2),
        device_window: None,
        backend: Default::default(),
    };
    let devices = Devices {
        ports: Box::new(SoftPorts(Soft16550::new())),
        memory: None,
    };
    GroupThread::spawn(config, devices, dir.to_path_buf()).unwrap()
}

#[test]
fn loads_from_the_device_window_are_performed_once_for_the_group() {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = unique_dir("mmio");
    let mut command = ReplicaCommand::new(env!("CARGO_BIN_EXE_romain-testdriver"));
    command.args(["events", "events", "--window", &format!("{WINDOW:#x}")]);
    let accesses = Arc::new(AtomicU64::new(0));
    let devices = Devices {
        ports: Box::new(SoftPorts(Soft16550::new())),
        memory: Some(DeviceWindow {
            window: WINDOW..WINDOW + 4096,
            device: Box::new(CountingRegisters(Arc::clone(&accesses))),
        }),
    };
    let config = GroupConfig {
        command,
        replicas: 3,
        watchdog: Duration::from_secs(2),
        device_window: Some(WINDOW..WINDOW + 4096),
        backend: Default::default(),
    };
    let group = GroupThread::spawn(config, devices, dir.clone()).unwrap();
    wait_for_scheme(&dir, "events", &group);
    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    assert_eq!(events.write(b"mmio 25").unwrap(), 7);
    assert_eq!(
        accesses.load(Ordering::Relaxed),
        25,
        "once per load, not per replica"
    );
    assert_eq!(status(&group)["divergences"], "0");
    // Whether a flipped register in one replica shows at a load or is overwritten
    // first, the device still sees exactly one load per event.
    group.command("flip 2 reg rax 4").unwrap();
    assert_eq!(events.write(b"mmio 5").unwrap(), 6);
    assert_eq!(accesses.load(Ordering::Relaxed), 30);
    drop(group);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scheme_calls_of_the_replicas_are_made_once_by_the_engine() {
    let (dir, _testbed, group) = events_beside_testbed("client", "testbed:queue/replicated");
    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    assert_eq!(events.write(b"client 5").unwrap(), 8);
    group.command("flip 1 reg rdi 2").unwrap();
    assert_eq!(events.write(b"client 2").unwrap(), 8);
    let queue = Handle::open_in(&dir, "testbed:queue/replicated", O_RDWR).unwrap();
    let mut received = [0; 64];
    let n = queue.read(&mut received).unwrap();
    assert_eq!(
        &received[..n],
        b"xxxxxxx",
        "one write per event, not one per replica"
    );
    let stats = Handle::open_in(&dir, "testbed:stats", O_RDWR).unwrap();
    let n = stats.read(&mut received).unwrap();
    let stats = String::from_utf8_lossy(&received[..n]).into_owned();
    // Seven opens and closes by the group, plus the queue handle above.
    assert!(stats.starts_with("opened=8 closed=7 "), "{stats}");
    assert_eq!(status(&group)["no-majority"], "0");
    drop(group);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `testbed` daemon and three replicas of the test driver's `events` scheme,
/// whose `client` events write to `client`, served side by side in a new directory.
fn events_beside_testbed(name: &str, client: &str) -> (PathBuf, KillOnDrop, GroupThread) {
    replicas_beside_testbed(3, name, client)
}

fn replicas_beside_testbed(
    replicas: usize,
    name: &str,
    client: &str,
) -> (PathBuf, KillOnDrop, GroupThread) {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = unique_dir(name);
    let testbed = testbed_in(&dir);
    let group = group_without_devices(replicas, client_driver(&dir, client), &dir);
    wait_for_scheme(&dir, "testbed", &group);
    wait_for_scheme(&dir, "events", &group);
    (dir, testbed, group)
}

/// The bytes a queue in `dir` holds, taken.
fn queue_contents(dir: &Path, path: &str) -> Vec<u8> {
    let queue = Handle::open_in(dir, path, O_RDWR).unwrap();
    let mut received = [0; 256];
    match queue.read(&mut received) {
        Ok(n) => received[..n].to_vec(),
        Err(error) if error.raw_os_error() == Some(syscall::error::EWOULDBLOCK) => Vec::new(),
        Err(error) => panic!("reading {path}: {error}"),
    }
}

/// Where the test driver's `held` events find their bytes in replica `pid`,
/// just after the marker it keeps before them.
fn held_bytes_address(pid: i32) -> u64 {
    const MARK: &[u8] = b"held bytes:";
    for (start, end) in writable_regions(pid) {
        let memory = replica_memory(pid, start, (end - start) as usize);
        if let Some(at) = memory.windows(MARK.len()).position(|window| window == MARK) {
            return start + (at + MARK.len()) as u64;
        }
    }
    panic!("no held bytes in pid {pid}'s memory");
}

fn group_pids(group: &GroupThread) -> Vec<i32> {
    status(group)["pids"]
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect()
}

#[test]
fn calls_held_for_the_reply_reach_the_scheme_once_in_order_and_cost_no_event_of_their_own() {
    let (dir, _testbed, group) = events_beside_testbed("held", "testbed:queue/held");
    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    // The first opens the queue the held calls go to.
    assert_eq!(events.write(b"held 1").unwrap(), 6);
    let before = status_counter(&group, "events");
    assert_eq!(events.write(b"held 5").unwrap(), 6);
    assert_eq!(
        status_counter(&group, "events") - before,
        1,
        "the request's reply and the five calls held for it are one event"
    );
    assert_eq!(queue_contents(&dir, "testbed:queue/held"), b"abcdef");
    assert_eq!(status_counter(&group, "held-calls"), 6);
    assert_eq!(status_counter(&group, "divergences"), 0);
    drop(group);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_held_call_one_replica_disagrees_on_is_out_voted_and_the_majoritys_go_out_in_order() {
    let (dir, _testbed, group) = events_beside_testbed("held-vote", "testbed:queue/voted");
    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    assert_eq!(events.write(b"held 1").unwrap(), 6);
    // Replica 1 would append `c` with a bit flipped: `a` (0x61 ^ 0x02).
    let next = held_bytes_address(group_pids(&group)[1]) + 2;
    let answer = group.command(&format!("flip 1 mem {next:#x} 1")).unwrap();
    assert!(answer.starts_with("ok"), "{answer}");
    assert_eq!(events.write(b"held 3").unwrap(), 6);
    assert_eq!(queue_contents(&dir, "testbed:queue/voted"), b"abcd");
    let status = status(&group);
    assert_eq!(status["divergences"], "1", "{status:?}");
    assert_eq!(status["repairs"], "1", "{status:?}");
    assert_eq!(status["held-calls"], "4", "{status:?}");
    // Repaired, replica 1 holds what the others hold.
    assert_eq!(events.write(b"held 2").unwrap(), 6);
    assert_eq!(queue_contents(&dir, "testbed:queue/voted"), b"ef");
    assert_eq!(status_counter(&group, "divergences"), 1);
    drop(group);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_two_replicas_a_held_call_they_disagree_on_never_reaches_the_scheme() {
    let (dir, _testbed, group) = replicas_beside_testbed(2, "held-split", "testbed:queue/split");
    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    assert_eq!(events.write(b"held 1").unwrap(), 6);
    let next = held_bytes_address(group_pids(&group)[1]) + 1;
    let answer = group.command(&format!("flip 1 mem {next:#x} 1")).unwrap();
    assert!(answer.starts_with("ok"), "{answer}");
    // Neither reply has a majority: not one of the calls held with them goes out.
    assert!(events.write(b"held 3").is_err());
    assert_eq!(queue_contents(&dir, "testbed:queue/split"), b"a");
    let status = status(&group);
    assert_eq!(status["no-majority"], "1", "{status:?}");
    assert_eq!(status["held-calls"], "1", "{status:?}");
    // The group starts afresh and serves again, from the first byte.
    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    assert_eq!(events.write(b"held 2").unwrap(), 6);
    assert_eq!(queue_contents(&dir, "testbed:queue/split"), b"ab");
    drop(group);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `testbed` daemon serving in `dir`.
fn testbed_in(dir: &Path) -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new(workspace_binary("testbed"))
            .arg("serve")
            .env(scheme_runtime::SCHEME_DIR_ENV, dir)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    )
}

/// The test driver's `events` scheme, whose `client` events write to `client`
/// among the schemes in `dir`.
fn client_driver(dir: &Path, client: &str) -> ReplicaCommand {
    let mut command = ReplicaCommand::new(env!("CARGO_BIN_EXE_romain-testdriver"));
    command
        .args(["events", "events", "--window", &format!("{WINDOW:#x}")])
        .args(["--client", client])
        .env(scheme_runtime::SCHEME_DIR_ENV, dir);
    command
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_driver_that_exits_on_its_own_ends_the_group_instead_of_restarting_it() {
    let dir = unique_dir("exit");
    let mut command = ReplicaCommand::new(env!("CARGO_BIN_EXE_romain-testdriver"));
    command.args(["events", "events", "--window", &format!("{WINDOW:#x}")]);
    let group = three_without_devices(command, &dir);
    wait_for_scheme(&dir, "events", &group);
    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    assert_eq!(events.write(b"none 1").unwrap(), 6);
    // Every replica exits with the same status: the driver's choice, not a fault,
    // so the group is not started again and its thread ends.
    assert!(events.write(b"exit 3").is_err());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !group.is_finished() {
        assert!(Instant::now() < deadline, "the group thread goes on");
        thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scheme_memory_the_replicas_map_is_kept_in_step_with_the_device() {
    let (dir, _testbed, group) = events_beside_testbed("shared", "testbed:queue/shared-test");
    // This test plays the device: it maps the same memory.
    let device = Handle::open_in(&dir, "testbed:shared", O_RDWR).unwrap();
    let page = device.mmap(0, 4096, true).unwrap();
    let counter = page.as_ptr().cast::<u32>();
    // SAFETY: a writable page that lives to the end of the test.
    let read = || unsafe { counter.read_volatile() };
    // SAFETY: as above.
    unsafe { counter.write_volatile(100) };

    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    // The replicas map the memory and count 5 on their copies, which start with the
    // device's 100; nothing has reached a device yet.
    assert_eq!(events.write(b"shared 5").unwrap(), 8);
    assert_eq!(read(), 100, "replicas write their own copies");
    // A scheme call is an effect that may reach a device: the count goes out first.
    assert_eq!(events.write(b"client 1").unwrap(), 8);
    assert_eq!(read(), 105);
    // The device changes the memory; the replicas see it from the next round on
    // that does not follow a write or a call: those rounds hand work over to the
    // device. Here, a round after a read, which this driver refuses. Rounds that
    // find nothing are paced, so the test waits for one: bytes both sides change
    // between two rounds keep the device's value.
    // SAFETY: as above.
    unsafe { counter.write_volatile(1000) };
    assert!(events.read(&mut [0u8; 1]).is_err());
    let rounds_after_the_read = status_counter(&group, "rounds");
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_counter(&group, "rounds") == rounds_after_the_read {
        assert!(Instant::now() < deadline, "no round after the read");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(events.write(b"shared 1").unwrap(), 8);
    assert_eq!(events.write(b"client 1").unwrap(), 8);
    assert_eq!(read(), 1001);
    // A flipped bit in one replica's copy never reaches the device: the majority's
    // page goes out and the replica is repaired.
    let address = romain_engine::SHARED_MEMORY_BASE + 1;
    let answer = group
        .command(&format!("flip 2 mem {address:#x} 3"))
        .unwrap();
    assert!(answer.starts_with("ok"), "{answer}");
    assert_eq!(events.write(b"shared 1").unwrap(), 8);
    assert_eq!(events.write(b"client 1").unwrap(), 8);
    assert_eq!(read(), 1002);
    let counters = status(&group);
    assert_eq!(counters["repairs"], "1", "{counters:?}");
    assert_eq!(counters["no-majority"], "0", "{counters:?}");
    // A replica dies while another's copy holds a flipped bit. Before a copy is
    // made, shared pages written since their last vote are compared like the
    // rest of memory: two replicas left disagree on it, nothing is copied, and
    // the group starts again.
    for command in [format!("flip 2 mem {address:#x} 4"), "kill 1".to_owned()] {
        let answer = group.command(&command).unwrap();
        assert!(answer.starts_with("ok"), "{command}: {answer}");
    }
    let _ = events.write(b"shared 1");
    let counters = status(&group);
    assert_eq!(counters["no-majority"], "1", "{counters:?}");
    assert_eq!(counters["replacements"], "0", "{counters:?}");
    drop(group);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_device_write_that_a_read_tells_of_is_in_the_replicas_memory_when_the_read_returns() {
    // A driver reads its NIC's interrupt cause, then looks at the ring the NIC
    // wrote before raising it. Were the replicas' copy of that memory as old
    // as the round's start, a frame that came in between would be told by the
    // cause (and the cause cleared by the read) yet missing from the ring.
    let (dir, _testbed, group) = events_beside_testbed("witness", "testbed:queue/witness-test");
    let events = Handle::open_in(&dir, "events:", O_RDWR).unwrap();
    for _ in 0..3 {
        assert_eq!(events.write(b"witness 2").unwrap(), 9);
    }
    assert_eq!(status(&group)["divergences"], "0");
    drop(group);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three replicas of the test driver, driven without a forwarder: each request
/// is one exchange.
struct DirectGroup {
    group: romain_engine::ReplicaGroup,
    devices: Devices,
}

impl DirectGroup {
    fn start(command: ReplicaCommand) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let group = romain_engine::ReplicaGroup::start(GroupConfig {
            command,
            replicas: 3,
            watchdog: Duration::from_secs(2),
            device_window: None,
            backend: Default::default(),
        })
        .unwrap();
        let mut direct = DirectGroup {
            group,
            devices: Devices {
                ports: Box::new(SoftPorts(Soft16550::new())),
                memory: None,
            },
        };
        direct
            .group
            .exchange(None, &mut direct.devices)
            .unwrap()
            .expect("a hello");
        direct
    }

    /// Sends one request: its result, and whether the exchange reached out.
    fn request(
        &mut self,
        opcode: scheme_runtime::wire::Opcode,
        id: usize,
        payload: &[u8],
    ) -> (usize, bool) {
        let result = self.try_request(opcode, id, payload).unwrap();
        (result, self.group.last_exchange_reached_out())
    }

    /// Sends one request: its result, an errno if the driver refused it.
    fn try_request(
        &mut self,
        opcode: scheme_runtime::wire::Opcode,
        id: usize,
        payload: &[u8],
    ) -> Result<usize, syscall::error::Error> {
        use scheme_runtime::replicated::codec::{decode_reply, encode_request, RequestHead};
        let caller = scheme_runtime::Caller {
            pid: 1,
            uid: 0,
            gid: 0,
        };
        let mut head = RequestHead::new(opcode, id, caller);
        head.header.len = payload.len() as u64;
        let mut message = Vec::new();
        encode_request(&head, &[], payload, &mut message).unwrap();
        let reply = self
            .group
            .exchange(Some(&message), &mut self.devices)
            .unwrap()
            .unwrap();
        decode_reply(&reply).unwrap().header.result()
    }

    fn events(&self) -> u64 {
        self.group.stats().events
    }
}

/// A driver's request to another scheme and its reply are one event: the
/// connection's one-syscall exchange, where `sendmsg` and `recvmsg` are two.
#[test]
fn a_request_to_another_scheme_and_its_reply_are_one_event() {
    use scheme_runtime::wire::Opcode;

    let dir = unique_dir("exchange");
    let _testbed = testbed_in(&dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Handle::open_in(&dir, "testbed:stats", O_RDWR).is_err() {
        assert!(Instant::now() < deadline, "testbed never served");
        thread::sleep(Duration::from_millis(10));
    }
    let mut direct = DirectGroup::start(client_driver(&dir, "testbed:queue/exchange"));
    let (id, _) = direct.request(Opcode::Open, 0, b"");
    let before = direct.events();
    assert_eq!(direct.request(Opcode::Write, id, b"client 1"), (8, true));
    // `socket`, `connect`; the open, the write and the close, one exchange each;
    // `close`; and the exchange that answers this request. A debug build's standard
    // library checks the descriptor with `fcntl` before closing it.
    let checks_before_close = u64::from(cfg!(debug_assertions));
    assert_eq!(direct.events() - before, 7 + checks_before_close);
    let queue = Handle::open_in(&dir, "testbed:queue/exchange", O_RDWR).unwrap();
    let mut received = [0; 8];
    assert_eq!(queue.read(&mut received).unwrap(), 1, "written once");
    drop(direct);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Given the schemes the driver's policy rule lists, the engine connects the
/// replicas to those only: a connect elsewhere fails alike in every replica, so
/// the driver sees a refusal and no replica diverges.
#[test]
fn replicas_reach_only_the_schemes_their_rule_lists() {
    use romain_engine::SchemeAllowList;
    use scheme_runtime::wire::Opcode;

    let dir = unique_dir("allowed");
    let _testbed = testbed_in(&dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Handle::open_in(&dir, "testbed:stats", O_RDWR).is_err() {
        assert!(Instant::now() < deadline, "testbed never served");
        thread::sleep(Duration::from_millis(10));
    }
    let mut direct = DirectGroup::start(client_driver(&dir, "testbed:queue/allowed"));
    let only = |schemes: &[&str]| {
        SchemeAllowList::new(dir.clone(), schemes.iter().map(|s| s.to_string()).collect())
    };
    direct.group.restrict_connections(only(&["mmio", "dma"]));
    let (id, _) = direct.request(Opcode::Open, 0, b"");
    assert_eq!(
        direct
            .try_request(Opcode::Write, id, b"client 1")
            .map_err(|e| e.errno),
        Err(syscall::error::EIO),
        "the driver could not open testbed: and says so"
    );
    direct
        .group
        .restrict_connections(only(&["mmio", "testbed"]));
    assert_eq!(direct.request(Opcode::Write, id, b"client 1"), (8, true));
    let queue = Handle::open_in(&dir, "testbed:queue/allowed", O_RDWR).unwrap();
    let mut received = [0; 8];
    assert_eq!(
        queue.read(&mut received).unwrap(),
        1,
        "only the allowed connection wrote"
    );
    let stats = direct.group.stats();
    assert_eq!((stats.divergences, stats.no_majority), (0, 0));
    drop(direct);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The forwarder paces rounds that found nothing to do and runs the next at once
/// after one that reached out; the group tells which exchanges did more than answer.
#[test]
fn the_group_tells_an_exchange_that_reached_out_from_one_that_only_answered() {
    use scheme_runtime::replicated::codec::encode_round;
    use scheme_runtime::wire::Opcode;

    let mut command = ReplicaCommand::new(env!("CARGO_BIN_EXE_romain-testdriver"));
    command.args(["events", "events", "--window", &format!("{WINDOW:#x}")]);
    let mut direct = DirectGroup::start(command);
    let (id, _) = direct.request(Opcode::Open, 0, b"");
    assert_eq!(direct.request(Opcode::Write, id, b"syscall 2"), (9, true));
    assert_eq!(direct.request(Opcode::Write, id, b"none 1"), (6, false));
    let mut round = Vec::new();
    encode_round(&[], false, &mut round);
    direct
        .group
        .exchange(Some(&round), &mut direct.devices)
        .unwrap()
        .unwrap();
    assert!(
        !direct.group.last_exchange_reached_out(),
        "this driver's rounds do nothing"
    );
}

/// `len` bytes of replica `pid`'s memory at `address`.
fn replica_memory(pid: i32, address: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut bytes = vec![0; len];
    mem.read_exact_at(&mut bytes, address).unwrap();
    bytes
}

/// An address in the driver's writable memory that holds the same byte in every
/// replica and that two requests do not change: a flip there stays hidden until
/// memory is compared.
fn quiet_address(group: &Replicated) -> u64 {
    const WINDOW: usize = 4096;
    let candidates: Vec<u64> = writable_regions(pids(group)[0])
        .into_iter()
        .flat_map(|(start, end)| (start..end).step_by(WINDOW).take(4))
        .collect();
    let snapshot = |address: u64| -> Vec<Vec<u8>> {
        pids(group)
            .into_iter()
            .map(|pid| replica_memory(pid, address, WINDOW))
            .collect()
    };
    let before: Vec<Vec<Vec<u8>>> = candidates.iter().map(|&a| snapshot(a)).collect();
    assert!(write_message(&group.dir, b"settle\r\n"));
    assert!(write_message(&group.dir, b"settle\r\n"));
    drain(&group.chip, 16);
    for (&address, before) in candidates.iter().zip(&before) {
        let after = snapshot(address);
        if after != *before || after.iter().any(|copy| *copy != after[0]) {
            continue;
        }
        // A byte in the middle of a page nobody wrote.
        return address + WINDOW as u64 / 2;
    }
    panic!("no quiet page among {candidates:x?}");
}

/// Defect: a replica was rebuilt from one whose memory no vote had confirmed. A
/// bit flipped in replica 0, then replica 1 killed: replica 1 became a copy of
/// replica 0, the two out-voted replica 2, and the flip spread to all three.
#[test]
fn a_replacement_is_never_copied_from_memory_no_majority_confirms() {
    let group = Replicated::start(3, Duration::from_secs(2));
    let address = quiet_address(&group);
    let original = replica_memory(pids(&group)[2], address, 1)[0];
    group.inject(&format!("flip 0 mem {address:#x} 2"));
    group.inject("kill 1");
    // Replica 0 and 2 agree on the event but not on that page: with replica 1
    // gone there is no majority for it, so nothing is copied and the group
    // restarts (the request in flight fails).
    let _ = write_message(&group.dir, b"after the kill\r\n");
    let status = group.status();
    assert_eq!(status["no-majority"], "1", "{status:?}");
    assert_eq!(status["replacements"], "0", "{status:?}");
    // The group serves again, and no replica holds the flipped byte.
    assert!(write_message(&group.dir, b"again\r\n"));
    for pid in pids(&group) {
        let byte = replica_memory(pid, address, 1)[0];
        assert_ne!(byte, original ^ 0b100, "the flip spread to pid {pid}");
    }
}

/// Flips a bit of replica 1's memory where no request looks, and carries the
/// flip in (it goes in when the group next runs).
fn hide_a_flip_in_replica_1(group: &Replicated) {
    let address = quiet_address(group);
    group.inject(&format!("flip 1 mem {address:#x} 5"));
    assert!(write_message(&group.dir, b"carry it in\r\n"));
    drain(&group.chip, 13);
}

/// Sends requests until the group has restarted once: the exchange that
/// restarts it may be a request or the driver's polling round.
fn wait_for_group_restart(group: &Replicated) {
    let start = Instant::now();
    while group.counter("group-restarts") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            group.status()
        );
        let _ = write_message(&group.dir, b"x");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Defect: with two replicas a scrub found differences it could not settle and
/// said nothing: no majority, "0 replicas repaired", nothing counted.
#[test]
fn with_two_replicas_a_difference_found_by_scrubbing_is_a_divergence_without_majority() {
    let group = Replicated::start(2, Duration::from_secs(2));
    hide_a_flip_in_replica_1(&group);
    let answer = group.command("scrub");
    assert!(answer.starts_with("error no majority"), "{answer}");
    let status = group.status();
    assert_eq!(status["no-majority"], "1", "{status:?}");
    assert_eq!(status["divergences"], "1", "{status:?}");
    // The next exchange (a request or the driver's polling round) restarts the
    // group instead of going on with two differing replicas.
    wait_for_group_restart(&group);
    assert_eq!(group.counter("group-restarts"), 1);
    assert!(write_message(&group.dir, b"served\r\n"));
}

/// Defect found by a campaign: a fault queued for the replicas of a group that then
/// restarted went into the fresh replicas during their start, where no majority
/// could be had, and the engine gave up.
#[test]
fn a_fault_queued_before_a_restart_does_not_hit_the_fresh_replicas() {
    let group = Replicated::start(2, Duration::from_secs(2));
    hide_a_flip_in_replica_1(&group);
    assert!(group.command("scrub").starts_with("error no majority"));
    // Queued now, meant for replica 1 of the group that is about to restart.
    group.inject("flip 1 reg rcx 60");
    wait_for_group_restart(&group);
    assert!(!group.group.is_finished(), "the engine gave up");
    assert!(write_message(&group.dir, b"served\r\n"));
    assert_eq!(group.counter("no-majority"), 1, "{:?}", group.status());
}

/// The driver's code, as `(start, end)`: its executable private mappings of the
/// driver program itself.
fn driver_code(pid: i32) -> Vec<(u64, u64)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("r-xp"))
        .filter(|line| line.ends_with("uart16550"))
        .map(|line| {
            let range = line.split_whitespace().next().unwrap();
            let (start, end) = range.split_once('-').unwrap();
            (
                u64::from_str_radix(start, 16).unwrap(),
                u64::from_str_radix(end, 16).unwrap(),
            )
        })
        .collect()
}

/// Found by a campaign: a bit flipped in one replica's code stayed there for
/// good (scrubs and repairs compared writable memory only), waiting to make a
/// second fault in another replica a loss of majority.
#[test]
fn a_corrupted_instruction_is_found_by_scrubbing_and_repaired() {
    let group = Replicated::start(3, Duration::from_secs(2));
    let (start, end) = driver_code(pids(&group)[0])[0];
    // The last page of the code: rarely run, so the flip stays hidden.
    let address = end - 0x800;
    assert!(address > start);
    let original = replica_memory(pids(&group)[1], address, 1)[0];
    group.inject(&format!("flip 0 mem {address:#x} 3"));
    assert!(write_message(&group.dir, b"carry it in\r\n"));
    drain(&group.chip, 13);
    let answer = group.command("scrub");
    assert_eq!(answer, "ok scrubbed: 1 replicas repaired");
    for pid in pids(&group) {
        assert_eq!(replica_memory(pid, address, 1)[0], original, "pid {pid}");
    }
    assert_eq!(group.command("scrub"), "ok scrubbed: 0 replicas repaired");
}
