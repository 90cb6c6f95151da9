//! The scheme's `SchemeSync` implementation over software register banks,
//! called directly as the platform layer would call it.

use driver_policy::{Bdf, DeviceId, Policy};
use mmio_scheme::bus::SoftBank;
use mmio_scheme::interrupt::SoftInterrupt;
use mmio_scheme::scheme::MmioScheme;
use mmio_scheme::wire::{Batch, RegisterOp, Width, START_BUS_MASTER};
use mmio_scheme::SoftMachine;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::{caller_ctx, SchemeDaemon};
use syscall::data::Stat;
use syscall::error::{Error, EACCES, EBADF, EINVAL, ENOENT, EOPNOTSUPP, EWOULDBLOCK};
use syscall::flag::{EventFlags, MapFlags, MODE_CHR, MODE_FILE, O_RDONLY, O_RDWR, O_WRONLY};

const POLICY: &str = r#"
[driver.e1000]
uid = 1001
device = "8086:100e"
bars = [0]
direct_bars = [0]
dma_quota = "4M"
schemes = ["mmio", "dma", "network"]

[driver.uart]
uid = 1002
ports = ["0x2f8-0x2ff"]
schemes = ["mmio"]

[driver.indirect]
uid = 1003
bdf = "0000:00:05.0"
bars = [0]
schemes = ["mmio"]

# Granted the e1000's BAR, but not the scheme it is served by.
[driver.dmaonly]
uid = 1004
device = "8086:100e"
bars = [0]
schemes = ["dma"]
"#;

const E1000: DeviceId = DeviceId {
    vendor: 0x8086,
    device: 0x100e,
};
const E1000_BAR0: &str = "pci/0000:00:03.0/bar0";
const COM2: &str = "port/0x2f8-0x2ff";

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

/// An e1000 at 00:03.0 (BAR 0 of 128 KiB, BAR 2 of 4 KiB), an unknown device
/// at 00:04.0, another e1000 at 00:05.0, and the port space.
struct Machine {
    scheme: MmioScheme<SoftMachine>,
    e1000: SoftBank,
    e1000_bar2: SoftBank,
    other: SoftBank,
    ports: SoftBank,
    /// A clone of the scheme's machine: the functions' command registers.
    hardware: SoftMachine,
}

fn machine() -> Machine {
    let (e1000, e1000_bar2, other) = (
        SoftBank::memory(0x2_0000),
        SoftBank::memory(0x1000),
        SoftBank::memory(0x1000),
    );
    let mut hardware = SoftMachine::new();
    hardware.add_bar(bdf("00:03.0"), E1000, 0, e1000.clone());
    hardware.add_bar(bdf("00:03.0"), E1000, 2, e1000_bar2.clone());
    hardware.add_bar(
        bdf("00:04.0"),
        DeviceId {
            vendor: 0x1234,
            device: 0x1111,
        },
        0,
        other.clone(),
    );
    hardware.add_bar(bdf("00:05.0"), E1000, 0, SoftBank::memory(0x1000));
    let ports = hardware.ports().clone();
    let policy: Policy = POLICY.parse().unwrap();
    Machine {
        scheme: MmioScheme::new(policy, hardware.clone()),
        e1000,
        e1000_bar2,
        other,
        ports,
        hardware,
    }
}

fn e1000_ctx() -> CallerCtx {
    caller_ctx(40, 1001, 1001)
}

fn uart_ctx() -> CallerCtx {
    caller_ctx(41, 1002, 1002)
}

fn root_ctx() -> CallerCtx {
    caller_ctx(1, 0, 0)
}

fn open(scheme: &mut MmioScheme<SoftMachine>, path: &str, ctx: &CallerCtx) -> Result<usize, Error> {
    open_with(scheme, path, O_RDWR, ctx)
}

fn open_with(
    scheme: &mut MmioScheme<SoftMachine>,
    path: &str,
    flags: usize,
    ctx: &CallerCtx,
) -> Result<usize, Error> {
    let root = scheme.scheme_root()?;
    match scheme.openat(root, path, flags, 0, ctx)? {
        OpenResult::ThisScheme { number, .. } => Ok(number),
        other => panic!("open answered {other:?}"),
    }
}

fn errno<T>(result: Result<T, Error>) -> i32 {
    match result {
        Ok(_) => panic!("the request must fail"),
        Err(error) => error.errno,
    }
}

fn pread(
    scheme: &mut MmioScheme<SoftMachine>,
    id: usize,
    len: usize,
    offset: u64,
) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0; len];
    let read = scheme.read(id, &mut buf, offset, 0, &e1000_ctx())?;
    buf.truncate(read);
    Ok(buf)
}

fn pwrite(
    scheme: &mut MmioScheme<SoftMachine>,
    id: usize,
    bytes: &[u8],
    offset: u64,
) -> Result<usize, Error> {
    scheme.write(id, bytes, offset, 0, &e1000_ctx())
}

