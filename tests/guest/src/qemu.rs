//! Booting the guest in QEMU: choosing the accelerator, assembling the command line, and
//! running QEMU under a timeout while collecting the console and serving COM2.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::provision::QEMU;
use crate::serial_peer::{Exchange, SerialPeer};
use crate::Result;
use guest_harness::protocol::GUEST_MAC_VAR;

/// The e1000's MAC address; the guest learns it from the kernel command line.
pub const GUEST_MAC: &str = "52:54:00:12:34:56";
/// Bytes of each frame the capture keeps (the longest test frame checked is 75).
const CAPTURE_MAXLEN: usize = 256;

/// The accelerator asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM if it really works here, else TCG
    Auto,
    /// Software emulation
    Tcg,
    /// Hardware virtualisation
    Kvm,
}

/// The accelerator QEMU runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl AccelChoice {
    /// Resolves `Auto` by looking at this host.
    pub fn resolve(self) -> Accel {
        match self {
            AccelChoice::Auto => {
                let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
                let kvm_pvm = Path::new("/sys/module/kvm_pvm").exists();
                let dev_kvm = Path::new("/dev/kvm").exists();
                choose_accel(&cpuinfo, kvm_pvm, dev_kvm)
            }
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Kvm => Accel::Kvm,
        }
    }
}

/// KVM needs hardware virtualisation flags; under nested PVM (kvm_pvm loaded) /dev/kvm
/// exists but guests fail with emulation errors, so that counts as no KVM.
fn choose_accel(cpuinfo: &str, kvm_pvm_loaded: bool, dev_kvm: bool) -> Accel {
    let hardware_virt = cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| {
            line.split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        });
    if hardware_virt && !kvm_pvm_loaded && dev_kvm {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// Who is on the guest's serial ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// The harness: COM1 (the console) on QEMU's stdout, read line by line;
    /// COM2 on a socket the harness answers; the NIC's frames captured.
    Harness,
    /// A person at this terminal: the console on QEMU's stdin and stdout,
    /// QEMU's monitor behind Ctrl-A (Ctrl-A X ends the guest); no COM2.
    Person,
    /// A program typing into the console through QEMU's stdin and reading its
    /// stdout; no COM2.
    Typed,
}

/// Everything that decides how the guest boots.
#[derive(Debug, Clone)]
pub struct BootConfig {
    pub serial: Serial,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub memory_mib: u32,
    pub accel: Accel,
    /// Extra kernel parameters; unknown KEY=VALUE ones become environment variables of /init.
    pub kernel_params: Vec<String>,
    /// Ports forwarded from 127.0.0.1 on the host to the same port in the guest.
    pub forwarded_ports: Vec<u16>,
    /// UDP ports forwarded the same way (the receive flood's).
    pub forwarded_udp_ports: Vec<u16>,
    /// Where the console log, COM2 output, capture and QEMU's stderr go.
    pub run_dir: PathBuf,
}

/// The processor of a guest under software emulation: QEMU's `max` without the
/// fast string instructions (ERMS, FSRM). With them the guest kernel copies to
/// and from user memory with `rep movsb`, which runs slowly under TCG:
/// measured in the guest, a 16 KiB `process_vm_readv` took 75 µs with them and
/// 17 µs without (a user-space `memcpy` of 4 KiB, 1-2 µs either way). Every
/// path copies through the kernel, Linux's own e1000 driver as much as ours, so
/// the baselines of the bench run on the same processor.
const TCG_CPU: &str = "max,-erms,-fsrm";
impl BootConfig {
    pub fn console_log(&self) -> PathBuf {
        self.run_dir.join("console.log")
    }
    pub fn com2_log(&self) -> PathBuf {
        self.run_dir.join("com2.txt")
    }
    pub fn capture(&self) -> PathBuf {
        self.run_dir.join("dump.pcap")
    }
    pub fn qemu_stderr(&self) -> PathBuf {
        self.run_dir.join("qemu-stderr.log")
    }
    fn com2_socket(&self) -> PathBuf {
        self.run_dir.join("com2.sock")
    }

    /// QEMU's machine protocol socket, for the harness to take the NIC's
    /// link down and up ([`crate::qmp`]).
    pub fn qmp_socket(&self) -> PathBuf {
        qmp_socket_in(&self.run_dir)
    }

    pub fn kernel_command_line(&self) -> String {
        let mut params = vec![
            "console=ttyS0".to_string(),
            // Reboot at once on a panic; with -no-reboot that ends QEMU instead of hanging.
            "panic=-1".to_string(),
            "quiet".to_string(),
            format!("{GUEST_MAC_VAR}={GUEST_MAC}"),
        ];
        params.extend(self.kernel_params.iter().cloned());
        params.join(" ")
    }

