//! `guest-harness run` (what `make run` runs): a guest you can use. Its /init
//! boots the image's own init units, taken from `filesystem.toml` (the policy,
//! the registry and the units go into the guest as the image writes them), so
//! `mmio`, `dma`, `romain` and `romain up e1000 --replicas 3` come up as on
//! Redox; the guest's TCP/IP then goes through the replicated driver, a web page
//! and a TCP echo are served through it, reachable from the host on 127.0.0.1,
//! and the console is a shell.
//!
//! With `--check` nobody sits at the console: the harness types into it, and
//! checks from the host that the page and the echo work through the forwards
//! while faults go into a replica, and that `romain top` draws the group.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use guest_harness::protocol::Summary;
use guest_net::pattern::Pattern;

use crate::programs::{self, GuestProgram, Purpose, Workspace};
use crate::qemu::{self, Accel, BootConfig, Serial, TypedConsole};
use crate::results::{self, host_check, HARNESS_SUMMARY_LABEL};
use crate::{initramfs, provision, Result};

/// What the image installs (its recipes' programs), and what the guest of
/// `make run` needs besides: the bridge that puts Linux's TCP/IP on the
/// driver's scheme, and the runner of the init units.
const RUN_PROGRAMS: [GuestProgram; 7] = [
    image_program("mmio-scheme", "mmio"),
    image_program("dma-scheme", "dma"),
    image_program("romain-scheme", "romain"),
    image_program("e1000", "e1000"),
    image_program("uart16550", "uart16550"),
    image_program("guest-net", "tap-bridge"),
    image_program("guest-harness", "image-init"),
];

const fn image_program(package: &'static str, bin: &'static str) -> GuestProgram {
    GuestProgram {
        package,
        bin,
        purpose: Purpose::Helper,
    }
}

/// The line /init prints once the services are up.
pub const READY: &str = "guest-run: ready";
/// The line /init prints when the network did not come up.
pub const NOT_READY: &str = "guest-run: FAILED";
/// What the page says, which the check looks for.
const PAGE_MARKER: &str = "romain:e1000?replicas=3";
/// Bytes the check sends through the echo, in blocks.
const ECHO_BYTES: usize = 64 * 1024;
const ECHO_BLOCK: usize = 1024;
/// The faults typed into the console while the echo runs, at even spaces.
const FAULTS: [&str; 2] = [
    "romain inject e1000 kill 1",
    "romain inject e1000 flip 2 reg rax 3",
];

/// How the guest is booted.
pub struct RunOptions<'a> {
    pub workspace: &'a Workspace,
    pub web_port: u16,
    pub echo_port: u16,
    pub memory_mib: u32,
    pub accel: Accel,
    pub kernel_params: &'a [String],
    pub run_dir: &'a Path,
}

/// The guest's host ports: those asked for when a person uses them, free
/// ones when a program does (it must not collide with a `make run` left up).
pub fn ports(options: &RunOptions, serial: Serial) -> Result<(u16, u16)> {
    Ok(match serial {
        Serial::Person => (options.web_port, options.echo_port),
        Serial::Harness | Serial::Typed => (free_port()?, free_port()?),
    })
}

/// Boots the guest: for a person, until they end it; or, with `check` (a
/// timeout), checked.
pub fn run(options: &RunOptions, check: Option<Duration>) -> Result<Summary> {
    let serial = match check {
        Some(_) => Serial::Typed,
        None => Serial::Person,
    };
    let (web_port, echo_port) = ports(options, serial)?;
    let config = prepare(options, serial, web_port, echo_port)?;
    let Some(timeout) = check else {
        println!(
            "Booting the guest (under software emulation the replicated e1000 takes a \
             minute or two to come up). Then:\n  \
             http://127.0.0.1:{web_port}/        the page, served through romain:e1000?replicas=3\n  \
             nc 127.0.0.1 {echo_port}            a TCP echo, through the same driver\n  \
             romain top, romain inject ...   at the guest's shell\n\
             Ctrl-A X ends the guest (exit or poweroff -f at its shell too)."
        );
        let status = qemu::boot_attached(&config)?;
        println!(
            "QEMU ended ({status}); its log is in {}",
            options.run_dir.display()
        );
        return Ok(Summary {
            passed: usize::from(status.success()),
            failed: usize::from(!status.success()),
        });
    };
    self::check(&config, web_port, echo_port, timeout)
}

