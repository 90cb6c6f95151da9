//! A software model of the parts of the 82540EM the driver uses, for host tests:
//! registers (self-clearing reset, EEPROM reads, read-to-clear counters) and DMA
//! (the legacy rings in fake DMA memory: a TDT write sends, a test delivers frames
//! into the receive ring). No real device is touched.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;

use crate::dma::DmaMemory;
use crate::interrupt::Interrupt;
use crate::io::{check_batch, Access, Io, RegOp};
use crate::regs::*;
use crate::ring::RingRegions;

/// Where the first fake buffer lies on the bus: above 4 GiB, so the high halves of
/// the base address registers matter.
const FIRST_BUS_ADDR: u64 = 0x1_2340_0000;
const BUS_STRIDE: u64 = 2 << 20;

/// Heap memory standing in for `dma:` buffers, each with a made-up bus address.
#[derive(Clone, Default)]
pub struct FakeDma(Rc<RefCell<Vec<Rc<Region>>>>);

struct Region {
    ptr: *mut u8,
    layout: Layout,
    bus: u64,
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated with layout in FakeDma::alloc.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

struct FakeBuffer(Rc<Region>);

impl DmaMemory for FakeBuffer {
    fn as_ptr(&self) -> *mut u8 {
        self.0.ptr
    }

    fn len(&self) -> usize {
        self.0.layout.size()
    }

    fn bus_addr(&self) -> u64 {
        self.0.bus
    }
}

impl FakeDma {
    pub fn new() -> Self {
        Self::default()
    }

    /// A zeroed buffer of `len` bytes.
    pub fn alloc(&self, len: usize) -> Box<dyn DmaMemory> {
        let layout = Layout::from_size_align(len.max(1), 4096).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        let mut regions = self.0.borrow_mut();
        let bus = FIRST_BUS_ADDR + BUS_STRIDE * regions.len() as u64;
        let region = Rc::new(Region { ptr, layout, bus });
        regions.push(region.clone());
        Box::new(FakeBuffer(region))
    }

    /// The regions of a ring of `slots` descriptors: two buffers, allocated
    /// one after the other (so [`alias_ring`](Self::alias_ring) finds both).
    pub fn ring(&self, slots: u16) -> RingRegions {
        RingRegions {
            descriptors: self.alloc(usize::from(slots) * crate::ring::DESCRIPTOR_LEN),
            packets: self.alloc(usize::from(slots) * crate::ring::BUFFER_LEN),
        }
    }

    /// The regions of the ring [`ring`](Self::ring) allocated with its
    /// descriptors at bus address `bus`, once more, as `dma:` hands a
    /// successor the kept buffers of a driver that died.
    pub fn alias_ring(&self, bus: u64) -> RingRegions {
        RingRegions {
            descriptors: self.alias(bus),
            packets: self.alias(bus + BUS_STRIDE),
        }
    }

    /// The buffer allocated at bus address `bus` once more, as `dma:` hands a
    /// successor the kept buffer of a driver that died.
    pub fn alias(&self, bus: u64) -> Box<dyn DmaMemory> {
        let regions = self.0.borrow();
        let region = regions
            .iter()
            .find(|r| r.bus == bus)
            .unwrap_or_else(|| panic!("no buffer at {bus:#x}"));
        Box::new(FakeBuffer(region.clone()))
    }

    /// The device's view: `len` bytes at bus address `bus`. A model DMA outside
    /// every buffer is a driver bug the test must see, hence the panic.
    fn at(&self, bus: u64, len: usize) -> *mut u8 {
        let regions = self.0.borrow();
        let region = regions
            .iter()
            .find(|r| bus >= r.bus && bus + len as u64 <= r.bus + r.layout.size() as u64)
            .unwrap_or_else(|| panic!("NIC DMA of {len} bytes at {bus:#x} outside every buffer"));
        // SAFETY: the range lies inside the region (found above).
        unsafe { region.ptr.add((bus - region.bus) as usize) }
    }

    pub fn read(&self, bus: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        // SAFETY: `at` checked the range.
        unsafe { std::ptr::copy_nonoverlapping(self.at(bus, len), bytes.as_mut_ptr(), len) };
        bytes
    }

