//! The host's side of the guest's TCP echo service: a free loopback port that QEMU
//! forwards into the guest, and a load client that starts on each network path as
//! soon as the guest's console announces the service there, while the boot goes on.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use guest_harness::protocol::TestLine;
use guest_net::load::{Client, PathReport, Workload};
use guest_net::paths::NetPath;
use guest_net::protocol::parse_serving_line;

use crate::results::host_check;

/// Kernel parameters (environment variables of the guest's programs) that tell
/// `guest-tcp` its port and paths.
const PORT_VAR: &str = "GUEST_TCP_PORT";
const PATHS_VAR: &str = "GUEST_TCP_PATHS";
const LINK_FLAP_VAR: &str = "GUEST_TCP_LINK_FLAP";
/// When the link goes down after the upload of a [`LinkFlap`] starts, and for
/// how long: well inside a 20 MiB upload under TCG (some 4 s), and longer than
/// TCP's first retransmission timeout.
const FLAP_AFTER: Duration = Duration::from_millis(500);
const FLAP_DOWN: Duration = Duration::from_millis(1500);
/// The service listens as soon as it is announced; a dropped SYN costs QEMU's
/// user network a few seconds.
const STARTUP: Duration = Duration::from_secs(20);
/// No single read or write through the guest takes this long unless it is stuck. The
/// longest wait is for an upload's checksum: the host's socket and QEMU take in most
/// of a transfer at once, so the wait lasts about the whole transfer: 56 s measured
/// for the tests' 20 MiB on the replicated driver under TCG and fault injection
/// (0.38 MB/s), with room for slower machines.
const IO_TIMEOUT: Duration = Duration::from_secs(180);

/// The load of a test run.
pub const TEST_WORKLOAD: Workload = Workload {
    round_trips: 10_000,
    message_len: 64,
    transfer_bytes: 20 << 20,
};
/// The load of a benchmark run.
pub const BENCH_WORKLOAD: Workload = TEST_WORKLOAD;
/// The tests' load on the replicated driver on the stub backend, under faults
/// as on the ptrace backend: a fifth of it, about a minute under TCG.
pub const STUB_TEST_WORKLOAD: Workload = Workload {
    round_trips: 2_000,
    message_len: 64,
    transfer_bytes: 4 << 20,
};
/// The benchmark's load on each replica count of the replicated driver: under TCG a
/// round trip through the engine with 3 replicas takes some 16 ms and a transfer
/// moves about 0.3 MB/s, so this keeps a row to about half a minute. Mean, min and
/// max compare across loads of different sizes.
pub const REPLICA_COUNT_WORKLOAD: Workload = Workload {
    round_trips: 1_000,
    message_len: 64,
    transfer_bytes: 2 << 20,
};

/// The guest NIC's link taken down and brought up again through QEMU's
/// machine protocol while the upload on `path` runs.
#[derive(Clone, Debug)]
pub struct LinkFlap {
    pub path: NetPath,
    pub qmp: PathBuf,
}

pub struct TcpLoad {
    port: u16,
    announcements: Sender<NetPath>,
    worker: JoinHandle<Vec<PathReport>>,
    link_flap: Option<LinkFlap>,
}

impl TcpLoad {
    /// Picks the port and waits in the background for announcements; the load on
    /// each announced path is `workload(path)`.
    /// With `link_flap`, the link goes down and up during its path's upload.
    pub fn start(
        workload: impl Fn(NetPath) -> Workload + Send + 'static,
        link_flap: Option<LinkFlap>,
    ) -> io::Result<TcpLoad> {
        let port = free_port()?;
        let (announcements, paths) = mpsc::channel::<NetPath>();
        let flap = link_flap.clone();
        let worker = thread::spawn(move || {
            paths
                .into_iter()
                .map(|path| {
                    log::info!("TCP load on {path} through 127.0.0.1:{port}");
                    let client = client(port, path.label().to_owned());
                    let report = match &flap {
                        Some(flap) if flap.path == path => {
                            run_with_link_flap(&client, &workload(path), flap)
                        }
                        _ => client.run(&workload(path)),
                    };
                    log::info!("TCP load on {} done", report.label);
                    report
                })
                .collect()
        });
        Ok(TcpLoad {
            port,
            announcements,
            worker,
            link_flap,
        })
    }

