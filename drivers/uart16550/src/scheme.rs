//! The serial scheme (`uart.com2` by default):
//!
//! | path       | a handle                                                          |
//! |------------|-------------------------------------------------------------------|
//! | `data`     | the line: write queues bytes to send, read takes received bytes; both block (EWOULDBLOCK with O_NONBLOCK); `fevent` READ while bytes wait, WRITE while the queue has room |
//! | `settings` | read gives the line settings (`baud=115200 data=8 parity=none stop=1`); writing `key=value` words changes those named, at once |
//! | `status`   | read gives device, settings, buffers and counters, a snapshot taken at open |
//!
//! Every handle shares the one line. Settings a client changes are published
//! to the driver's state store ([`crate::state`]), so a restarted driver comes
//! back with them. Unknown paths are ENOENT, malformed settings
//! and requests a path does not serve EINVAL, unknown handles EBADF, and a device
//! that stopped answering EIO.

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::{copy_at_offset, HandleTable, SchemeDaemon, StateStore, ROOT_ID};
use syscall::error::{Error, Result, EBADF, EINVAL, ENOENT};
use syscall::flag::{EventFlags, MODE_CHR, MODE_FILE};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use crate::access::PortIo;
use crate::poll::PollPolicy;
use crate::port::SerialPort;
use crate::state;

enum Handle {
    Data,
    Settings,
    /// The status text, as it was at open.
    Status(Vec<u8>),
}

impl Handle {
    fn path(&self) -> &'static str {
        match self {
            Handle::Data => "data",
            Handle::Settings => "settings",
            Handle::Status(_) => "status",
        }
    }
}

/// The serial scheme over one UART.
pub struct UartScheme<P> {
    name: String,
    /// Which UART and how it is reached, for the status text.
    device: String,
    port: SerialPort<P>,
    poll: PollPolicy,
    handles: HandleTable<Handle>,
    /// Where changed settings are published.
    store: StateStore,
}

impl<P: PortIo> UartScheme<P> {
    pub fn new(name: &str, device: String, port: SerialPort<P>, poll: PollPolicy) -> Self {
        Self {
            name: name.to_owned(),
            device,
            port,
            poll,
            handles: HandleTable::new(),
            store: StateStore::absent(),
        }
    }

    /// Publishes changed settings to `store`.
    pub fn with_store(self, store: StateStore) -> Self {
        Self { store, ..self }
    }

    fn handle(&self, id: usize) -> Result<&Handle> {
        self.handles.get(id).ok_or(Error::new(EBADF))
    }

    fn settings_text(&self) -> String {
        format!("{}\n", self.port.settings())
    }

    fn change_settings(&mut self, text: &[u8]) -> Result<()> {
        let text = std::str::from_utf8(text).map_err(|_| Error::new(EINVAL))?;
        let settings = self.port.settings().changed_by(text).map_err(|error| {
            log::info!("refused settings {text:?}: {error}");
            Error::new(EINVAL)
        })?;
        let before = self.port.settings();
        self.port.set_settings(settings)?;
        if settings != before {
            self.store.publish(
                state::SETTINGS_KEY,
                state::stored_form(&settings).as_bytes(),
            );
        }
        Ok(())
    }
}

impl<P: PortIo> SchemeSync for UartScheme<P> {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT_ID)
    }

    fn openat(
        &mut self,
        fd: usize,
        path: &str,
        _flags: usize,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        if fd != ROOT_ID {
            return Err(Error::new(EBADF));
        }
        let (handle, flags) = match path.trim_matches('/') {
            "data" => (Handle::Data, NewFdFlags::empty()),
            "settings" => (Handle::Settings, NewFdFlags::POSITIONED),
            "status" => (
                Handle::Status(self.port.status(&self.device).into_bytes()),
                NewFdFlags::POSITIONED,
            ),
            other => {
                log::debug!("pid {} opens {other:?}: no such path", ctx.pid);
                return Err(Error::new(ENOENT));
            }
        };
        let id = self.handles.insert(handle)?;
        Ok(OpenResult::ThisScheme { number: id, flags })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl_flags: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.handle(id)? {
            Handle::Data => self.port.read(buf),
            Handle::Settings => Ok(copy_at_offset(self.settings_text().as_bytes(), offset, buf)),
            Handle::Status(text) => Ok(copy_at_offset(text, offset, buf)),
        }
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        _offset: u64,
        _fcntl_flags: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.handle(id)? {
            Handle::Data => self.port.write(buf),
            Handle::Settings => self.change_settings(buf).map(|()| buf.len()),
            Handle::Status(_) => Err(Error::new(EINVAL)),
        }
    }

    fn fevent(&mut self, id: usize, flags: EventFlags, _ctx: &CallerCtx) -> Result<EventFlags> {
        match self.handle(id)? {
            Handle::Data => Ok(self.port.readiness() & flags),
            Handle::Settings | Handle::Status(_) => Err(Error::new(EINVAL)),
        }
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        let (mode, size) = match self.handle(id)? {
            Handle::Data => (MODE_CHR | 0o666, 0),
            Handle::Settings => (MODE_FILE | 0o644, self.settings_text().len()),
            Handle::Status(text) => (MODE_FILE | 0o444, text.len()),
        };
        stat.st_mode = mode;
        stat.st_size = size as u64;
        Ok(())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let path = format!("/scheme/{}/{}", self.name, self.handle(id)?.path());
        Ok(copy_at_offset(path.as_bytes(), 0, buf))
    }

    fn on_close(&mut self, id: usize) {
        self.handles.remove(id);
    }
}

impl<P: PortIo> SchemeDaemon for UartScheme<P> {
    /// Polls the chip after every round: after requests, and every tick.
    fn after_round(&mut self) {
        let port = &mut self.port;
        self.poll.poll(|| port.step());
    }
}
