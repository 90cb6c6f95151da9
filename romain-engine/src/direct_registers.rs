//! The replicas' register accesses made by the engine on the BAR itself.
//!
//! A replicated driver reaches its registers through `mmio:` requests (a batch
//! per `call`, or one access per `pread`/`pwrite`), which the engine makes once
//! for the group after the vote. Each is a round trip to `mmio:`: under
//! emulation about 0.1 ms, two or three of them per event. Where the driver's
//! rule grants the BAR in `direct_bars`, the engine maps it as a direct-mode
//! driver would (`mmio_scheme::bus::mapped_window`) as soon as the replicas have
//! opened it, and from then on answers their register requests on that handle
//! itself: the same checks as `mmio:` makes (`mmio_scheme::bus::Window`: range,
//! alignment, width, a read-only handle), the same replies byte for byte, and
//! the accesses in the order the replicas voted them. Anything else on the
//! handle (starting bus mastering, `fstat`) still goes to `mmio:`, and a
//! refused mapping leaves every request going there.

use std::collections::BTreeMap;
use std::path::Path;

use driver_policy::Clipped;
use mmio_scheme::bus::{mapped_window, Window};
use mmio_scheme::open_path::{OpenRequest, RegisterTarget, Target};
use mmio_scheme::SCHEME_NAME as MMIO_SCHEME;
use scheme_runtime::wire::{decode_request, Opcode, ResponseHeader, MAX_PAYLOAD};
use scheme_runtime::Handle;
use syscall::error::Error;
use syscall::flag::{O_ACCMODE, O_RDWR, O_WRONLY};

/// Mapped BARs, by the virtual descriptor of the replicas' connection.
#[derive(Default)]
pub struct DirectRegisters {
    windows: BTreeMap<u64, Window>,
}

impl DirectRegisters {
    /// Notes an open the replicas made on connection `fd` to the scheme socket
    /// `peer`, which the scheme granted: an `mmio:` memory BAR is mapped here
    /// too, with the access the replicas asked for, if the policy lends it.
    pub fn opened(&mut self, fd: u64, peer: &Path, request: &[u8]) {
        let (Some(dir), Some(MMIO_SCHEME)) =
            (peer.parent(), peer.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let mut request = request.to_vec();
        let Ok(request) = decode_request(&mut request) else {
            return;
        };
        let Ok(path) = std::str::from_utf8(request.payload) else {
            return;
        };
        if request.header.opcode != Opcode::Open {
            return;
        }
        let Ok(Target::Registers(RegisterTarget::Bar { .. })) =
            OpenRequest::parse(path).map(|open| open.target)
        else {
            return;
        };
        let flags = request.header.flags as usize;
        let writable = matches!(flags & O_ACCMODE, O_WRONLY | O_RDWR);
        let mapped = Handle::open_in(dir, &format!("{MMIO_SCHEME}:{path}"), flags)
            .and_then(|bar| mapped_window(bar, writable));
        // The path is the replicas' words: the log quotes only its start.
        let path = Clipped::new(path);
        match mapped {
            Ok(window) => {
                log::info!("{MMIO_SCHEME}:{path}: the replicas' register accesses are made on the BAR mapped here");
                self.windows.insert(fd, window);
            }
            Err(error) => log::info!(
                "{MMIO_SCHEME}:{path}: the replicas' register accesses go through {MMIO_SCHEME}: requests (no direct mapping: {error})"
            ),
        }
    }

    /// The reply to `request` on connection `fd`, made here, if it is a
    /// register access on a mapped BAR; `None` to send it to the scheme.
    pub fn answer(&mut self, fd: u64, request: &[u8]) -> Option<Vec<u8>> {
        let window = self.windows.get_mut(&fd)?;
        let mut request = request.to_vec();
        let request = decode_request(&mut request).ok()?;
        let header = request.header;
        // The DMA memory written before (a push) reaches the device before
        // the register access that hands it over, batch or single write.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let (result, data) = match header.opcode {
            Opcode::Call if request.metadata.as_slice().is_empty() => {
                let result = window.run_batch(request.payload);
                // The payload goes back as the batch left it, whatever the result.
                (result, request.payload.to_vec())
            }
            Opcode::Read => {
                let mut data = vec![0; (header.len as usize).min(MAX_PAYLOAD)];
                match window.read_into(header.offset, &mut data) {
                    Ok(()) => (Ok(data.len()), data),
                    Err(error) => (Err(error), Vec::new()),
                }
            }
            Opcode::Write => {
                let result = window.write_from(header.offset, request.payload);
                (result.map(|()| request.payload.len()), Vec::new())
            }
            _ => return None,
        };
        let result = result.map_err(|error| {
            log::debug!("{MMIO_SCHEME}: a register access the replicas voted was refused: {error}");
            Error::new(error.errno())
        });
        let mut reply = ResponseHeader::reply(result).encode().to_vec();
        reply.extend_from_slice(&data);
        Some(reply)
    }

    /// Forgets connection `fd`'s BAR: the replicas closed it.
    pub fn close(&mut self, fd: u64) {
        self.windows.remove(&fd);
    }

    /// Forgets every BAR (the group starts afresh).
    pub fn clear(&mut self) {
        self.windows.clear();
    }
}