    pub fn command_line(&self) -> Vec<String> {
        let (accel, cpu) = match self.accel {
            Accel::Kvm => ("kvm", "host"),
            Accel::Tcg => ("tcg", TCG_CPU),
        };
        let hostfwd: String = self
            .forwarded_ports
            .iter()
            .map(|port| format!(",hostfwd=tcp:127.0.0.1:{port}-:{port}"))
            .chain(
                self.forwarded_udp_ports
                    .iter()
                    .map(|port| format!(",hostfwd=udp:127.0.0.1:{port}-:{port}")),
            )
            .collect();
        let mut args: Vec<String> = vec!["-accel", accel, "-cpu", cpu, "-m"]
            .into_iter()
            .map(String::from)
            .collect();
        args.push(self.memory_mib.to_string());
        args.extend(
            ["-smp", "1", "-nodefaults", "-display", "none", "-no-reboot"].map(String::from),
        );
        if self.serial != Serial::Person {
            args.extend(["-monitor", "none"].map(String::from));
        }
        args.extend([
            // QMP: the harness may take the NIC's link down and up.
            "-qmp".into(),
            format!(
                "unix:{},server=on,wait=off",
                option_value(&self.qmp_socket())
            ),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            self.kernel_command_line(),
        ]);
        match self.serial {
            // COM1: the console, read line by line from QEMU's stdout. COM2: a
            // socket, both ways; QEMU waits for the harness to connect.
            Serial::Harness => args.extend([
                "-serial".into(),
                "stdio".into(),
                "-chardev".into(),
                format!(
                    "socket,id=com2,path={},server=on,wait=on",
                    option_value(&self.com2_socket())
                ),
                "-serial".into(),
                "chardev:com2".into(),
            ]),
            Serial::Person => args.extend(["-serial", "mon:stdio"].map(String::from)),
            Serial::Typed => args.extend(["-serial", "stdio"].map(String::from)),
        }
        args.extend([
            // restrict=on keeps all traffic inside QEMU; hostfwd still reaches the guest.
            "-netdev".into(),
            format!("user,id=n1,restrict=on{hostfwd}"),
            "-device".into(),
            format!("e1000,netdev=n1,mac={GUEST_MAC},romfile="),
        ]);
        if self.serial == Serial::Harness {
            // The checks look at small test frames; keeping only each frame's first
            // bytes keeps the capture of a 40 MB TCP load small.
            args.extend([
                "-object".into(),
                format!(
                    "filter-dump,id=f1,netdev=n1,file={},maxlen={CAPTURE_MAXLEN}",
                    option_value(&self.capture())
                ),
            ]);
        }
        args
    }
}

/// QEMU option lists separate with commas, so a comma inside a value is doubled.
fn option_value(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// How QEMU ended.
#[derive(Debug)]
pub enum Ending {
    Exited(ExitStatus),
    /// Killed by the harness after this long.
    TimedOut(Duration),
}

/// What one boot produced.
#[derive(Debug)]
pub struct Boot {
    pub console: String,
    pub com2: Vec<u8>,
    pub ending: Ending,
    /// From starting QEMU to its exit (or the kill).
    pub elapsed: Duration,
}

/// Kills and reaps QEMU however the boot ends, so no emulator outlives the harness.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Boots the guest, hands each console line to `on_line`, and serves COM2 with `com2_script`.
pub fn boot(
    config: &BootConfig,
    timeout: Duration,
    com2_script: Vec<Exchange>,
    mut on_line: impl FnMut(&str),
) -> Result<Boot> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut qemu = start_qemu(config, Stdio::null(), Stdio::piped())?;
    let stream = connect_com2(config, &mut qemu.0, deadline)?;
    let peer = SerialPeer::start(stream, com2_script, File::create(config.com2_log())?)?;

    let stdout = qemu.0.stdout.take().ok_or("QEMU's stdout is not piped")?;
    let console_lines = read_lines(stdout);

    let mut log_file = File::create(config.console_log())?;
    let mut console = String::new();
    let ending = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // A guest that floods the console must still hit the deadline.
        let received = match remaining.is_zero() {
            true => Err(RecvTimeoutError::Timeout),
            false => console_lines.recv_timeout(remaining),
        };
        match received {
            Ok(line) => {
                writeln!(log_file, "{line}")?;
                console.push_str(&line);
                console.push('\n');
                on_line(&line);
            }
            Err(RecvTimeoutError::Disconnected) => break Ending::Exited(qemu.0.wait()?),
            Err(RecvTimeoutError::Timeout) => {
                qemu.0.kill()?;
                qemu.0.wait()?;
                break Ending::TimedOut(timeout);
            }
        }
    };
    let elapsed = start.elapsed();
    Ok(Boot {
        console,
        com2: peer.finish(),
        ending,
        elapsed,
    })
}

