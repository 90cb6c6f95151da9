//! Reading, comparing and repairing a replica's state, and corrupting it on purpose.
//!
//! When a vote finds a minority replica divergent, the engine copies a healthy replica's
//! state into it instead of starting it afresh: the general registers (plain
//! `ptrace::getregs`/`setregs`), the FP/SSE registers ([`FpState`]) and the private
//! writable memory that differs ([`repair_memory`]). That only works because replicas
//! run without address-space randomisation, so equal programs have equal layouts; a
//! replica whose layout has drifted ([`RepairError::LayoutDiffers`]) must be replaced.
//!
//! Fault injection uses the same access paths to flip single bits in a replica's memory
//! or registers, or to send it into an endless loop ([`find_spin_instruction`]).

use std::fmt;
use std::fs;
use std::io::{self, IoSlice, IoSliceMut};
use std::ops::Range;

use nix::errno::Errno;
use nix::libc::{c_long, user_fpregs_struct, user_regs_struct};
use nix::sys::ptrace::{self, regset::NT_PRFPREG, AddressType};
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

use crate::vote::{Register, Registers};

/// The x86-64 base page: the unit memory is compared and copied in, so one flipped bit
/// costs one page of writing.
pub const PAGE_SIZE: usize = 4096;

/// How much of each process one read call takes: large enough that the syscall cost
/// vanishes against the copying, small enough to stay in the cache while comparing.
const CHUNK_SIZE: usize = 256 * 1024;

/// How many differing pages a [`MemoryRepair`] lists for the log.
pub const LOGGED_PAGES: usize = 8;

/// Mappings the kernel provides and owns: they are not the program's state, and the
/// vsyscall page cannot even be read through process_vm_readv.
const KERNEL_MAPPINGS: [&str; 4] = ["[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]"];

/// `jmp $`: a two-byte jump to itself.
const SPIN: [u8; 2] = [0xeb, 0xfe];

/// One mapping of a process's address space, as `/proc/<pid>/maps` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// The mapped file, a kernel name like `[heap]`, or empty for anonymous memory.
    pub name: String,
}

impl Region {
    /// Whether `address` lies in this region.
    pub fn contains(&self, address: u64) -> bool {
        (self.start..self.end).contains(&address)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x} {}", self.start, self.end, self.name)
    }
}

/// Why state could not be compared, repaired or corrupted.
#[derive(Debug)]
pub enum RepairError {
    /// The memory map of `pid` could not be read.
    Maps { pid: Pid, source: io::Error },
    /// The processes' writable private mappings differ: the first mapping that differs
    /// in each, `None` where that process has no more. Copying memory cannot fix this;
    /// the faulty replica has to be replaced.
    LayoutDiffers {
        healthy: Option<Region>,
        faulty: Option<Region>,
    },
    /// The memory of `pid` at `address` could not be read or written.
    Memory {
        pid: Pid,
        address: u64,
        errno: Errno,
    },
    /// A bit number past the end of the byte or register it should flip.
    BitOutOfRange { bit: u8, width: u32 },
}

impl fmt::Display for RepairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let describe = |region: &Option<Region>| match region {
            Some(region) => region.to_string(),
            None => "nothing".to_string(),
        };
        match self {
            RepairError::Maps { pid, source } => {
                write!(f, "memory map of process {pid} not readable: {source}")
            }
            RepairError::LayoutDiffers { healthy, faulty } => write!(
                f,
                "memory layouts differ: healthy has {}, faulty has {}",
                describe(healthy),
                describe(faulty)
            ),
            RepairError::Memory {
                pid,
                address,
                errno,
            } => write!(f, "memory of process {pid} at {address:#x}: {errno}"),
            RepairError::BitOutOfRange { bit, width } => {
                write!(f, "bit {bit} is outside a {width}-bit value")
            }
        }
    }
}

impl std::error::Error for RepairError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RepairError::Maps { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The private writable mappings of `pid` (its data, bss, heap, stacks and anonymous
/// memory), in address order. Shared mappings are left out: what they hold is not the
/// process's alone to repair.
pub fn writable_private_regions(pid: Pid) -> io::Result<Vec<Region>> {
    regions(pid, is_writable_private)
}

fn is_writable_private(permissions: &[u8], name: &str) -> bool {
    matches!(permissions, [b'r', b'w', _, b'p']) && !KERNEL_MAPPINGS.contains(&name)
}

/// The mappings of `pid` that can be both read and executed, in address order.
fn executable_regions(pid: Pid) -> io::Result<Vec<Region>> {
    regions(pid, is_executable)
}

fn is_executable(permissions: &[u8], _name: &str) -> bool {
    matches!(permissions, [b'r', _, b'x', _])
}

fn regions(pid: Pid, keep: impl Fn(&[u8], &str) -> bool) -> io::Result<Vec<Region>> {
    parse_maps(&fs::read_to_string(format!("/proc/{pid}/maps"))?, keep)
}

/// The mappings of a `/proc/<pid>/maps` text for which `keep(permissions, name)` holds.
fn parse_maps(text: &str, keep: impl Fn(&[u8], &str) -> bool) -> io::Result<Vec<Region>> {
    let mut regions = Vec::new();
    for line in text.lines() {
        let malformed = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed memory map line {line:?}"),
            )
        };
        // start-end perms offset dev inode [name]; the name may itself contain spaces.
        let mut rest = line;
        let mut fields = [""; 5];
        for field in &mut fields {
            let trimmed = rest.trim_start();
            let (value, after) = trimmed.split_at(trimmed.find(' ').unwrap_or(trimmed.len()));
            if value.is_empty() {
                return Err(malformed());
            }
            *field = value;
            rest = after;
        }
        let [bounds, permissions, ..] = fields;
        if permissions.len() != 4 {
            return Err(malformed());
        }
        let name = rest.trim_start();
        if !keep(permissions.as_bytes(), name) {
            continue;
        }
        let (start, end) = bounds.split_once('-').ok_or_else(malformed)?;
        let parse = |hex: &str| u64::from_str_radix(hex, 16).map_err(|_| malformed());
        regions.push(Region {
            start: parse(start)?,
            end: parse(end)?,
            name: name.to_string(),
        });
    }
    Ok(regions)
}