#[test]
fn granted_opens_and_what_the_handle_says() {
    let Machine { mut scheme, .. } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    let mut path = [0; 64];
    let len = scheme.fpath(bar, &mut path, &e1000_ctx()).unwrap();
    assert_eq!(&path[..len], b"/scheme/mmio/pci/0000:00:03.0/bar0");
    let mut stat = Stat::default();
    scheme.fstat(bar, &mut stat, &e1000_ctx()).unwrap();
    assert_eq!((stat.st_size, stat.st_mode), (0x2_0000, MODE_CHR | 0o600));

    assert!(
        open(&mut scheme, "/pci/00:03.0/bar0/", &e1000_ctx()).is_ok(),
        "short BDF and slashes"
    );
    assert!(
        open(&mut scheme, "pci/00:03.0/bar0?label=e1000", &e1000_ctx()).is_ok(),
        "its own label"
    );
    let ports = open(&mut scheme, COM2, &uart_ctx()).unwrap();
    assert_eq!(scheme.fsize(ports, &uart_ctx()), Ok(8));
    assert!(
        open(&mut scheme, "port/0x2f8-0x2fa", &uart_ctx()).is_ok(),
        "a part of the granted range"
    );
    assert_eq!(scheme.counters().opens, 5);
    assert_eq!(scheme.counters().denials, 0);
}

#[test]
fn the_supervisor_opens_for_a_named_driver() {
    let Machine { mut scheme, .. } = machine();
    assert!(open(&mut scheme, "pci/00:03.0/bar0?label=e1000", &root_ctx()).is_ok());
    assert!(open(&mut scheme, "port/0x2f8-0x2ff?label=uart", &root_ctx()).is_ok());
    assert_eq!(
        errno(open(
            &mut scheme,
            "port/0x2f8-0x2ff?label=e1000",
            &root_ctx()
        )),
        EACCES,
        "under e1000's rule"
    );
    assert_eq!(
        errno(open(&mut scheme, E1000_BAR0, &root_ctx())),
        EACCES,
        "root acts for no driver of its own"
    );
    assert_eq!(
        errno(open(
            &mut scheme,
            "pci/00:03.0/bar0?label=ne2k",
            &root_ctx()
        )),
        EACCES
    );
}

#[test]
fn denials_are_eacces_and_touch_no_device() {
    let Machine {
        mut scheme,
        e1000,
        e1000_bar2,
        other,
        ports,
        hardware,
    } = machine();
    let denied = [
        ("pci/00:03.0/bar2", e1000_ctx()),                // BAR not granted
        ("pci/00:04.0/bar0", e1000_ctx()),                // another device
        ("pci/00:03.0/bar0", uart_ctx()),                 // no device at all
        ("pci/00:03.0/bar0", caller_ctx(50, 1005, 1005)), // not a driver
        ("pci/00:03.0/bar0?label=e1000", uart_ctx()),     // another driver's label
        ("pci/00:03.0/bar0", caller_ctx(52, 1003, 1003)), // pinned to 00:05.0
        (COM2, e1000_ctx()),                              // no ports
        ("port/0x2f8-0x300", uart_ctx()),                 // beyond the range
        ("port/0x3f8-0x3ff", uart_ctx()),                 // another range
    ];
    for (path, ctx) in &denied {
        assert_eq!(
            errno(open(&mut scheme, path, ctx)),
            EACCES,
            "{path} by uid {}",
            ctx.uid
        );
    }
    assert_eq!(scheme.counters().denials, denied.len() as u64);
    assert_eq!(scheme.counters().opens, 0);
    for bank in [e1000, e1000_bar2, other, ports] {
        assert!(bank.log().is_empty());
    }
    for function in ["00:03.0", "00:04.0", "00:05.0"] {
        assert_eq!(hardware.command(bdf(function)), Some(0), "{function}");
    }
}

#[test]
fn bad_paths() {
    let Machine { mut scheme, .. } = machine();
    for path in [
        "",
        "pci/00:03.0",
        "pci/00:03.0/bar6",
        "pci/zz:03.0/bar0",
        "port/0x2ff-0x2f8",
        "port/2f8-2ff",
        "irq/11",
    ] {
        assert_eq!(
            errno(open(&mut scheme, path, &e1000_ctx())),
            ENOENT,
            "{path:?}"
        );
    }
    assert_eq!(
        errno(open(&mut scheme, "pci/00:09.0/bar0", &e1000_ctx())),
        ENOENT,
        "no such function"
    );
    assert_eq!(
        errno(open(
            &mut scheme,
            "pci/00:03.0/bar0?replicas=3",
            &e1000_ctx()
        )),
        EINVAL
    );
    assert_eq!(
        errno(open(&mut scheme, "pci/00:03.0/bar0?label=", &e1000_ctx())),
        EINVAL
    );
    assert_eq!(
        errno(scheme.openat(7, E1000_BAR0, O_RDWR, 0, &e1000_ctx())),
        EBADF,
        "not the root"
    );
}

#[test]
fn pread_and_pwrite_are_single_accesses_of_their_length() {
    let Machine {
        mut scheme, e1000, ..
    } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    e1000.poke(0x8, Width::U32, 0x8008_0783);
    assert_eq!(
        pread(&mut scheme, bar, 4, 0x8).unwrap(),
        0x8008_0783u32.to_le_bytes()
    );
    assert_eq!(pread(&mut scheme, bar, 1, 0xb).unwrap(), [0x80]);
    assert_eq!(pread(&mut scheme, bar, 2, 0xa).unwrap(), [0x08, 0x80]);
    assert_eq!(
        pread(&mut scheme, bar, 8, 0x8).unwrap(),
        0x8008_0783u64.to_le_bytes()
    );
    assert_eq!(
        pwrite(&mut scheme, bar, &0x0400_0000u32.to_le_bytes(), 0x0),
        Ok(4)
    );
    assert_eq!(e1000.peek(0x0, Width::U32), 0x0400_0000);
    assert_eq!(
        pwrite(&mut scheme, bar, &[0x11, 0x22], 0x1_fffe),
        Ok(2),
        "last register"
    );
    assert_eq!(scheme.counters().accesses, 6);

    for (len, offset) in [
        (3, 0),
        (0, 0),
        (16, 0),
        (4, 0x2),
        (8, 0x4),
        (4, 0x2_0000),
        (2, 0x1_ffff),
        (4, u64::MAX - 3),
    ] {
        assert_eq!(
            errno(pread(&mut scheme, bar, len, offset)),
            EINVAL,
            "read {len} at {offset:#x}"
        );
        assert_eq!(
            errno(pwrite(&mut scheme, bar, &vec![0; len], offset)),
            EINVAL,
            "write {len} at {offset:#x}"
        );
    }
    assert_eq!(scheme.counters().invalid, 16);
    assert_eq!(
        e1000.log().len(),
        6,
        "refused accesses never reached the device"
    );
}

