//! Queue names over the host transport: forgotten when empty and unheld, and
//! bounded, so a client opening ever new names cannot grow the daemon forever.
#![cfg(target_os = "linux")]

use scheme_testbed::process::DaemonProcess;
use scheme_testbed::MAX_QUEUES;
use syscall::error::ENOSPC;
use syscall::flag::O_RDWR;

#[test]
fn names_opened_and_closed_do_not_pile_up_and_one_past_the_bound_is_enospc() {
    let daemon = DaemonProcess::start(env!("CARGO_BIN_EXE_testbed").as_ref()).unwrap();
    for i in 0..2 * MAX_QUEUES {
        let queue = daemon
            .open(&format!("testbed:queue/passing-{i}"), O_RDWR)
            .unwrap_or_else(|e| panic!("queue {i}: {e}"));
        queue.close().unwrap();
    }

    let held: Vec<_> = (0..MAX_QUEUES)
        .map(|i| {
            daemon
                .open(&format!("testbed:queue/held-{i}"), O_RDWR)
                .unwrap()
        })
        .collect();
    match daemon.open("testbed:queue/one-too-many", O_RDWR) {
        Ok(_) => panic!("opened more queues than the bound"),
        Err(refused) => assert_eq!(refused.raw_os_error(), Some(ENOSPC)),
    }
    for queue in held {
        queue.close().unwrap();
    }
    daemon
        .open("testbed:queue/one-too-many", O_RDWR)
        .expect("room again once the held queues are closed")
        .close()
        .unwrap();
}
