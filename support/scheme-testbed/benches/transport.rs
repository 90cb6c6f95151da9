//! Round-trip cost of a one-op scheme call (64-byte payload) on the host
//! transport, next to a plain Unix-socket echo of 64 bytes measured in the same run.
//!
//! Both servers are separate processes, as a scheme daemon is. Where the scheduler
//! puts them decides the result more than anything else: waking a process on the
//! other CPU of these machines costs tens of microseconds, and which of two servers
//! ends up beside the client depends on the order they are used in. So both are
//! measured in fixed layouts: everything on one CPU (the protocol's own cost), and
//! the client on one CPU with the servers on another (every request crosses). Blocks
//! of the two servers alternate so that machine noise hits both alike; the medians
//! of the block means are compared.

use std::io;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::socket::{
    connect, recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::unistd::Pid;
use scheme_testbed::process::DaemonProcess;
use scheme_testbed::CALL_REVERSE;
use syscall::flag::O_RDWR;

const BLOCKS: usize = 11;
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

/// Pins a process (or, with pid 0, the calling thread) to one CPU.
fn pin(pid: u32, cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(pid as i32), &set)?;
    Ok(())
}

struct Layout {
    name: &'static str,
    client_cpu: usize,
    server_cpu: usize,
}

fn main() -> io::Result<()> {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let daemon = DaemonProcess::start(exe)?;
    let echo_path = daemon.dir().join("echo.sock");
    let mut echo_server: Child = Command::new(exe)
        .arg("echo-server")
        .arg(&echo_path)
        .stderr(Stdio::null())
        .spawn()?;
    // The echo server serves each connection on a new thread, which inherits the
    // pinning of its main thread, so it is pinned before the connection is made.
    pin(echo_server.id(), 0)?;

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

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut layouts = vec![Layout {
        name: "same CPU",
        client_cpu: 0,
        server_cpu: 0,
    }];
    if cpus > 1 {
        layouts.push(Layout {
            name: "across CPUs",
            client_cpu: 0,
            server_cpu: 1,
        });
    }

    println!("host transport round trip: {BLOCKS} alternating blocks of {ROUND_TRIPS_PER_BLOCK} per layout");
    println!(
        "{:<13} {:<38} {:>10} {:>10}",
        "layout", "", "median µs", "best µs"
    );
    let mut same_cpu_ratio = None;
    for layout in &layouts {
        pin(0, layout.client_cpu)?;
        pin(daemon.pid(), layout.server_cpu)?;
        pin(echo_server.id(), layout.server_cpu)?;
        // The echo's connection thread was created pinned to CPU 0; move it too.
        for task in std::fs::read_dir(format!("/proc/{}/task", echo_server.id()))? {
            let tid: u32 = task?
                .file_name()
                .to_string_lossy()
                .parse()
                .map_err(io::Error::other)?;
            pin(tid, layout.server_cpu)?;
        }
        // Warm up both paths in this layout (page faults, caches).
        time_block(&mut scheme_call)?;
        time_block(&mut echo_round_trip)?;
        let (mut scheme_blocks, mut echo_blocks) = (Vec::new(), Vec::new());
        for _ in 0..BLOCKS {
            scheme_blocks.push(time_block(&mut scheme_call)?);
            echo_blocks.push(time_block(&mut echo_round_trip)?);
        }
        let best = |blocks: &[f64]| blocks.iter().copied().fold(f64::MAX, f64::min);
        let (scheme_best, echo_best) = (best(&scheme_blocks), best(&echo_blocks));
        let (scheme, echo_median) = (median(scheme_blocks), median(echo_blocks));
        println!(
            "{:<13} {:<38} {:>10.2} {:>10.2}",
            layout.name, "scheme call, 1 op, 64-byte payload", scheme, scheme_best
        );
        println!(
            "{:<13} {:<38} {:>10.2} {:>10.2}",
            "", "plain SOCK_SEQPACKET echo, 64 bytes", echo_median, echo_best
        );
        println!(
            "{:<13} ratio scheme/echo: {:.2}x median, {:.2}x best",
            "",
            scheme / echo_median,
            scheme_best / echo_best
        );
        same_cpu_ratio.get_or_insert(scheme / echo_median);
    }
    let _ = echo_server.kill();
    let _ = echo_server.wait();
    if let Some(ratio) = same_cpu_ratio {
        println!("protocol overhead (same CPU): {ratio:.2}x a plain echo (goal: at most 1.5x)");
    }
    Ok(())
}
