//! The measurements. Each runs one untimed warm-up round and then timed rounds of many
//! operations, and keeps the median round's time per operation. Every path first reads
//! STATUS once and must agree with the others, so what is timed is a real register read.

use std::hint::black_box;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::time::{Duration, Instant};

use driver_policy::Bdf;
use guest_harness::guest::daemons::MMIO_STATUS;
use guest_harness::guest::e1000::{BAR0_SIZE, STATUS, STATUS_LU};
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::report::StepResult;
use mmio_scheme::open_path::RegisterTarget;
use mmio_scheme::wire::{Batch, Width};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use scheme_runtime::{Handle, Mapping};
use syscall::flag::O_RDONLY;

/// Operations in one batch.
pub const BATCH_OPS: usize = 32;

pub struct Settings {
    pub rounds: usize,
    /// Requests to the daemon per round.
    pub requests: usize,
    pub direct_reads: usize,
}

/// Median time per operation of each path.
pub struct Measurements {
    /// A 4-byte SOCK_SEQPACKET echo with a child process: the least any request
    /// and response between two processes costs in this guest.
    pub echo: Duration,
    /// A pread of 4 bytes of `mmio:status`: one round trip to the daemon, no device.
    pub round_trip: Duration,
    /// A pread of STATUS through `mmio:`.
    pub single_read: Duration,
    /// A read of STATUS inside a batch of [`BATCH_OPS`] reads, per operation.
    pub batched_read: Duration,
    /// A load from BAR 0 mapped through mmio's direct mode.
    pub direct_read: Duration,
}

pub fn all(e1000: Bdf, settings: &Settings) -> StepResult<Measurements> {
    let status_text = Handle::open(MMIO_STATUS, O_RDONLY)?;
    let bar0 = Registers::open(RegisterTarget::Bar { bdf: e1000, bar: 0 })?;
    let direct = bar0.handle().mmap(0, BAR0_SIZE, false)?;
    let mut batch = Batch::with_capacity(BATCH_OPS);
    for _ in 0..BATCH_OPS {
        batch.read(STATUS.into(), Width::U32)?;
    }
    check_paths_agree(&bar0, &mut batch, &direct)?;

    let mut word = [0; 4];
    let requests = settings.requests;
    Ok(Measurements {
        echo: echo_round_trip(settings)?,
        round_trip: per_op(settings.rounds, requests, 1, || {
            status_text.read_at(&mut word, 0).map(drop)
        })?,
        single_read: per_op(settings.rounds, requests, 1, || {
            bar0.read32(STATUS).map(drop)
        })?,
        batched_read: per_op(settings.rounds, requests, BATCH_OPS, || {
            bar0.run(&mut batch)
        })?,
        direct_read: per_op(settings.rounds, settings.direct_reads, 1, || {
            black_box(read_direct(&direct));
            Ok(())
        })?,
    })
}

/// The round trip to a child process that echoes on a socket pair: what any
/// request and response between two processes costs in this guest, with no scheme.
fn echo_round_trip(settings: &Settings) -> StepResult<Duration> {
    let (client, server) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::empty(),
    )?;
    fcntl(&client, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--echo-fd")
        .arg(server.as_raw_fd().to_string())
        .spawn()?;
    drop(server);
    let mut word = [0u8; 4];
    let per_echo = per_op(settings.rounds, settings.requests, 1, || {
        send(client.as_raw_fd(), &word, MsgFlags::empty())?;
        recv(client.as_raw_fd(), &mut word, MsgFlags::empty()).map(drop)?;
        Ok(())
    });
    drop(client);
    child.wait()?;
    per_echo
}

/// The echo child: answers every message with itself until the peer closes.
pub fn serve_echo(fd: RawFd) {
    let mut buf = [0u8; 64];
    while let Ok(n) = recv(fd, &mut buf, MsgFlags::empty()) {
        if n == 0 || send(fd, &buf[..n], MsgFlags::empty()).is_err() {
            break;
        }
    }
}

/// STATUS read through a single access, a batch and the mapping is the same value,
/// with link up.
fn check_paths_agree(bar0: &Registers, batch: &mut Batch, direct: &Mapping) -> StepResult<()> {
    let single = bar0.read32(STATUS)?;
    if single & STATUS_LU == 0 {
        return Err(format!("STATUS {single:#010x} has link up clear").into());
    }
    bar0.run(batch)?;
    let batched: Vec<u64> = (0..batch.len()).filter_map(|i| batch.value(i)).collect();
    let mapped = read_direct(direct);
    if batched.iter().any(|&value| value != u64::from(single)) || mapped != single {
        return Err(format!(
            "STATUS differs: single {single:#x}, batch {batched:x?}, mapped {mapped:#x}"
        )
        .into());
    }
    Ok(())
}

fn read_direct(direct: &Mapping) -> u32 {
    // SAFETY: STATUS lies inside the BAR 0 mapping (BAR0_SIZE bytes, page-aligned) and
    // is 4-byte aligned; a volatile load is what a driver's register read is.
    unsafe {
        direct
            .as_ptr()
            .add(STATUS as usize)
            .cast::<u32>()
            .read_volatile()
    }
}

/// Runs `op` (which performs `ops_per_call` operations) `calls` times per round, a
/// warm-up round and then `rounds` timed ones; the median round's time per operation.
fn per_op(
    rounds: usize,
    calls: usize,
    ops_per_call: usize,
    mut op: impl FnMut() -> std::io::Result<()>,
) -> StepResult<Duration> {
    let mut round = || -> std::io::Result<Duration> {
        let started = Instant::now();
        for _ in 0..calls {
            op()?;
        }
        Ok(started.elapsed())
    };
    round()?;
    let mut times = (0..rounds)
        .map(|_| round())
        .collect::<Result<Vec<_>, _>>()?;
    times.sort();
    let ops = u32::try_from(calls * ops_per_call)?;
    Ok(times[times.len() / 2] / ops)
}
