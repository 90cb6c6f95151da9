//! One access mode's session: the driver started as the e1000 driver of the policy,
//! its scheme used as a network stack uses it, and the driver stopped.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use e1000::regs::{RCTL, RCTL_EN, TCTL, TCTL_EN};
use guest_harness::guest::daemons::read_status;
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{E1000_DRIVER_LABEL, GUEST_BENCH_PREFIX};
use mmio_scheme::open_path::RegisterTarget;
use scheme_runtime::Handle;
use syscall::error::{EINVAL, ENOENT};
use syscall::flag::{EventFlags, O_RDONLY};

use crate::driver::Driver;
use crate::frames::{arp_request, echo_request, gateway_arp_reply, is_echo_reply, GATEWAY_IP};
use crate::nic::{self, Wait, FRAMES_PATH, MAC_PATH, MAX_FRAME_LEN, STATUS_PATH};
use crate::Environment;

/// The driver's `--access` values, in the order the sessions run.
pub const ACCESS_MODES: [&str; 2] = ["direct", "mmio"];

/// QEMU's e1000 holds incoming frames back for a second after the driver's RCTL
/// write, so the first ARP reply may take that long; requests are repeated meanwhile.
const ARP_TIMEOUT: Duration = Duration::from_secs(5);
const ARP_RETRY: Duration = Duration::from_millis(250);
/// The gateway answers at once; generous for TCG.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// The driver's default tick.
const TICK_MS: u32 = 1;
/// Time for a reader to issue its read before the frame it waits for is asked for.
const PARK_DELAY: Duration = Duration::from_millis(50);

/// Runs the session of `access`, with result lines named `e1000-<access>-<step>`.
pub fn run(report: &mut Report, env: Option<&Environment>, access: &str) {
    let step = |name: &str| format!("e1000-{access}-{name}");
    let mut driver = report.run_after(&step("driver-serving"), env, |env| {
        Driver::start(env.nic, env.driver_uid, access)
    });
    let ready = env.zip(driver.as_ref());
    report.run_after(&step("driver-runs-as-its-uid"), ready, |(env, driver)| {
        equal("uids", driver.uids()?, vec![env.driver_uid; 4])
    });
    report.run_after(&step("mac-is-qemus"), ready, |(env, _)| {
        let mut mac = [0; 6];
        Handle::open(MAC_PATH, O_RDONLY)?.read(&mut mac)?;
        equal("the address", mac, env.mac)
    });
    report.run_after(&step("mac-short-read-einval"), ready, |_| {
        refused(Handle::open(MAC_PATH, O_RDONLY)?.read(&mut [0; 5]), EINVAL)
    });
    report.run_after(&step("unknown-path-enoent"), ready, |_| {
        refused(Handle::open(&format!("{FRAMES_PATH}/ip"), O_RDONLY), ENOENT)
    });
    report.run_after(&step("bad-frames-einval"), ready, |_| {
        let nic = nic::open(Wait::Event)?;
        refused(nic.write(&[0; MAX_FRAME_LEN + 1]), EINVAL)?;
        refused(nic.write(&[0; 13]), EINVAL)
    });
    report.run_after(&step("write-ready-at-once"), ready, |_| {
        let ready = nic::open(Wait::Event)?.fevent(EventFlags::EVENT_WRITE)?;
        equal("fevent(EVENT_WRITE)", ready, EventFlags::EVENT_WRITE)
    });
    let gateway = report.run_after(&step("arp-reply-from-gateway"), ready, |(env, driver)| {
        resolve_gateway(env, driver, access)
    });
    let reachable = ready.zip(gateway);
    for wait in [Wait::Event, Wait::Blocking] {
        let name = match wait {
            Wait::Event => "ping-gateway-event-wait",
            Wait::Blocking => "ping-gateway-blocking-read",
        };
        report.run_after(&step(name), reachable, |((env, _), gateway)| {
            ping(env, gateway, wait, access)
        });
    }
    report.run_after(
        &step("parked-read-completes-on-arrival"),
        ready,
        |(env, _)| parked_read(env),
    );
    report.run_after(&step("status-counts-the-traffic"), ready, |(env, _)| {
        check_status(env, access)
    });
    report.run_after(
        &step("stops-with-dma-off"),
        env.zip(driver.as_mut()),
        |(env, driver)| stop(env, driver, access),
    );
}

/// Prints the CPU time the driver used while serving, stops it with SIGTERM, and
/// reads the NIC as the supervisor may: the driver switched its DMA off on the way out.
fn stop(env: &Environment, driver: &mut Driver, access: &str) -> StepResult<()> {
    println!(
        "{GUEST_BENCH_PREFIX} e1000 {access}: the driver used {:.0} ms of CPU in {:.0} ms of \
         serving (polling every {TICK_MS} ms)",
        driver.cpu_time_serving()?.as_secs_f64() * 1e3,
        driver.serving_since.elapsed().as_secs_f64() * 1e3
    );
    driver.stop()?;
    let bar0 = Registers::open_for(
        RegisterTarget::Bar {
            bdf: env.nic,
            bar: 0,
        },
        E1000_DRIVER_LABEL,
    )?;
    let rctl = bar0.read32(RCTL)?;
    let tctl = bar0.read32(TCTL)?;
    equal(
        "RCTL.EN and TCTL.EN after the stop",
        (rctl & RCTL_EN, tctl & TCTL_EN),
        (0, 0),
    )
}