/// Provisions, builds the image's programs, packs the image's files and the
/// guest's own into an initramfs, and says how to boot it.
pub fn prepare(
    options: &RunOptions,
    serial: Serial,
    web_port: u16,
    echo_port: u16,
) -> Result<BootConfig> {
    let guest_dir = options.workspace.target_dir.join("guest");
    let script = options.workspace.root.join("tests/guest/provision.sh");
    let kernel = provision::provision(&script, &guest_dir.join("kernel"))?;
    let programs = programs::build(options.workspace, &RUN_PROGRAMS)?;
    let config_path = options.workspace.root.join("filesystem.toml");
    let files = image_config::files(&fs::read_to_string(&config_path)?)?;
    let initrd = options.run_dir.join("initramfs.cpio.gz");
    let extra = guest_files(web_port, echo_port);
    initramfs::write_image(
        &initramfs::ImageContents {
            busybox: Path::new(provision::BUSYBOX),
            programs: &programs,
            modules: &kernel.modules,
            files: &files,
            extra: &extra,
        },
        &initrd,
    )?;
    Ok(BootConfig {
        serial,
        kernel: kernel.vmlinuz,
        initrd,
        memory_mib: options.memory_mib,
        accel: options.accel,
        kernel_params: [
            options.kernel_params,
            &[
                format!("WEB_PORT={web_port}"),
                format!("ECHO_PORT={echo_port}"),
            ],
        ]
        .concat(),
        forwarded_ports: vec![web_port, echo_port],
        forwarded_udp_ports: vec![],
        run_dir: options.run_dir.to_owned(),
    })
}

/// The guest's own files: the page, its live status, the shell's profile.
fn guest_files(web_port: u16, echo_port: u16) -> Vec<(String, u32, Vec<u8>)> {
    let page = format!(
        "<!doctype html>\n<title>Replicated e1000</title>\n\
         <h1>Served through {PAGE_MARKER}</h1>\n\
         <p>This page left the guest through three replicas of the e1000 driver, \
         voting on every effect under romain's engine. Break one at the guest's shell \
         (<code>romain inject e1000 kill 1</code>) and reload.</p>\n\
         <p><a href=\"/cgi-bin/status\">The group's status, live</a></p>\n"
    );
    let status = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
                  /usr/bin/romain top --once --interval-ms 500\necho\n\
                  /usr/bin/romain status e1000\n";
    let profile = "export PS1='guest# '\n";
    let motd = format!(
        "\nThe image's init units started mmio:, dma:, romain: and the e1000 driver as 3 \
         voting replicas.\n  romain top                       every group, live (q quits)\n  \
         romain inject e1000 kill 1       break a replica (also: stop, hang, flip 1 reg rax 3)\n  \
         /var/log/<unit>.log              each unit's log\n\
         From the host: http://127.0.0.1:{web_port}/ and nc 127.0.0.1 {echo_port}. \
         poweroff -f (or Ctrl-A X) ends the guest.\n\n"
    );
    vec![
        ("/www/index.html".into(), 0o644, page.into_bytes()),
        (
            "/www/cgi-bin/status".into(),
            0o755,
            status.as_bytes().to_vec(),
        ),
        ("/etc/profile".into(), 0o644, profile.as_bytes().to_vec()),
        ("/etc/motd".into(), 0o644, motd.into_bytes()),
    ]
}

