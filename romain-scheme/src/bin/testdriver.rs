//! `romain-testdriver`: a stand-in driver for the supervisor's tests and for
//! trying the supervisor out without hardware. It serves a scheme that answers
//! every open (so the heartbeat sees it alive), or exits at once; or counts its
//! starts in its state store; or, for the replication engine's benchmark, makes
//! externalization events on request.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::SchemeDaemon;
use syscall::error::Result;
use syscall::schemev2::NewFdFlags;

#[derive(Parser)]
#[command(
    version,
    about = "A stand-in driver for romain: serves a scheme that answers every open, or exits at once"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve scheme NAME until killed.
    Serve { name: String },
    /// Serve scheme NAME as `serve` does, having counted this start in the
    /// driver's state store (key `starts`); reading a handle gives `starts=<n>`.
    Remember { name: String },
    /// Exit at once with CODE, like a driver that fails at start-up.
    Exit { code: u8 },
    /// Serve scheme NAME, where writing `<kind> <count>` to a handle makes `count`
    /// events of one kind: `port` (an `in` from port 0x80), `syscall` (a getppid),
    /// `mmio` (a 32-bit load from the device window), `client` (open the --client
    /// path, write one byte, close), `shared` (add one to the counter at the start of
    /// the --shared path's memory, mapped once), `witness` (read the --shared
    /// handle, which stores a number in the memory's second word and answers it,
    /// and fail with EIO unless the memory holds it), `held` (hold a call that
    /// appends one byte to the --client queue, the next of `abc...z` in the
    /// driver's memory after the marker `held bytes:`, for the reply), `none`;
    /// `exit <code>` ends the driver with that status. Runs under the replication engine, which
    /// traps each event.
    #[cfg(target_os = "linux")]
    Events {
        name: String,
        /// Where to keep the device window: a page left without access rights, so
        /// every load there faults to the engine.
        #[arg(long, value_parser = parse_hex)]
        window: u64,
        /// The scheme path `client` events write to.
        #[arg(long, default_value = "testbed:queue/events")]
        client: String,
        /// The scheme path whose memory `shared` events count in.
        #[arg(long, default_value = "testbed:shared")]
        shared: String,
    },
}

#[cfg(target_os = "linux")]
fn parse_hex(text: &str) -> std::result::Result<u64, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    u64::from_str_radix(digits, 16).map_err(|_| format!("{text:?} is not a hex address"))
}

/// Answers every open with a fresh handle. Writing `<kind> <count>` to one makes
/// events (see [`Mode::Events`]); `mmio` events need the device window.
#[derive(Default)]
struct Alive {
    opened: usize,
    /// `remember`: the starts counted, this one included.
    starts: Option<u64>,
    #[cfg(target_os = "linux")]
    events: Option<events::Events>,
}

impl SchemeSync for Alive {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(0)
    }

    fn openat(
        &mut self,
        _fd: usize,
        _path: &str,
        _flags: usize,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        self.opened += 1;
        Ok(OpenResult::ThisScheme {
            number: self.opened,
            flags: NewFdFlags::empty(),
        })
    }

    fn read(
        &mut self,
        _id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        // Without `remember` there is nothing to read: the request is wrong,
        // the handle is not (tests tell a live driver by this answer).
        let starts = self
            .starts
            .ok_or(syscall::error::Error::new(syscall::error::EINVAL))?;
        let text = format!("starts={starts}\n");
        Ok(scheme_runtime::copy_at_offset(text.as_bytes(), offset, buf))
    }

    #[cfg(target_os = "linux")]
    fn write(
        &mut self,
        _id: usize,
        buf: &[u8],
        _offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        let events = self.events.as_mut();
        events
            .ok_or(syscall::error::Error::new(syscall::error::EINVAL))?
            .make(buf)?;
        Ok(buf.len())
    }
}

