//! `guest-harness demo` (what `make demo` runs): the system at work in about a
//! minute and a half. The guest of `make run` boots from the image's init
//! units with the e1000 driver as 3 voting replicas; the host sends round trips
//! through the guest's TCP echo, checking every byte, while a fault of each
//! kind goes into a replica through the guest's shell (`romain inject`); each
//! fault's effect on the engine's counters is shown as it happens. At the end:
//! a table of the faults, what the engine counted and the round trips they
//! delayed, and a PNG of round-trip time over time with the faults marked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use guest_harness::protocol::Summary;
use guest_net::pattern::Pattern;
use romain_campaign::fault::Regions;

use crate::qemu::{Serial, TypedConsole};
use crate::results::{self, host_check};
use crate::run::{self, RunOptions, NOT_READY, READY};
use crate::Result;

/// Bytes of one round trip.
const REQUEST_BYTES: usize = 512;
/// The pause between round trips.
const PAUSE: Duration = Duration::from_millis(20);
/// When the first fault goes in, and the time between faults.
const FIRST_FAULT: Duration = Duration::from_secs(5);
const FAULT_SPACING: Duration = Duration::from_secs(6);
/// How long after a fault its effects are looked for.
const SETTLE: Duration = Duration::from_secs(3);
/// The file name of the driver's program, for the replicas' memory map.
const DRIVER_FILE: &str = "e1000";
/// The engine's counters a fault may move, as the group's status names them.
const COUNTERS: [&str; 7] = [
    "divergences",
    "repairs",
    "replacements",
    "hangs",
    "crashes",
    "no_majority",
    "group_restarts",
];