/// What [`repair_memory`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryRepair {
    /// Bytes read from each process and compared.
    pub compared_bytes: u64,
    /// Pages written into the faulty process.
    pub pages_copied: usize,
    /// The lowest address whose byte differed.
    pub first_difference: Option<u64>,
    /// The first [`LOGGED_PAGES`] pages copied, by address.
    pub differing: Vec<u64>,
}

/// Makes the private writable memory of `faulty` equal to that of `healthy`, writing only
/// the pages that differ. Both processes must be stopped and must have the same
/// writable private mappings.
pub fn repair_memory(healthy: Pid, faulty: Pid) -> Result<MemoryRepair, RepairError> {
    let mut repair = MemoryRepair::default();
    let compared_bytes = for_each_differing_page(healthy, faulty, &[], |page, good, bad| {
        repair.first_difference.get_or_insert_with(|| {
            let offset = good.iter().zip(bad).position(|(a, b)| a != b);
            page + offset.unwrap_or(0) as u64
        });
        write_fully(faulty, page, good)?;
        repair.pages_copied += 1;
        if repair.differing.len() < LOGGED_PAGES {
            repair.differing.push(page);
        }
        Ok(())
    })?;
    repair.compared_bytes = compared_bytes;
    Ok(repair)
}

/// The addresses of the pages whose private writable memory differs between `healthy`
/// and `faulty`, which must be stopped and have the same layout. The pages in
/// `known_alike` (page-aligned ranges the caller knows both hold alike) are not read.
pub fn compare_memory(
    healthy: Pid,
    faulty: Pid,
    known_alike: &[Range<u64>],
) -> Result<Vec<u64>, RepairError> {
    let mut pages = Vec::new();
    for_each_differing_page(healthy, faulty, known_alike, |page, _, _| {
        pages.push(page);
        Ok(())
    })?;
    Ok(pages)
}

/// What [`vote_pages`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageVote {
    /// `(position in pids, page)` for each page rewritten with the majority's content.
    pub rewritten: Vec<(usize, u64)>,
    /// The pages no strict majority holds alike: left as they are, for the caller to
    /// fail on (nothing can tell which copy is right).
    pub unsettled: Vec<u64>,
}

/// Makes every page of `pages` hold, in each of `pids`, the content a strict majority
/// of them holds, and says which pages it rewrote in which process and which no
/// majority settles.
pub fn vote_pages(pids: &[Pid], pages: &[u64]) -> Result<PageVote, RepairError> {
    let needed = pids.len() / 2 + 1;
    let mut vote = PageVote::default();
    let mut copies = vec![vec![0; PAGE_SIZE]; pids.len()];
    for &page in pages {
        for (copy, &pid) in copies.iter_mut().zip(pids) {
            // A copy emptied for an unreadable page gets its size back first.
            copy.resize(PAGE_SIZE, 0);
            if !read_fully(pid, page, copy)? {
                copy.clear();
            }
        }
        let Some(winner) = majority_page(&copies, needed) else {
            vote.unsettled.push(page);
            continue;
        };
        for (position, copy) in copies.iter_mut().enumerate() {
            if *copy != winner {
                write_fully(pids[position], page, &winner)?;
                vote.rewritten.push((position, page));
            }
        }
    }
    Ok(vote)
}

/// The content at least `needed` of `copies` (one page each; empty where the
/// page was unreadable) hold: the whole page when enough copies are alike, else
/// byte by byte among the readable ones, so that two replicas hit in different
/// bytes of one page are still out-voted. `None` when some byte has no majority.
fn majority_page(copies: &[Vec<u8>], needed: usize) -> Option<Vec<u8>> {
    if let Some(alike) = copies
        .iter()
        .find(|candidate| copies.iter().filter(|copy| copy == candidate).count() >= needed)
    {
        return Some(alike.clone());
    }
    let readable: Vec<&Vec<u8>> = copies.iter().filter(|copy| !copy.is_empty()).collect();
    let len = readable.first()?.len();
    if readable.len() < needed || readable.iter().any(|copy| copy.len() != len) {
        return None;
    }
    (0..len)
        .map(|at| {
            readable
                .iter()
                .map(|copy| copy[at])
                .find(|&byte| readable.iter().filter(|copy| copy[at] == byte).count() >= needed)
        })
        .collect()
}

/// Calls `visit(address, healthy_page, faulty_page)` for every page that differs, in
/// address order, and returns how many bytes were compared.
///
/// A page that is unreadable in both (a file mapping past the end of its file) holds no
/// state and is skipped; one readable in only one process is an error.
fn for_each_differing_page(
    healthy: Pid,
    faulty: Pid,
    known_alike: &[Range<u64>],
    mut visit: impl FnMut(u64, &[u8], &[u8]) -> Result<(), RepairError>,
) -> Result<u64, RepairError> {
    let regions = matching_layout(healthy, faulty)?;
    // Pages neither holds as its own copy are alike without being read.
    let pagemaps: Vec<fs::File> = [healthy, faulty]
        .iter()
        .filter_map(|pid| fs::File::open(format!("/proc/{pid}/pagemap")).ok())
        .collect();
    let pieces: Vec<Range<u64>> = regions
        .iter()
        .flat_map(|region| left_out(region.start..region.end, known_alike))
        .flat_map(|piece| match pagemaps.len() {
            2 => own_runs(&pagemaps, piece),
            _ => vec![piece],
        })
        .collect();
    // Buffers no longer than the longest piece: under emulation, zeroing and
    // faulting in memory never read costs as much as a comparison.
    let longest = pieces.iter().map(|piece| piece.end - piece.start).max();
    let buffer_len = longest.unwrap_or(0).min(CHUNK_SIZE as u64) as usize;
    let mut healthy_chunk = vec![0; buffer_len];
    let mut faulty_chunk = vec![0; buffer_len];
    let mut compared = 0;
    for piece in pieces {
        let mut address = piece.start;
        while address < piece.end {
            let len = (piece.end - address).min(CHUNK_SIZE as u64) as usize;
            let good = &mut healthy_chunk[..len];
            let bad = &mut faulty_chunk[..len];
            if read_fully(healthy, address, good)? && read_fully(faulty, address, bad)? {
                compare_pages(address, good, bad, &mut visit)?;
                compared += len as u64;
            } else {
                // Some page of the chunk is unreadable: find it page by page.
                let pages = good.chunks_mut(PAGE_SIZE).zip(bad.chunks_mut(PAGE_SIZE));
                for (page, (good, bad)) in (address..).step_by(PAGE_SIZE).zip(pages) {
                    match (
                        read_fully(healthy, page, good)?,
                        read_fully(faulty, page, bad)?,
                    ) {
                        (true, true) => {
                            compare_pages(page, good, bad, &mut visit)?;
                            compared += good.len() as u64;
                        }
                        (false, false) => {}
                        (readable_in_healthy, _) => {
                            return Err(RepairError::Memory {
                                pid: if readable_in_healthy { faulty } else { healthy },
                                address: page,
                                errno: Errno::EFAULT,
                            })
                        }
                    }
                }
            }
            address += len as u64;
        }
    }
    Ok(compared)
}

