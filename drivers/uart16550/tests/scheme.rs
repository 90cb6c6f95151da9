//! The serial scheme over the software 16550: its requests as the runtime makes them,
//! and the device polled as the runtime does after each round.

use std::time::Duration;

use redox_scheme::scheme::SchemeSync;
use redox_scheme::OpenResult;
use scheme_runtime::{caller_ctx, SchemeDaemon};
use syscall::error::{EBADF, EINVAL, EIO, ENOENT, EWOULDBLOCK};
use syscall::flag::{EventFlags, MODE_CHR, MODE_FILE};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;
use uart16550::poll::PollPolicy;
use uart16550::port::{SerialPort, RX_CAPACITY, TX_CAPACITY};
use uart16550::registers::{LSR_BI, LSR_FE, LSR_PE};
use uart16550::soft::Soft16550;
use uart16550::uart::Uart;
use uart16550::{LineSettings, UartScheme};

/// Polls until the chip goes quiet, without lingering: the software chip has no latency.
const NO_LINGER: PollPolicy = PollPolicy {
    linger: Duration::ZERO,
    budget: Duration::from_secs(10),
};

struct Bench {
    chip: Soft16550,
    scheme: UartScheme<Soft16550>,
}

impl Bench {
    fn new() -> Self {
        Self::with_chip(Soft16550::new())
    }

    fn with_chip(chip: Soft16550) -> Self {
        let settings = LineSettings::default();
        let uart = Uart::open(chip.clone(), settings).expect("the software chip answers");
        let port = SerialPort::new(uart, settings);
        let scheme = UartScheme::new("uart.test", "software 16550".into(), port, NO_LINGER);
        Self { chip, scheme }
    }

    fn open(&mut self, path: &str) -> syscall::Result<usize> {
        self.open_with_flags(path).map(|(id, _)| id)
    }

    fn open_with_flags(&mut self, path: &str) -> syscall::Result<(usize, NewFdFlags)> {
        let root = self.scheme.scheme_root()?;
        match self
            .scheme
            .openat(root, path, 0, 0, &caller_ctx(10, 1002, 1002))?
        {
            OpenResult::ThisScheme { number, flags } => Ok((number, flags)),
            other => panic!("open {path:?} answered {other:?}"),
        }
    }

    fn read(&mut self, id: usize, len: usize) -> syscall::Result<Vec<u8>> {
        self.read_at(id, len, 0)
    }

    fn read_at(&mut self, id: usize, len: usize, offset: u64) -> syscall::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        let n = self
            .scheme
            .read(id, &mut buf, offset, 0, &caller_ctx(10, 1002, 1002))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn write(&mut self, id: usize, bytes: &[u8]) -> syscall::Result<usize> {
        self.scheme
            .write(id, bytes, 0, 0, &caller_ctx(10, 1002, 1002))
    }

    fn ready(&mut self, id: usize) -> syscall::Result<EventFlags> {
        self.scheme
            .fevent(id, EventFlags::all(), &caller_ctx(10, 1002, 1002))
    }

    fn text(&mut self, path: &str) -> String {
        let id = self.open(path).unwrap();
        let text = self.read(id, 4096).unwrap();
        self.scheme.on_close(id);
        String::from_utf8(text).unwrap()
    }

    /// The value of `key: value` in the status text.
    fn status(&mut self, key: &str) -> String {
        let text = self.text("status");
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    }
}

fn errno<T: std::fmt::Debug>(result: syscall::Result<T>) -> i32 {
    result.expect_err("expected an error").errno
}

/// Bytes that show reordering, loss and duplication.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn bytes_go_out_and_come_in() {
    let mut bench = Bench::new();
    let data = bench.open("data").unwrap();
    assert_eq!(bench.write(data, b"hello, host").unwrap(), 11);
    assert!(
        bench.chip.take_transmitted().is_empty(),
        "sent when the device is polled"
    );
    bench.scheme.after_round();
    assert_eq!(bench.chip.take_transmitted(), b"hello, host");

    bench.chip.receive(b"hello, guest");
    bench.scheme.after_round();
    assert_eq!(bench.read(data, 5).unwrap(), b"hello");
    assert_eq!(bench.read(data, 64).unwrap(), b", guest");
    assert_eq!(errno(bench.read(data, 64)), EWOULDBLOCK);
    assert_eq!(bench.read(data, 0).unwrap(), b"");
    assert_eq!(bench.status("rx_bytes"), "12");
    assert_eq!(bench.status("tx_bytes"), "11");
    assert_eq!(bench.status("overruns"), "0");
}

#[test]
fn every_data_handle_shares_the_line() {
    let mut bench = Bench::new();
    let (one, two) = (bench.open("data").unwrap(), bench.open("/data/").unwrap());
    bench.write(one, b"ab").unwrap();
    bench.write(two, b"cd").unwrap();
    bench.chip.receive(b"xy");
    bench.scheme.after_round();
    assert_eq!(bench.chip.take_transmitted(), b"abcd");
    assert_eq!(bench.read(two, 1).unwrap(), b"x");
    assert_eq!(bench.read(one, 1).unwrap(), b"y");
}