    pub fn write(&self, bus: u64, bytes: &[u8]) {
        // SAFETY: `at` checked the range.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.at(bus, bytes.len()), bytes.len())
        };
    }
}

/// The counters the model keeps, cleared when read as on the NIC.
const READ_TO_CLEAR: [u32; 14] = [
    ICR, CRCERRS, MPC, GPRC, BPRC, MPRC, GPTC, GORCL, GORCH, GOTCL, GOTCH, RNBC, TPR, TPT,
];

/// Descriptor status bits the model writes back.
pub const DD: u8 = 1 << 0;
pub const EOP: u8 = 1 << 1;
const CMD_RS: u8 = 1 << 3;

/// The model NIC; clones share it, so a test keeps one while the driver owns
/// another as its [`Io`].
#[derive(Clone)]
pub struct SoftNic(Rc<RefCell<Nic>>);

struct Nic {
    regs: HashMap<u32, u32>,
    eeprom: [u16; 3],
    dma: FakeDma,
    sent: Vec<Vec<u8>>,
    writes: Vec<RegOp>,
    runs: usize,
    failing: bool,
    tx_paused: bool,
    reset_stuck: bool,
    /// Bus Master Enable: without it the NIC moves no frame to or from memory.
    bus_master: bool,
    /// How many register writes had been made when the driver last started
    /// bus mastering.
    bus_master_started_after: Option<usize>,
}

impl SoftNic {
    /// A NIC with link up at 1000 Mb/s full duplex, `mac` in receive address 0 and
    /// in the EEPROM, and state a previous driver left: receiver and transmitter
    /// on, bus mastering off (as `mmio:` leaves it when that driver went).
    pub fn new(dma: &FakeDma, mac: [u8; 6]) -> Self {
        let (ral0, rah0) = ral_rah_from_address(mac);
        let regs = HashMap::from([
            (STATUS, STATUS_LU | STATUS_FD | 2 << STATUS_SPEED_SHIFT),
            (ral(0), ral0),
            (rah(0), rah0),
            (RCTL, RCTL_EN),
            (TCTL, TCTL_EN),
            (GPRC, 7),
        ]);
        let word = |i: usize| u16::from_le_bytes([mac[2 * i], mac[2 * i + 1]]);
        Self(Rc::new(RefCell::new(Nic {
            regs,
            eeprom: [word(0), word(1), word(2)],
            dma: dma.clone(),
            sent: Vec::new(),
            writes: Vec::new(),
            runs: 0,
            failing: false,
            tx_paused: false,
            reset_stuck: false,
            bus_master: false,
            bus_master_started_after: None,
        })))
    }

    /// Clears Bus Master Enable, as `mmio:` does when the driver's last handle
    /// on the NIC closes.
    pub fn stop_bus_master(&self) {
        self.0.borrow_mut().bus_master = false;
    }

    /// How many register writes the driver had made when it last started bus
    /// mastering; `None` if it never did.
    pub fn bus_master_started_after(&self) -> Option<usize> {
        self.0.borrow().bus_master_started_after
    }

    /// Receive address 0 not valid: the driver must read the EEPROM.
    pub fn without_receive_address(self) -> Self {
        self.0.borrow_mut().regs.insert(rah(0), 0);
        self
    }

    /// CTRL.RST never clears.
    pub fn with_stuck_reset(self) -> Self {
        self.0.borrow_mut().reset_stuck = true;
        self
    }

    pub fn io(&self) -> Box<dyn Io> {
        Box::new(self.clone())
    }

    pub fn reg(&self, reg: u32) -> u32 {
        self.0.borrow().read(reg)
    }

    /// Every value written to `reg`, in order.
    pub fn writes_to(&self, reg: u32) -> Vec<u32> {
        let nic = self.0.borrow();
        nic.writes
            .iter()
            .filter(|op| op.reg == reg)
            .map(|op| op.value)
            .collect()
    }

    /// How many register writes came before the first to `reg`; `None` if
    /// none was to it.
    pub fn writes_before_first(&self, reg: u32) -> Option<usize> {
        self.0.borrow().writes.iter().position(|op| op.reg == reg)
    }

