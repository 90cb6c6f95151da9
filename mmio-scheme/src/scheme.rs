//! The `mmio:` scheme: opens register windows for drivers the policy grants,
//! and serves their accesses.
//!
//! The policy decides at open time, when the caller's uid is known (a `call`
//! carries no uid); a handle then carries the grant, as a capability. A caller
//! whose rule does not list `mmio` in its `schemes` opens no registers at all,
//! and uid 0 acting for a driver (`?label=`) is held to that driver's rule. On
//! a register handle:
//!
//! - `read`/`write` at offset `o` with a buffer of 1, 2, 4 or 8 bytes is one
//!   access of that width at register `o` (little-endian value);
//! - `call` runs a batch (see [`crate::wire`]; no metadata);
//! - mapping (`map_fd` on Linux, `mmap_prep` on Redox) hands the BAR itself to
//!   a driver the policy grants it in `direct_bars`.
//!
//! A handle opened without write access (`O_RDONLY`, or no access mode, in
//! `O_ACCMODE` of the open flags) reads but never writes: a `write`, a `call`
//! whose batch holds a write (the whole batch: nothing of it runs), a
//! `mmap_prep` with `PROT_WRITE`, and any `map_fd` (the descriptor it hands out
//! could be mapped writable) fail with EBADF, as a POSIX read-only descriptor
//! refuses `write`. Drivers open their registers `O_RDWR`.
//!
//! When the last handle on a PCI function's BARs closes (its driver closed it,
//! exited or was killed: the scheme sees the same close), the scheme stops the
//! function's bus mastering ([`Hardware::stop_bus_master`]) before anything
//! else: there is no IOMMU, and a device left running would go on writing into
//! the DMA buffers `dma:` frees for the dead driver. A function still open
//! through another handle (a replica, the supervisor) keeps mastering: its DMA
//! may be in use. `dma:` keeps freed buffers in quarantine for long enough that
//! this stop happens first, whichever daemon hears of the death first.
//!
//! Opening a BAR does not start bus mastering again: the device may still be
//! set up for the dead driver's buffers, freed and perhaps another client's by
//! the time a successor opens it. The driver starts it itself, with a `call`
//! of metadata [`START_BUS_MASTER`] and no payload, once it has reset the
//! device or found its rings in memory it holds. Only a writable BAR handle
//! whose driver's rule lists `dma` may (a driver with no DMA buffers has no use
//! for it; EACCES otherwise, EBADF for a read-only handle).
//!
//! `pci/<bdf>/irq` is the function's interrupt, granted where the rule grants
//! some BAR of the function ([`driver_policy::DriverRule::check_interrupt`]).
//! The line is masked as it fires (level-triggered INTx stays asserted until
//! the driver clears its device's cause); on the handle:
//!
//! - `read` of 8 bytes answers how often the line fired since the last read
//!   (little-endian), or blocks (`EWOULDBLOCK` with `O_NONBLOCK`) until it
//!   fires; `fevent` reports `EVENT_READ` then;
//! - `write` of 8 bytes (any value) acknowledges: the driver has read and so
//!   cleared its device's cause, what fired so far counts as read, and the
//!   line is unmasked. A driver woken by the readiness event need not read
//!   the count first. A read-only handle may wait but not acknowledge (EBADF).
//!
//! Opening unmasks the line, so a successor is not left waiting on a line its
//! dead predecessor never acknowledged. The scheme's event loop waits on the
//! lines too ([`SchemeDaemon::wake_fds`]).
//!
//! `status` is open to any caller: the counters to everyone, each open handle's
//! line (driver, pid, registers) only to root and to the uid of the handle's
//! driver. Malformed requests are EINVAL, policy refusals EACCES (and logged
//! with the rule), device failures EIO. A refusal logs one line, quoting at
//! most a [`Clipped`] prefix of what the client sent.

use std::io;
use std::os::fd::RawFd;

