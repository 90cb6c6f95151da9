//! The driver's scheme over the real host transport: a server thread polling the
//! software 16550 every millisecond, clients in this process and its threads, and
//! the test playing the peer at the chip's end of the line.

#![cfg(target_os = "linux")]

use std::io::{self, ErrorKind};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use scheme_runtime::{Handle, HostServer};
use syscall::error::{EINVAL, ENOENT};
use syscall::flag::{EventFlags, O_NONBLOCK, O_RDONLY, O_RDWR};
use uart16550::poll::{PollPolicy, ROUND_BUDGET};
use uart16550::port::{SerialPort, TX_CAPACITY};
use uart16550::soft::Soft16550;
use uart16550::uart::Uart;
use uart16550::{LineSettings, UartScheme};

const SCHEME: &str = "uart.test";
const TICK: Duration = Duration::from_millis(1);
/// Long enough that a request that should stay parked would have been answered.
const SETTLE: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(10);

/// The driver's scheme served from a thread, in a private scheme directory.
struct Driver {
    dir: tempfile::TempDir,
    chip: Soft16550,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl Driver {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let chip = Soft16550::new();
        let stop = Arc::new(AtomicBool::new(false));
        let (bound, is_bound) = mpsc::channel();
        let server = {
            let (dir, chip, stop) = (dir.path().to_owned(), chip.clone(), stop.clone());
            thread::spawn(move || {
                let settings = LineSettings::default();
                let uart = Uart::open(chip, settings).unwrap();
                let policy = PollPolicy {
                    linger: Duration::from_micros(200),
                    budget: ROUND_BUDGET,
                };
                let port = SerialPort::new(uart, settings);
                let mut scheme = UartScheme::new(SCHEME, "software 16550".into(), port, policy);
                let mut server = HostServer::bind(&dir, SCHEME).unwrap();
                server.set_tick(Some(TICK));
                bound.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    server.run_round(&mut scheme).unwrap();
                }
            })
        };
        is_bound.recv_timeout(PATIENCE).expect("the server binds");
        Self {
            dir,
            chip,
            stop,
            server: Some(server),
        }
    }

    fn open(&self, path: &str, flags: usize) -> io::Result<Handle> {
        Handle::open_in(self.dir.path(), &format!("{SCHEME}:{path}"), flags)
    }

    fn status(&self, key: &str) -> String {
        let status = self.open("status", O_RDONLY).unwrap();
        let mut text = vec![0; 4096];
        let n = status.read(&mut text).unwrap();
        let text = String::from_utf8(text[..n].to_vec()).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// Runs `request` in a thread; its result comes through the receiver.
fn in_thread<T: Send + 'static>(request: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(request());
    });
    result
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 256) as u8 ^ seed).collect()
}

/// FNV-1a: a checksum that notices lost, repeated and swapped bytes.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn a_blocking_read_waits_for_the_peer() {
    let driver = Driver::start();
    let data = driver.open("data", O_RDWR).unwrap();
    let read = in_thread(move || {
        let mut buf = [0; 16];
        data.read(&mut buf).map(|n| buf[..n].to_vec())
    });
    assert!(read.recv_timeout(SETTLE).is_err(), "the read waits");
    driver.chip.receive(b"late");
    assert_eq!(read.recv_timeout(PATIENCE).unwrap().unwrap(), b"late");
}

#[test]
fn a_blocking_write_waits_for_room_in_the_queue() {
    let driver = Driver::start();
    driver.chip.pause_line();
    let data = driver.open("data", O_RDWR).unwrap();
    let first = pattern(TX_CAPACITY, 1);
    assert_eq!(data.write(&first).unwrap(), TX_CAPACITY);
    // The poll moves 16 bytes into the paused chip's FIFO; fill that room again.
    thread::sleep(SETTLE);
    assert_eq!(data.write(&first[..16]).unwrap(), 16);
    let write = in_thread(move || data.write(b"tail"));
    assert!(write.recv_timeout(SETTLE).is_err(), "the write waits");
    driver.chip.resume_line();
    assert_eq!(write.recv_timeout(PATIENCE).unwrap().unwrap(), 4);
    let deadline = Instant::now() + PATIENCE;
    let mut sent = Vec::new();
    while sent.len() < TX_CAPACITY + 20 && Instant::now() < deadline {
        sent.extend(driver.chip.take_transmitted());
        thread::sleep(TICK);
    }
    let mut expected = first.clone();
    expected.extend_from_slice(&first[..16]);
    expected.extend_from_slice(b"tail");
    assert!(
        sent == expected,
        "{} of {} bytes, or out of order",
        sent.len(),
        expected.len()
    );
    assert_eq!(driver.chip.transmit_overflows(), 0);
}