/// `/proc/<pid>/pagemap` entry bits.
const PAGEMAP_ENTRY_LEN: usize = 8;
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;
const PAGEMAP_FILE_OR_SHARED: u64 = 1 << 61;

/// Whether a pagemap entry is a page the process holds as its own copy: present
/// and anonymous (written since it was mapped, or touched and zero-filled), or
/// swapped out. Any other page of a private mapping is the same page of the same
/// file in every replica of a program, or not there at all (zero when touched):
/// only own pages can differ between replicas.
fn is_own(entry: u64) -> bool {
    entry & PAGEMAP_SWAPPED != 0
        || (entry & PAGEMAP_PRESENT != 0 && entry & PAGEMAP_FILE_OR_SHARED == 0)
}

/// The pagemap entries of the pages of `range`.
fn pagemap_entries(pagemap: &fs::File, range: &Range<u64>) -> io::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let pages = ((range.end - range.start) / PAGE_SIZE as u64) as usize;
    let mut bytes = vec![0; pages * PAGEMAP_ENTRY_LEN];
    pagemap.read_exact_at(
        &mut bytes,
        range.start / PAGE_SIZE as u64 * PAGEMAP_ENTRY_LEN as u64,
    )?;
    Ok(bytes
        .chunks_exact(PAGEMAP_ENTRY_LEN)
        .map(|entry| u64::from_ne_bytes(entry.try_into().expect("8 bytes")))
        .collect())
}

/// The runs of pages of `range` that any of the processes whose `pagemaps` are
/// given holds as its own ([`is_own`]); all of `range` where one cannot be read.
fn own_runs(pagemaps: &[fs::File], range: Range<u64>) -> Vec<Range<u64>> {
    let mut own = vec![false; ((range.end - range.start) / PAGE_SIZE as u64) as usize];
    for pagemap in pagemaps {
        let Ok(entries) = pagemap_entries(pagemap, &range) else {
            return vec![range];
        };
        for (own, entry) in own.iter_mut().zip(entries) {
            *own |= is_own(entry);
        }
    }
    page_runs(range.start, &own)
}

/// The address ranges of the runs of pages marked in `pages`, the first page at
/// `start`.
pub fn page_runs(start: u64, pages: &[bool]) -> Vec<Range<u64>> {
    let address = |page: usize| start + (page * PAGE_SIZE) as u64;
    let mut runs = Vec::new();
    let mut page = 0;
    while page < pages.len() {
        let run = pages[page..].iter().take_while(|&&marked| marked).count();
        if run > 0 {
            runs.push(address(page)..address(page + run));
        }
        page += run + 1;
    }
    runs
}

/// The parts of `range` outside every range of `out`, in order.
fn left_out(range: Range<u64>, out: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out: Vec<&Range<u64>> = out
        .iter()
        .filter(|o| o.start < range.end && range.start < o.end)
        .collect();
    out.sort_by_key(|o| o.start);
    let mut pieces = Vec::new();
    let mut from = range.start;
    for o in out {
        if o.start > from {
            pieces.push(from..o.start);
        }
        from = from.max(o.end);
    }
    if from < range.end {
        pieces.push(from..range.end);
    }
    pieces
}

fn compare_pages(
    address: u64,
    good: &[u8],
    bad: &[u8],
    visit: &mut impl FnMut(u64, &[u8], &[u8]) -> Result<(), RepairError>,
) -> Result<(), RepairError> {
    let pages = good.chunks(PAGE_SIZE).zip(bad.chunks(PAGE_SIZE));
    for (page, (good, bad)) in (address..).step_by(PAGE_SIZE).zip(pages) {
        if good != bad {
            visit(page, good, bad)?;
        }
    }
    Ok(())
}

/// The writable private regions of `healthy`, if `faulty` has the same ones. Only the
/// bounds must agree: a name does not change what a copy does.
fn matching_layout(healthy: Pid, faulty: Pid) -> Result<Vec<Region>, RepairError> {
    let regions_of =
        |pid| writable_private_regions(pid).map_err(|source| RepairError::Maps { pid, source });
    let good = regions_of(healthy)?;
    let bad = regions_of(faulty)?;
    let bounds = |region: Option<&Region>| region.map(|region| (region.start, region.end));
    let first_mismatch =
        (0..good.len().max(bad.len())).find(|&i| bounds(good.get(i)) != bounds(bad.get(i)));
    match first_mismatch {
        None => Ok(good),
        Some(i) => Err(RepairError::LayoutDiffers {
            healthy: good.get(i).cloned(),
            faulty: bad.get(i).cloned(),
        }),
    }
}

/// Writes all of `bytes` at `address` of the stopped process `pid`.
pub fn write_memory_exactly(pid: Pid, address: u64, bytes: &[u8]) -> Result<(), RepairError> {
    write_fully(pid, address, bytes)
}

/// Fills `buffer` from `address` in `pid`. `Ok(false)` when some of it is not readable;
/// errors other than a bad address (the process is gone, no permission) are errors.
fn read_fully(pid: Pid, address: u64, buffer: &mut [u8]) -> Result<bool, RepairError> {
    let len = buffer.len();
    let remote = [RemoteIoVec {
        base: address as usize,
        len,
    }];
    match process_vm_readv(pid, &mut [IoSliceMut::new(buffer)], &remote) {
        Ok(read) => Ok(read == len),
        Err(Errno::EFAULT) => Ok(false),
        Err(errno) => Err(RepairError::Memory {
            pid,
            address,
            errno,
        }),
    }
}