use driver_policy::{Bdf, Clipped, Denial, DriverRule, Policy, SUPERVISOR_UID};
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::{HandleTable, MapGrant, SchemeDaemon, ROOT_ID};
use syscall::data::Stat;
use syscall::error::{Error, Result, EACCES, EBADF, EINVAL, EIO, ENOENT, EOPNOTSUPP, EWOULDBLOCK};
use syscall::flag::{EventFlags, MapFlags, MODE_CHR, MODE_FILE, O_ACCMODE, O_RDWR, O_WRONLY};
use syscall::schemev2::NewFdFlags;

use crate::bus::{RegisterBus, Window, WindowError};
use crate::hardware::Hardware;
use crate::interrupt::{InterruptLine, Unmasked};
use crate::open_path::{OpenRequest, RegisterTarget, Target};
use crate::status::{self, Counters};
use crate::wire::START_BUS_MASTER;
use crate::{PAGE_SIZE, SCHEME_NAME};

/// The scheme's name, as a policy rule's `schemes` lists it.
/// The scheme a rule lists for DMA buffers: who may have a device master the bus.
const DMA_SCHEME: &str = "dma";

/// The `mmio:` scheme over the registers of `H`.
pub struct MmioScheme<H: Hardware> {
    policy: Policy,
    hardware: H,
    handles: HandleTable<Handle>,
    counters: Counters,
}

enum Handle {
    /// A snapshot of a text (the status, the list of functions), taken at open.
    Text {
        target: Target,
        text: Vec<u8>,
    },
    Registers(RegisterHandle),
    Interrupt(InterruptHandle),
}

/// The length of an interrupt handle's read and write: a count.
const INTERRUPT_COUNT_LEN: usize = 8;

struct InterruptHandle {
    driver: String,
    driver_uid: u32,
    pid: usize,
    bdf: Bdf,
    line: Box<dyn InterruptLine>,
    writable: bool,
    /// Firings not yet read.
    pending: u64,
    /// Firings read, and acknowledgements, over the handle's life.
    delivered: u64,
    acknowledged: u64,
}

struct RegisterHandle {
    /// The driver whose grant this handle carries.
    driver: String,
    /// That driver's uid: who besides root sees the handle in the status.
    driver_uid: u32,
    pid: usize,
    target: RegisterTarget,
    window: Window,
    accesses: u64,
}