#[test]
fn port_handles_move_1_2_4_bytes_at_the_range() {
    let Machine {
        mut scheme, ports, ..
    } = machine();
    let com2 = open(&mut scheme, COM2, &uart_ctx()).unwrap();
    assert_eq!(scheme.write(com2, &[0x41], 0, 0, &uart_ctx()), Ok(1));
    assert_eq!(ports.peek(0x2f8, Width::U8), 0x41);
    ports.poke(0x2fd, Width::U8, 0x60);
    let mut lsr = [0];
    assert_eq!(scheme.read(com2, &mut lsr, 5, 0, &uart_ctx()), Ok(1));
    assert_eq!(lsr, [0x60]);
    assert_eq!(scheme.write(com2, &[0; 4], 4, 0, &uart_ctx()), Ok(4));
    assert_eq!(
        errno(scheme.write(com2, &[0; 8], 0, 0, &uart_ctx())),
        EINVAL,
        "no 8-byte port access"
    );
    assert_eq!(
        errno(scheme.read(com2, &mut [0; 1], 8, 0, &uart_ctx())),
        EINVAL,
        "0x300 is not granted"
    );
    assert_eq!(ports.peek(0x300, Width::U8), 0);
}

#[test]
fn call_runs_a_batch_and_returns_reads_in_place() {
    let Machine {
        mut scheme, e1000, ..
    } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    e1000.poke(0x8, Width::U32, 0x8008_0783);
    let mut batch = Batch::new();
    let status = batch.read(0x8, Width::U32).unwrap();
    batch.write(0x5400, Width::U32, 0x1234_5678).unwrap();
    let ral = batch.read(0x5400, Width::U32).unwrap();
    assert_eq!(
        scheme.call(bar, batch.payload_mut(), &[], &e1000_ctx()),
        Ok(3)
    );
    assert_eq!(batch.value(status), Some(0x8008_0783));
    assert_eq!(batch.value(ral), Some(0x1234_5678));
    let counters = scheme.counters();
    assert_eq!((counters.batches, counters.accesses), (1, 3));
    assert_eq!(
        scheme.call(bar, &mut [], &[], &e1000_ctx()),
        Ok(0),
        "an empty batch does nothing"
    );
}

#[test]
fn a_batch_is_refused_whole() {
    let Machine {
        mut scheme, e1000, ..
    } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    let mut batch = Batch::new();
    for i in 0..17 {
        batch.write(0x100 + 4 * i, Width::U32, 0xffff_ffff).unwrap();
    }
    batch.read(0x2_0000, Width::U32).unwrap();
    assert_eq!(
        errno(scheme.call(bar, batch.payload_mut(), &[], &e1000_ctx())),
        EINVAL
    );

    let mut misaligned = Batch::new();
    misaligned.write(0x0, Width::U32, 1).unwrap();
    misaligned.push(RegisterOp::read(0x2, Width::U32)).unwrap();
    assert_eq!(
        errno(scheme.call(bar, misaligned.payload_mut(), &[], &e1000_ctx())),
        EINVAL
    );

    let mut garbled = Batch::new();
    garbled.write(0x0, Width::U32, 1).unwrap();
    garbled.read(0x4, Width::U32).unwrap();
    garbled.payload_mut()[16 + 6] = 3; // width 3
    assert_eq!(
        errno(scheme.call(bar, garbled.payload_mut(), &[], &e1000_ctx())),
        EINVAL
    );

    assert_eq!(
        errno(scheme.call(bar, &mut [0; 24], &[], &e1000_ctx())),
        EINVAL,
        "not whole operations"
    );
    let mut fine = Batch::new();
    fine.write(0x0, Width::U32, 1).unwrap();
    assert_eq!(
        errno(scheme.call(bar, fine.payload_mut(), &[1], &e1000_ctx())),
        EINVAL,
        "metadata"
    );

    assert!(
        e1000.log().is_empty(),
        "no operation of a refused batch ran"
    );
    assert_eq!(scheme.counters().invalid, 5);
    assert_eq!(scheme.counters().batches, 0);
}

/// The status text a caller `ctx` reads.
fn status_as(scheme: &mut MmioScheme<SoftMachine>, ctx: &CallerCtx) -> String {
    let status = open(scheme, "status", ctx).unwrap();
    let mut text = vec![0; 4096];
    let len = scheme.read(status, &mut text, 0, 0, ctx).unwrap();
    String::from_utf8(text[..len].to_vec()).unwrap()
}