/// Writes all of `bytes` to `address` in `pid`; a read-only page (code) is
/// written through `/proc/<pid>/mem`, as a debugger sets a breakpoint, which
/// gives the process its own copy of the page.
fn write_fully(pid: Pid, address: u64, bytes: &[u8]) -> Result<(), RepairError> {
    use std::os::unix::fs::FileExt;
    let len = bytes.len();
    let remote = [RemoteIoVec {
        base: address as usize,
        len,
    }];
    let errno = match process_vm_writev(pid, &[IoSlice::new(bytes)], &remote) {
        Ok(written) if written == len => return Ok(()),
        Ok(_) | Err(Errno::EFAULT) => fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .and_then(|mem| mem.write_all_at(bytes, address))
            .map_or_else(
                |error| Errno::from_raw(error.raw_os_error().unwrap_or(Errno::EFAULT as i32)),
                |()| Errno::UnknownErrno,
            ),
        Err(errno) => errno,
    };
    if errno == Errno::UnknownErrno {
        return Ok(());
    }
    Err(RepairError::Memory {
        pid,
        address,
        errno,
    })
}

/// The pages of `pid`'s private executable mappings that are its own copy, not
/// the file's: written since they were mapped (a corrupted instruction). Only
/// these can differ between replicas of one program; the others are the same
/// page of the same file in all of them.
pub fn private_code_pages(pid: Pid) -> Result<Vec<u64>, RepairError> {
    let maps_error = |source| RepairError::Maps { pid, source };
    let regions = regions(pid, |permissions, name| {
        matches!(permissions, [b'r', _, b'x', b'p']) && !KERNEL_MAPPINGS.contains(&name)
    })
    .map_err(maps_error)?;
    let pagemap = fs::File::open(format!("/proc/{pid}/pagemap")).map_err(maps_error)?;
    let mut own = Vec::new();
    for region in &regions {
        let entries = pagemap_entries(&pagemap, &(region.start..region.end)).map_err(maps_error)?;
        for (index, entry) in entries.into_iter().enumerate() {
            if is_own(entry) {
                own.push(region.start + (index * PAGE_SIZE) as u64);
            }
        }
    }
    Ok(own)
}

/// Of the code pages that any of `pids` holds as its own copy, those whose
/// content is not the same in all of them.
pub fn differing_code_pages(pids: &[Pid]) -> Result<Vec<u64>, RepairError> {
    let mut candidates = Vec::new();
    for &pid in pids {
        candidates.extend(private_code_pages(pid)?);
    }
    candidates.sort_unstable();
    candidates.dedup();
    let (mut first, mut other) = (vec![0; PAGE_SIZE], vec![0; PAGE_SIZE]);
    let mut differing = Vec::new();
    for page in candidates {
        let Some((&reference, rest)) = pids.split_first() else {
            break;
        };
        let first_readable = read_fully(reference, page, &mut first)?;
        for &pid in rest {
            let readable = read_fully(pid, page, &mut other)?;
            if readable != first_readable || (readable && other != first) {
                differing.push(page);
                break;
            }
        }
    }
    Ok(differing)
}

/// Gives `faulty` the content `healthy` has in every code page that either of
/// them holds as its own copy ([`private_code_pages`]); returns how many pages
/// were written.
pub fn repair_code(healthy: Pid, faulty: Pid) -> Result<usize, RepairError> {
    let mut pages = private_code_pages(healthy)?;
    pages.extend(private_code_pages(faulty)?);
    pages.sort_unstable();
    pages.dedup();
    let (mut good, mut bad) = (vec![0; PAGE_SIZE], vec![0; PAGE_SIZE]);
    let mut written = 0;
    for page in pages {
        let readable = read_fully(healthy, page, &mut good)? && read_fully(faulty, page, &mut bad)?;
        if readable && good != bad {
            write_fully(faulty, page, &good)?;
            written += 1;
        }
    }
    Ok(written)
}

/// The x87, MMX and SSE registers of a process: the 512-byte FXSAVE image.
#[derive(Clone, Copy, Debug)]
pub struct FpState(pub user_fpregs_struct);

impl FpState {
    /// The XMM registers there are (XMM0-15).
    pub const XMM_COUNT: usize = 16;

    /// The FP state of the stopped tracee `pid`.
    pub fn read(pid: Pid) -> Result<FpState, Errno> {
        ptrace::getregset::<NT_PRFPREG>(pid).map(FpState)
    }

    /// Loads this state into the stopped tracee `pid`.
    pub fn write(&self, pid: Pid) -> Result<(), Errno> {
        ptrace::setregset::<NT_PRFPREG>(pid, self.0)
    }

    /// The 16 bytes of XMM register `index` (below [`Self::XMM_COUNT`]).
    pub fn xmm(&self, index: usize) -> [u8; 16] {
        let words = &self.0.xmm_space[index * 4..][..4];
        let mut bytes = [0; 16];
        for (bytes, word) in bytes.chunks_exact_mut(4).zip(words) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Sets XMM register `index` (below [`Self::XMM_COUNT`]) to `bytes`.
    pub fn set_xmm(&mut self, index: usize, bytes: [u8; 16]) {
        let words = &mut self.0.xmm_space[index * 4..][..4];
        for (word, bytes) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes(bytes.try_into().expect("chunks of 4"));
        }
    }

    /// The numbers of the XMM registers whose values differ, in order.
    pub fn differing_xmm<'a>(&'a self, other: &'a FpState) -> impl Iterator<Item = usize> + 'a {
        (0..Self::XMM_COUNT).filter(move |&index| self.xmm(index) != other.xmm(index))
    }
}

/// Compares the registers only: the image's reserved tail is not state the program can
/// see, and the kernel may keep its own bookkeeping there.
impl PartialEq for FpState {
    fn eq(&self, other: &FpState) -> bool {
        let (a, b) = (&self.0, &other.0);
        (
            a.cwd,
            a.swd,
            a.ftw,
            a.fop,
            a.rip,
            a.rdp,
            a.mxcsr,
            a.mxcr_mask,
        ) == (
            b.cwd,
            b.swd,
            b.ftw,
            b.fop,
            b.rip,
            b.rdp,
            b.mxcsr,
            b.mxcr_mask,
        ) && a.st_space == b.st_space
            && a.xmm_space == b.xmm_space
    }
}

impl Eq for FpState {}