/// A TCP port nobody on this host listens on now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Boots with a typed console and checks the guest from the host.
fn check(config: &BootConfig, web_port: u16, echo_port: u16, timeout: Duration) -> Result<Summary> {
    let mut console = TypedConsole::boot(config)?;
    let show = |line: &str| log::info!("guest | {line}");
    let mut checks = Vec::new();
    let ready = console.wait_for(
        |line| line.starts_with(READY) || line.starts_with(NOT_READY),
        timeout,
        show,
    );
    let up = match ready {
        Ok(lines) if lines.last().is_some_and(|line| line.starts_with(READY)) => Ok(()),
        Ok(lines) => Err(lines.last().cloned().unwrap_or_default()),
        Err(why) => Err(why.to_string()),
    };
    let booted = up.is_ok();
    checks.push(host_check("run-image-units-bring-up-the-network", up));
    if booted {
        checks.push(host_check(
            "run-page-through-the-forward",
            http_get(web_port, "/").and_then(|page| contains(&page, PAGE_MARKER)),
        ));
        checks.push(host_check(
            "run-echo-through-the-forward-while-faults-go-into-a-replica",
            echo_with_faults(&mut console, echo_port),
        ));
        checks.push(host_check(
            "run-status-page-shows-the-group",
            http_get(web_port, "/cgi-bin/status").and_then(|page| contains(&page, "e1000")),
        ));
        checks.push(host_check(
            "run-romain-top-draws-the-group",
            top_frame(&mut console),
        ));
        checks.push(host_check(
            "run-romain-top-live-on-the-serial-console",
            top_live(&mut console),
        ));
    }
    // What the units and the bridge said, into the console log.
    let _ = console.ask("tail -n 30 /var/log/*.log", Duration::from_secs(30));
    checks.push(host_check("run-guest-powered-off", console.power_off()?));
    for check in &checks {
        println!("{check}");
    }
    let summary = results::overall(&[], &checks);
    println!(
        "artifacts: {} (console.log, qemu-stderr.log)",
        config.run_dir.display()
    );
    println!("{}", summary.format(HARNESS_SUMMARY_LABEL));
    Ok(summary)
}

fn contains(text: &str, wanted: &str) -> std::result::Result<(), String> {
    match text.contains(wanted) {
        true => Ok(()),
        false => Err(format!("no {wanted:?} in {text:?}")),
    }
}