    /// How many register writes the driver made, to any register.
    pub fn writes(&self) -> usize {
        self.0.borrow().writes.len()
    }

    /// How many batches the driver ran.
    pub fn runs(&self) -> usize {
        self.0.borrow().runs
    }

    /// Every later access fails, as when `mmio:` goes away.
    pub fn fail(&self) {
        self.0.borrow_mut().failing = true;
    }

    /// While paused, TDT writes queue frames but the NIC sends nothing.
    pub fn pause_tx(&self, paused: bool) {
        let mut nic = self.0.borrow_mut();
        nic.tx_paused = paused;
        nic.transmit();
    }

    /// The frames sent since the last call.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.0.borrow_mut().sent)
    }

    /// A good frame arrives from the wire; false if the NIC had no buffer for it.
    pub fn deliver(&self, frame: &[u8]) -> bool {
        self.deliver_descriptor(frame, DD | EOP, 0)
    }

    /// The link goes down or comes up: STATUS follows and LSC is raised.
    pub fn set_link(&self, up: bool) {
        let mut nic = self.0.borrow_mut();
        let status = nic.read(STATUS);
        let status = if up {
            status | STATUS_LU
        } else {
            status & !STATUS_LU
        };
        nic.regs.insert(STATUS, status);
        nic.raise(ICR_LSC);
    }

    /// Whether the NIC asserts its (level-triggered) interrupt: an enabled
    /// cause is latched.
    pub fn interrupt_asserted(&self) -> bool {
        let nic = self.0.borrow();
        nic.read(ICR) & nic.read(IMS) != 0
    }

    /// The NIC's interrupt line as `mmio:` would serve it: masked as it fires,
    /// unmasked by the acknowledgement.
    pub fn interrupt_line(&self) -> SoftLine {
        SoftLine {
            nic: self.clone(),
            masked: Rc::new(Cell::new(false)),
        }
    }

    /// Writes `frame` back into the next receive descriptor with `status` and
    /// `errors`, as the NIC would.
    pub fn deliver_descriptor(&self, frame: &[u8], status: u8, errors: u8) -> bool {
        self.0.borrow_mut().receive(frame, status, errors)
    }
}

impl Io for SoftNic {
    fn run(&mut self, ops: &mut [RegOp]) -> io::Result<()> {
        let mut nic = self.0.borrow_mut();
        if nic.failing {
            return Err(io::Error::other("model: register access refused"));
        }
        check_batch(ops, BAR0_SIZE)?;
        nic.runs += 1;
        for op in ops {
            match op.access {
                Access::Read => op.value = nic.read_and_clear(op.reg),
                Access::Write => nic.write(op.reg, op.value),
            }
        }
        Ok(())
    }

    fn start_bus_master(&mut self) -> io::Result<()> {
        let mut nic = self.0.borrow_mut();
        if nic.failing {
            return Err(io::Error::other("model: bus mastering refused"));
        }
        nic.bus_master = true;
        nic.bus_master_started_after = Some(nic.writes.len());
        nic.transmit();
        Ok(())
    }
}

impl Nic {
    fn read(&self, reg: u32) -> u32 {
        self.regs.get(&reg).copied().unwrap_or(0)
    }

    fn read_and_clear(&mut self, reg: u32) -> u32 {
        if READ_TO_CLEAR.contains(&reg) {
            self.regs.remove(&reg).unwrap_or(0)
        } else {
            self.read(reg)
        }
    }

    fn add(&mut self, reg: u32, n: u32) {
        *self.regs.entry(reg).or_default() += n;
    }

    fn write(&mut self, reg: u32, value: u32) {
        self.writes.push(RegOp::write(reg, value));
        let stored = match reg {
            CTRL if !self.reset_stuck => value & !CTRL_RST,
            IMS => self.read(IMS) | value,
            IMC => {
                self.regs.insert(IMS, self.read(IMS) & !value);
                value
            }
            EERD if value & EERD_START != 0 => {
                let address = (value >> EERD_ADDR_SHIFT) & 0xff;
                let word = self.eeprom.get(address as usize).copied().unwrap_or(0xffff);
                u32::from(word) << EERD_DATA_SHIFT | address << EERD_ADDR_SHIFT | EERD_DONE
            }
            _ => value,
        };
        self.regs.insert(reg, stored);
        if reg == TDT {
            self.transmit();
        }
    }