impl SchemeDaemon for Alive {}

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let command = Cli::parse().command;
    // Started as a standby, it waits here until it takes over, as a driver does.
    scheme_runtime::standby::wait_if_standby();
    let served = match command {
        Mode::Serve { name } => scheme_runtime::serve(&name, &mut Alive::default()),
        Mode::Remember { name } => {
            let mut alive = Alive {
                starts: Some(count_start()),
                ..Alive::default()
            };
            scheme_runtime::serve(&name, &mut alive)
        }
        Mode::Exit { code } => {
            log::info!("exiting with {code}, as told");
            return ExitCode::from(code);
        }
        #[cfg(target_os = "linux")]
        Mode::Events {
            name,
            window,
            client,
            shared,
        } => events::map_window(window).and_then(|window| {
            let mut alive = Alive {
                events: Some(events::Events::new(window, client, shared)),
                ..Alive::default()
            };
            scheme_runtime::serve(&name, &mut alive)
        }),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("romain-testdriver: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Adds this start to the count in the state store; a store that cannot be
/// read counts from nothing, as a driver's first start does.
fn count_start() -> u64 {
    let store = scheme_runtime::StateStore::from_env();
    let before = store
        .restore("starts")
        .and_then(|value| String::from_utf8(value).ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let starts = before + 1;
    store.publish("starts", starts.to_string().as_bytes());
    log::info!("start {starts}");
    starts
}

#[cfg(target_os = "linux")]
mod events {
    use std::io;
    use std::num::NonZeroUsize;
    use std::ptr::NonNull;

    use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
    use scheme_runtime::{Handle, Mapping};
    use scheme_testbed::CALL_APPEND;
    use syscall::error::{Error, Result, EINVAL, EIO};
    use syscall::flag::O_RDWR;

    /// The port the `port` events read: the POST diagnostic port, which nothing
    /// answers; under the engine the read never reaches a device anyway.
    const PORT: u16 = 0x80;

    /// What the `held` events' bytes follow in the driver's memory, so that a
    /// test finds them there.
    pub const HELD_MARK: &[u8] = b"held bytes:";
    const HELD_BYTES: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

    /// What the events reach.
    pub struct Events {
        window: NonNull<u32>,
        client: String,
        shared: String,
        /// The `shared` path's handle and memory, once mapped.
        memory: Option<(Handle, Mapping)>,
        /// The `client` path's handle the `held` events keep, once opened.
        held_client: Option<Handle>,
        /// [`HELD_MARK`], then the bytes the `held` events append in turn.
        held_bytes: Vec<u8>,
        held_so_far: usize,
    }

    impl Events {
        pub fn new(window: NonNull<u32>, client: String, shared: String) -> Self {
            Self {
                window,
                client,
                shared,
                memory: None,
                held_client: None,
                held_bytes: [HELD_MARK, HELD_BYTES].concat(),
                held_so_far: 0,
            }
        }

        /// Makes the events `request` (`<kind> <count>`) asks for.
        pub fn make(&mut self, request: &[u8]) -> Result<()> {
            let text = std::str::from_utf8(request).map_err(|_| Error::new(EINVAL))?;
            let (kind, count) = text.split_once(' ').ok_or(Error::new(EINVAL))?;
            let count: usize = count.trim().parse().map_err(|_| Error::new(EINVAL))?;
            let mut sum = 0_u64;
            for _ in 0..count {
                sum = sum.wrapping_add(match kind {
                    "port" => read_port(),
                    // SAFETY: getppid has no arguments and no memory effects.
                    "syscall" => (unsafe { nix::libc::getppid() }) as u64,
                    // SAFETY: the window stays mapped (without access rights) for
                    // the process's life; the engine performs the load.
                    "mmio" => u64::from(unsafe { self.window.as_ptr().read_volatile() }),
                    "client" => write_through(&self.client)?,
                    "shared" => self.count_in_shared_memory()?,
                    "witness" => self.witness_a_device_write()?,
                    "held" => self.hold_an_append()?,
                    // The driver ends on its own, as a driver that gives up does.
                    "exit" => std::process::exit(count as i32),
                    "none" => 0,
                    _ => return Err(Error::new(EINVAL)),
                });
            }
            std::hint::black_box(sum);
            Ok(())
        }

        /// The `shared` path's handle and its page, mapped at the first use.
        fn shared_memory(&mut self) -> Result<&(Handle, Mapping)> {
            if self.memory.is_none() {
                let handle = Handle::open(&self.shared, O_RDWR).map_err(|error| {
                    log::warn!("{}: {error}", self.shared);
                    Error::new(EIO)
                })?;
                let mapping = handle.mmap(0, 4096, true).map_err(|error| {
                    log::warn!("mapping {}: {error}", self.shared);
                    Error::new(EIO)
                })?;
                self.memory = Some((handle, mapping));
            }
            Ok(self.memory.as_ref().expect("mapped above"))
        }

        /// Holds a call that appends the next of the held bytes to the
        /// `client` queue: it goes out with the reply.
        fn hold_an_append(&mut self) -> Result<u64> {
            if self.held_client.is_none() {
                let handle = Handle::open(&self.client, O_RDWR).map_err(|error| {
                    log::warn!("{}: {error}", self.client);
                    Error::new(EIO)
                })?;
                self.held_client = Some(handle);
            }
            let client = self.held_client.as_ref().expect("opened above");
            let at = HELD_MARK.len() + self.held_so_far % HELD_BYTES.len();
            self.held_so_far += 1;
            let mut payload = [self.held_bytes[at]];
            client
                .call_held(&mut payload, &[CALL_APPEND])
                .map_err(|error| {
                    log::warn!("holding an append to {}: {error}", self.client);
                    Error::new(EIO)
                })?;
            Ok(1)
        }

        fn count_in_shared_memory(&mut self) -> Result<u64> {
            let counter = self.shared_memory()?.1.as_ptr().cast::<u32>();
            // SAFETY: the mapping is a page, writable, and lives as long as self.
            unsafe { counter.write_volatile(counter.read_volatile().wrapping_add(1)) };
            Ok(1)
        }

        /// Asks the device for a write into the memory, as a driver reads an
        /// interrupt cause, and looks for it there, as the driver then looks at
        /// its ring.
        fn witness_a_device_write(&mut self) -> Result<u64> {
            let (handle, mapping) = self.shared_memory()?;
            let mut told = [0; 4];
            handle.read(&mut told).map_err(|error| {
                log::warn!("reading the shared memory's handle: {error}");
                Error::new(EIO)
            })?;
            // SAFETY: the mapping is a page and lives as long as self.
            let found = unsafe { mapping.as_ptr().cast::<u32>().add(1).read_volatile() };
            let told = u32::from_le_bytes(told);
            if found != told {
                log::warn!("the device said it wrote {told}, the memory holds {found}");
                return Err(Error::new(EIO));
            }
            Ok(1)
        }
    }

    /// Opens `path` as a client, writes one byte and closes it.
    fn write_through(path: &str) -> Result<u64> {
        let failed = |error: std::io::Error| {
            log::warn!("{path}: {error}");
            Error::new(EIO)
        };
        let handle = Handle::open(path, O_RDWR).map_err(failed)?;
        let written = handle.write(b"x").map_err(failed)?;
        handle.close().map_err(failed)?;
        Ok(written as u64)
    }

    fn read_port() -> u64 {
        let value: u8;
        // SAFETY: without port rights the instruction faults to the engine, which
        // performs it; it touches no memory.
        unsafe {
            std::arch::asm!("in al, dx", in("dx") PORT, out("al") value, options(nomem, nostack, preserves_flags));
        }
        u64::from(value)
    }

    /// Maps one page at `address` without access rights: the device window.
    pub fn map_window(address: u64) -> io::Result<NonNull<u32>> {
        let page = NonZeroUsize::new(4096).expect("non-zero");
        // SAFETY: a fresh anonymous mapping at an address nothing else uses.
        let mapped = unsafe {
            mmap_anonymous(
                NonZeroUsize::new(address as usize),
                page,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED_NOREPLACE,
            )
        }?;
        Ok(mapped.cast())
    }
}