#[test]
fn status_reads_like_a_file_and_refuses_writes() {
    let Machine { mut scheme, .. } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    pread(&mut scheme, bar, 4, 0x8).unwrap();
    assert!(open(&mut scheme, "pci/00:03.0/bar2", &e1000_ctx()).is_err());
    let stranger = caller_ctx(60, 4242, 4242);
    let status = open(&mut scheme, "status", &stranger).unwrap();
    let mut text = vec![0; 4096];
    let len = scheme.read(status, &mut text, 0, 0, &stranger).unwrap();
    let text = String::from_utf8(text[..len].to_vec()).unwrap();
    assert!(
        text.starts_with("handles: 1\nopens: 1\ndenials: 1\naccesses: 1\n"),
        "{text}"
    );
    let mut tail = [0; 8];
    let tail_len = scheme
        .read(status, &mut tail, len as u64 - 3, 0, &stranger)
        .unwrap();
    assert_eq!(&tail[..tail_len], &text.as_bytes()[len - 3..]);
    assert_eq!(scheme.read(status, &mut tail, 1 << 40, 0, &stranger), Ok(0));
    let mut stat = Stat::default();
    scheme.fstat(status, &mut stat, &stranger).unwrap();
    assert_eq!(
        (stat.st_size, stat.st_mode),
        (len as u64, MODE_FILE | 0o444)
    );
    assert_eq!(errno(scheme.write(status, &[0; 4], 0, 0, &stranger)), EBADF);
    assert_eq!(errno(scheme.call(status, &mut [], &[], &stranger)), EBADF);
}

#[test]
fn status_shows_a_handles_line_only_to_root_and_to_the_handles_own_driver() {
    let Machine { mut scheme, .. } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    pread(&mut scheme, bar, 4, 0x8).unwrap();
    open(&mut scheme, "port/0x2f8-0x2ff?label=uart", &root_ctx()).unwrap();
    let e1000_line = "driver e1000 pid 40 pci/0000:00:03.0/bar0 (memory 0x20000 bytes) accesses 1";
    let uart_line = "driver uart pid 1 port/0x2f8-0x2ff";

    let stranger = status_as(&mut scheme, &caller_ctx(60, 4242, 4242));
    assert!(
        stranger.starts_with("handles: 2\nopens: 2\ndenials: 0\naccesses: 1\n"),
        "{stranger}"
    );
    assert!(!stranger.contains("handle "), "{stranger}");

    let e1000 = status_as(&mut scheme, &e1000_ctx());
    assert!(e1000.starts_with("handles: 2\n"), "{e1000}");
    assert!(e1000.contains(e1000_line), "{e1000}");
    assert!(!e1000.contains(uart_line), "{e1000}");

    let uart = status_as(&mut scheme, &uart_ctx());
    assert!(
        uart.contains(uart_line),
        "a handle root opened for uart is uart's: {uart}"
    );
    assert!(!uart.contains("driver e1000"), "{uart}");

    let root = status_as(&mut scheme, &root_ctx());
    assert!(
        root.contains(e1000_line) && root.contains(uart_line),
        "{root}"
    );
}

#[test]
fn closed_handles_are_gone() {
    let Machine { mut scheme, .. } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    scheme.on_close(bar);
    assert_eq!(errno(pread(&mut scheme, bar, 4, 0)), EBADF);
    assert_eq!(errno(pwrite(&mut scheme, bar, &[0; 4], 0)), EBADF);
    assert_eq!(errno(scheme.call(bar, &mut [], &[], &e1000_ctx())), EBADF);
    assert_eq!(errno(scheme.fsize(bar, &e1000_ctx())), EBADF);
    assert_eq!(errno(scheme.fpath(bar, &mut [0; 8], &e1000_ctx())), EBADF);
    scheme.on_close(bar);
    let status = open(&mut scheme, "status", &e1000_ctx()).unwrap();
    let mut text = [0; 16];
    scheme.read(status, &mut text, 0, 0, &e1000_ctx()).unwrap();
    assert!(text.starts_with(b"handles: 0\n"));
}

/// Bus Master Enable, bit 2 of the PCI command register.
const BUS_MASTER: u16 = 1 << 2;

fn masters(hardware: &SoftMachine, function: &str) -> bool {
    hardware.command(bdf(function)).unwrap() & BUS_MASTER != 0
}

/// The driver's request to let its function master the bus.
fn start_bus_master(
    scheme: &mut MmioScheme<SoftMachine>,
    id: usize,
    ctx: &CallerCtx,
) -> Result<usize, Error> {
    scheme.call(id, &mut [], &[START_BUS_MASTER], ctx)
}

#[test]
fn a_driver_dying_with_its_bar_open_stops_the_functions_bus_mastering() {
    let Machine {
        mut scheme,
        hardware,
        ..
    } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    assert_eq!(start_bus_master(&mut scheme, bar, &e1000_ctx()), Ok(0));
    assert!(masters(&hardware, "00:03.0"));

    // A killed driver's handles close like any others: the platform layer
    // calls on_close for each when the connection goes.
    scheme.on_close(bar);
    assert!(!masters(&hardware, "00:03.0"));
    assert_eq!(
        hardware.command(bdf("00:03.0")),
        Some(0x0002),
        "memory decoding stays on"
    );
    assert_eq!(scheme.counters().bus_master_stops, 1);
    assert_eq!(scheme.counters().errors, 0);
}