/// One fault of the show: its kind, the replica it goes into, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ShowFault {
    kind: &'static str,
    replica: usize,
    target: Target,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// A command that needs no address (`kill 0`, `flip 1 reg rax 3`).
    Fixed(&'static str),
    /// A bit of a byte in the middle of one of the replica's memory regions.
    Memory(Region, u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    Stack,
    Heap,
    Dma,
    Code,
}

/// One of each kind the engine takes, spread over the three replicas.
const FAULTS: [ShowFault; 8] = [
    ShowFault {
        kind: "register",
        replica: 1,
        target: Target::Fixed("reg rax 3"),
    },
    ShowFault {
        kind: "stack",
        replica: 2,
        target: Target::Memory(Region::Stack, 5),
    },
    ShowFault {
        kind: "heap",
        replica: 0,
        target: Target::Memory(Region::Heap, 1),
    },
    ShowFault {
        kind: "dma",
        replica: 1,
        target: Target::Memory(Region::Dma, 0),
    },
    ShowFault {
        kind: "code",
        replica: 2,
        target: Target::Memory(Region::Code, 2),
    },
    ShowFault {
        kind: "kill",
        replica: 0,
        target: Target::Fixed(""),
    },
    ShowFault {
        kind: "stop",
        replica: 1,
        target: Target::Fixed(""),
    },
    ShowFault {
        kind: "hang",
        replica: 2,
        target: Target::Fixed(""),
    },
];

impl ShowFault {
    /// The command `romain inject` takes, given the replica's memory.
    fn command(&self, regions: Option<&Regions>) -> Option<String> {
        let replica = self.replica;
        match self.target {
            Target::Fixed("") => Some(format!("{} {replica}", self.kind)),
            Target::Fixed(what) => Some(format!("flip {replica} {what}")),
            Target::Memory(region, bit) => {
                let regions = regions?;
                let ranges = match region {
                    Region::Stack => &regions.stack,
                    Region::Heap => &regions.heap,
                    Region::Dma => &regions.dma,
                    Region::Code => &regions.code,
                };
                let &(start, end) = ranges.first()?;
                let address = start + (end - start) / 2;
                Some(format!("flip {replica} mem {address:#x} {bit}"))
            }
        }
    }
}

/// One round trip: when it started (since the traffic began) and how long it
/// took, or why it failed.
#[derive(Clone, Debug)]
struct RoundTrip {
    at: Duration,
    took: std::result::Result<Duration, String>,
}

/// A fault as it went: when, what was typed, and what the counters did.
struct Injected {
    fault: ShowFault,
    at: Duration,
    command: String,
    moved: String,
}

/// Runs the show; its plot and table go to `out`.
pub fn show(options: &RunOptions, out: &Path) -> Result<Summary> {
    let started = Instant::now();
    println!(
        "== 1/4 The image boots: its own init units (filesystem.toml) start mmio:, dma:, \
         romain: and `romain up e1000 --replicas 3`; the guest's TCP/IP goes through that group."
    );
    let (web_port, echo_port) = run::ports(options, Serial::Typed)?;
    let config = run::prepare(options, Serial::Typed, web_port, echo_port)?;
    let mut console = TypedConsole::boot(&config)?;
    let show_unit = |line: &str| {
        if line.starts_with("image-init:") || line.starts_with("guest-run:") {
            println!("  guest | {line}");
        }
    };
    let ready = console.wait_for(
        |line| line.starts_with(READY) || line.starts_with(NOT_READY),
        Duration::from_secs(300),
        show_unit,
    )?;
    if !ready.last().is_some_and(|line| line.starts_with(READY)) {
        return Err("the guest's network did not come up (its console.log says why)".into());
    }

    println!(
        "\n== 2/4 Traffic: the host sends {REQUEST_BYTES}-byte round trips through the guest's \
         TCP echo, one every {} ms, and checks every byte that comes back.",
        PAUSE.as_millis()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || round_trips(echo_port, &stop))
    };
    let traffic_start = Instant::now();

    println!(
        "\n== 3/4 Faults: one of each kind into a replica, {} s apart, typed at the guest's \
         shell as `romain inject e1000 ...`; the engine's counters {SETTLE:?} later:",
        FAULT_SPACING.as_secs()
    );
    let mut before = counters(&group_status(&mut console)?);
    let mut injected = Vec::new();
    for (i, fault) in FAULTS.iter().enumerate() {
        let regions = match fault.target {
            Target::Memory(..) => Some(replica_regions(&mut console, fault.replica)?),
            Target::Fixed(_) => None,
        };
        let Some(command) = fault.command(regions.as_ref()) else {
            println!(
                "  {:<9} skipped: replica {} has no such memory",
                fault.kind, fault.replica
            );
            continue;
        };
        let due = FIRST_FAULT + FAULT_SPACING * i as u32;
        thread::sleep(due.saturating_sub(traffic_start.elapsed()));
        let at = traffic_start.elapsed();
        let answer = console.ask(&format!("romain inject e1000 {command}"), ASK_TIMEOUT)?;
        if let Some(error) = answer.iter().find(|line| line.starts_with("romain:")) {
            println!("  {:<9} {command}: {error}", fault.kind);
        }
        thread::sleep(SETTLE);
        let after = counters(&group_status(&mut console)?);
        let moved = moved(&before, &after);
        println!(
            "  {:>5.1} s  {:<9} {command:<34} {moved}",
            at.as_secs_f64(),
            fault.kind
        );
        before = after;
        injected.push(Injected {
            fault: *fault,
            at,
            command,
            moved,
        });
    }
    thread::sleep(SETTLE);
    stop.store(true, Ordering::Relaxed);
    let trips = traffic.join().map_err(|_| "the traffic thread panicked")?;
    let frame = console.ask("romain top --once", ASK_TIMEOUT)?;

    println!("\n== 4/4 Summary");
    let table = summary_table(&injected, &trips);
    print!("{table}");
    for line in frame
        .iter()
        .skip_while(|line| !line.starts_with("romain top:"))
    {
        println!("  {line}");
    }
    std::fs::create_dir_all(out)?;
    let plot_path = out.join("round-trips.png");
    let plotted = plot(&plot_path, &injected, &trips);
    match &plotted {
        Ok(()) => println!("plot: {}", plot_path.display()),
        Err(why) => println!("plot: not drawn: {why}"),
    }
    std::fs::write(out.join("summary.txt"), &table)?;
    std::fs::write(out.join("round-trips.csv"), round_trips_csv(&trips))?;

    // What the units and the bridge said, into the console log.
    console.ask("tail -n 40 /var/log/*.log", ASK_TIMEOUT)?;
    let powered_off = console.power_off()?;
    let failed = trips.iter().filter(|trip| trip.took.is_err()).count();
    let checks = [
        host_check(
            "demo-every-round-trip-came-back-exact",
            match (failed, trips.len()) {
                (_, 0) => Err("no round trips".to_owned()),
                (0, _) => Ok(()),
                (n, _) => Err(format!("{n} failed: {:?}", first_failure(&trips))),
            },
        ),
        host_check(
            "demo-every-fault-went-in",
            match injected.len() == FAULTS.len() {
                true => Ok(()),
                false => Err(format!("{} of {} injected", injected.len(), FAULTS.len())),
            },
        ),
        host_check("demo-plot-drawn", plotted.map_err(|e| e.to_string())),
        host_check("demo-guest-powered-off", powered_off),
    ];
    for check in &checks {
        println!("{check}");
    }
    println!(
        "The show took {:.0} s; the guest's console is in {}.",
        started.elapsed().as_secs_f64(),
        config.run_dir.display()
    );
    Ok(results::overall(&[], &checks))
}