impl<H: Hardware> MmioScheme<H> {
    pub fn new(policy: Policy, hardware: H) -> Self {
        Self {
            policy,
            hardware,
            handles: HandleTable::new(),
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Opens `path` for `ctx`; `writable` says whether the open flags asked
    /// for write access.
    fn open(&mut self, path: &str, writable: bool, ctx: &CallerCtx) -> Result<Handle> {
        let request = OpenRequest::parse(path).map_err(|error| {
            log::debug!("pid {} opens {}: {error}", ctx.pid, Clipped::new(path));
            error.errno()
        })?;
        let target = match request.target {
            Target::Status => {
                let text = self.status_text(ctx).into_bytes();
                return Ok(Handle::Text {
                    target: Target::Status,
                    text,
                });
            }
            Target::Functions => return self.open_functions(&request, ctx),
            Target::Registers(target) => Some(target),
            Target::Interrupt { .. } => None,
        };
        // The rule must list this scheme before it grants anything in it.
        let resolved = self
            .policy
            .resolve(ctx.uid, request.label)
            .and_then(|rule| rule.check_scheme(SCHEME_NAME).map(|()| rule));
        let (driver, driver_uid) = match resolved {
            Ok(rule) => (rule.label().to_owned(), rule.uid()),
            Err(denial) => return Err(self.deny(ctx, &request, &denial)),
        };
        let Some(target) = target else {
            return self.open_interrupt(&request, driver, driver_uid, writable, ctx);
        };
        let bus = match self.grant(&driver, target) {
            Ok(bus) => bus,
            Err(Refusal::Denied(denial)) => return Err(self.deny(ctx, &request, &denial)),
            Err(Refusal::Hardware(error)) => {
                log::warn!("pid {} (driver {driver}) opens {target}: {error}", ctx.pid);
                return Err(hardware_errno(&error));
            }
        };
        self.counters.opens += 1;
        let mode = if writable { "read-write" } else { "read-only" };
        log::info!("pid {} (driver {driver}) opened {target} {mode}", ctx.pid);
        Ok(Handle::Registers(RegisterHandle {
            driver,
            driver_uid,
            pid: ctx.pid,
            target,
            window: if writable {
                Window::new(bus)
            } else {
                Window::read_only(bus)
            },
            accesses: 0,
        }))
    }

    /// The list of the PCI functions the opener may open: those its rule (or
    /// the rule it names, for root) grants; every function for root naming
    /// none, who administers them all.
    fn open_functions(&mut self, request: &OpenRequest, ctx: &CallerCtx) -> Result<Handle> {
        let rule = match (ctx.uid, request.label) {
            (SUPERVISOR_UID, None) => None,
            (uid, label) => match self
                .policy
                .resolve(uid, label)
                .and_then(|rule| rule.check_scheme(SCHEME_NAME).map(|()| rule))
            {
                Ok(rule) => Some(rule.clone()),
                Err(denial) => return Err(self.deny(ctx, request, &denial)),
            },
        };
        let functions = self.hardware.functions().map_err(|error| {
            self.counters.errors += 1;
            log::error!("listing the PCI functions: {error}");
            hardware_errno(&error)
        })?;
        let text: String = functions
            .iter()
            .filter(|function| {
                rule.as_ref()
                    .is_none_or(|rule| rule.check_device(function.bdf, function.id).is_ok())
            })
            .map(|function| format!("{function}\n"))
            .collect();
        Ok(Handle::Text {
            target: Target::Functions,
            text: text.into_bytes(),
        })
    }

    /// Opens the interrupt `request` names for `driver`, unmasked.
    fn open_interrupt(
        &mut self,
        request: &OpenRequest,
        driver: String,
        driver_uid: u32,
        writable: bool,
        ctx: &CallerCtx,
    ) -> Result<Handle> {
        let Target::Interrupt { bdf } = request.target else {
            return Err(Error::new(EINVAL));
        };
        let mut line = match self.grant_interrupt(&driver, bdf) {
            Ok(line) => line,
            Err(Refusal::Denied(denial)) => return Err(self.deny(ctx, request, &denial)),
            Err(Refusal::Hardware(error)) => {
                log::warn!(
                    "pid {} (driver {driver}) opens {}: {error}",
                    ctx.pid,
                    request.target
                );
                return Err(hardware_errno(&error));
            }
        };
        // A line left asserted (by a predecessor that died) is pending at once.
        let pending = match line.unmask() {
            Ok(Unmasked::Quiet) => 0,
            Ok(Unmasked::Pending) => 1,
            Err(error) => {
                self.counters.errors += 1;
                log::error!("{bdf}: unmasking the interrupt for driver {driver}: {error}");
                return Err(Error::new(EIO));
            }
        };
        self.counters.opens += 1;
        log::info!(
            "pid {} (driver {driver}) opened {}",
            ctx.pid,
            request.target
        );
        Ok(Handle::Interrupt(InterruptHandle {
            driver,
            driver_uid,
            pid: ctx.pid,
            bdf,
            line,
            writable,
            pending,
            delivered: 0,
            acknowledged: 0,
        }))
    }

    /// Asks the policy for the interrupt of the function at `bdf`, as
    /// [`grant`](Self::grant) does for registers, then opens its line.
    fn grant_interrupt(
        &mut self,
        driver: &str,
        bdf: Bdf,
    ) -> std::result::Result<Box<dyn InterruptLine>, Refusal> {
        let rule = rule_of(&self.policy, driver)?;
        rule.check_interrupt(bdf)?;
        rule.check_device(bdf, self.hardware.device_id(bdf)?)?;
        Ok(self.hardware.open_interrupt(bdf)?)
    }

    /// Hands out what interrupt handle `id` has seen fire, into `buf`.
    fn read_interrupt(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        let Some(Handle::Interrupt(handle)) = self.handles.get_mut(id) else {
            return Err(Error::new(EBADF));
        };
        if buf.len() < INTERRUPT_COUNT_LEN {
            self.counters.invalid += 1;
            return Err(Error::new(EINVAL));
        }
        if handle.pending == 0 {
            return Err(Error::new(EWOULDBLOCK));
        }
        let fired = std::mem::take(&mut handle.pending);
        handle.delivered += fired;
        buf[..INTERRUPT_COUNT_LEN].copy_from_slice(&fired.to_le_bytes());
        Ok(INTERRUPT_COUNT_LEN)
    }

    /// Acknowledges interrupt handle `id`'s line: unmasks it.
    fn acknowledge(&mut self, id: usize, buf: &[u8]) -> Result<usize> {
        let Some(Handle::Interrupt(handle)) = self.handles.get_mut(id) else {
            return Err(Error::new(EBADF));
        };
        if !handle.writable {
            self.counters.invalid += 1;
            return Err(Error::new(EBADF));
        }
        if buf.len() != INTERRUPT_COUNT_LEN {
            self.counters.invalid += 1;
            return Err(Error::new(EINVAL));
        }
        // What fired so far is handled, read or not: the driver learned of it
        // from the readiness event and has read its device's causes.
        handle.delivered += std::mem::take(&mut handle.pending);
        match handle.line.unmask() {
            Ok(unmasked) => {
                handle.acknowledged += 1;
                self.counters.interrupt_acks += 1;
                if unmasked == Unmasked::Pending {
                    handle.pending += 1;
                    self.counters.interrupts += 1;
                }
                Ok(INTERRUPT_COUNT_LEN)
            }
            Err(error) => {
                self.counters.errors += 1;
                log::error!(
                    "{}: unmasking the interrupt for driver {}: {error}",
                    handle.bdf,
                    handle.driver
                );
                Err(Error::new(EIO))
            }
        }
    }

    /// Asks the policy, touching the hardware only as far as the decision
    /// needs (reading a function's ids), then opens the registers.
    fn grant(
        &mut self,
        driver: &str,
        target: RegisterTarget,
    ) -> std::result::Result<Box<dyn RegisterBus>, Refusal> {
        let rule = rule_of(&self.policy, driver)?;
        match target {
            RegisterTarget::Bar { bdf, bar } => {
                rule.check_bar(bdf, bar)?;
                rule.check_device(bdf, self.hardware.device_id(bdf)?)?;
                Ok(self.hardware.open_bar(bdf, bar)?)
            }
            RegisterTarget::Ports(range) => {
                rule.check_ports(range)?;
                Ok(self.hardware.open_ports(range)?)
            }
        }
    }

    fn deny(&mut self, ctx: &CallerCtx, request: &OpenRequest, denial: &Denial) -> Error {
        self.counters.denials += 1;
        // The target is parsed, so short; the label is as the client sent it.
        let label = match request.label {
            Some(label) => format!("?label={}", Clipped::new(label)),
            None => String::new(),
        };
        log::warn!(
            "denied pid {} uid {} {}{label}: {denial}",
            ctx.pid,
            ctx.uid,
            request.target
        );
        Error::new(EACCES)
    }

    /// Performs register operations on handle `id`, which return how many
    /// accesses they made, and counts and logs the outcome.
    fn perform(
        &mut self,
        id: usize,
        operations: impl FnOnce(&mut Window) -> std::result::Result<usize, WindowError>,
    ) -> Result<usize> {
        let handle = match self.handles.get_mut(id) {
            Some(Handle::Registers(handle)) => handle,
            _ => return Err(Error::new(EBADF)),
        };
        match operations(&mut handle.window) {
            Ok(count) => {
                handle.accesses += count as u64;
                self.counters.accesses += count as u64;
                Ok(count)
            }
            Err(error @ WindowError::Io(_)) => {
                self.counters.errors += 1;
                log::error!("driver {}, {}: {error}", handle.driver, handle.target);
                Err(Error::new(error.errno()))
            }
            Err(error) => {
                self.counters.invalid += 1;
                log::debug!("driver {}, {}: {error}", handle.driver, handle.target);
                Err(Error::new(error.errno()))
            }
        }
    }

    /// Checks a request to map `size` bytes at `offset` of handle `id` directly,
    /// `writable` if the mapping could be written through.
    fn direct(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        writable: bool,
    ) -> Result<&RegisterHandle> {
        let handle = match self.handles.get(id) {
            Some(Handle::Registers(handle)) => handle,
            _ => return Err(Error::new(EBADF)),
        };
        if writable && !handle.window.is_writable() {
            self.counters.invalid += 1;
            log::debug!(
                "driver {}, {}: a writable mapping of a read-only handle",
                handle.driver,
                handle.target
            );
            return Err(Error::new(EBADF));
        }
        let RegisterTarget::Bar { bar, .. } = handle.target else {
            return Err(Error::new(EOPNOTSUPP));
        };
        let decision =
            rule_of(&self.policy, &handle.driver).and_then(|rule| rule.check_direct_bar(bar));
        if let Err(denial) = decision {
            self.counters.denials += 1;
            log::warn!(
                "denied pid {} direct mapping of {}: {denial}",
                handle.pid,
                handle.target
            );
            return Err(Error::new(EACCES));
        }
        let mappable = handle
            .window
            .region()
            .len
            .next_multiple_of(PAGE_SIZE as u64);
        let fits = (size as u64)
            .checked_add(offset)
            .is_some_and(|end| end <= mappable);
        if size == 0 || !offset.is_multiple_of(PAGE_SIZE as u64) || !fits {
            self.counters.invalid += 1;
            return Err(Error::new(EINVAL));
        }
        log::info!(
            "driver {} maps {} directly ({size:#x} bytes at {offset:#x})",
            handle.driver,
            handle.target
        );
        Ok(handle)
    }

    /// Lets the function of BAR handle `id` master the bus, for its driver;
    /// 0 when it may.
    fn start_bus_master(&mut self, id: usize) -> Result<usize> {
        let handle = match self.handles.get(id) {
            Some(Handle::Registers(handle)) => handle,
            _ => return Err(Error::new(EBADF)),
        };
        let RegisterTarget::Bar { bdf, .. } = handle.target else {
            self.counters.invalid += 1;
            log::debug!(
                "driver {}, {}: port ranges master no bus",
                handle.driver,
                handle.target
            );
            return Err(Error::new(EINVAL));
        };
        if !handle.window.is_writable() {
            self.counters.invalid += 1;
            return Err(Error::new(EBADF));
        }
        let dma_granted = self
            .policy
            .driver(&handle.driver)
            .is_some_and(|rule| rule.check_scheme(DMA_SCHEME).is_ok());
        if !dma_granted {
            self.counters.denials += 1;
            log::warn!(
                "denied driver {} pid {}: bus mastering of {bdf} (its rule lists no {DMA_SCHEME})",
                handle.driver,
                handle.pid
            );
            return Err(Error::new(EACCES));
        }
        let (driver, pid) = (handle.driver.clone(), handle.pid);
        match self.hardware.start_bus_master(bdf) {
            Ok(()) => {
                self.counters.bus_master_starts += 1;
                log::info!("{bdf}: bus mastering started by pid {pid} (driver {driver})");
                Ok(0)
            }
            Err(error) => {
                self.counters.errors += 1;
                log::error!("{bdf}: starting bus mastering for driver {driver}: {error}");
                Err(Error::new(EIO))
            }
        }
    }

    /// A register handle closed: its function stops mastering the bus if it
    /// was the last.
    fn close_registers(&mut self, handle: RegisterHandle) {
        log::info!(
            "driver {} closed {} after {} accesses",
            handle.driver,
            handle.target,
            handle.accesses
        );
        if let RegisterTarget::Bar { bdf, .. } = handle.target {
            self.stop_if_unheld(bdf, &handle.driver);
        }
    }

    /// Stops bus mastering of the function at `bdf` if no handle holds any of
    /// its BARs any more; `driver` closed the last one.
    fn stop_if_unheld(&mut self, bdf: Bdf, driver: &str) {
        let still_held = self.handles.values().any(|handle| {
            matches!(handle, Handle::Registers(RegisterHandle {
                target: RegisterTarget::Bar { bdf: held, .. },
                ..
            }) if *held == bdf)
        });
        if still_held {
            return;
        }
        match self.hardware.stop_bus_master(bdf) {
            Ok(()) => {
                self.counters.bus_master_stops += 1;
                log::info!("{bdf}: bus mastering stopped (driver {driver} holds it no more)");
            }
            Err(error) => {
                self.counters.errors += 1;
                log::error!("{bdf}: stopping bus mastering after driver {driver}: {error}");
            }
        }
    }

    /// The status as `ctx` may see it: the counters, and the lines of the
    /// handles it may know of (all for root, its own driver's for a driver).
    /// Which driver holds which device, from which pid, is for the system's
    /// administrator, not for every process.
    fn status_text(&self, ctx: &CallerCtx) -> String {
        let visible = |driver_uid: u32| ctx.uid == SUPERVISOR_UID || ctx.uid == driver_uid;
        let open_handles = self
            .handles
            .values()
            .filter(|handle| !matches!(handle, Handle::Text { .. }))
            .count();
        let lines: Vec<String> = self
            .handles
            .iter()
            .filter_map(|(id, handle)| match handle {
                Handle::Registers(h) if visible(h.driver_uid) => Some(format!(
                    "handle {id}: driver {} pid {} {} ({} {:#x} bytes) accesses {}",
                    h.driver,
                    h.pid,
                    h.target,
                    h.window.region().space,
                    h.window.region().len,
                    h.accesses
                )),
                Handle::Interrupt(h) if visible(h.driver_uid) => Some(format!(
                    "handle {id}: driver {} pid {} pci/{}/irq interrupts {} acknowledged {}",
                    h.driver, h.pid, h.bdf, h.delivered, h.acknowledged
                )),
                Handle::Registers(_) | Handle::Interrupt(_) | Handle::Text { .. } => None,
            })
            .collect();
        status::render(&self.counters, open_handles, &lines)
    }
}

/// The rule of `driver`, which a handle's grant names.
fn rule_of<'a>(policy: &'a Policy, driver: &str) -> std::result::Result<&'a DriverRule, Denial> {
    policy.driver(driver).ok_or_else(|| Denial::UnknownLabel {
        label: driver.to_owned(),
    })
}