#[test]
fn a_slow_reader_loses_nothing_the_chip_holds_the_rest() {
    let mut bench = Bench::new();
    let data = bench.open("data").unwrap();
    let sent = pattern(RX_CAPACITY + 100);
    bench.chip.receive(&sent);
    bench.scheme.after_round();
    assert_eq!(bench.status("rx_buffered"), RX_CAPACITY.to_string());
    assert_eq!(bench.status("rx_buffer_full"), "1");
    assert_eq!(
        bench.chip.receive_fifo_len(),
        16,
        "the driver stopped reading RBR"
    );
    assert_eq!(bench.chip.held(), 100 - 16, "the peer waits");
    assert_eq!(bench.ready(data).unwrap(), EventFlags::all());

    let mut received = bench.read(data, 1000).unwrap();
    bench.scheme.after_round();
    assert_eq!(bench.chip.held(), 0);
    while let Ok(chunk) = bench.read(data, 4096) {
        received.extend(chunk);
    }
    assert!(received == sent, "bytes lost, duplicated or reordered");
    assert_eq!(bench.status("overruns"), "0");
    assert_eq!(bench.ready(data).unwrap(), EventFlags::EVENT_WRITE);
}

#[test]
fn a_full_transmit_queue_cuts_writes_short_then_refuses_them() {
    let mut bench = Bench::new();
    let data = bench.open("data").unwrap();
    bench.chip.pause_line();
    let sent = pattern(TX_CAPACITY + 10);
    assert_eq!(bench.write(data, &sent).unwrap(), TX_CAPACITY);
    assert_eq!(errno(bench.write(data, b"x")), EWOULDBLOCK);
    assert_eq!(bench.write(data, b"").unwrap(), 0);
    assert_eq!(bench.ready(data).unwrap(), EventFlags::empty());

    bench.scheme.after_round();
    assert_eq!(
        bench.chip.transmit_fifo_len(),
        16,
        "one FIFO's worth went to the chip"
    );
    assert_eq!(bench.ready(data).unwrap(), EventFlags::EVENT_WRITE);
    bench.scheme.after_round();
    assert_eq!(bench.status("tx_queued"), (TX_CAPACITY - 16).to_string());

    bench.chip.resume_line();
    bench.scheme.after_round();
    assert!(bench.chip.take_transmitted() == sent[..TX_CAPACITY]);
    assert_eq!(
        bench.chip.transmit_overflows(),
        0,
        "the driver waited for THRE"
    );
    assert_eq!(bench.status("tx_queued"), "0");
}

#[test]
fn readiness_follows_the_buffers() {
    let mut bench = Bench::new();
    let data = bench.open("data").unwrap();
    assert_eq!(bench.ready(data).unwrap(), EventFlags::EVENT_WRITE);
    let ctx = caller_ctx(10, 1002, 1002);
    assert_eq!(
        bench
            .scheme
            .fevent(data, EventFlags::EVENT_READ, &ctx)
            .unwrap(),
        EventFlags::empty()
    );
    bench.chip.receive(b"!");
    bench.scheme.after_round();
    assert_eq!(
        bench
            .scheme
            .fevent(data, EventFlags::EVENT_READ, &ctx)
            .unwrap(),
        EventFlags::EVENT_READ
    );
    let status = bench.open("status").unwrap();
    assert_eq!(errno(bench.ready(status)), EINVAL);
}

#[test]
fn settings_are_read_and_changed_through_their_path() {
    let mut bench = Bench::new();
    let (settings, flags) = bench.open_with_flags("settings").unwrap();
    assert!(flags.contains(NewFdFlags::POSITIONED));
    assert_eq!(
        bench.read(settings, 100).unwrap(),
        b"baud=115200 data=8 parity=none stop=1\n"
    );
    assert_eq!(
        bench.read_at(settings, 100, 5).unwrap(),
        b"115200 data=8 parity=none stop=1\n"
    );
    let change = b"baud=9600 parity=even stop=2";
    assert_eq!(bench.write(settings, change).unwrap(), change.len());
    assert_eq!(bench.chip.divisor(), 12);
    let expected = LineSettings::default()
        .changed_by("baud=9600 parity=even stop=2")
        .unwrap();
    assert_eq!(bench.chip.lcr(), expected.lcr());
    assert_eq!(
        bench.read(settings, 100).unwrap(),
        b"baud=9600 data=8 parity=even stop=2\n"
    );
    assert_eq!(
        bench.status("settings"),
        "baud=9600 data=8 parity=even stop=2"
    );

    let accesses = bench.chip.accesses();
    for bad in [
        &b"baud=100000"[..],
        b"data=9",
        b"speed=9600",
        b"parity",
        b"\xff\xfe",
    ] {
        assert_eq!(errno(bench.write(settings, bad)), EINVAL, "{bad:?}");
    }
    assert_eq!(
        bench.chip.accesses(),
        accesses,
        "refused settings never reach the chip"
    );
    assert_eq!(bench.chip.divisor(), 12);
}