/// Round trips through the echo at `port` until `stop`, each checked byte for
/// byte; a failed one is recorded and the connection made again.
fn round_trips(port: u16, stop: &AtomicBool) -> Vec<RoundTrip> {
    let start = Instant::now();
    let mut trips = Vec::new();
    let mut stream: Option<TcpStream> = None;
    let mut offset = 0u64;
    let mut sent = vec![0; REQUEST_BYTES];
    let mut back = vec![0; REQUEST_BYTES];
    while !stop.load(Ordering::Relaxed) {
        let at = start.elapsed();
        Pattern::new(11).fill(offset, &mut sent);
        offset += REQUEST_BYTES as u64;
        let took = (|| -> std::result::Result<Duration, String> {
            let connection = match &mut stream {
                Some(connection) => connection,
                None => {
                    let connection = TcpStream::connect(("127.0.0.1", port))
                        .map_err(|e| format!("connecting: {e}"))?;
                    connection
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .map_err(|e| e.to_string())?;
                    connection.set_nodelay(true).map_err(|e| e.to_string())?;
                    stream.insert(connection)
                }
            };
            let began = Instant::now();
            connection
                .write_all(&sent)
                .map_err(|e| format!("sending: {e}"))?;
            connection
                .read_exact(&mut back)
                .map_err(|e| format!("reading back: {e}"))?;
            let took = began.elapsed();
            match back == sent {
                true => Ok(took),
                false => Err("the answer differs from the request".to_owned()),
            }
        })();
        if took.is_err() {
            stream = None;
        }
        trips.push(RoundTrip { at, took });
        thread::sleep(PAUSE);
    }
    trips
}

/// How long a command typed at the guest's shell may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// The group's status, as `romain status e1000` prints it at the guest's shell.
fn group_status(console: &mut TypedConsole) -> Result<BTreeMap<String, String>> {
    let lines = console.ask("romain status e1000", ASK_TIMEOUT)?;
    Ok(lines
        .iter()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect())
}

/// The memory regions of replica `index` of the group, from its memory map.
fn replica_regions(console: &mut TypedConsole, index: usize) -> Result<Regions> {
    let status = group_status(console)?;
    let pids = status
        .get("replica_pids")
        .ok_or("the status names no replicas")?;
    let pid = pids
        .split(',')
        .nth(index)
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && !pid.is_empty())
        .ok_or_else(|| format!("replica {index} has no pid in {pids:?}"))?;
    let maps = console.ask(&format!("cat /proc/{pid}/maps"), ASK_TIMEOUT)?;
    Ok(Regions::parse(&maps.join("\n"), DRIVER_FILE))
}

/// The counters a fault may move, from a group status.
fn counters(status: &BTreeMap<String, String>) -> BTreeMap<&'static str, u64> {
    COUNTERS
        .iter()
        .filter_map(|&key| Some((key, status.get(key)?.parse().ok()?)))
        .collect()
}

/// What moved between two readings (`repairs +1, divergences +1`), or that
/// nothing did: the fault was masked.
fn moved(before: &BTreeMap<&str, u64>, after: &BTreeMap<&str, u64>) -> String {
    let changes: Vec<String> = COUNTERS
        .iter()
        .filter_map(|key| {
            let (was, is) = (before.get(key)?, after.get(key)?);
            (is > was).then(|| format!("{key} +{}", is - was))
        })
        .collect();
    match changes.is_empty() {
        true => "nothing (masked)".to_owned(),
        false => changes.join(", "),
    }
}

