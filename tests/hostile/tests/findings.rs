//! One test per defect a hostile local user found in the scheme runtime, each
//! against a daemon in its own process over its real socket (the testbed unless
//! the defect was a particular daemon's).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hostile_clients::attack::request;
use hostile_clients::target::{Prober, Target};
use hostile_clients::{AttackClass, Daemon};
use nix::sys::socket::{
    connect, recv, sendmsg, shutdown, socket, AddressFamily, ControlMessage, MsgFlags, Shutdown,
    SockFlag, SockType, UnixAddr,
};
use scheme_runtime::wire::Opcode;

const EXE: &str = env!("CARGO_BIN_EXE_hostile-target");

fn start(daemon: Daemon) -> Target {
    Target::start(Path::new(EXE), daemon).expect("the daemon starts")
}

fn connect_to(target: &Target, daemon: Daemon) -> OwnedFd {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    connect(
        fd.as_raw_fd(),
        &UnixAddr::new(&target.dir().join(daemon.scheme())).unwrap(),
    )
    .unwrap();
    fd
}

fn open_request(path: &str) -> Vec<u8> {
    request(Opcode::Open, 0, &[], path.as_bytes())
}

#[test]
fn descriptors_sent_with_a_request_are_closed_by_the_daemon_however_many() {
    let target = start(Daemon::Testbed);
    let before = target.fd_count().unwrap();
    let socket = connect_to(&target, Daemon::Testbed);
    let null = std::fs::File::open("/dev/null").unwrap();
    let fds = [null.as_raw_fd(); 9];
    for _ in 0..300 {
        sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(&open_request("stats"))],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("the daemon keeps the connection");
        let mut reply = [0u8; 64];
        assert!(recv(socket.as_raw_fd(), &mut reply, MsgFlags::empty()).unwrap() > 0);
    }
    drop(socket);
    // At most what it held before (a connection of the start-up probe may have
    // been open then).
    let after = target.settle_fds(before, Duration::from_secs(2)).unwrap();
    assert!(
        after <= before,
        "the daemon kept descriptors a client pushed on it: {after} after, {before} before"
    );
    target.probe().expect("still served");
}

#[test]
fn a_half_closed_connection_gets_one_reply_and_is_closed() {
    let target = start(Daemon::Testbed);
    let socket = connect_to(&target, Daemon::Testbed);
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(&open_request("stats"))],
        &[],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    shutdown(socket.as_raw_fd(), Shutdown::Write).unwrap();
    let mut replies = 0;
    let start = Instant::now();
    let mut buf = [0u8; 64];
    while recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap() > 0 {
        replies += 1;
        assert!(
            replies <= 1,
            "the daemon answers an ended stream again and again"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(replies, 1);
    assert!(target.log_bytes().unwrap() < 4096, "{}", target.log_text());
}

#[test]
fn a_flood_of_connections_past_the_descriptor_limit_is_refused_and_others_are_served() {
    // 64 descriptors: the flood of 600 connections from one uid is far past it.
    let target = Target::start_with_fd_limit(Path::new(EXE), Daemon::Testbed, Some(64)).unwrap();
    let prober = Prober::start(&target);
    let attack = target
        .attack(1200, &[AttackClass::ConnectionFlood])
        .unwrap();
    let probes = prober.stop();
    let printed = String::from_utf8_lossy(&attack.stdout);
    assert!(
        attack.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&attack.stderr)
    );
    assert!(printed.contains("refused"), "{printed}");
    assert_eq!(probes.failures, 0, "{probes:?}");
    assert!(probes.probes >= 1, "{probes:?}");
    let log = target.log_text();
    assert_eq!(
        log.matches("accept failed").count(),
        0,
        "the daemon ran out of descriptors: {}",
        &log[..log.len().min(2000)]
    );
    assert!(log.len() < 64 * 1024, "{} bytes of log", log.len());
}

#[test]
fn a_refused_huge_path_costs_one_short_log_line() {
    let target = start(Daemon::Dma);
    let attack = target.attack(200, &[AttackClass::HugePaths]).unwrap();
    assert!(attack.status.success());
    let logged = target.log_bytes().unwrap();
    assert!(
        logged < 64 * 1024,
        "200 refused 64 KiB paths logged {logged} bytes"
    );
}

#[test]
fn an_unopened_connection_handed_to_another_user_opens_as_that_user() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("NOT RUN: needs root to hand the connection to another uid");
        return;
    }
    let target = start(Daemon::Testbed);
    // Made by root, inherited (no close-on-exec) by a child that drops to 65534.
    let socket = connect_to(&target, Daemon::Testbed);
    let output = Command::new(EXE)
        .args([
            "open-inherited",
            "--fd",
            &socket.as_raw_fd().to_string(),
            "whoami",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("uid=65534 gid=65534"),
        "the scheme saw {said:?}"
    );
}