/// The lines `from` gives, without their line ends, as a thread reads them.
fn read_lines(from: impl Read + Send + 'static) -> Receiver<String> {
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut raw = Vec::new();
        while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw);
            if lines
                .send(line.trim_end_matches(['\r', '\n']).to_string())
                .is_err()
            {
                break;
            }
            raw.clear();
        }
    });
    received
}

/// Boots the guest with its console on this terminal ([`Serial::Person`]) and
/// waits until QEMU ends.
pub fn boot_attached(config: &BootConfig) -> Result<ExitStatus> {
    let mut qemu = start_qemu(config, Stdio::inherit(), Stdio::inherit())?;
    Ok(qemu.0.wait()?)
}

/// Starts QEMU as `config` says, its stderr into the run's log.
fn start_qemu(config: &BootConfig, stdin: Stdio, stdout: Stdio) -> Result<Running> {
    let args = config.command_line();
    log::info!("starting {QEMU} {}", shell_words(&args));
    Ok(Running(
        Command::new(QEMU)
            .args(&args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(File::create(config.qemu_stderr())?)
            .spawn()
            .map_err(|err| format!("cannot start {QEMU}: {err}"))?,
    ))
}

/// A guest whose console a program types into and reads ([`Serial::Typed`]).
pub struct TypedConsole {
    qemu: Running,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: File,
    /// Every line so far.
    pub console: String,
    /// Commands [`ask`](Self::ask)ed so far, which numbers their end markers.
    asked: usize,
}

impl TypedConsole {
    pub fn boot(config: &BootConfig) -> Result<Self> {
        let mut qemu = start_qemu(config, Stdio::piped(), Stdio::piped())?;
        let stdin = qemu.0.stdin.take().ok_or("QEMU's stdin is not piped")?;
        let stdout = qemu.0.stdout.take().ok_or("QEMU's stdout is not piped")?;
        Ok(Self {
            qemu,
            stdin,
            lines: read_lines(stdout),
            log: File::create(config.console_log())?,
            console: String::new(),
            asked: 0,
        })
    }

    /// Waits for a console line `wanted` accepts and returns it with the lines
    /// before it (since the last wait); every line goes to `on_line` too.
    pub fn wait_for(
        &mut self,
        wanted: impl Fn(&str) -> bool,
        timeout: Duration,
        mut on_line: impl FnMut(&str),
    ) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(remaining) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no such console line within {timeout:?}").into())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the guest's console closed (QEMU ended)".into())
                }
            };
            writeln!(self.log, "{line}")?;
            self.console.push_str(&line);
            self.console.push('\n');
            on_line(&line);
            let found = wanted(&line);
            seen.push(line);
            if found {
                return Ok(seen);
            }
        }
    }

    /// Types `command` at the guest's shell and returns the lines it printed:
    /// it is typed with a marker echoed after it, and the lines between the
    /// typed line and the marker's are the command's.
    pub fn ask(&mut self, command: &str, timeout: Duration) -> Result<Vec<String>> {
        self.asked += 1;
        let done = format!("harness: done {}", self.asked);
        self.type_line(&format!("{command}; echo {done}"))?;
        let lines = self.wait_for(|line| line == done, timeout, |_| {})?;
        let typed = lines
            .iter()
            .position(|line| line.contains(&format!("echo {done}")))
            .map_or(0, |at| at + 1);
        Ok(lines[typed..lines.len() - 1].to_vec())
    }

    /// Types `line` and Enter into the console.
    pub fn type_line(&mut self, line: &str) -> Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes())?;
        self.stdin.flush()?;
        Ok(())
    }

    /// Powers the guest off from its shell and waits a minute for QEMU to
    /// end: whether it did, as a check's result.
    pub fn power_off(mut self) -> Result<std::result::Result<(), String>> {
        self.type_line("poweroff -f")?;
        Ok(match self.finish(Duration::from_secs(60))? {
            Ending::Exited(_) => Ok(()),
            Ending::TimedOut(after) => Err(format!("still running {after:?} after poweroff")),
        })
    }

    /// Waits up to `timeout` for QEMU to end (the guest powered off), logging
    /// what the console still says; kills it after that.
    fn finish(mut self, timeout: Duration) -> Result<Ending> {
        let deadline = Instant::now() + timeout;
        // Returns when the console closes, which QEMU does as it exits.
        let _ = self.wait_for(|_| false, timeout, |_| {});
        loop {
            if let Some(status) = self.qemu.0.try_wait()? {
                return Ok(Ending::Exited(status));
            }
            if Instant::now() >= deadline {
                self.qemu.0.kill()?;
                self.qemu.0.wait()?;
                return Ok(Ending::TimedOut(timeout));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// QEMU creates the COM2 socket and does not start the guest until someone connects.
fn connect_com2(config: &BootConfig, qemu: &mut Child, deadline: Instant) -> Result<UnixStream> {
    let socket = config.com2_socket();
    loop {
        match UnixStream::connect(&socket) {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                if let Some(status) = qemu.try_wait()? {
                    let stderr = fs::read_to_string(config.qemu_stderr()).unwrap_or_default();
                    return Err(
                        format!("QEMU exited ({status}) before COM2 was up: {stderr}").into(),
                    );
                }
                if Instant::now() > deadline {
                    return Err(
                        format!("cannot connect to COM2 at {}: {err}", socket.display()).into(),
                    );
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The arguments as one line a shell would accept, for the log.
fn shell_words(args: &[String]) -> String {
    let quote = |arg: &String| {
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:/=+@".contains(c);
        if !arg.is_empty() && arg.chars().all(plain) {
            arg.clone()
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    };
    args.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// Where a run in `run_dir` has QEMU's machine protocol socket.
pub fn qmp_socket_in(run_dir: &Path) -> PathBuf {
    run_dir.join("qmp.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BootConfig {
        BootConfig {
            serial: Serial::Harness,
            kernel: "/cache/vmlinuz".into(),
            initrd: "/run/initramfs.cpio.gz".into(),
            memory_mib: 512,
            accel: Accel::Tcg,
            kernel_params: vec!["RUST_LOG=debug".into()],
            forwarded_ports: vec![],
            forwarded_udp_ports: vec![],
            run_dir: "/run/a,b".into(),
        }
    }

    #[test]
    fn command_line_is_the_documented_one() {
        assert_eq!(
            shell_words(&config().command_line()),
            "-accel tcg -cpu max,-erms,-fsrm -m 512 -smp 1 -nodefaults -display none -no-reboot \
             -monitor none -qmp unix:/run/a,,b/qmp.sock,server=on,wait=off \
             -kernel /cache/vmlinuz -initrd /run/initramfs.cpio.gz \
             -append 'console=ttyS0 panic=-1 quiet GUEST_MAC=52:54:00:12:34:56 RUST_LOG=debug' \
             -serial stdio -chardev socket,id=com2,path=/run/a,,b/com2.sock,server=on,wait=on \
             -serial chardev:com2 -netdev user,id=n1,restrict=on \
             -device e1000,netdev=n1,mac=52:54:00:12:34:56,romfile= \
             -object filter-dump,id=f1,netdev=n1,file=/run/a,,b/dump.pcap,maxlen=256"
        );
    }

    #[test]
    fn a_person_gets_the_console_and_the_monitor_and_a_typing_program_the_console_alone() {
        let mut config = config();
        config.serial = Serial::Person;
        let person = shell_words(&config.command_line());
        assert!(person.contains(" -no-reboot -qmp "), "{person}");
        assert!(person.contains(" -serial mon:stdio -netdev "), "{person}");
        config.serial = Serial::Typed;
        let typed = shell_words(&config.command_line());
        assert!(typed.contains(" -monitor none "), "{typed}");
        assert!(typed.contains(" -serial stdio -netdev "), "{typed}");
        for line in [person, typed] {
            assert!(
                !line.contains("com2") && !line.contains("filter-dump"),
                "{line}"
            );
        }
    }

    #[test]
    fn memory_kvm_and_forwarded_ports_change_their_options() {
        let mut config = config();
        config.memory_mib = 256;
        config.accel = Accel::Kvm;
        config.forwarded_ports = vec![8080, 9000];
        let line = config.command_line().join(" ");
        assert!(line.starts_with("-accel kvm -cpu host -m 256 "), "{line}");
        assert!(
            line.contains(
                "user,id=n1,restrict=on,hostfwd=tcp:127.0.0.1:8080-:8080,hostfwd=tcp:127.0.0.1:9000-:9000 "
            ),
            "{line}"
        );
    }

    #[test]
    fn kvm_only_with_virtualisation_flags_a_kvm_device_and_no_pvm() {
        let vmx = "processor\t: 0\nflags\t\t: fpu vme vmx sse\n";
        let svm = "flags\t\t: fpu svm\n";
        let none = "flags\t\t: fpu vme sse\nmodel name\t: vmx-like name\n";
        assert_eq!(choose_accel(vmx, false, true), Accel::Kvm);
        assert_eq!(choose_accel(svm, false, true), Accel::Kvm);
        assert_eq!(choose_accel(vmx, true, true), Accel::Tcg, "nested PVM");
        assert_eq!(choose_accel(vmx, false, false), Accel::Tcg, "no /dev/kvm");
        assert_eq!(choose_accel(none, false, true), Accel::Tcg, "no flags");
    }

    #[test]
    fn explicit_accelerators_are_kept() {
        assert_eq!(AccelChoice::Tcg.resolve(), Accel::Tcg);
        assert_eq!(AccelChoice::Kvm.resolve(), Accel::Kvm);
    }
}