/// Every round trip, a line each: when it began (seconds since the traffic
/// began), how long it took (milliseconds), and why it failed if it did.
fn round_trips_csv(trips: &[RoundTrip]) -> String {
    let mut csv = String::from("began_s,took_ms,failure\n");
    for trip in trips {
        let _ = match &trip.took {
            Ok(took) => writeln!(
                csv,
                "{:.3},{:.3},",
                trip.at.as_secs_f64(),
                took.as_secs_f64() * 1000.0
            ),
            Err(why) => writeln!(
                csv,
                "{:.3},,{}",
                trip.at.as_secs_f64(),
                why.replace(',', ";")
            ),
        };
    }
    csv
}

/// The longest round trip that started within [`SETTLE`] of `at`.
fn longest_after(trips: &[RoundTrip], at: Duration) -> Option<Duration> {
    trips
        .iter()
        .filter(|trip| trip.at >= at && trip.at < at + SETTLE)
        .filter_map(|trip| trip.took.as_ref().ok().copied())
        .max()
}

fn first_failure(trips: &[RoundTrip]) -> Option<String> {
    trips.iter().find_map(|trip| {
        trip.took
            .as_ref()
            .err()
            .map(|why| format!("at {:.1} s: {why}", trip.at.as_secs_f64()))
    })
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// The faults, what the engine counted, and the round trips.
fn summary_table(injected: &[Injected], trips: &[RoundTrip]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "  {:>6}  {:<9} {:<34} {:<44} longest round trip in the next {} s",
        "at",
        "fault",
        "romain inject e1000 ...",
        "the engine counted",
        SETTLE.as_secs()
    );
    for fault in injected {
        let longest = longest_after(trips, fault.at).map_or_else(|| "-".to_owned(), millis);
        let _ = writeln!(
            text,
            "  {:>5.1}s  {:<9} {:<34} {:<44} {longest}",
            fault.at.as_secs_f64(),
            fault.fault.kind,
            fault.command,
            fault.moved
        );
    }
    let mut times: Vec<Duration> = trips
        .iter()
        .filter_map(|trip| trip.took.clone().ok())
        .collect();
    times.sort();
    let failed = trips.len() - times.len();
    let _ = writeln!(
        text,
        "\n  {} round trips of {REQUEST_BYTES} bytes; {} came back exact, {failed} failed.",
        trips.len(),
        times.len()
    );
    if let (Some(median), Some(p99), Some(longest)) = (
        times.get(times.len() / 2),
        times.get(times.len() * 99 / 100),
        times.last(),
    ) {
        let _ = writeln!(
            text,
            "  Round-trip time: median {}, 99th percentile {}, longest {}.",
            millis(*median),
            millis(*p99),
            millis(*longest)
        );
    }
    text
}