#[test]
fn a_bar_opens_without_bus_mastering_until_its_driver_starts_it() {
    let Machine {
        mut scheme,
        hardware,
        ..
    } = machine();
    let first = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    start_bus_master(&mut scheme, first, &e1000_ctx()).unwrap();
    scheme.on_close(first);
    assert!(!masters(&hardware, "00:03.0"));
    // The device may still point at the dead driver's buffers: no DMA until
    // the next driver has put it in order.
    let next = open(&mut scheme, E1000_BAR0, &caller_ctx(50, 1001, 1001)).unwrap();
    assert!(!masters(&hardware, "00:03.0"), "an open leaves it off");
    assert_eq!(pread(&mut scheme, next, 4, 0).unwrap().len(), 4);
    assert_eq!(start_bus_master(&mut scheme, next, &e1000_ctx()), Ok(0));
    assert!(masters(&hardware, "00:03.0"));
    assert_eq!(scheme.counters().bus_master_starts, 2);
}

#[test]
fn only_a_writable_bar_of_a_driver_with_dma_may_start_bus_mastering() {
    let Machine {
        mut scheme,
        hardware,
        ..
    } = machine();
    let read_only = open_with(&mut scheme, E1000_BAR0, O_RDONLY, &e1000_ctx()).unwrap();
    assert_eq!(
        errno(start_bus_master(&mut scheme, read_only, &e1000_ctx())),
        EBADF
    );
    // Its rule lists no `dma`: it has no buffers a device could use.
    let indirect = open(
        &mut scheme,
        "pci/0000:00:05.0/bar0",
        &caller_ctx(42, 1003, 1003),
    )
    .unwrap();
    assert_eq!(
        errno(start_bus_master(
            &mut scheme,
            indirect,
            &caller_ctx(42, 1003, 1003)
        )),
        EACCES
    );
    assert!(!masters(&hardware, "00:05.0"));
    let com2 = open(&mut scheme, COM2, &uart_ctx()).unwrap();
    assert_eq!(
        errno(start_bus_master(&mut scheme, com2, &uart_ctx())),
        EINVAL
    );
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    assert_eq!(
        errno(scheme.call(bar, &mut [0; 16], &[START_BUS_MASTER], &e1000_ctx())),
        EINVAL,
        "the request carries no batch"
    );
    assert_eq!(
        errno(scheme.call(bar, &mut [], &[START_BUS_MASTER, 0], &e1000_ctx())),
        EINVAL
    );
    assert_eq!(
        errno(start_bus_master(&mut scheme, 999, &e1000_ctx())),
        EBADF
    );
    assert!(!masters(&hardware, "00:03.0"), "nothing refused started it");
    assert_eq!(scheme.counters().bus_master_starts, 0);
    assert_eq!(scheme.counters().denials, 1);
}

#[test]
fn a_function_still_held_through_another_handle_keeps_mastering() {
    let Machine {
        mut scheme,
        hardware,
        ..
    } = machine();
    // Two holders of one function (the supervisor acting for the driver, and
    // the driver): one closing must not stop DMA the other may still use.
    let bar0 = open(&mut scheme, "pci/00:03.0/bar0?label=e1000", &root_ctx()).unwrap();
    let bar0_again = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    start_bus_master(&mut scheme, bar0_again, &e1000_ctx()).unwrap();
    scheme.on_close(bar0);
    assert!(masters(&hardware, "00:03.0"));
    assert_eq!(scheme.counters().bus_master_stops, 0);
    scheme.on_close(bar0_again);
    assert!(!masters(&hardware, "00:03.0"));
    assert_eq!(scheme.counters().bus_master_stops, 1);
    assert_eq!(hardware.bus_master_stops(bdf("00:03.0")), Some(1));
}

#[test]
fn closing_one_functions_last_handle_leaves_other_functions_mastering() {
    let Machine {
        mut scheme,
        hardware,
        ..
    } = machine();
    let e1000 = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    let indirect = open(
        &mut scheme,
        "pci/0000:00:05.0/bar0",
        &caller_ctx(42, 1003, 1003),
    )
    .unwrap();
    start_bus_master(&mut scheme, e1000, &e1000_ctx()).unwrap();
    let com2 = open(&mut scheme, COM2, &uart_ctx()).unwrap();
    scheme.on_close(com2);
    scheme.on_close(indirect);
    assert!(!masters(&hardware, "00:05.0"));
    assert!(masters(&hardware, "00:03.0"));
    assert_eq!(hardware.bus_master_stops(bdf("00:03.0")), Some(0));
    scheme.on_close(e1000);
    assert_eq!(scheme.counters().bus_master_stops, 2);
}

#[test]
fn the_status_counts_bus_master_stops_and_starts() {
    let Machine { mut scheme, .. } = machine();
    let bar = open(&mut scheme, E1000_BAR0, &e1000_ctx()).unwrap();
    start_bus_master(&mut scheme, bar, &e1000_ctx()).unwrap();
    scheme.on_close(bar);
    let status = open(&mut scheme, "status", &e1000_ctx()).unwrap();
    let mut text = [0; 256];
    let len = scheme.read(status, &mut text, 0, 0, &e1000_ctx()).unwrap();
    let text = String::from_utf8_lossy(&text[..len]);
    assert!(
        text.contains("\nbus_master_stops: 1\nbus_master_starts: 1\n"),
        "{text}"
    );
}