#[test]
fn line_errors_are_counted_in_the_status() {
    let mut bench = Bench::new();
    bench.chip.receive_unpaced(&[1; 20]);
    bench.scheme.after_round();
    bench.chip.raise_line_errors(LSR_PE | LSR_FE | LSR_BI);
    bench.scheme.after_round();
    assert_eq!(bench.status("overruns"), "1");
    assert_eq!(bench.status("parity_errors"), "1");
    assert_eq!(bench.status("framing_errors"), "1");
    assert_eq!(bench.status("breaks"), "1");
    assert_eq!(
        bench.status("rx_bytes"),
        "16",
        "the FIFO's 16 arrived, 4 were lost"
    );
}

#[test]
fn status_is_a_snapshot_taken_at_open() {
    let mut bench = Bench::new();
    let (status, flags) = bench.open_with_flags("status").unwrap();
    assert!(flags.contains(NewFdFlags::POSITIONED));
    bench.chip.receive(b"later");
    bench.scheme.after_round();
    let text = String::from_utf8(bench.read(status, 4096).unwrap()).unwrap();
    assert!(text.starts_with("device: software 16550\n"), "{text}");
    assert!(text.contains("\nrx_bytes: 0\n"), "{text}");
    assert!(text.contains("\nstate: ok\n"), "{text}");
    assert_eq!(bench.read_at(status, 10, text.len() as u64).unwrap(), b"");
    assert_eq!(bench.status("rx_bytes"), "5");
    assert_eq!(errno(bench.write(status, b"rx_bytes: 0")), EINVAL);
}

#[test]
fn a_failing_device_gives_eio_until_it_answers_again() {
    let mut bench = Bench::new();
    let data = bench.open("data").unwrap();
    let settings = bench.open("settings").unwrap();
    bench.chip.set_failing(true);
    bench.scheme.after_round();
    assert_eq!(errno(bench.read(data, 8)), EIO);
    assert_eq!(errno(bench.write(data, b"x")), EIO);
    assert_eq!(errno(bench.write(settings, b"baud=9600")), EIO);
    assert!(bench.status("state").starts_with("failing: "));
    assert_eq!(bench.status("device_errors"), "1");

    bench.chip.set_failing(false);
    bench.scheme.after_round();
    assert_eq!(bench.status("state"), "ok");
    assert_eq!(bench.write(data, b"back").unwrap(), 4);
    bench.scheme.after_round();
    assert_eq!(bench.chip.take_transmitted(), b"back");
}

#[test]
fn a_uart_without_fifos_still_moves_every_byte() {
    let mut bench = Bench::with_chip(Soft16550::without_fifos());
    assert_eq!(bench.status("transmit_burst"), "1");
    let data = bench.open("data").unwrap();
    let sent = pattern(300);
    bench.write(data, &sent).unwrap();
    bench.chip.receive(&sent);
    bench.scheme.after_round();
    assert!(bench.chip.take_transmitted() == sent);
    assert!(bench.read(data, 1000).unwrap() == sent);
}

#[test]
fn unknown_paths_and_handles_are_refused() {
    let mut bench = Bench::new();
    for path in ["", "nope", "data/1", "status/x", "Data"] {
        assert_eq!(errno(bench.open(path)), ENOENT, "{path:?}");
    }
    let ctx = caller_ctx(10, 1002, 1002);
    assert_eq!(errno(bench.scheme.openat(99, "data", 0, 0, &ctx)), EBADF);
    let data = bench.open("data").unwrap();
    bench.scheme.on_close(data);
    assert_eq!(errno(bench.write(data, b"after close")), EBADF);
    assert_eq!(errno(bench.read(data, 1)), EBADF);
    assert_eq!(errno(bench.ready(data)), EBADF);
    assert_eq!(errno(bench.scheme.fpath(data, &mut [0; 64], &ctx)), EBADF);
    bench.scheme.after_round();
    assert!(bench.chip.take_transmitted().is_empty());
}

#[test]
fn paths_and_file_types() {
    let mut bench = Bench::new();
    let ctx = caller_ctx(10, 1002, 1002);
    for (path, mode) in [
        ("data", MODE_CHR),
        ("settings", MODE_FILE),
        ("status", MODE_FILE),
    ] {
        let id = bench.open(path).unwrap();
        let mut buf = [0; 64];
        let n = bench.scheme.fpath(id, &mut buf, &ctx).unwrap();
        assert_eq!(&buf[..n], format!("/scheme/uart.test/{path}").as_bytes());
        let mut stat = Stat::default();
        bench.scheme.fstat(id, &mut stat, &ctx).unwrap();
        assert_eq!(stat.st_mode & mode, mode, "{path}");
    }
}