#[test]
fn nonblocking_requests_would_block_instead() {
    let driver = Driver::start();
    driver.chip.pause_line();
    let data = driver.open("data", O_RDWR | O_NONBLOCK).unwrap();
    assert_eq!(
        data.read(&mut [0; 8]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    let mut written = 0;
    let started = Instant::now();
    let full = loop {
        match data.write(&pattern(4096, 2)) {
            Ok(n) => written += n,
            Err(error) => break error,
        }
        assert!(started.elapsed() < PATIENCE, "the queue never fills");
    };
    assert_eq!(full.kind(), ErrorKind::WouldBlock);
    assert!(written >= TX_CAPACITY, "{written}");
}

#[test]
fn sixty_four_kib_each_way_at_once() {
    const LEN: usize = 64 * 1024;
    let driver = Driver::start();
    let to_peer = pattern(LEN, 0x55);
    let from_peer = pattern(LEN, 0xaa);

    let writer = driver.open("data", O_RDWR).unwrap();
    let reader = driver.open("data", O_RDWR).unwrap();
    let written = {
        let to_peer = to_peer.clone();
        in_thread(move || -> io::Result<()> {
            let mut rest = &to_peer[..];
            while !rest.is_empty() {
                rest = &rest[writer.write(&rest[..rest.len().min(3000)])?..];
            }
            Ok(())
        })
    };
    let chip = driver.chip.clone();
    let peer = {
        let from_peer = from_peer.clone();
        in_thread(move || {
            let mut got = Vec::new();
            for chunk in from_peer.chunks(1024) {
                chip.receive(chunk);
                got.extend(chip.take_transmitted());
                thread::sleep(Duration::from_micros(300));
            }
            let deadline = Instant::now() + PATIENCE;
            while got.len() < LEN && Instant::now() < deadline {
                got.extend(chip.take_transmitted());
                thread::sleep(TICK);
            }
            got
        })
    };
    let mut received = Vec::new();
    let mut buf = vec![0; 5000];
    while received.len() < LEN {
        let n = reader.read(&mut buf).unwrap();
        received.extend_from_slice(&buf[..n]);
    }
    written.recv_timeout(PATIENCE).unwrap().unwrap();
    let at_peer = peer.recv_timeout(PATIENCE).unwrap();
    assert_eq!(checksum(&received), checksum(&from_peer), "peer to driver");
    assert_eq!(checksum(&at_peer), checksum(&to_peer), "driver to peer");
    assert_eq!((received.len(), at_peer.len()), (LEN, LEN));
    assert_eq!(driver.status("overruns"), "0");
    assert_eq!(driver.status("rx_bytes"), LEN.to_string());
    assert_eq!(driver.status("tx_bytes"), LEN.to_string());
}

#[test]
fn readiness_events_arrive_when_bytes_do() {
    let driver = Driver::start();
    let data = driver.open("data", O_RDWR).unwrap();
    assert_eq!(
        data.fevent(EventFlags::EVENT_READ).unwrap(),
        EventFlags::empty()
    );
    driver.chip.receive(b"ping");
    let mut fds = [PollFd::new(data.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(PATIENCE).unwrap();
    assert_eq!(poll(&mut fds, timeout).unwrap(), 1, "an event arrives");
    assert_eq!(data.take_events().unwrap(), EventFlags::EVENT_READ);
    let mut buf = [0; 8];
    let n = data.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
}

#[test]
fn settings_status_and_bad_requests_over_the_transport() {
    let driver = Driver::start();
    let settings = driver.open("settings", O_RDWR).unwrap();
    assert_eq!(settings.write(b"baud=19200 data=7").unwrap(), 17);
    assert_eq!(driver.chip.divisor(), 6);
    let mut text = [0; 64];
    let n = settings.read_at(&mut text, 0).unwrap();
    assert_eq!(&text[..n], b"baud=19200 data=7 parity=none stop=1\n");
    let refused = settings.write(b"baud=12345").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(EINVAL));
    assert_eq!(driver.chip.divisor(), 6);
    assert_eq!(
        driver.status("settings"),
        "baud=19200 data=7 parity=none stop=1"
    );

    let missing = driver.open("com3", O_RDWR).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(ENOENT));
    let status = driver.open("status", O_RDWR).unwrap();
    assert_eq!(status.write(b"x").unwrap_err().raw_os_error(), Some(EINVAL));
    assert_eq!(status.fpath().unwrap(), "/scheme/uart.test/status");
}