#[test]
fn direct_mapping_follows_direct_bars() {
    let Machine { mut scheme, .. } = machine();
    let ctx = e1000_ctx();
    let bar = open(&mut scheme, E1000_BAR0, &ctx).unwrap();
    // Granted: the request reaches the bus, and a software bank has no file to hand out.
    assert_eq!(errno(scheme.map_fd(bar, 0, 0x2_0000, &ctx)), EOPNOTSUPP);
    assert_eq!(
        errno(scheme.mmap_prep(bar, 0x1000, 0x1000, MapFlags::PROT_READ, &ctx)),
        EOPNOTSUPP
    );
    assert_eq!(scheme.counters().denials, 0);
    for (offset, size) in [(0x10, 0x1000), (0, 0), (0x1_f000, 0x2000), (!0xfff, 0x1000)] {
        assert_eq!(
            errno(scheme.map_fd(bar, offset, size, &ctx)),
            EINVAL,
            "{size:#x} at {offset:#x}"
        );
    }

    let indirect = caller_ctx(52, 1003, 1003);
    let pinned = open(&mut scheme, "pci/00:05.0/bar0", &indirect).unwrap();
    assert_eq!(errno(scheme.map_fd(pinned, 0, 0x1000, &indirect)), EACCES);
    assert_eq!(
        errno(scheme.mmap_prep(pinned, 0, 0x1000, MapFlags::PROT_READ, &indirect)),
        EACCES
    );
    assert_eq!(scheme.counters().denials, 2);

    let com2 = open(&mut scheme, COM2, &uart_ctx()).unwrap();
    assert_eq!(
        errno(scheme.map_fd(com2, 0, 0x1000, &uart_ctx())),
        EOPNOTSUPP,
        "ports cannot be mapped"
    );
    assert_eq!(errno(scheme.map_fd(999, 0, 0x1000, &uart_ctx())), EBADF);
}

#[test]
fn a_read_only_handle_reads_registers_but_refuses_to_write_them() {
    let Machine {
        mut scheme,
        e1000,
        ports,
        ..
    } = machine();
    e1000.poke(0x8, Width::U32, 0x8008_0783);
    let bar = open_with(&mut scheme, E1000_BAR0, O_RDONLY, &e1000_ctx()).unwrap();
    assert_eq!(
        pread(&mut scheme, bar, 4, 0x8).unwrap(),
        0x8008_0783u32.to_le_bytes()
    );
    assert_eq!(
        errno(pwrite(&mut scheme, bar, &1u32.to_le_bytes(), 0x0)),
        EBADF
    );

    let mut reads = Batch::new();
    let status = reads.read(0x8, Width::U32).unwrap();
    assert_eq!(
        scheme.call(bar, reads.payload_mut(), &[], &e1000_ctx()),
        Ok(1)
    );
    assert_eq!(reads.value(status), Some(0x8008_0783));
    let mut mixed = Batch::new();
    mixed.read(0x8, Width::U32).unwrap();
    mixed.write(0x0, Width::U32, 1).unwrap();
    assert_eq!(
        errno(scheme.call(bar, mixed.payload_mut(), &[], &e1000_ctx())),
        EBADF,
        "a batch with one write is refused whole"
    );
    assert_eq!(e1000.peek(0x0, Width::U32), 0);
    assert_eq!(
        e1000.log().len(),
        2,
        "only the two reads reached the device"
    );

    let no_mode = open_with(&mut scheme, E1000_BAR0, 0, &e1000_ctx()).unwrap();
    assert_eq!(
        errno(pwrite(&mut scheme, no_mode, &1u32.to_le_bytes(), 0x0)),
        EBADF,
        "no access mode grants no writing"
    );
    let com2 = open_with(&mut scheme, COM2, O_RDONLY, &uart_ctx()).unwrap();
    assert_eq!(errno(scheme.write(com2, &[0x41], 0, 0, &uart_ctx())), EBADF);
    assert_eq!(ports.peek(0x2f8, Width::U8), 0);

    let write_only = open_with(&mut scheme, E1000_BAR0, O_WRONLY, &e1000_ctx()).unwrap();
    assert_eq!(
        pwrite(&mut scheme, write_only, &2u32.to_le_bytes(), 0x0),
        Ok(4)
    );
    assert_eq!(e1000.peek(0x0, Width::U32), 2);
}

#[test]
fn a_read_only_handle_refuses_a_writable_direct_mapping() {
    let Machine { mut scheme, .. } = machine();
    let ctx = e1000_ctx();
    let bar = open_with(&mut scheme, E1000_BAR0, O_RDONLY, &ctx).unwrap();
    let writable = MapFlags::PROT_READ | MapFlags::PROT_WRITE;
    assert_eq!(
        errno(scheme.mmap_prep(bar, 0, 0x1000, writable, &ctx)),
        EBADF
    );
    assert_eq!(
        errno(scheme.map_fd(bar, 0, 0x1000, &ctx)),
        EBADF,
        "a mapped descriptor could be mapped writable"
    );
    assert_eq!(
        errno(scheme.mmap_prep(bar, 0, 0x1000, MapFlags::PROT_READ, &ctx)),
        EOPNOTSUPP,
        "a read-only mapping is granted (and a software bank has none to lend)"
    );
    let rw = open(&mut scheme, E1000_BAR0, &ctx).unwrap();
    assert_eq!(
        errno(scheme.mmap_prep(rw, 0, 0x1000, writable, &ctx)),
        EOPNOTSUPP,
        "granted"
    );
}

