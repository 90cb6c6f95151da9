//! A receive flood for the guest's e1000 from the host: UDP datagrams to a
//! loopback port QEMU's user network forwards into the guest, sent while the
//! guest asks for them (a [`FLOOD_START_LINE`] on its console, until a
//! [`FLOOD_STOP_LINE`] or the end of the run). Each datagram reaches the NIC as
//! one frame: the UDP packet itself once QEMU knows the guest's MAC, an ARP
//! request (broadcast) for it before. The dead-driver DMA test uses it to keep
//! the NIC receiving after its driver is killed.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub use guest_harness::protocol::{FLOOD_START_LINE, FLOOD_STOP_LINE};

/// One datagram per interval: about 1,000 frames a second, far more than the
/// test needs to see DMA within its quarantine and few enough for QEMU's user
/// network under TCG.
const INTERVAL: Duration = Duration::from_millis(1);
const DATAGRAM: [u8; 64] = [0x5a; 64];

pub struct UdpFlood {
    port: u16,
    on: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    worker: Option<JoinHandle<u64>>,
}

impl UdpFlood {
    /// Picks a free port and starts the (idle) sender.
    pub fn start() -> io::Result<UdpFlood> {
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let (on, done) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let worker = {
            let (on, done) = (on.clone(), done.clone());
            thread::spawn(move || {
                let mut sent = 0u64;
                while !done.load(Ordering::Relaxed) {
                    // QEMU not listening yet or any more is no error of the flood's.
                    if on.load(Ordering::Relaxed)
                        && socket
                            .send_to(&DATAGRAM, (Ipv4Addr::LOCALHOST, port))
                            .is_ok()
                    {
                        sent += 1;
                    }
                    thread::sleep(INTERVAL);
                }
                sent
            })
        };
        Ok(UdpFlood {
            port,
            on,
            done,
            worker: Some(worker),
        })
    }

    /// The UDP port to forward into the guest.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Looks at one console line: the guest's requests start and stop the flood.
    pub fn observe(&self, line: &str) {
        match line.trim_end() {
            FLOOD_START_LINE => {
                log::info!("UDP flood into the guest on port {}", self.port);
                self.on.store(true, Ordering::Relaxed);
            }
            FLOOD_STOP_LINE => {
                log::info!("UDP flood stopped");
                self.on.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Stops the sender; returns how many datagrams it sent.
    pub fn finish(mut self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        self.worker
            .take()
            .map_or(0, |worker| worker.join().unwrap_or(0))
    }
}