/// Why an open was refused.
enum Refusal {
    Denied(Denial),
    Hardware(io::Error),
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Self::Denied(denial)
    }
}

impl From<io::Error> for Refusal {
    fn from(error: io::Error) -> Self {
        Self::Hardware(error)
    }
}

/// The errno for a hardware failure while opening registers.
fn hardware_errno(error: &io::Error) -> Error {
    Error::new(match error.kind() {
        io::ErrorKind::NotFound => ENOENT,
        io::ErrorKind::PermissionDenied => EACCES,
        io::ErrorKind::Unsupported => EOPNOTSUPP,
        io::ErrorKind::InvalidInput => EINVAL,
        _ => EIO,
    })
}

impl<H: Hardware> SchemeSync for MmioScheme<H> {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT_ID)
    }

    fn openat(
        &mut self,
        dirfd: usize,
        path: &str,
        flags: usize,
        _fcntl: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        if dirfd != ROOT_ID {
            return Err(Error::new(EBADF));
        }
        let writable = matches!(flags & O_ACCMODE, O_WRONLY | O_RDWR);
        let handle = self.open(path, writable, ctx)?;
        let id = self.handles.insert(handle)?;
        Ok(OpenResult::ThisScheme {
            number: id,
            flags: NewFdFlags::POSITIONED,
        })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.handles.get(id) {
            Some(Handle::Text { text, .. }) => {
                return Ok(scheme_runtime::copy_at_offset(text, offset, buf))
            }
            Some(Handle::Interrupt(_)) => return self.read_interrupt(id, buf),
            _ => {}
        }
        self.perform(id, |window| window.read_into(offset, buf).map(|()| 1))?;
        Ok(buf.len())
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        if let Some(Handle::Interrupt(_)) = self.handles.get(id) {
            return self.acknowledge(id, buf);
        }
        self.perform(id, |window| window.write_from(offset, buf).map(|()| 1))?;
        Ok(buf.len())
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        metadata: &[u64],
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match metadata {
            [] => {}
            [START_BUS_MASTER] if payload.is_empty() => return self.start_bus_master(id),
            _ if self.handles.contains(id) => {
                self.counters.invalid += 1;
                log::debug!(
                    "handle {id}: call with {} words of metadata (a batch takes none)",
                    metadata.len()
                );
                return Err(Error::new(EINVAL));
            }
            _ => return Err(Error::new(EBADF)),
        }
        let count = self.perform(id, |window| window.run_batch(payload))?;
        self.counters.batches += 1;
        Ok(count)
    }

    fn fsize(&mut self, id: usize, _ctx: &CallerCtx) -> Result<u64> {
        match self.handles.get(id) {
            Some(Handle::Text { text, .. }) => Ok(text.len() as u64),
            Some(Handle::Registers(handle)) => Ok(handle.window.region().len),
            Some(Handle::Interrupt(_)) => Ok(INTERRUPT_COUNT_LEN as u64),
            None => Err(Error::new(EBADF)),
        }
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, ctx: &CallerCtx) -> Result<()> {
        stat.st_size = self.fsize(id, ctx)?;
        stat.st_mode = match self.handles.get(id) {
            Some(Handle::Text { .. }) => MODE_FILE | 0o444,
            _ => MODE_CHR | 0o600,
        };
        Ok(())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let target = match self.handles.get(id) {
            Some(Handle::Text { target, .. }) => *target,
            Some(Handle::Registers(handle)) => Target::Registers(handle.target),
            Some(Handle::Interrupt(handle)) => Target::Interrupt { bdf: handle.bdf },
            None => return Err(Error::new(EBADF)),
        };
        let path = format!("/scheme/mmio/{target}");
        Ok(scheme_runtime::copy_at_offset(path.as_bytes(), 0, buf))
    }

    fn mmap_prep(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        flags: MapFlags,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        self.direct(id, offset, size, flags.contains(MapFlags::PROT_WRITE))?
            .window
            .bus()
            .mapped_address(offset)
            .ok_or(Error::new(EOPNOTSUPP))
    }

    fn fevent(&mut self, id: usize, _flags: EventFlags, _ctx: &CallerCtx) -> Result<EventFlags> {
        match self.handles.get(id) {
            Some(Handle::Interrupt(handle)) if handle.pending > 0 => Ok(EventFlags::EVENT_READ),
            Some(_) => Ok(EventFlags::empty()),
            None => Err(Error::new(EBADF)),
        }
    }

    fn on_close(&mut self, id: usize) {
        match self.handles.remove(id) {
            Some(Handle::Interrupt(handle)) => log::info!(
                "driver {} closed pci/{}/irq after {} interrupts",
                handle.driver,
                handle.bdf,
                handle.delivered
            ),
            Some(Handle::Registers(handle)) => self.close_registers(handle),
            Some(Handle::Text { .. }) | None => {}
        }
    }
}