#[test]
fn a_driver_whose_rule_does_not_list_mmio_is_refused_its_registers() {
    let Machine {
        mut scheme, e1000, ..
    } = machine();
    let dmaonly = caller_ctx(53, 1004, 1004);
    assert_eq!(errno(open(&mut scheme, E1000_BAR0, &dmaonly)), EACCES);
    assert_eq!(
        errno(open(
            &mut scheme,
            "pci/00:03.0/bar0?label=dmaonly",
            &root_ctx()
        )),
        EACCES,
        "root acting for the driver is held to its rule"
    );
    assert_eq!(scheme.counters().denials, 2);
    assert_eq!(scheme.counters().opens, 0);
    assert!(e1000.log().is_empty());
    assert!(
        open(&mut scheme, "status", &dmaonly).is_ok(),
        "status is open to anyone"
    );
}

const E1000_IRQ: &str = "pci/0000:00:03.0/irq";

/// The scheme, the e1000's interrupt line, and a handle on it opened `flags`
/// by the e1000 driver.
fn e1000_interrupt(flags: usize) -> (MmioScheme<SoftMachine>, SoftInterrupt, usize) {
    let Machine {
        mut scheme,
        hardware,
        ..
    } = machine();
    let line = hardware.interrupt(bdf("00:03.0")).unwrap();
    let irq = open_with(&mut scheme, E1000_IRQ, flags, &e1000_ctx()).unwrap();
    (scheme, line, irq)
}

#[test]
fn an_interrupt_is_read_once_and_the_line_stays_masked_until_acknowledged() {
    let (mut scheme, line, irq) = e1000_interrupt(O_RDWR);
    assert_eq!(line.unmasks(), 1, "opening unmasks the line");
    let ctx = e1000_ctx();
    assert_eq!(errno(pread(&mut scheme, irq, 8, 0)), EWOULDBLOCK);
    assert_eq!(
        scheme.fevent(irq, EventFlags::EVENT_READ, &ctx),
        Ok(EventFlags::empty())
    );

    line.fire();
    scheme.after_round();
    assert_eq!(
        scheme.fevent(irq, EventFlags::EVENT_READ, &ctx),
        Ok(EventFlags::EVENT_READ)
    );
    assert_eq!(
        errno(pread(&mut scheme, irq, 4, 0)),
        EINVAL,
        "a count takes 8 bytes"
    );
    assert_eq!(pread(&mut scheme, irq, 8, 0).unwrap(), 1u64.to_le_bytes());
    assert_eq!(
        errno(pread(&mut scheme, irq, 8, 0)),
        EWOULDBLOCK,
        "read once"
    );
    assert!(line.is_masked(), "masked until the driver acknowledges");

    assert_eq!(errno(pwrite(&mut scheme, irq, &[1], 0)), EINVAL);
    assert_eq!(pwrite(&mut scheme, irq, &0u64.to_le_bytes(), 0), Ok(8));
    assert!(!line.is_masked());
    line.fire();
    scheme.after_round();
    assert_eq!(pread(&mut scheme, irq, 8, 0).unwrap(), 1u64.to_le_bytes());
    // Woken by the event, a driver acknowledges without reading: what fired
    // counts as read.
    assert_eq!(pwrite(&mut scheme, irq, &0u64.to_le_bytes(), 0), Ok(8));
    line.fire();
    scheme.after_round();
    assert_eq!(
        scheme.fevent(irq, EventFlags::EVENT_READ, &ctx),
        Ok(EventFlags::EVENT_READ)
    );
    assert_eq!(pwrite(&mut scheme, irq, &0u64.to_le_bytes(), 0), Ok(8));
    assert_eq!(
        scheme.fevent(irq, EventFlags::EVENT_READ, &ctx),
        Ok(EventFlags::empty())
    );
    assert_eq!(errno(pread(&mut scheme, irq, 8, 0)), EWOULDBLOCK);

    let status = status_as(&mut scheme, &root_ctx());
    assert!(status.contains("interrupts: 3\n"), "{status}");
    assert!(status.contains("interrupt_acks: 3\n"), "{status}");
    assert!(
        status.contains("driver e1000 pid 40 pci/0000:00:03.0/irq interrupts 3 acknowledged 3"),
        "{status}"
    );
    let mut path = [0; 64];
    let len = scheme.fpath(irq, &mut path, &ctx).unwrap();
    assert_eq!(&path[..len], b"/scheme/mmio/pci/0000:00:03.0/irq");
    assert_eq!(errno(scheme.call(irq, &mut [], &[], &ctx)), EBADF);
    scheme.on_close(irq);
    assert!(status_as(&mut scheme, &root_ctx()).contains("handles: 0\n"));
}

#[test]
fn a_cause_raised_while_the_line_was_masked_is_pending_once_it_is_acknowledged() {
    let (mut scheme, line, irq) = e1000_interrupt(O_RDWR);
    let ctx = e1000_ctx();
    line.fire();
    scheme.after_round();
    assert_eq!(pread(&mut scheme, irq, 8, 0).unwrap(), 1u64.to_le_bytes());
    // A frame arrives after the driver read its causes, before it acknowledged.
    line.fire();
    scheme.after_round();
    assert_eq!(errno(pread(&mut scheme, irq, 8, 0)), EWOULDBLOCK, "masked");
    assert_eq!(pwrite(&mut scheme, irq, &0u64.to_le_bytes(), 0), Ok(8));
    assert_eq!(
        scheme.fevent(irq, EventFlags::EVENT_READ, &ctx),
        Ok(EventFlags::EVENT_READ),
        "the device still asserts its line: it counts as a firing"
    );
    assert_eq!(pread(&mut scheme, irq, 8, 0).unwrap(), 1u64.to_le_bytes());
    assert_eq!(pwrite(&mut scheme, irq, &0u64.to_le_bytes(), 0), Ok(8));
    assert_eq!(
        scheme.fevent(irq, EventFlags::EVENT_READ, &ctx),
        Ok(EventFlags::empty()),
        "nothing raised since"
    );
    let status = status_as(&mut scheme, &root_ctx());
    assert!(status.contains("interrupts: 2\n"), "{status}");
}