/// Round-trip time over time (log scale), the faults as labelled lines, failed
/// round trips as red marks at the top; a PNG at `path`.
fn plot(path: &Path, injected: &[Injected], trips: &[RoundTrip]) -> std::io::Result<()> {
    use plotters::prelude::*;

    romain_campaign::report::register_plot_font()?;
    let error = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let end = trips
        .last()
        .map_or(1.0, |trip| trip.at.as_secs_f64())
        .max(1.0);
    let longest = trips
        .iter()
        .filter_map(|trip| trip.took.as_ref().ok())
        .map(ms)
        .fold(1.0, f64::max);
    let (low, high) = (0.1, longest * 3.0);
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Round trips through romain:e1000?replicas=3 while faults go in",
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, (low..high).log_scale())
        .map_err(|e| error(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the traffic began")
        .y_desc("round-trip time (ms)")
        .draw()
        .map_err(|e| error(&e))?;
    chart
        .draw_series(trips.iter().filter_map(|trip| {
            let took = trip.took.as_ref().ok()?;
            Some(Circle::new(
                (trip.at.as_secs_f64(), ms(took).max(low)),
                2,
                RGBColor(40, 90, 180).filled(),
            ))
        }))
        .map_err(|e| error(&e))?;
    chart
        .draw_series(
            trips.iter().filter(|trip| trip.took.is_err()).map(|trip| {
                Cross::new((trip.at.as_secs_f64(), high / 1.2), 5, RED.stroke_width(2))
            }),
        )
        .map_err(|e| error(&e))?;
    for fault in injected {
        let x = fault.at.as_secs_f64();
        chart
            .draw_series(LineSeries::new(
                [(x, low), (x, high)],
                RGBColor(200, 60, 40).stroke_width(1),
            ))
            .map_err(|e| error(&e))?;
        chart
            .draw_series([Text::new(
                fault.fault.kind.to_owned(),
                (x, high / 1.6),
                ("sans-serif", 14).into_font().color(&RGBColor(200, 60, 40)),
            )])
            .map_err(|e| error(&e))?;
    }
    root.present().map_err(|e| error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_becomes_the_command_the_engine_takes() {
        let regions = Regions {
            stack: vec![(0x7ffe_0000, 0x7fff_0000)],
            heap: vec![(0x1000, 0x3000)],
            data: vec![],
            dma: vec![],
            code: vec![(0x40_0000, 0x40_2000)],
        };
        let commands: Vec<Option<String>> = FAULTS
            .iter()
            .map(|fault| fault.command(Some(&regions)))
            .collect();
        assert_eq!(
            commands,
            [
                Some("flip 1 reg rax 3".to_owned()),
                Some("flip 2 mem 0x7ffe8000 5".to_owned()),
                Some("flip 0 mem 0x2000 1".to_owned()),
                None,
                Some("flip 2 mem 0x401000 2".to_owned()),
                Some("kill 0".to_owned()),
                Some("stop 1".to_owned()),
                Some("hang 2".to_owned()),
            ],
            "a region the replica lacks skips its fault"
        );
        for command in commands.into_iter().flatten() {
            assert!(
                command.parse::<romain_scheme::Command>().is_ok(),
                "{command}"
            );
        }
        let kinds: Vec<&str> = FAULTS.iter().map(|fault| fault.kind).collect();
        for kind in romain_campaign::FaultKind::ALL {
            assert!(
                kinds.contains(&kind.name()) || kind.name() == "data",
                "the show leaves out {kind}"
            );
        }
    }

    #[test]
    fn the_counters_that_moved_are_named_and_none_is_masked() {
        let status = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let before = counters(&status(&[
            ("repairs", "1"),
            ("divergences", "2"),
            ("votes", "9"),
        ]));
        let after = counters(&status(&[
            ("repairs", "2"),
            ("divergences", "3"),
            ("votes", "99"),
        ]));
        assert_eq!(moved(&before, &after), "divergences +1, repairs +1");
        assert_eq!(moved(&after, &after), "nothing (masked)");
    }

    #[test]
    fn the_table_tells_the_faults_and_the_round_trips() {
        let trip = |at: u64, took: std::result::Result<u64, &str>| RoundTrip {
            at: Duration::from_millis(at),
            took: took.map(Duration::from_millis).map_err(str::to_owned),
        };
        let trips = [
            trip(0, Ok(4)),
            trip(5_000, Ok(900)),
            trip(7_000, Ok(5)),
            trip(9_000, Err("reading back: timed out")),
        ];
        let injected = [Injected {
            fault: FAULTS[6],
            at: Duration::from_millis(4_900),
            command: "stop 1".into(),
            moved: "hangs +1, replacements +1".into(),
        }];
        let table = summary_table(&injected, &trips);
        assert!(table.contains("stop      stop 1"), "{table}");
        assert!(table.contains("hangs +1, replacements +1"), "{table}");
        assert!(
            table.contains("900.0 ms"),
            "the stall after the fault: {table}"
        );
        assert!(
            table.contains("4 round trips of 512 bytes; 3 came back exact, 1 failed."),
            "{table}"
        );
        assert_eq!(
            first_failure(&trips).as_deref(),
            Some("at 9.0 s: reading back: timed out")
        );
        let csv = round_trips_csv(&trips);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "began_s,took_ms,failure");
        assert_eq!(lines[2], "5.000,900.000,");
        assert_eq!(lines[4], "9.000,,reading back: timed out");
    }
}