/// Flips `bit` (0 = least significant) of the byte at `address` in the stopped tracee
/// `pid` and returns the byte before and after.
///
/// Memory the process cannot write itself (its code, read-only data) is written through
/// ptrace's word access, which the kernel lets through the page protection.
pub fn flip_memory_bit(pid: Pid, address: u64, bit: u8) -> Result<(u8, u8), RepairError> {
    let mask = bit_mask(bit, u8::BITS)? as u8;
    let mut byte = [0];
    if read_fully(pid, address, &mut byte)? && write_fully(pid, address, &[byte[0] ^ mask]).is_ok()
    {
        return Ok((byte[0], byte[0] ^ mask));
    }
    let word_address = address & !(std::mem::size_of::<c_long>() as u64 - 1);
    let shift = (address - word_address) * 8;
    let failed = |errno| RepairError::Memory {
        pid,
        address,
        errno,
    };
    let word = ptrace::read(pid, word_address as AddressType).map_err(failed)?;
    let flipped = word ^ ((mask as c_long) << shift);
    ptrace::write(pid, word_address as AddressType, flipped).map_err(failed)?;
    let old = (word >> shift) as u8;
    Ok((old, old ^ mask))
}

/// Flips `bit` of `register` in `regs`; a name from a command line or test script
/// becomes a [`Register`] through [`Register::from_name`].
pub fn flip_register_bit(
    regs: &mut user_regs_struct,
    register: Register,
    bit: u8,
) -> Result<(), RepairError> {
    let mask = bit_mask(bit, u64::BITS)?;
    let mut values = Registers::from(&*regs);
    values.set(register, values.get(register) ^ mask);
    values.apply_to(regs);
    Ok(())
}

fn bit_mask(bit: u8, width: u32) -> Result<u64, RepairError> {
    if u32::from(bit) < width {
        Ok(1 << bit)
    } else {
        Err(RepairError::BitOutOfRange { bit, width })
    }
}

/// The address of a `jmp $` in an executable mapping of `pid`, if there is one: pointing
/// a replica's RIP there makes it loop forever without changing any of its memory.
pub fn find_spin_instruction(pid: Pid) -> io::Result<Option<u64>> {
    let mut buffer = vec![0; CHUNK_SIZE + 1];
    for region in executable_regions(pid)? {
        let mut address = region.start;
        while address < region.end {
            // One byte more than the step, so a pair across two chunks is seen.
            let len = (region.end - address).min(CHUNK_SIZE as u64 + 1) as usize;
            let remote = [RemoteIoVec {
                base: address as usize,
                len,
            }];
            let read = process_vm_readv(pid, &mut [IoSliceMut::new(&mut buffer[..len])], &remote)?;
            if let Some(offset) = find_spin(&buffer[..read]) {
                return Ok(Some(address + offset as u64));
            }
            if read < len {
                // The rest of this mapping is not backed (past the end of its file).
                break;
            }
            address += CHUNK_SIZE as u64;
        }
    }
    Ok(None)
}

/// The offset of the first `jmp $` in `code`.
fn find_spin(code: &[u8]) -> Option<usize> {
    code.windows(SPIN.len()).position(|pair| pair == SPIN)
}

#[cfg(test)]
mod tests {
    use std::arch::{asm, global_asm};
    use std::ptr;
    use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    #[test]
    fn a_page_majority_is_taken_whole_or_byte_by_byte_and_none_without_one() {
        let page = |bytes: [u8; 4]| bytes.to_vec();
        let alike = [page([1, 2, 3, 4]), page([1, 2, 3, 4]), page([9, 9, 9, 9])];
        assert_eq!(super::majority_page(&alike, 2), Some(page([1, 2, 3, 4])));
        // Two replicas hit in different bytes: every byte still has a majority.
        let scattered = [page([7, 2, 3, 4]), page([1, 2, 3, 8]), page([1, 2, 3, 4])];
        assert_eq!(
            super::majority_page(&scattered, 2),
            Some(page([1, 2, 3, 4]))
        );
        // The same byte differs in all three.
        let split = [page([1, 2, 3, 4]), page([5, 2, 3, 4]), page([6, 2, 3, 4])];
        assert_eq!(super::majority_page(&split, 2), None);
        // Two replicas that differ anywhere have no majority of two.
        let two = [page([1, 2, 3, 4]), page([1, 2, 3, 5])];
        assert_eq!(super::majority_page(&two, 2), None);
        // An unreadable copy votes for nothing; two readable ones that agree win.
        let unreadable = [Vec::new(), page([1, 2, 3, 4]), page([1, 2, 3, 4])];
        assert_eq!(
            super::majority_page(&unreadable, 2),
            Some(page([1, 2, 3, 4]))
        );
        let lone = [Vec::new(), page([1, 2, 3, 4]), page([1, 2, 3, 5])];
        assert_eq!(super::majority_page(&lone, 2), None);
    }

    use nix::libc;
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::WaitStatus;

    use super::super::Tracee;
    use super::*;

    const SAMPLE_MAPS: &str = "\
55b024763000-55b024765000 r--p 00000000 fe:00 247030                     /usr/bin/cat
55b024765000-55b02476a000 r-xp 00002000 fe:00 247030                     /usr/bin/cat
55b02476e000-55b02476f000 rw-p 0000a000 fe:00 247030                     /usr/bin/cat
55b04e2e5000-55b04e306000 rw-p 00000000 00:00 0                          [heap]
7fe1d3377000-7fe1d3399000 rw-p 00000000 00:00 0 
7fe1d35cf000-7fe1d35d1000 rw-s 001d3000 fe:00 326279                     /dev/shm/shared
7fe1d35d1000-7fe1d35de000 rwxp 00000000 00:00 0
7fe1d35de000-7fe1d35df000 rw-p 00000000 fe:00 316536                     /tmp/a name with spaces (deleted)
7fe1d35e9000-7fe1d35ed000 rw-p 00000000 00:00 0                          [vvar]
7fe1d35ef000-7fe1d35f1000 r-xp 00000000 00:00 0                          [vdso]
7fe1d3622000-7fe1d3624000 ---p 00031000 fe:00 325843                     /usr/lib/ld.so
7ffc38177000-7ffc38198000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    fn region(start: u64, end: u64, name: &str) -> Region {
        Region {
            start,
            end,
            name: name.to_string(),
        }
    }

