//! Opening and using a scheme handle on Redox: the kernel does the transport.

use std::cell::OnceCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

use libredox::call::{self, MmapArgs};
use libredox::flag;
use syscall::error::{Error, EINVAL};
use syscall::flag::{EventFlags, O_NONBLOCK};
use syscall::{CallFlags, Event, Stat};

use crate::{io_error, Mapping, SchemePath};

fn lib_error(error: libredox::error::Error) -> io::Error {
    io_error(Error::new(error.errno()))
}

/// An open handle of a scheme: a Redox file descriptor.
#[derive(Debug)]
pub struct Handle {
    file: File,
    event_queue: OnceCell<File>,
    /// The path and flags [`Handle::reopen`] opens again.
    opened_as: (String, usize),
}

impl Handle {
    /// Opens `name:path` or `/scheme/name/path` with Redox open flags.
    pub fn open(path: &str, flags: usize) -> io::Result<Self> {
        let scheme_path = SchemePath::parse(path)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{path:?}: {e}")))?;
        let fd = call::open(scheme_path.to_string(), flags as i32, 0).map_err(lib_error)?;
        // SAFETY: open returned a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd as RawFd) };
        Ok(Self {
            file,
            event_queue: OnceCell::new(),
            opened_as: (path.to_owned(), flags),
        })
    }

    /// Opens this handle's path again, with the same flags, in place of this
    /// handle, once its scheme's server was restarted; a scheme not served yet
    /// (`ENODEV`) is tried again until `wait` has passed, as on the host.
    pub fn reopen(&mut self, wait: std::time::Duration) -> io::Result<()> {
        let (path, flags) = self.opened_as.clone();
        *self = crate::reopen::open_when_served(wait, || Self::open(&path, flags))?;
        Ok(())
    }

    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.file).write(buf)
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.file.write_at(buf, offset)
    }

    pub fn call(&self, payload: &mut [u8], metadata: &[u64]) -> io::Result<usize> {
        call::call_rw(self.raw(), payload, CallFlags::empty(), metadata).map_err(lib_error)
    }

    /// A call whose answer the caller does not wait for. Replicas on Redox
    /// do not hold calls yet, so it is made at once, as [`Handle::call`].
    pub fn call_held(&self, payload: &mut [u8], metadata: &[u64]) -> io::Result<Option<usize>> {
        self.call(payload, metadata).map(Some)
    }

    /// A call laid out for a supervisor to make for this process. Replicas
    /// on Redox are not served by a supervisor that makes calls yet.
    pub fn call_request(&self, _payload: &[u8], _metadata: &[u64]) -> io::Result<(u32, Vec<u8>)> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub fn fstat(&self) -> io::Result<Stat> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata()?;
        let stat = Stat {
            st_dev: m.dev(),
            st_ino: m.ino(),
            st_mode: m.mode() as u16,
            st_nlink: m.nlink() as u32,
            st_uid: m.uid(),
            st_gid: m.gid(),
            st_size: m.size(),
            st_blksize: m.blksize() as u32,
            st_blocks: m.blocks(),
            st_mtime: m.mtime() as u64,
            st_mtime_nsec: m.mtime_nsec() as u32,
            st_atime: m.atime() as u64,
            st_atime_nsec: m.atime_nsec() as u32,
            st_ctime: m.ctime() as u64,
            st_ctime_nsec: m.ctime_nsec() as u32,
        };
        Ok(stat)
    }

    pub fn fpath(&self) -> io::Result<String> {
        let mut buf = vec![0u8; 4096];
        let n = call::fpath(self.raw(), &mut buf).map_err(lib_error)?;
        buf.truncate(n);
        String::from_utf8(buf).map_err(|_| io_error(Error::new(EINVAL)))
    }

    /// Registers interest in `flags`. On Redox readiness always travels through an
    /// event queue (`/scheme/event`), this handle's own; the kernel queues the flags
    /// that are ready already, so they come from [`Handle::take_events`] and this
    /// returns none.
    pub fn fevent(&self, flags: EventFlags) -> io::Result<EventFlags> {
        let queue = match self.event_queue.get() {
            Some(queue) => queue,
            None => {
                let fd = call::open(
                    "/scheme/event",
                    flag::O_RDWR | flag::O_NONBLOCK | flag::O_CLOEXEC,
                    0,
                )
                .map_err(lib_error)?;
                // SAFETY: open returned a new descriptor that nothing else owns.
                let queue = unsafe { File::from_raw_fd(fd as RawFd) };
                self.event_queue.get_or_init(|| queue)
            }
        };
        let event = Event {
            id: self.raw(),
            flags,
            data: 0,
        };
        (&*queue).write_all(&event)?;
        Ok(EventFlags::empty())
    }

    /// The descriptor that polls readable when an event arrives, once
    /// [`Handle::fevent`] registered interest: this handle's event queue.
    pub fn events_fd(&self) -> Option<RawFd> {
        self.event_queue.get().map(AsRawFd::as_raw_fd)
    }

    /// The events that arrived since the last call, without blocking.
    pub fn take_events(&self) -> io::Result<EventFlags> {
        let mut flags = EventFlags::empty();
        let Some(queue) = self.event_queue.get() else {
            return Ok(flags);
        };
        let mut event = Event::default();
        loop {
            match (&*queue).read(&mut event) {
                Ok(n) if n == event.len() => flags |= event.flags,
                Ok(_) => return Ok(flags),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(flags),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn mmap(&self, offset: u64, len: usize, writable: bool) -> io::Result<Mapping> {
        let mut prot = flag::PROT_READ;
        if writable {
            prot |= flag::PROT_WRITE;
        }
        let args = MmapArgs {
            addr: core::ptr::null_mut(),
            length: len,
            prot,
            flags: flag::MAP_SHARED,
            fd: self.raw(),
            offset,
        };
        // SAFETY: a fresh shared mapping at a kernel-chosen address aliases nothing.
        let ptr = unsafe { call::mmap(args) }.map_err(lib_error)?;
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io_error(Error::new(EINVAL)))?;
        // SAFETY: exactly what mmap returned.
        Ok(unsafe { Mapping::new(ptr, len) })
    }

    pub fn close(self) -> io::Result<()> {
        drop(self.file);
        Ok(())
    }

    pub fn set_nonblocking(&self, nonblocking: bool) {
        let mut flags = call::fcntl(self.raw(), syscall::F_GETFL, 0).unwrap_or(0);
        if nonblocking {
            flags |= O_NONBLOCK;
        } else {
            flags &= !O_NONBLOCK;
        }
        if let Err(e) = call::fcntl(self.raw(), syscall::F_SETFL, flags) {
            log::warn!("fcntl(F_SETFL) on a scheme handle failed: {e}");
        }
    }

    fn raw(&self) -> usize {
        self.file.as_raw_fd() as usize
    }
}

impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Handle {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