    fn ring(&self, base_low: u32, base_high: u32, len: u32) -> (u64, u32) {
        let base = u64::from(self.read(base_high)) << 32 | u64::from(self.read(base_low));
        (base, self.read(len) / 16)
    }

    /// Sends every descriptor from TDH up to TDT.
    fn transmit(&mut self) {
        if self.read(TCTL) & TCTL_EN == 0 || self.tx_paused || !self.bus_master {
            return;
        }
        let (base, slots) = self.ring(TDBAL, TDBAH, TDLEN);
        while self.read(TDH) != self.read(TDT) {
            let desc = base + u64::from(self.read(TDH)) * 16;
            let frame = consume_tx(&self.dma, desc);
            self.regs.insert(TDH, (self.read(TDH) + 1) % slots);
            self.add(GPTC, 1);
            self.add(GOTCL, frame.len() as u32);
            self.sent.push(frame);
            self.raise(ICR_TXDW);
        }
    }

    fn receive(&mut self, frame: &[u8], status: u8, errors: u8) -> bool {
        // QEMU's e1000 does not take a frame off the wire without it either.
        if self.read(RCTL) & RCTL_EN == 0 || !self.bus_master {
            return false;
        }
        let (base, slots) = self.ring(RDBAL, RDBAH, RDLEN);
        let head = self.read(RDH);
        if head == self.read(RDT) {
            self.add(RNBC, 1);
            return false;
        }
        write_back_rx(
            &self.dma,
            base + u64::from(head) * 16,
            frame,
            status,
            errors,
        );
        self.regs.insert(RDH, (head + 1) % slots);
        self.add(GPRC, 1);
        self.add(GORCL, frame.len() as u32);
        self.raise(ICR_RXT0);
        true
    }

    /// Latches interrupt `causes` in ICR.
    fn raise(&mut self, causes: u32) {
        self.regs.insert(ICR, self.read(ICR) | causes);
    }
}

/// A [`SoftNic`]'s interrupt line; clones share it.
#[derive(Clone)]
pub struct SoftLine {
    nic: SoftNic,
    masked: Rc<Cell<bool>>,
}

impl SoftLine {
    pub fn is_masked(&self) -> bool {
        self.masked.get()
    }
}

impl Interrupt for SoftLine {
    fn wake_fd(&self) -> Option<RawFd> {
        None
    }

    fn fired(&mut self) -> io::Result<bool> {
        let fires = !self.masked.get() && self.nic.interrupt_asserted();
        if fires {
            self.masked.set(true);
        }
        Ok(fires)
    }

    fn acknowledge(&mut self) -> io::Result<()> {
        self.masked.set(false);
        Ok(())
    }
}

/// The NIC's side of the receive descriptor at bus address `desc`: `frame` into
/// its buffer, then its length, status and errors.
pub fn write_back_rx(dma: &FakeDma, desc: u64, frame: &[u8], status: u8, errors: u8) {
    let buffer = u64::from_le_bytes(dma.read(desc, 8).try_into().unwrap());
    dma.write(buffer, frame);
    dma.write(desc + 8, &(frame.len() as u16).to_le_bytes());
    dma.write(desc + 12, &[status, errors]);
}

/// The NIC's side of the transmit descriptor at bus address `desc`: the frame it
/// points at, and DD set if it asked for a status report.
pub fn consume_tx(dma: &FakeDma, desc: u64) -> Vec<u8> {
    let raw = dma.read(desc, 16);
    let buffer = u64::from_le_bytes(raw[..8].try_into().unwrap());
    let len = u16::from_le_bytes([raw[8], raw[9]]);
    if raw[11] & CMD_RS != 0 {
        dma.write(desc + 12, &[raw[12] | DD]);
    }
    dma.read(buffer, len.into())
}
