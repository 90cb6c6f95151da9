//! Round-trip cost of a one-op scheme call (64-byte payload) on the host
//! transport, next to a plain Unix-socket echo of 64 bytes measured in the same run.
//!
//! Both servers are separate processes, as a scheme daemon is. Blocks of the two
//! alternate so that machine noise hits both alike; the medians of the block means
//! are compared.

use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    connect, recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use scheme_testbed::process::DaemonProcess;
use scheme_testbed::CALL_REVERSE;
use syscall::flag::O_RDWR;

const BLOCKS: usize = 15;
const ROUND_TRIPS_PER_BLOCK: u32 = 2000;
const PAYLOAD: usize = 64;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn time_block(mut round_trip: impl FnMut() -> io::Result<()>) -> io::Result<f64> {
    let start = Instant::now();
    for _ in 0..ROUND_TRIPS_PER_BLOCK {
        round_trip()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS_PER_BLOCK))
}

fn main() -> io::Result<()> {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let daemon = DaemonProcess::start(exe)?;
    let echo_path = daemon.dir().join("echo.sock");
    let mut echo_server = Command::new(exe)
        .arg("echo-server")
        .arg(&echo_path)
        .stderr(Stdio::null())
        .spawn()?;

    let handle = daemon.open("testbed:queue/bench", O_RDWR)?;
    let echo = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let address = UnixAddr::new(&echo_path)?;
    let started = Instant::now();
    while let Err(e) = connect(echo.as_raw_fd(), &address) {
        if started.elapsed() > Duration::from_secs(5) {
            return Err(io::Error::other(format!(
                "echo server did not come up: {e}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut payload = [0x5au8; PAYLOAD];
    let mut scheme_call = || handle.call(&mut payload, &[CALL_REVERSE]).map(drop);
    let mut buf = [0u8; PAYLOAD];
    let mut echo_round_trip = || -> io::Result<()> {
        send(echo.as_raw_fd(), &buf, MsgFlags::empty())?;
        let n = recv(echo.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == PAYLOAD {
            Ok(())
        } else {
            Err(io::Error::other("short echo"))
        }
    };

    // Warm up both paths (page faults, scheduler placement).
    time_block(&mut scheme_call)?;
    time_block(&mut echo_round_trip)?;

    let (mut scheme_blocks, mut echo_blocks) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        scheme_blocks.push(time_block(&mut scheme_call)?);
        echo_blocks.push(time_block(&mut echo_round_trip)?);
    }
    let (scheme_min, echo_min) = (
        scheme_blocks.iter().copied().fold(f64::MAX, f64::min),
        echo_blocks.iter().copied().fold(f64::MAX, f64::min),
    );
    let (scheme, echo_median) = (median(scheme_blocks), median(echo_blocks));
    let _ = echo_server.kill();
    let _ = echo_server.wait();

    println!("host transport round trip, {BLOCKS} alternating blocks of {ROUND_TRIPS_PER_BLOCK}");
    println!("{:<44} {:>12} {:>12}", "", "median µs", "best µs");
    println!(
        "{:<44} {:>12.2} {:>12.2}",
        "scheme call, 1 op, 64-byte payload", scheme, scheme_min
    );
    println!(
        "{:<44} {:>12.2} {:>12.2}",
        "plain SOCK_SEQPACKET echo, 64 bytes", echo_median, echo_min
    );
    println!(
        "ratio scheme/echo: {:.2}x median, {:.2}x best (goal: at most 1.5x)",
        scheme / echo_median,
        scheme_min / echo_min
    );
    Ok(())
}