/// Asks for the gateway's address until it answers; returns it.
fn resolve_gateway(env: &Environment, driver: &Driver, access: &str) -> StepResult<[u8; 6]> {
    let nic = nic::open(Wait::Event)?;
    let deadline = Instant::now() + ARP_TIMEOUT;
    for requests in 1.. {
        nic.write(&arp_request(env.mac))?;
        let retry_at = (Instant::now() + ARP_RETRY).min(deadline);
        let reply = nic::receive(&nic, Wait::Event, retry_at, |frame| {
            gateway_arp_reply(frame).is_some()
        })?;
        if let Some(gateway) = reply.as_deref().and_then(gateway_arp_reply) {
            println!(
                "{GUEST_BENCH_PREFIX} e1000 {access}: first ARP reply {:.0} ms after the driver \
                 served ({requests} request(s) sent)",
                driver.serving_since.elapsed().as_secs_f64() * 1e3
            );
            return Ok(gateway);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(format!("no ARP reply from {GATEWAY_IP:?} within {ARP_TIMEOUT:?}").into())
}

/// Echo requests to the gateway, one at a time, each waited for in the way `wait`;
/// prints the round trips.
fn ping(env: &Environment, gateway: [u8; 6], wait: Wait, access: &str) -> StepResult<()> {
    let (mac, count, id) = (env.mac, env.pings, next_echo_id());
    let series = nic::spawn(move || {
        echo_series(mac, gateway, id, count, wait).map_err(|err| err.to_string())
    });
    let rtts = series.wait(REPLY_TIMEOUT * u32::from(count))?;
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = rtts.iter().sum::<Duration>() / u32::from(count);
    println!(
        "{GUEST_BENCH_PREFIX} e1000 {access}: ping 10.0.2.2 x{count} ({}): round trip mean {:.0} us, \
         min {:.0} us, max {:.0} us",
        wait.name(),
        micros(mean),
        micros(rtts.iter().copied().min().unwrap_or_default()),
        micros(rtts.iter().copied().max().unwrap_or_default()),
    );
    Ok(())
}

fn echo_series(
    mac: [u8; 6],
    gateway: [u8; 6],
    id: u16,
    count: u16,
    wait: Wait,
) -> io::Result<Vec<Duration>> {
    let nic = nic::open(wait)?;
    let mut rtts = Vec::with_capacity(count.into());
    for seq in 0..count {
        let sent = Instant::now();
        nic.write(&echo_request(mac, gateway, id, seq))?;
        let reply = nic::receive(&nic, wait, sent + REPLY_TIMEOUT, |frame| {
            is_echo_reply(frame, id, seq)
        })?;
        if reply.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply to echo request {seq} within {REPLY_TIMEOUT:?}"),
            ));
        }
        rtts.push(sent.elapsed());
    }
    Ok(rtts)
}

/// A distinct ICMP identifier per series, so no series takes another's replies.
fn next_echo_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0xe100);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A blocking read issued before its frame exists waits in the driver, and returns
/// once the frame arrives.
fn parked_read(env: &Environment) -> StepResult<()> {
    let reader = nic::open(Wait::Blocking)?;
    let pending = nic::spawn(move || {
        nic::receive(&reader, Wait::Blocking, Instant::now(), |frame| {
            gateway_arp_reply(frame).is_some()
        })
        .map_err(|err| err.to_string())
    });
    sleep(PARK_DELAY);
    let asked = Instant::now();
    nic::open(Wait::Event)?.write(&arp_request(env.mac))?;
    pending.wait(REPLY_TIMEOUT)?;
    log::info!(
        "the parked read returned {:?} after the request",
        asked.elapsed()
    );
    Ok(())
}

/// The status text's counters agree with the traffic of this session.
fn check_status(env: &Environment, access: &str) -> StepResult<()> {
    let text = read_status(STATUS_PATH)?;
    log::info!("{STATUS_PATH}:\n{text}");
    let values: HashMap<&str, &str> = text
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let text_of = |key: &str| {
        values
            .get(key)
            .copied()
            .ok_or_else(|| format!("status has no {key}=:\n{text}"))
    };
    let count = |key: &str| -> StepResult<u64> { Ok(text_of(key)?.parse()?) };
    equal("access", text_of("access")?, access)?;
    equal("link", text_of("link")?, "up")?;
    equal("tx_rejected (the two bad frames)", count("tx_rejected")?, 2)?;
    equal(
        "frames the NIC sent (gptc)",
        count("gptc")?,
        count("tx_frames")?,
    )?;
    let replies = 2 * u64::from(env.pings) + 2;
    let received = count("rx_frames")?;
    if received < replies || received > count("gprc")? {
        return Err(format!(
            "rx_frames={received}: want at least the {replies} replies, at most gprc\n{text}"
        )
        .into());
    }
    Ok(())
}

fn equal<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> StepResult<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}").into())
    }
}

/// `result` is the Redox error `errno`.
fn refused<T: std::fmt::Debug>(result: io::Result<T>, errno: i32) -> StepResult<()> {
    let want = scheme_runtime::io_error(syscall::error::Error::new(errno));
    match result {
        Err(err) if err.raw_os_error() == want.raw_os_error() => Ok(()),
        Err(err) => Err(format!("refused with {err}, want {want}").into()),
        Ok(value) => Err(format!("answered {value:?}, want {want}").into()),
    }
}