#[test]
fn an_interrupt_comes_only_with_the_functions_registers() {
    let Machine { mut scheme, .. } = machine();
    // The uart has ports, no PCI function; the indirect driver another function.
    assert_eq!(errno(open(&mut scheme, E1000_IRQ, &uart_ctx())), EACCES);
    assert_eq!(
        errno(open(&mut scheme, E1000_IRQ, &caller_ctx(42, 1003, 1003))),
        EACCES
    );
    // A function whose ids the rule does not name.
    assert_eq!(
        errno(open(&mut scheme, "pci/0000:00:04.0/irq", &e1000_ctx())),
        EACCES
    );
    // A rule without mmio in its schemes.
    assert_eq!(
        errno(open(&mut scheme, E1000_IRQ, &caller_ctx(43, 1004, 1004))),
        EACCES
    );
    assert_eq!(
        errno(open(&mut scheme, "pci/0000:00:06.0/irq", &e1000_ctx())),
        ENOENT
    );
    assert!(open(
        &mut scheme,
        &format!("{E1000_IRQ}?label=e1000"),
        &root_ctx()
    )
    .is_ok());
}

#[test]
fn a_read_only_interrupt_handle_waits_but_cannot_acknowledge() {
    let (mut scheme, line, irq) = e1000_interrupt(O_RDONLY);
    line.fire();
    scheme.after_round();
    assert_eq!(pread(&mut scheme, irq, 8, 0).unwrap(), 1u64.to_le_bytes());
    assert_eq!(errno(pwrite(&mut scheme, irq, &[0; 8], 0)), EBADF);
    assert!(line.is_masked());
}

#[test]
fn a_successor_finds_the_line_its_dead_predecessor_left_masked_unmasked() {
    let (mut scheme, line, irq) = e1000_interrupt(O_RDWR);
    line.fire();
    scheme.after_round();
    // The driver dies before acknowledging: the scheme sees the close.
    scheme.on_close(irq);
    assert!(line.is_masked());
    let successor = open(&mut scheme, E1000_IRQ, &e1000_ctx()).unwrap();
    assert!(!line.is_masked());
    line.fire();
    scheme.after_round();
    assert_eq!(
        pread(&mut scheme, successor, 8, 0).unwrap(),
        1u64.to_le_bytes()
    );
}

/// The text `ctx` reads from `mmio:pci` (opened with `path`).
fn functions_listed(scheme: &mut MmioScheme<SoftMachine>, path: &str, ctx: &CallerCtx) -> String {
    let id = open_with(scheme, path, O_RDONLY, ctx).unwrap();
    let mut text = vec![0; 4096];
    let read = scheme.read(id, &mut text, 0, 0, ctx).unwrap();
    text.truncate(read);
    let mut fpath = [0; 64];
    let len = scheme.fpath(id, &mut fpath, ctx).unwrap();
    assert_eq!(&fpath[..len], b"/scheme/mmio/pci");
    scheme.on_close(id);
    String::from_utf8(text).unwrap()
}

#[test]
fn a_driver_finds_the_functions_its_rule_grants_and_no_others_in_the_pci_list() {
    let mut m = machine();
    assert_eq!(
        functions_listed(&mut m.scheme, "pci", &e1000_ctx()),
        "0000:00:03.0 8086:100e\n0000:00:05.0 8086:100e\n",
        "both e1000s match `device`; the unknown device does not"
    );
    let indirect = caller_ctx(42, 1003, 1003);
    assert_eq!(
        functions_listed(&mut m.scheme, "pci", &indirect),
        "0000:00:05.0 8086:100e\n",
        "a rule by address lists that address"
    );
    assert_eq!(
        functions_listed(&mut m.scheme, "pci", &uart_ctx()),
        "",
        "a rule of ports grants no function"
    );
    assert_eq!(
        functions_listed(&mut m.scheme, "pci?label=indirect", &root_ctx()),
        "0000:00:05.0 8086:100e\n"
    );
    assert_eq!(
        functions_listed(&mut m.scheme, "pci", &root_ctx())
            .lines()
            .count(),
        3,
        "root naming no driver sees every function"
    );
}

#[test]
fn the_pci_list_is_refused_to_strangers_foreign_labels_and_rules_without_mmio() {
    let mut m = machine();
    let stranger = caller_ctx(43, 4242, 4242);
    assert_eq!(errno(open(&mut m.scheme, "pci", &stranger)), EACCES);
    assert_eq!(
        errno(open(&mut m.scheme, "pci?label=uart", &e1000_ctx())),
        EACCES
    );
    let dma_only = caller_ctx(44, 1004, 1004);
    assert_eq!(errno(open(&mut m.scheme, "pci", &dma_only)), EACCES);
    assert_eq!(
        errno(open(&mut m.scheme, "pci?label=nobody", &root_ctx())),
        EACCES
    );
}
