//! Starts a program as a traced replica whose run does not depend on anything that
//! differs between otherwise identical processes (the divergence sources of the design's
//! replication engine).
//!
//! Measures, all set up before the program's first instruction:
//! - no address-space randomisation (`personality(ADDR_NO_RANDOMIZE)`);
//! - `rdtsc` faults (`PR_SET_TSC`/`PR_TSC_SIGSEGV`), so the tracer can hand every
//!   replica the same time stamp;
//! - glibc registers no rseq area, which the kernel would update per CPU;
//! - only the caller's environment and a fixed working directory;
//! - the vDSO is hidden from the C library, so clocks are read through syscalls the
//!   tracer sees, and the kernel's `AT_RANDOM` bytes are replaced by the caller's;
//! - a seccomp filter stops the replica at every syscall that reaches outside it
//!   ([`super::syscalls`]).
//!
//! The filter is installed just before the exec, so the child makes the `execve` itself:
//! std's report of a failed exec is a `write` the filter would refuse (the tracer cannot
//! ask for seccomp stops yet), so a failed exec is reported as the child's exit status.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::iter;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::Arc;

use nix::libc::{self, c_char, c_long};
use nix::sys::personality::{self, Persona};
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::syscalls::{self, Outside};
use super::tracee::{Tracee, TrapError};

/// The glibc tunable that keeps it from registering an rseq area.
pub const RSEQ_OFF_TUNABLE: &str = "glibc.pthread.rseq=0";

const GLIBC_TUNABLES: &str = "GLIBC_TUNABLES";

/// The auxiliary vector entry with the vDSO's address; the libc crate does not define it
/// for every Linux target.
const AT_SYSINFO_EHDR: u64 = 33;

const WORD: u64 = std::mem::size_of::<u64>() as u64;

/// The number of bytes `AT_RANDOM` points to.
pub const AT_RANDOM_LEN: usize = 16;

/// What to start as a replica. Every replica of a group must be started from equal
/// commands, including the `AT_RANDOM` bytes: draw those once per group.
#[derive(Clone, Debug)]
pub struct ReplicaCommand {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    current_dir: PathBuf,
    at_random: [u8; AT_RANDOM_LEN],
    process_group: Option<i32>,
    placeholder_fd: Option<RawFd>,
    /// Descriptors of the caller's the replica gets at numbers of its own.
    inherited_fds: Vec<(Arc<OwnedFd>, RawFd)>,
    /// Calls made from here are let through by the filter (a stub's site).
    filter_site: Option<u64>,
}

/// A replica stopped at its exec, before its first instruction, and the read end of its
/// standard output.
pub struct Spawned {
    pub tracee: Tracee,
    pub stdout: ChildStdout,
}

/// Why a replica did not start.
#[derive(Debug)]
pub enum SpawnError {
    /// The program could not be executed, the working directory entered, or a
    /// determinism measure set up.
    Start { program: PathBuf, source: io::Error },
    /// The program started but could not be traced or prepared at its exec stop.
    Trace(TrapError),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Start { program, source } => {
                write!(f, "cannot start {}: {source}", program.display())
            }
            SpawnError::Trace(error) => write!(f, "cannot trace the replica: {error}"),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::Start { source, .. } => Some(source),
            SpawnError::Trace(error) => Some(error),
        }
    }
}

impl From<TrapError> for SpawnError {
    fn from(error: TrapError) -> Self {
        SpawnError::Trace(error)
    }
}

impl From<nix::errno::Errno> for SpawnError {
    fn from(errno: nix::errno::Errno) -> Self {
        SpawnError::Trace(TrapError::Trace(errno))
    }
}