    #[test]
    fn maps_parser_keeps_private_writable_mappings_but_not_the_kernels() {
        let writable = parse_maps(SAMPLE_MAPS, is_writable_private).unwrap();
        assert_eq!(
            writable,
            vec![
                region(0x55b0_2476_e000, 0x55b0_2476_f000, "/usr/bin/cat"),
                region(0x55b0_4e2e_5000, 0x55b0_4e30_6000, "[heap]"),
                region(0x7fe1_d337_7000, 0x7fe1_d339_9000, ""),
                region(0x7fe1_d35d_1000, 0x7fe1_d35d_e000, ""),
                region(
                    0x7fe1_d35d_e000,
                    0x7fe1_d35d_f000,
                    "/tmp/a name with spaces (deleted)"
                ),
                region(0x7ffc_3817_7000, 0x7ffc_3819_8000, "[stack]"),
            ]
        );
    }

    #[test]
    fn maps_parser_finds_readable_code() {
        let code = parse_maps(SAMPLE_MAPS, is_executable).unwrap();
        assert_eq!(
            code,
            vec![
                region(0x55b0_2476_5000, 0x55b0_2476_a000, "/usr/bin/cat"),
                region(0x7fe1_d35d_1000, 0x7fe1_d35d_e000, ""),
                region(0x7fe1_d35e_f000, 0x7fe1_d35f_1000, "[vdso]"),
            ]
        );
    }

    #[test]
    fn maps_parser_rejects_a_malformed_line() {
        let keep_all = |_: &[u8], _: &str| true;
        let error = parse_maps("55b0-55b1 rw-p 00000000\n", keep_all).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let bad_hex = "55b0-zz rw-p 00000000 00:00 0 [heap]\n";
        assert!(parse_maps(bad_hex, keep_all).is_err());
        let bad_permissions = "55b0-55b1 rw 00000000 00:00 0 [heap]\n";
        assert!(parse_maps(bad_permissions, keep_all).is_err());
    }

    #[test]
    fn own_map_has_the_stack_and_no_kernel_mapping() {
        let regions = writable_private_regions(Pid::this()).unwrap();
        let local = 0_u8;
        let stack = std::ptr::addr_of!(local) as u64;
        assert!(regions.iter().any(|region| region.contains(stack)));
        assert!(regions
            .iter()
            .all(|region| !KERNEL_MAPPINGS.contains(&region.name.as_str())));
    }

    /// Lives in .data, so both processes of a pair map it writable at the same address.
    static REPAIR_TARGET: AtomicU8 = AtomicU8::new(0x5a);

    /// Lives in read-only data: only ptrace's word access writes it.
    static READ_ONLY_TARGET: [u8; 3] = [0x11, 0x22, 0x33];

    fn exit_child() -> i32 {
        0
    }