impl<H: Hardware> SchemeDaemon for MmioScheme<H> {
    /// Takes what every interrupt line saw fire since the last round.
    fn after_round(&mut self) {
        for handle in self.handles.values_mut() {
            let Handle::Interrupt(handle) = handle else {
                continue;
            };
            match handle.line.take_fired() {
                Ok(fired) => {
                    handle.pending += fired;
                    self.counters.interrupts += fired;
                }
                Err(error) => {
                    self.counters.errors += 1;
                    log::error!("{}: reading the interrupt line: {error}", handle.bdf);
                }
            }
        }
    }

    fn wake_fds(&self) -> Vec<RawFd> {
        self.handles
            .values()
            .filter_map(|handle| match handle {
                Handle::Interrupt(handle) => handle.line.wake_fd(),
                _ => None,
            })
            .collect()
    }

    fn map_fd(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        _ctx: &CallerCtx,
    ) -> Result<MapGrant> {
        // The client maps the descriptor itself, with any protection it likes:
        // only a handle that may write gets one.
        let grant = self
            .direct(id, offset, size, true)?
            .window
            .bus()
            .map_grant(offset);
        grant.map_err(|error| {
            log::warn!("direct mapping of handle {id} failed: {error}");
            hardware_errno(&error)
        })
    }
}