/// The body of `GET path` from the guest's web server, if it answered 200.
fn http_get(port: u16, path: &str) -> std::result::Result<String, String> {
    let fetch = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: guest\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    let answer = fetch().map_err(|e| format!("GET {path}: {e}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    match head.lines().next() {
        Some(status) if status.contains(" 200") => Ok(body.to_owned()),
        status => Err(format!("GET {path}: answered {status:?}")),
    }
}

/// Sends [`ECHO_BYTES`] through the echo a block at a time, each block read
/// back before the next, typing the [`FAULTS`] into the console on the way;
/// every byte must come back as sent.
fn echo_with_faults(console: &mut TypedConsole, port: u16) -> std::result::Result<(), String> {
    let failed = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| failed("connecting", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| failed("timeout", e))?;
    let mut sent = vec![0; ECHO_BYTES];
    Pattern::new(7).fill(0, &mut sent);
    let blocks = ECHO_BYTES / ECHO_BLOCK;
    let fault_every = blocks / (FAULTS.len() + 1);
    let mut faults = FAULTS.iter();
    for (i, block) in sent.chunks(ECHO_BLOCK).enumerate() {
        if i > 0 && i % fault_every == 0 {
            if let Some(fault) = faults.next() {
                console.type_line(fault).map_err(|e| e.to_string())?;
            }
        }
        stream.write_all(block).map_err(|e| failed("sending", e))?;
        let mut back = vec![0; block.len()];
        stream
            .read_exact(&mut back)
            .map_err(|e| failed(&format!("reading block {i} back"), e))?;
        if back != block {
            return Err(format!("block {i} came back changed"));
        }
    }
    Ok(())
}

/// Types `romain top --once` and checks the frame: the e1000 group running
/// as 3 replicas, the faults typed in counted.
fn top_frame(console: &mut TypedConsole) -> std::result::Result<(), String> {
    let lines = console
        .ask("romain top --once", Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    let frame: Vec<&String> = lines
        .iter()
        .skip_while(|line| !line.starts_with("romain top:"))
        .collect();
    for line in &frame {
        println!("  romain top | {line}");
    }
    let row = frame
        .iter()
        .find(|line| line.starts_with("e1000 "))
        .ok_or_else(|| format!("no e1000 row in {frame:?}"))?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    // DRIVER STATE N PIDS EVENTS/S VOTES DIVERGED REPAIRED REPLACED HANGS INJECTED ...
    // A rate needs the engine's counters twice: it answers while idle too.
    let rate = cells.get(4).and_then(|rate| rate.parse::<f64>().ok());
    let injected: u64 = cells.get(10).and_then(|n| n.parse().ok()).unwrap_or(0);
    match (cells.get(1), cells.get(2)) {
        (Some(&"running"), Some(&"3")) if rate.is_some() && injected >= FAULTS.len() as u64 => {
            Ok(())
        }
        _ => Err(format!("the row says {row:?}")),
    }
}

/// Starts the live `romain top` at the console (a serial line, whose size
/// the terminal does not know), waits for it to draw the group, and quits it
/// with `q`: the shell must come back.
fn top_live(console: &mut TypedConsole) -> std::result::Result<(), String> {
    const BACK: &str = "guest-run: top-left";
    console
        .type_line("romain top --interval-ms 500")
        .map_err(|e| e.to_string())?;
    let drawn = console.wait_for(
        |line| line.contains("e1000   running  3"),
        Duration::from_secs(30),
        |_| {},
    );
    // Quit whatever happened, so the shell takes the next line. What is typed
    // before top has left raw mode is top's to read, and a prompt ends no
    // line: give it time to leave before typing on.
    console.type_line("q").map_err(|e| e.to_string())?;
    drawn.map_err(|e| format!("no frame with the group: {e}"))?;
    std::thread::sleep(Duration::from_secs(2));
    console
        .type_line(&format!("echo {BACK}"))
        .map_err(|e| e.to_string())?;
    console
        .wait_for(|line| line == BACK, Duration::from_secs(30), |_| {})
        .map_err(|e| format!("the shell did not come back after q: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_config::init_unit;

    /// The programs the image's units and registry start, by file name.
    fn started_by_the_image() -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let files = image_config::files(&fs::read_to_string(root.join("filesystem.toml")).unwrap())
            .unwrap();
        let mut started: Vec<String> = init_unit::units(&files)
            .unwrap()
            .into_values()
            .map(|unit| unit.service.cmd)
            .collect();
        let registry = image_config::file(&files, "/etc/romain/drivers.toml").unwrap();
        let registry: toml::Table = registry.data.parse().unwrap();
        for driver in registry["driver"].as_table().unwrap().values() {
            let binary = driver["binary"].as_str().unwrap();
            started.push(binary.rsplit('/').next().unwrap().to_owned());
        }
        started
    }

    #[test]
    fn the_run_guest_has_every_program_the_image_starts() {
        let installed: Vec<&str> = RUN_PROGRAMS.iter().map(|program| program.bin).collect();
        for program in started_by_the_image() {
            assert!(
                installed.contains(&program.as_str()),
                "the image starts {program}, which the run guest lacks"
            );
        }
    }

    #[test]
    fn the_page_and_the_faults_are_what_the_check_looks_for() {
        let files = guest_files(8080, 8007);
        let page = String::from_utf8(files[0].2.clone()).unwrap();
        assert!(page.contains(PAGE_MARKER));
        assert_eq!(files[1].0, "/www/cgi-bin/status");
        assert_eq!(files[1].1, 0o755, "a CGI script runs");
        for fault in FAULTS {
            assert!(
                fault.parse::<romain_scheme::Command>().is_err(),
                "typed at a shell, not a bare command"
            );
            let command = fault.strip_prefix("romain inject e1000 ").unwrap();
            assert!(
                command.parse::<romain_scheme::Command>().is_ok(),
                "{command}"
            );
        }
        assert!(ECHO_BYTES / ECHO_BLOCK > FAULTS.len() + 1);
    }
}