    /// Forks with the raw syscall, so that no library code runs after it in either
    /// process. Returns 0 in the new process.
    fn raw_fork() -> i64 {
        let pid;
        // SAFETY: fork touches no memory of ours.
        unsafe {
            asm!("syscall", inlateout("rax") libc::SYS_fork => pid,
                lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        pid
    }

    /// Forks; the new process maps one more page, then both trap.
    fn fork_then_map_in_child() -> i32 {
        // SAFETY: mmap touches no memory of ours; int3 stops at the tracer.
        unsafe {
            if raw_fork() == 0 {
                asm!("syscall", "int3", inlateout("rax") libc::SYS_mmap => _,
                    in("rdi") 0, in("rsi") PAGE_SIZE, in("rdx") libc::PROT_READ | libc::PROT_WRITE,
                    in("r10") libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, in("r8") -1, in("r9") 0,
                    lateout("rcx") _, lateout("r11") _, options(nostack));
            } else {
                asm!("int3", options(nomem, nostack));
            }
        }
        0
    }

    /// Where [`map_past_file_end_then_fork`] put its mapping, in the child's copy.
    static PAST_END_MAPPING: AtomicU64 = AtomicU64::new(0);

    /// Maps two pages of a one-page file privately and writable, then forks: touching
    /// the second page would raise SIGBUS, so neither process can read it.
    fn map_past_file_end_then_fork() -> i32 {
        // SAFETY: plain system calls, all async-signal-safe, on a file and mapping of
        // this process's own.
        unsafe {
            let fd = libc::memfd_create(c"romain-state-test".as_ptr(), 0);
            if fd < 0 || libc::ftruncate(fd, PAGE_SIZE as i64) != 0 {
                return 1;
            }
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            let len = 2 * PAGE_SIZE;
            let mapping = libc::mmap(ptr::null_mut(), len, prot, libc::MAP_PRIVATE, fd, 0);
            if mapping == libc::MAP_FAILED {
                return 2;
            }
            PAST_END_MAPPING.store(mapping as u64, Ordering::Relaxed);
        }
        raw_fork();
        0
    }

    /// A traced child running `body` and the process it forked, both stopped at the
    /// fork: the second's memory is then an exact copy of the first's.
    fn fork_pair(body: fn() -> i32) -> (Tracee, Tracee) {
        // SAFETY: every body given here runs only inline asm and plain system calls.
        let mut parent = unsafe { Tracee::fork(body) }.unwrap();
        let options = ptrace::Options::PTRACE_O_EXITKILL | ptrace::Options::PTRACE_O_TRACEFORK;
        ptrace::setoptions(parent.pid(), options).unwrap();
        let status = parent.resume(None).unwrap();
        let fork_event =
            WaitStatus::PtraceEvent(parent.pid(), Signal::SIGTRAP, libc::PTRACE_EVENT_FORK);
        assert_eq!(status, fork_event);
        let forked = ptrace::getevent(parent.pid()).unwrap();
        let child = Tracee::adopt(Pid::from_raw(forked as i32), Signal::SIGSTOP).unwrap();
        (parent, child)
    }

    fn read_byte(pid: Pid, address: u64) -> u8 {
        let mut byte = [0];
        assert!(read_fully(pid, address, &mut byte).unwrap());
        byte[0]
    }

    /// The bytes of `regions` any of `pids` holds as its own.
    fn own_bytes(pids: &[Pid], regions: &[Region]) -> u64 {
        let pagemaps: Vec<fs::File> = pids
            .iter()
            .map(|pid| fs::File::open(format!("/proc/{pid}/pagemap")).unwrap())
            .collect();
        regions
            .iter()
            .flat_map(|region| own_runs(&pagemaps, region.start..region.end))
            .map(|run| run.end - run.start)
            .sum()
    }

    fn page_of(address: u64) -> u64 {
        address & !(PAGE_SIZE as u64 - 1)
    }

    #[test]
    fn a_flipped_bit_is_found_and_repaired_by_copying_its_page() {
        let (healthy, faulty) = fork_pair(fork_then_map_in_child);
        let (healthy, faulty) = (healthy.pid(), faulty.pid());
        let layout = writable_private_regions(healthy).unwrap();
        assert_eq!(writable_private_regions(faulty).unwrap(), layout);
        assert_eq!(
            compare_memory(healthy, faulty, &[]).unwrap(),
            Vec::<u64>::new()
        );

        let target = REPAIR_TARGET.as_ptr() as u64;
        assert_eq!(flip_memory_bit(faulty, target, 3).unwrap(), (0x5a, 0x52));
        assert_eq!(read_byte(faulty, target), 0x52);
        assert_eq!(
            compare_memory(healthy, faulty, &[]).unwrap(),
            vec![page_of(target)]
        );

        let started = Instant::now();
        let repair = repair_memory(healthy, faulty).unwrap();
        let took = started.elapsed();
        println!(
            "repair_memory: {} bytes in {} regions compared, {} page copied, in {took:?}",
            repair.compared_bytes,
            layout.len(),
            repair.pages_copied
        );
        assert_eq!(repair.pages_copied, 1);
        assert_eq!(repair.first_difference, Some(target));
        assert_eq!(repair.differing, vec![page_of(target)]);
        // Only pages one of them holds as its own are read: the flipped page is
        // the faulty one's own copy of a page of the program's file.
        let mapped: u64 = layout.iter().map(|region| region.end - region.start).sum();
        assert_eq!(
            repair.compared_bytes,
            own_bytes(&[healthy, faulty], &layout)
        );
        assert!(
            repair.compared_bytes < mapped / 4,
            "{} of {mapped}",
            repair.compared_bytes
        );

        assert_eq!(read_byte(faulty, target), 0x5a);
        assert_eq!(
            compare_memory(healthy, faulty, &[]).unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn pages_the_caller_knows_alike_are_not_compared() {
        let (healthy, faulty) = fork_pair(fork_then_map_in_child);
        let (healthy, faulty) = (healthy.pid(), faulty.pid());
        let target = REPAIR_TARGET.as_ptr() as u64;
        flip_memory_bit(faulty, target, 3).unwrap();
        let page = page_of(target);
        let around = [
            page - PAGE_SIZE as u64..page,
            page + PAGE_SIZE as u64..page + 2 * PAGE_SIZE as u64,
        ];
        assert_eq!(
            compare_memory(healthy, faulty, &around).unwrap(),
            vec![page]
        );
        let including = page - PAGE_SIZE as u64..page + PAGE_SIZE as u64;
        assert_eq!(
            compare_memory(healthy, faulty, std::slice::from_ref(&including)).unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn marked_pages_make_one_range_per_run() {
        let page = PAGE_SIZE as u64;
        assert_eq!(
            page_runs(0x1000, &[true, true, false, true, false, false, true]),
            vec![
                0x1000..0x1000 + 2 * page,
                0x1000 + 3 * page..0x1000 + 4 * page,
                0x1000 + 6 * page..0x1000 + 7 * page
            ]
        );
        assert_eq!(page_runs(0, &[false, false]), Vec::<Range<u64>>::new());
        assert_eq!(page_runs(0, &[]), Vec::<Range<u64>>::new());
    }

    #[test]
    fn a_range_less_what_is_left_out_is_the_pieces_between() {
        assert_eq!(left_out(10..100, &[]), vec![10..100]);
        assert_eq!(
            left_out(10..100, &[50..60, 0..20, 90..200]),
            vec![20..50, 60..90]
        );
        assert_eq!(left_out(10..100, &[30..40, 35..50]), vec![10..30, 50..100]);
        assert_eq!(left_out(10..100, &[0..10, 100..110]), vec![10..100]);
        assert_eq!(
            left_out(10..100, std::slice::from_ref(&(0..200))),
            Vec::<Range<u64>>::new()
        );
    }

    #[test]
    fn a_page_unreadable_in_both_is_skipped() {
        let (healthy, faulty) = fork_pair(map_past_file_end_then_fork);
        let (healthy, faulty) = (healthy.pid(), faulty.pid());
        let mut mapping = [0; 8];
        let static_address = PAST_END_MAPPING.as_ptr() as u64;
        assert!(read_fully(healthy, static_address, &mut mapping).unwrap());
        let mapping = u64::from_ne_bytes(mapping);
        assert!(!read_fully(healthy, mapping + PAGE_SIZE as u64, &mut [0]).unwrap());

        flip_memory_bit(faulty, mapping + 5, 0).unwrap();
        let repair = repair_memory(healthy, faulty).unwrap();
        assert_eq!(repair.differing, vec![mapping]);
        // The page past the end is nobody's own: it is not even tried.
        let layout = writable_private_regions(healthy).unwrap();
        assert_eq!(
            repair.compared_bytes,
            own_bytes(&[healthy, faulty], &layout)
        );
        assert!(repair.compared_bytes >= PAGE_SIZE as u64);
        assert_eq!(
            compare_memory(healthy, faulty, &[]).unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn a_drifted_layout_is_refused() {
        let (mut healthy, mut faulty) = fork_pair(fork_then_map_in_child);
        for tracee in [&mut healthy, &mut faulty] {
            let status = tracee.resume(None).unwrap();
            assert_eq!(status, WaitStatus::Stopped(tracee.pid(), Signal::SIGTRAP));
        }
        let mapped = ptrace::getregs(faulty.pid()).unwrap().rax;
        assert_eq!(
            mapped % PAGE_SIZE as u64,
            0,
            "mmap failed: {}",
            mapped as i64
        );

        // The new page is a mapping of its own or has grown a neighbour; either way the
        // first difference is the faulty mapping that holds it.
        match repair_memory(healthy.pid(), faulty.pid()) {
            Err(RepairError::LayoutDiffers {
                faulty: Some(extra),
                ..
            }) => assert!(extra.contains(mapped), "{extra} lacks {mapped:#x}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            compare_memory(faulty.pid(), healthy.pid(), &[]),
            Err(RepairError::LayoutDiffers {
                healthy: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn read_only_memory_is_flipped_through_ptrace() {
        // SAFETY: exit_child does nothing.
        let tracee = unsafe { Tracee::fork(exit_child) }.unwrap();
        let pid = tracee.pid();
        let target = READ_ONLY_TARGET.as_ptr() as u64 + 1;
        let writable = writable_private_regions(pid).unwrap();
        assert!(writable.iter().all(|region| !region.contains(target)));

        assert_eq!(flip_memory_bit(pid, target, 7).unwrap(), (0x22, 0xa2));
        assert_eq!(read_byte(pid, target), 0xa2);
        assert_eq!(read_byte(pid, target - 1), 0x11);
        assert_eq!(read_byte(pid, target + 1), 0x33);
    }

    #[test]
    fn flipping_memory_refuses_bad_bits_and_unmapped_addresses() {
        // SAFETY: exit_child does nothing.
        let tracee = unsafe { Tracee::fork(exit_child) }.unwrap();
        let target = REPAIR_TARGET.as_ptr() as u64;
        assert!(matches!(
            flip_memory_bit(tracee.pid(), target, 8),
            Err(RepairError::BitOutOfRange { bit: 8, width: 8 })
        ));
        assert_eq!(read_byte(tracee.pid(), target), 0x5a);
        assert!(matches!(
            flip_memory_bit(tracee.pid(), 8, 0),
            Err(RepairError::Memory { address: 8, .. })
        ));
    }

    #[test]
    fn register_bits_flip_and_nothing_else_changes() {
        // SAFETY: user_regs_struct is plain integers, for which all-zero is valid.
        let blank: user_regs_struct = unsafe { std::mem::zeroed() };
        let mut regs = blank;
        regs.orig_rax = 60;
        flip_register_bit(&mut regs, Register::Rax, 3).unwrap();
        flip_register_bit(&mut regs, Register::Rip, 63).unwrap();
        flip_register_bit(&mut regs, Register::FsBase, 0).unwrap();
        assert_eq!((regs.rax, regs.rip, regs.fs_base), (8, 1 << 63, 1));
        assert_eq!(regs.orig_rax, 60);
        let mut expected = blank;
        (
            expected.orig_rax,
            expected.rax,
            expected.rip,
            expected.fs_base,
        ) = (60, 8, 1 << 63, 1);
        assert_eq!(regs, expected);

        assert!(matches!(
            flip_register_bit(&mut regs, Register::Rax, 64),
            Err(RepairError::BitOutOfRange { bit: 64, width: 64 })
        ));
        assert_eq!(regs.rax, 8);
    }

    #[test]
    fn fp_state_round_trips_through_the_tracee() {
        // SAFETY: exit_child does nothing.
        let tracee = unsafe { Tracee::fork(exit_child) }.unwrap();
        let original = FpState::read(tracee.pid()).unwrap();
        let mut changed = original;
        let mut xmm1 = changed.xmm(1);
        xmm1[5] ^= 0xff;
        changed.set_xmm(1, xmm1);
        assert_ne!(changed, original);
        assert_eq!(
            changed.differing_xmm(&original).collect::<Vec<_>>(),
            vec![1]
        );

        changed.write(tracee.pid()).unwrap();
        let read_back = FpState::read(tracee.pid()).unwrap();
        assert_eq!(read_back, changed);
        assert_eq!(read_back.xmm(1), xmm1);
    }

    #[test]
    fn fp_state_equality_ignores_the_reserved_tail() {
        // SAFETY: user_fpregs_struct is plain integers, for which all-zero is valid.
        let zero: user_fpregs_struct = unsafe { std::mem::zeroed() };
        let mut tail_set = zero;
        // SAFETY: the last byte lies inside the struct.
        unsafe {
            let last = std::mem::size_of::<user_fpregs_struct>() - 1;
            *std::ptr::addr_of_mut!(tail_set).cast::<u8>().add(last) = 0xaa;
        }
        assert_eq!(FpState(tail_set), FpState(zero));

        let mut mxcsr_changed = zero;
        mxcsr_changed.mxcsr = 0x1f80;
        assert_ne!(FpState(mxcsr_changed), FpState(zero));
        assert_eq!(
            FpState(mxcsr_changed).differing_xmm(&FpState(zero)).count(),
            0
        );
    }

    #[test]
    fn spin_is_found_in_code() {
        assert_eq!(find_spin(&[0x90, 0xeb, 0xfe, 0xeb, 0xfe]), Some(1));
        assert_eq!(find_spin(&[0xfe, 0xeb]), None);
        assert_eq!(find_spin(&[0xeb]), None);
        assert_eq!(find_spin(&[]), None);
    }

    // A `jmp $` the test binary is sure to contain.
    global_asm!(
        ".pushsection .text.romain_state_test_spin,\"ax\",@progbits",
        ".globl romain_state_test_spin",
        "romain_state_test_spin:",
        // Spelled out: an assembler may encode a jump to a global symbol as rel32.
        ".byte 0xeb, 0xfe",
        ".popsection"
    );

    extern "C" {
        fn romain_state_test_spin();
    }

    #[test]
    fn a_replica_sent_to_the_spin_instruction_loops_there() {
        // SAFETY: exit_child does nothing.
        let mut tracee = unsafe { Tracee::fork(exit_child) }.unwrap();
        let pid = tracee.pid();
        let ours = romain_state_test_spin as *const () as u64;
        assert_eq!([read_byte(pid, ours), read_byte(pid, ours + 1)], SPIN);

        let spin = find_spin_instruction(pid).unwrap().expect("a jmp $ exists");
        assert!(spin <= ours);
        assert_eq!([read_byte(pid, spin), read_byte(pid, spin + 1)], SPIN);

        let mut regs = ptrace::getregs(pid).unwrap();
        regs.rip = spin;
        ptrace::setregs(pid, regs).unwrap();
        let stopper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            kill(pid, Signal::SIGSTOP).unwrap();
        });
        let status = tracee.resume(None).unwrap();
        stopper.join().unwrap();
        assert_eq!(status, WaitStatus::Stopped(pid, Signal::SIGSTOP));
        assert_eq!(ptrace::getregs(pid).unwrap().rip, spin);
    }
}
