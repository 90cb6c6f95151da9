//! What every network path shares once its interface is up: QEMU's gateway
//! answering through it, and the echo service served to the host until it says
//! `quit`.

use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use guest_harness::guest::report::{Report, StepResult};
use guest_net::child::Child;
use guest_net::echo::{SessionNews, LISTENING, SERVED, SESSION};
use guest_net::ipconfig::QEMU_GATEWAY;
use guest_net::paths::NetPath;
use guest_net::protocol::serving_line;

/// QEMU's e1000 ignores incoming frames for a second after the receiver is
/// configured, and the stack resolves the gateway first; generous for TCG.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);
/// The service binds and listens at once.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The echo service's port, how long the host may take, and the path whose
/// link the host takes down and up.
pub struct Settings {
    pub port: u16,
    pub host_timeout: Duration,
    pub link_flap: Option<NetPath>,
}

/// Runs the shared steps of `path`, named `tcp-<label>-<step>`, once `up` says its
/// interface is configured.
pub fn run(report: &mut Report, path: NetPath, settings: &Settings, up: Option<()>) {
    run_telling(report, path, settings, up, &mut |_| {});
}

/// As [`run`], telling `on_news` as each of the service's sessions begins and
/// ends.
pub fn run_telling(
    report: &mut Report,
    path: NetPath,
    settings: &Settings,
    up: Option<()>,
    on_news: &mut dyn FnMut(SessionNews),
) {
    let step = |name: &str| format!("tcp-{path}-{name}");
    let reachable = report.run_after(&step("gateway-answers-ping"), up, |()| gateway_answers());
    report.run_after(&step("echo-served-host"), reachable, |_| {
        serve(path, settings, on_news)
    });
}

/// Pings QEMU's gateway until it answers, which takes the whole path carrying
/// frames both ways: ARP, then ICMP. Returns how long it took.
pub(crate) fn gateway_answers() -> StepResult<Duration> {
    let started = Instant::now();
    loop {
        let ping = Command::new("ping")
            .args(["-c", "1", "-W", "1", QEMU_GATEWAY])
            .output()?;
        if ping.status.success() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > GATEWAY_TIMEOUT {
            let said = String::from_utf8_lossy(&ping.stdout);
            return Err(format!(
                "{QEMU_GATEWAY} does not answer after {GATEWAY_TIMEOUT:?}: {said}"
            )
            .into());
        }
        sleep(Duration::from_millis(100));
    }
}

/// Starts the service, announces it on the console for the host, tells
/// `on_news` of its sessions as they begin and end, and waits until the host
/// has run its load and said `quit`; returns the service's closing line.
fn serve(
    path: NetPath,
    settings: &Settings,
    on_news: &mut dyn FnMut(SessionNews),
) -> StepResult<String> {
    let mut command = Command::new("tcp-echo");
    command.args([
        "--port",
        &settings.port.to_string(),
        "--label",
        path.label(),
    ]);
    let mut echo = Child::spawn("tcp-echo", command)?;
    echo.wait_for_line(LISTENING, LISTEN_TIMEOUT)?;
    println!("{}", serving_line(path.label(), settings.port));
    let deadline = Instant::now() + settings.host_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match echo.wait_for_line(SESSION, left) {
            Ok(line) => {
                if let Ok(news) = line[SESSION.len()..].trim().parse() {
                    on_news(news);
                }
            }
            // The service ended: its status says how.
            Err(_) if echo.has_ended()? => break,
            Err(error) => return Err(error.into()),
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let status = echo.wait(left)?;
    if !status.success() {
        return Err(format!("tcp-echo ended with {status}").into());
    }
    let served = echo
        .output()
        .iter()
        .rev()
        .find(|line| line.starts_with(SERVED))
        .cloned()
        .ok_or("tcp-echo ended without saying what it served")?;
    println!("{served}");
    Ok(served)
}