    /// The port to forward into the guest.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kernel parameters telling the guest where to serve, and over which paths.
    pub fn kernel_params(&self, paths: &[NetPath]) -> Vec<String> {
        let labels: Vec<&str> = paths.iter().map(|path| path.label()).collect();
        let mut params = vec![
            format!("{PORT_VAR}={}", self.port),
            format!("{PATHS_VAR}={}", labels.join(",")),
        ];
        if let Some(flap) = &self.link_flap {
            params.push(format!("{LINK_FLAP_VAR}={}", flap.path));
        }
        params
    }

    /// Looks at one console line; an announcement starts the load on its path.
    pub fn observe(&self, line: &str) {
        let Some((label, port)) = parse_serving_line(line) else {
            return;
        };
        if port != self.port {
            log::warn!(
                "the guest serves {label} on port {port}, not the forwarded {}",
                self.port
            );
        }
        // A path the host has no load for stays unmeasured, which its checks report.
        let path = match label.parse() {
            Ok(path) => path,
            Err(why) => return log::warn!("the guest announced a service: {why}"),
        };
        // The worker outlives the boot; it only stops after `finish`.
        let _ = self.announcements.send(path);
    }

    /// Waits for the load to end (the guest has ended by now, so nothing waits long)
    /// and returns one report per announced path.
    pub fn finish(self) -> Vec<PathReport> {
        drop(self.announcements);
        self.worker.join().unwrap_or_else(|_| {
            log::error!("the TCP load thread panicked");
            Vec::new()
        })
    }
}

/// The client's load, with the link taken down and up during the upload; a
/// QMP failure is logged, and the guest's checks of the link changes fail.
fn run_with_link_flap(client: &Client, workload: &Workload, flap: &LinkFlap) -> PathReport {
    let round_trips = client.round_trips(workload.round_trips, workload.message_len);
    let qmp = flap.qmp.clone();
    let flapper = thread::spawn(move || {
        thread::sleep(FLAP_AFTER);
        crate::qmp::set_link(&qmp, crate::qmp::GUEST_NETDEV, false)?;
        log::info!("the guest's link is down");
        thread::sleep(FLAP_DOWN);
        crate::qmp::set_link(&qmp, crate::qmp::GUEST_NETDEV, true)?;
        log::info!("the guest's link is up again");
        Ok::<(), String>(())
    });
    let upload = client.upload(workload.transfer_bytes);
    match flapper.join() {
        Ok(Ok(())) => {}
        Ok(Err(why)) => log::error!("taking the link down and up: {why}"),
        Err(_) => log::error!("the link flapper panicked"),
    }
    PathReport {
        label: client.label.clone(),
        round_trips,
        upload,
        download: client.download(workload.transfer_bytes),
        quit: client.quit(),
    }
}

fn client(port: u16, label: String) -> Client {
    Client {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        label,
        startup: STARTUP,
        io_timeout: IO_TIMEOUT,
    }
}