impl ReplicaCommand {
    /// Runs `program` with no arguments, an empty environment (but for the rseq
    /// tunable), in `/`, with all-zero `AT_RANDOM` bytes.
    pub fn new(program: impl AsRef<Path>) -> Self {
        ReplicaCommand {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: PathBuf::from("/"),
            at_random: [0; AT_RANDOM_LEN],
            process_group: None,
            placeholder_fd: None,
            inherited_fds: Vec::new(),
            filter_site: None,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    /// Adds an environment variable; `GLIBC_TUNABLES` is kept, with the rseq tunable
    /// appended.
    pub fn env(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((name.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.current_dir = dir.as_ref().to_path_buf();
        self
    }

    /// The bytes the program's C library seeds its stack protector and pointer guard from.
    pub fn at_random(&mut self, bytes: [u8; AT_RANDOM_LEN]) -> &mut Self {
        self.at_random = bytes;
        self
    }

    /// Puts the replica in process group `pgid` (0: a new group led by the replica), so
    /// a tracer can wait for exactly one group's replicas.
    pub fn process_group(&mut self, pgid: i32) -> &mut Self {
        self.process_group = Some(pgid);
        self
    }

    /// Keeps descriptor `fd` open on `/dev/null` in the replica, so no file the replica
    /// opens itself gets that number: the tracer performs the replica's operations on
    /// it instead.
    pub fn placeholder_fd(&mut self, fd: RawFd) -> &mut Self {
        self.placeholder_fd = Some(fd);
        self
    }

    /// Gives the replica `fd` (which stays the caller's) as descriptor `at`,
    /// in place of any descriptor given there before.
    pub fn inherit_fd(&mut self, fd: Arc<OwnedFd>, at: RawFd) -> &mut Self {
        self.inherited_fds.retain(|(_, number)| *number != at);
        self.inherited_fds.push((fd, at));
        self
    }

    /// Lets every call made with the instruction pointer at `site` through the
    /// filter: the replica's stub makes the calls it was told to make there.
    pub fn filter_site(&mut self, site: u64) -> &mut Self {
        self.filter_site = Some(site);
        self
    }

    /// The complete environment the program gets.
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut env = self.env.clone();
        match env.iter_mut().find(|(name, _)| name == GLIBC_TUNABLES) {
            Some((_, tunables)) => {
                tunables.push(":");
                tunables.push(RSEQ_OFF_TUNABLE);
            }
            None => env.push((GLIBC_TUNABLES.into(), RSEQ_OFF_TUNABLE.into())),
        }
        env
    }

    /// Starts the program (a path; `PATH` is not searched) traced by the calling thread,
    /// with standard input empty and standard output piped, and returns it stopped at its
    /// exec. The tracer gets a seccomp stop at each externalizing syscall.
    pub fn spawn(&self) -> Result<Spawned, SpawnError> {
        let start_error = |source| SpawnError::Start {
            program: self.program.clone(),
            source,
        };
        let image =
            ExecImage::new(&self.program, &self.args, &self.environment()).map_err(start_error)?;
        let filter = syscalls::filter(Outside::Trace, self.filter_site);
        let inherited: Vec<(RawFd, RawFd)> = self
            .inherited_fds
            .iter()
            .map(|(fd, at)| (fd.as_raw_fd(), *at))
            .collect();
        let mut command = Command::new(&self.program);
        command
            .current_dir(&self.current_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some(pgid) = self.process_group {
            command.process_group(pgid);
        }
        let placeholder = match self.placeholder_fd {
            Some(fd) => Some((File::open("/dev/null").map_err(start_error)?, fd)),
            None => None,
        };
        let hook = move || {
            if let Some((null, fd)) = &placeholder {
                // SAFETY: dup2 is a raw system call on descriptors this process owns.
                if unsafe { libc::dup2(null.as_raw_fd(), *fd) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for &(fd, at) in &inherited {
                // SAFETY: as above; dup2 leaves the copy open across exec.
                if unsafe { libc::dup2(fd, at) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            enter_deterministic_mode()?;
            syscalls::install(&filter)?;
            let error = image.exec();
            // SAFETY: _exit ends the child without running anything of the parent's.
            unsafe { libc::_exit(error.raw_os_error().unwrap_or(libc::EINVAL)) }
        };
        // SAFETY: the hook makes only raw system calls, which are async-signal-safe.
        unsafe { command.pre_exec(hook) };
        let mut child = command.spawn().map_err(start_error)?;
        let stdout = child
            .stdout
            .take()
            .expect("stdout was configured as a pipe");
        // The pid of a running child always fits.
        let pid = Pid::from_raw(child.id() as i32);
        let peek = WaitPidFlag::WEXITED | WaitPidFlag::WSTOPPED | WaitPidFlag::WNOWAIT;
        if let WaitStatus::Exited(_, errno) = waitid(Id::Pid(pid), peek)? {
            waitpid(pid, None)?;
            return Err(start_error(io::Error::from_raw_os_error(errno)));
        }
        // Without PTRACE_O_TRACEEXEC, a traced exec stops with SIGTRAP.
        let tracee = Tracee::adopt(pid, Signal::SIGTRAP)?;
        ptrace::setoptions(
            pid,
            ptrace::Options::PTRACE_O_EXITKILL | ptrace::Options::PTRACE_O_TRACESECCOMP,
        )?;
        make_auxv_deterministic(pid, &self.at_random)?;
        Ok(Spawned { tracee, stdout })
    }
}

/// The program, its arguments and environment as the NULL-terminated arrays of C strings
/// `execve` takes, built before the fork: the child may not allocate.
struct ExecImage {
    program: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// What `argv` and `envp` point into; never changed, so the pointers stay valid.
    _strings: Vec<CString>,
}

// SAFETY: the raw pointers only point into the image's own, immutable strings.
unsafe impl Send for ExecImage {}
// SAFETY: as for Send; nothing is ever written through the pointers.
unsafe impl Sync for ExecImage {}

impl ExecImage {
    fn new(program: &Path, args: &[OsString], env: &[(OsString, OsString)]) -> io::Result<Self> {
        let argv = iter::once(program.as_os_str())
            .chain(args.iter().map(OsString::as_os_str))
            .map(|arg| c_string(arg.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = env
            .iter()
            .map(|(name, value)| c_string(&[name.as_bytes(), b"=", value.as_bytes()].concat()))
            .collect::<io::Result<Vec<_>>>()?;
        let pointers = |strings: &[CString]| -> Vec<*const c_char> {
            strings
                .iter()
                .map(|string| string.as_ptr())
                .chain(iter::once(std::ptr::null()))
                .collect()
        };
        Ok(ExecImage {
            program: c_string(program.as_os_str().as_bytes())?,
            argv: pointers(&argv),
            envp: pointers(&envp),
            _strings: argv.into_iter().chain(envp).collect(),
        })
    }

    /// Replaces the calling process; returns only the reason it could not.
    fn exec(&self) -> io::Error {
        // SAFETY: every pointer is a NUL-terminated string owned by self, and both arrays
        // end with NULL.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        io::Error::last_os_error()
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "program, argument or environment contains a NUL byte",
        )
    })
}

/// Runs in the forked child before exec; both settings survive the exec.
fn enter_deterministic_mode() -> io::Result<()> {
    personality::set(personality::get()? | Persona::ADDR_NO_RANDOMIZE)?;
    // SAFETY: PR_SET_TSC takes an integer argument and changes only this thread's flags.
    let tsc = unsafe { libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV, 0, 0, 0) };
    if tsc != 0 {
        return Err(io::Error::last_os_error());
    }
    ptrace::traceme()?;
    Ok(())
}

/// At the exec stop the stack holds argc, argv, NULL, envp, NULL and then the auxiliary
/// vector; the C library reads it only once the program runs.
fn make_auxv_deterministic(pid: Pid, at_random: &[u8; AT_RANDOM_LEN]) -> Result<(), SpawnError> {
    let mut entry = auxv_start(pid)?;
    loop {
        match read_word(pid, entry)? {
            libc::AT_NULL => return Ok(()),
            AT_SYSINFO_EHDR => write_word(pid, entry, libc::AT_IGNORE)?,
            libc::AT_RANDOM => {
                let bytes = read_word(pid, entry + WORD)?;
                for (address, chunk) in (bytes..)
                    .step_by(WORD as usize)
                    .zip(at_random.chunks(WORD as usize))
                {
                    let mut word = [0; WORD as usize];
                    word.copy_from_slice(chunk);
                    write_word(pid, address, u64::from_ne_bytes(word))?;
                }
            }
            _ => {}
        }
        entry += 2 * WORD;
    }
}

fn auxv_start(pid: Pid) -> Result<u64, SpawnError> {
    let rsp = ptrace::getregs(pid)?.rsp;
    let argc = read_word(pid, rsp)?;
    let mut address = rsp + WORD * (argc + 2);
    while read_word(pid, address)? != 0 {
        address += WORD;
    }
    Ok(address + WORD)
}

fn read_word(pid: Pid, address: u64) -> Result<u64, SpawnError> {
    Ok(ptrace::read(pid, address as ptrace::AddressType)? as u64)
}

fn write_word(pid: Pid, address: u64, word: u64) -> Result<(), SpawnError> {
    Ok(ptrace::write(
        pid,
        address as ptrace::AddressType,
        word as c_long,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunables(command: &ReplicaCommand) -> Vec<OsString> {
        command
            .environment()
            .into_iter()
            .filter(|(name, _)| name == GLIBC_TUNABLES)
            .map(|(_, value)| value)
            .collect()
    }

    #[test]
    fn the_environment_is_the_callers_plus_the_rseq_tunable() {
        let mut command = ReplicaCommand::new("/bin/true");
        command.env("LANG", "C");
        assert_eq!(
            command.environment(),
            [
                (OsString::from("LANG"), OsString::from("C")),
                (
                    OsString::from(GLIBC_TUNABLES),
                    OsString::from(RSEQ_OFF_TUNABLE)
                ),
            ]
        );
    }

    #[test]
    fn callers_tunables_are_kept_and_rseq_is_appended() {
        let mut command = ReplicaCommand::new("/bin/true");
        command.env(GLIBC_TUNABLES, "glibc.malloc.check=3");
        assert_eq!(
            tunables(&command),
            ["glibc.malloc.check=3:glibc.pthread.rseq=0"]
        );
    }
}
