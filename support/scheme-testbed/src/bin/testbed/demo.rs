//! `testbed demo`: the scheme runtime at work on the Linux host, step by step.

use std::io;
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use scheme_testbed::process::{DaemonProcess, Stats};
use scheme_testbed::CALL_REVERSE;
use syscall::flag::{EventFlags, O_RDWR};

fn step(title: &str) {
    println!("\n== {title}");
}

pub fn run() -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let daemon = DaemonProcess::start(&exe)?;
    println!(
        "A testbed scheme daemon (pid {}) serves `testbed:` from {}.\n\
         Every open handle below is one connection to that daemon; it implements\n\
         redox_scheme::SchemeSync once, and the same code is served on Redox.",
        daemon.pid(),
        daemon.dir().display()
    );

    step("Who is calling: the scheme sees the caller's pid/uid/gid (SCM_CREDENTIALS of the open here, the kernel on Redox)");
    let who = daemon.open("testbed:whoami", O_RDWR)?;
    let mut text = [0u8; 64];
    let n = who.read(&mut text)?;
    print!(
        "testbed:whoami says {}",
        String::from_utf8_lossy(&text[..n])
    );
    println!("(this demo runs as pid {})", std::process::id());
    who.close()?;

    step("Eight clients at once, each with its own queue");
    let start = Instant::now();
    thread::scope(|scope| -> io::Result<()> {
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let daemon = &daemon;
                scope.spawn(move || -> io::Result<usize> {
                    let queue = daemon.open(&format!("testbed:queue/worker-{i}"), O_RDWR)?;
                    let mut buf = [0u8; 32];
                    for round in 0..100 {
                        let message = format!("worker {i} round {round}");
                        queue.write(message.as_bytes())?;
                        let n = queue.read(&mut buf)?;
                        assert_eq!(&buf[..n], message.as_bytes());
                    }
                    Ok(100)
                })
            })
            .collect();
        let done: usize = workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .sum::<io::Result<usize>>()?;
        println!("{done} write+read pairs checked in {:?}", start.elapsed());
        Ok(())
    })?;

    step("A blocking read waits in the daemon without stalling anyone else");
    let mailbox = daemon.open("testbed:queue/mailbox", O_RDWR)?;
    thread::scope(|scope| -> io::Result<()> {
        let reader = scope.spawn(move || -> io::Result<String> {
            let mut buf = [0u8; 64];
            let n = mailbox.read(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        });
        thread::sleep(Duration::from_millis(200));
        let other = daemon.open("testbed:whoami", O_RDWR)?;
        println!(
            "while the reader is parked, another client is served: {}",
            other.fpath()?
        );
        let writer = daemon.open("testbed:queue/mailbox", O_RDWR)?;
        writer.write(b"you've got mail")?;
        println!(
            "the parked reader got: {:?}",
            reader.join().expect("reader panicked")?
        );
        Ok(())
    })?;

    step("Readiness: register interest, then wait on the handle's descriptor");
    let watcher = daemon.open("testbed:queue/news", O_RDWR)?;
    println!(
        "interest in READ registered; ready now: {:?}",
        watcher.fevent(EventFlags::EVENT_READ)?
    );
    daemon
        .open("testbed:queue/news", O_RDWR)?
        .write(b"extra!")?;
    let mut fds = [PollFd::new(watcher.as_fd(), PollFlags::POLLIN)];
    let woke = poll(&mut fds, PollTimeout::from(1000u16))? == 1;
    println!(
        "descriptor readable: {woke}; events: {:?}",
        watcher.take_events()?
    );

    step("A scheme call: the payload goes in and comes back transformed");
    let queue = daemon.open("testbed:queue/calls", O_RDWR)?;
    let mut payload = *b"!emehcs a morf olleh";
    queue.call(&mut payload, &[CALL_REVERSE])?;
    println!(
        "reversed by the daemon: {:?}",
        String::from_utf8_lossy(&payload)
    );

    step("Shared memory: two handles map the same page, passed as a file descriptor");
    let a = daemon.open("testbed:shared", O_RDWR)?.mmap(0, 4096, true)?;
    let b = daemon
        .open("testbed:shared", O_RDWR)?
        .mmap(0, 4096, false)?;
    let message = b"written through mapping A";
    // SAFETY: both mappings are 4096 bytes long and live to the end of this block.
    let seen = unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), a.as_ptr(), message.len());
        std::slice::from_raw_parts(b.as_ptr(), message.len()).to_vec()
    };
    println!("mapping B reads {:?}", String::from_utf8_lossy(&seen));

    step("A client killed mid-request: the daemon closes its handles and goes on");
    let before = Stats::read(&daemon)?;
    let mut holder = daemon.spawn_holding_client("testbed:queue/held", 3)?;
    println!(
        "a client process (pid {}) holds 3 handles and blocks in a read",
        holder.id()
    );
    holder.kill()?;
    holder.wait()?;
    let after = Stats::wait_closed(&daemon, before.closed + 3, Duration::from_secs(5))?;
    println!(
        "killed it: handles closed by the daemon {} -> {}",
        before.closed, after.closed
    );

    step("What a round trip costs here (one call, 64-byte payload)");
    let mut payload = [0u8; 64];
    let rounds = 2000;
    let start = Instant::now();
    for _ in 0..rounds {
        queue.call(&mut payload, &[CALL_REVERSE])?;
    }
    println!(
        "{rounds} calls, {:.1} µs each (`make bench` compares this with a plain socket echo)",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    );
    println!("\nDone; the daemon is stopped and its scheme directory removed.");
    Ok(())
}