/// A port nothing listens on right now. QEMU binds it a moment later; another run
/// taking it in between makes QEMU fail to start, which the run reports.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One check per measurement of each path in `expected`, and the measurements
/// themselves as lines for the run's output.
pub fn checks(reports: &[PathReport], expected: &[NetPath]) -> (Vec<TestLine>, Vec<String>) {
    let mut checks = Vec::new();
    let mut lines = Vec::new();
    for path in expected {
        let name = |what: &str| format!("tcp-{path}-{what}");
        let Some(report) = reports.iter().find(|r| r.label == path.label()) else {
            let never = format!("the guest never announced the service on {path}");
            checks.push(host_check(&name("served"), Err(never)));
            continue;
        };
        let measured = [
            (
                "round-trips",
                report.round_trips.as_ref().map(ToString::to_string),
            ),
            ("to-guest", report.upload.as_ref().map(ToString::to_string)),
            (
                "from-guest",
                report.download.as_ref().map(ToString::to_string),
            ),
        ];
        for (what, result) in measured {
            if let Ok(text) = &result {
                lines.push(format!("tcp {path} {what}: {text}"));
            }
            checks.push(host_check(
                &name(what),
                result.map(drop).map_err(Clone::clone),
            ));
        }
        checks.push(host_check(&name("service-quit"), report.quit.clone()));
    }
    (checks, lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_net::load::{RoundTrips, Transfer};
    use guest_net::paths::OUR_DRIVER_PATHS;
    use guest_net::protocol::serving_line;

    fn report(label: &str) -> PathReport {
        let transfer = Transfer {
            bytes: 1000,
            elapsed: Duration::from_millis(1),
        };
        PathReport {
            label: label.into(),
            round_trips: Ok(RoundTrips {
                count: 2,
                mean: Duration::from_micros(300),
                min: Duration::from_micros(200),
                max: Duration::from_micros(400),
            }),
            upload: Ok(transfer),
            download: Err("e1000-direct: checksum differs".into()),
            quit: Ok(()),
        }
    }

    #[test]
    fn every_measurement_is_a_check_and_a_missing_path_fails() {
        let (checks, lines) = checks(&[report("e1000-direct")], &OUR_DRIVER_PATHS[..2]);
        let shown: Vec<String> = checks.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "host-check tcp-e1000-direct-round-trips ... ok",
                "host-check tcp-e1000-direct-to-guest ... ok",
                "host-check tcp-e1000-direct-from-guest ... FAILED: e1000-direct: checksum differs",
                "host-check tcp-e1000-direct-service-quit ... ok",
                "host-check tcp-e1000-mmio-served ... FAILED: the guest never announced the \
                 service on e1000-mmio",
            ]
        );
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("tcp e1000-direct round-trips: 2 round trips"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn the_guest_learns_port_and_paths_from_kernel_parameters() {
        let flap = LinkFlap {
            path: OUR_DRIVER_PATHS[0],
            qmp: "/run/qmp.sock".into(),
        };
        let load = TcpLoad::start(|_| TEST_WORKLOAD, Some(flap)).unwrap();
        let params = load.kernel_params(&OUR_DRIVER_PATHS);
        assert_eq!(
            params,
            [
                format!("GUEST_TCP_PORT={}", load.port()),
                "GUEST_TCP_PATHS=e1000-direct,e1000-mmio,e1000-replicated,e1000-restarted"
                    .to_string(),
                "GUEST_TCP_LINK_FLAP=e1000-direct".to_string(),
            ]
        );
        load.observe("guest-test tcp-e1000-direct-driver-serving ... ok (1.000 ms)");
        load.observe(&serving_line("e1000-bogus", load.port()));
        assert!(
            load.finish().is_empty(),
            "only announcements of known paths start the load"
        );
    }

    #[test]
    fn an_announcement_runs_the_paths_own_load_against_the_forwarded_port() {
        use guest_net::echo::EchoService;
        let load = TcpLoad::start(
            |path| Workload {
                round_trips: 5,
                message_len: 8,
                transfer_bytes: match path {
                    NetPath::ReplicatedE1000(_) => 1000,
                    _ => 2000,
                },
            },
            None,
        )
        .unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, load.port()));
        let service = EchoService::bind(addr, "e1000-replicated", IO_TIMEOUT).unwrap();
        let serving = thread::spawn(move || service.serve().unwrap());
        load.observe(&serving_line("e1000-replicated", load.port()));
        let reports = load.finish();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].round_trips.as_ref().unwrap().count, 5);
        assert_eq!(reports[0].upload.as_ref().unwrap().bytes, 1000);
        assert_eq!(reports[0].quit, Ok(()));
        assert_eq!(serving.join().unwrap().sunk_bytes, 1000);
    }
}
