//! A driver for the Intel 82540EM (QEMU's default NIC, `8086:100e`) as an
//! ordinary unprivileged process: it reaches the NIC's registers only through
//! `mmio:` and its DMA memory only through `dma:`, and serves `network.<name>`
//! with the semantics of Redox's network drivers, so a network stack can sit on
//! top.
//!
//! One module per concern: [`batch`] (the batched frame format), [`regs`] (the manual's register names), [`io`] (the
//! [`Io`] trait, a directly mapped BAR or `mmio:` requests), [`dma`] and
//! [`ring`] (descriptor rings in `dma:` buffers), [`device`] (bring-up and the
//! per-round tail moves), [`interrupt`] (the NIC's interrupt through `mmio:`), [`stats`] (counters and the status text), [`state`]
//! (the counters kept in the supervisor's state store across restarts),
//! [`scheme`] (the network scheme).
//!
//! # Using `network.<name>`
//!
//! The scheme is `network.<name>` (`--name`, default `e1000`), reached as
//! `/scheme/network.e1000/<path>` or `network.e1000:<path>`. As in Redox, only
//! uid 0 (where the network stack runs) may open it: anyone else gets EACCES.
//!
//! | path     | read | write | events |
//! |----------|------|-------|--------|
//! | `""`     | one received Ethernet frame per read (destination, source, EtherType, payload; no frame check sequence). A buffer shorter than the frame gets its first bytes and the rest is dropped, as with a datagram socket; 1514 bytes always suffice | one frame per write, 14 to 1514 bytes (header plus MTU 1500, without frame check sequence); the NIC pads it to 60 bytes and appends the check sequence. Anything shorter or longer: EINVAL | `EVENT_READ` while a frame is waiting, `EVENT_WRITE` while a write would not block |
//! | `batch`  | received frames as records ([`batch`]: a 2-byte little-endian length, then the frame), as many as the buffer holds with room for a whole frame (1516 bytes) each; a buffer shorter than 1516 bytes: EINVAL | frames as records, queued in order until one cannot go; returns the bytes of the records taken. The first record decides the error: EINVAL if it is cut short or not a frame of 14 to 1514 bytes, EWOULDBLOCK (or waiting) if the transmit ring is full; a later record that cannot go ends the batch there | as `""` |
//! | `link`   | `up\n` or `down\n`, the link as STATUS says now | EINVAL | `EVENT_READ` once the NIC reported a link change (its interrupt) that this handle has not read since |
//! | `mac`    | the 6-byte address at offset 0 (EINVAL for a buffer shorter than 6 bytes: part of an address is no address); 0 bytes (end of file) at offset 6 and beyond | EINVAL | none |
//! | `status` | a text snapshot taken at open: `key=value` lines for the scheme and access mode, the link, the driver's counters, the NIC's statistics registers | EINVAL | none |
//!
//! Other paths: ENOENT. A handle that was closed (or never opened): EBADF.
//!
//! Blocking: a frame handle opened without `O_NONBLOCK` waits in `read` until a
//! frame arrives, and in `write` while every transmit descriptor (255 frames) is
//! in flight; with `O_NONBLOCK` both return EWOULDBLOCK (EAGAIN on Linux)
//! instead. Waiting requests do not hold up other clients. Every open frame handle
//! reads from the same receive queue: each frame goes to exactly one reader.
//!
//! Events: `fevent(EVENT_READ | EVENT_WRITE)` answers what is ready now and
//! registers interest; later rising edges arrive as events (on Linux, the handle's
//! descriptor polls readable and `Handle::take_events` returns them).
//!
//! Latency: the driver enables the NIC's interrupts for a received frame, sent
//! descriptors and a link change, and sleeps until one of them or a client's
//! request (`mmio:pci/<bdf>/irq`; on Linux `mmio:` binds the NIC to
//! `uio_pci_generic` for it). Once the line fires, the driver leaves it masked
//! and polls the rings every tick (`--tick-us`) while frames move; when
//! `--busy-poll-us` (default 2000 alone) pass without a frame it reads the causes,
//! unmasks the line and sleeps again (NAPI's choice in Linux: a stream costs a
//! few interrupts, an idle driver none). `--busy-poll-us 0` takes every burst
//! by its interrupt. After every round the driver looks at the descriptors in
//! memory, so a frame that arrives for a waiting reader is handed over in the
//! round that finds it; a slow safety tick (`--safety-tick-ms`, default 100)
//! covers a lost interrupt. A replica only names its line: its engine opens
//! it once for the group, wakes on it, tells every replica in the next round
//! that it fired, and unmasks it when the replicas' voted reply acknowledges
//! (`scheme_runtime::replicated::RelayedLine`). A replica takes every burst
//! by its interrupt (`--busy-poll-us` 0 by default): each of its polling
//! rounds is an event of the group, the relayed interrupt none. Where the
//! interrupt cannot be had (`mmio:` refuses it, or `--interrupt off`) the
//! driver polls instead, every tick (default 1000 µs),
//! which adds up to one tick to a waiting reader's latency and costs a wake-up
//! per tick. A written frame is handed to the NIC at the end of the round that
//! carried the write, so a batch of frames costs one tail write.
//!
//! Start-up on QEMU: its e1000 model holds received frames back for one second
//! after every RCTL write, and the driver writes RCTL at start (and at stop) only.
//! A client may send at once; replies that arrive in that first second are queued
//! by QEMU and delivered when it ends, none is lost.
//!
//! If a register access fails (`mmio:` gone), frame reads and writes answer EIO
//! from then on and `status` says why.
//!
//! A client, with this workspace's `scheme_runtime::Handle` (an ordinary file
//! descriptor on Redox):
//!
//! ```no_run
//! use scheme_runtime::Handle;
//! use syscall::flag::{EventFlags, O_RDONLY, O_RDWR};
//!
//! # fn main() -> std::io::Result<()> {
//! let mut mac = [0u8; 6];
//! Handle::open("/scheme/network.e1000/mac", O_RDONLY)?.read(&mut mac)?;
//!
//! let nic = Handle::open("/scheme/network.e1000", O_RDWR)?;
//! let frame = [0u8; 60]; // destination, source, EtherType, payload
//! nic.write(&frame)?;
//! let mut buf = [0u8; 1514];
//! let len = nic.read(&mut buf)?; // waits for a frame
//!
//! nic.set_nonblocking(true);
//! let ready = nic.fevent(EventFlags::EVENT_READ)?; // then poll the handle, take_events()
//! # let _ = (len, ready);
//! # Ok(())
//! # }
//! ```

pub mod batch;
pub mod device;
pub mod dma;
pub mod interrupt;
pub mod io;
pub mod regs;
pub mod ring;
pub mod scheme;
pub mod shutdown;
pub mod state;
pub mod stats;
pub mod takeover;

/// The software 82540EM: the host tests' device, and the hostile-client suite's.
#[cfg(any(test, feature = "model"))]
pub mod model;

/// The NIC this driver drives: the 82540EM's vendor and device id.
pub const DEVICE_ID: driver_policy::DeviceId = driver_policy::DeviceId {
    vendor: 0x8086,
    device: 0x100e,
};

pub use device::Device;
pub use io::{DirectIo, Io, MmioIo};
pub use scheme::NetworkScheme;
