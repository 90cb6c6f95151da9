//! The stub on Linux: its signal handler, its syscall site and its install.
//!
//! Everything the handler does is async-signal-safe: atomics on the shared
//! pages and raw system calls through the site, no allocation, no lock. It
//! runs on its own signal stack, so that nothing it computes that differs
//! between replicas (a fork's result) is left in the memory the engine
//! compares between them; the engine leaves that stack out of every
//! comparison.

use std::arch::asm;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use nix::libc::{self, c_int, c_long, c_void};

use crate::filter::{filter, install_with, Outside};
use crate::rendezvous::{hand_over, Forked, Kernel, Record};
use crate::slot::{reg, Slot, StopKind, PAGE_LEN, REGISTER_WORDS};
use crate::state::{bell, handle_on_signal_stack, own_slot, set_pages};
use crate::{BELL_FD, SITE_PAGE, SITE_RETURN, SLOT_FD};

/// `syscall; ret`.
const SITE_CODE: [u8; 3] = [0x0f, 0x05, 0xc3];

/// `ARCH_SET_GS` and friends (`asm/prctl.h`).
const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

/// `HWCAP2_FSGSBASE`: the kernel lets user code read and write the FS and GS
/// bases with `rdfsbase` and friends, no syscall needed.
const HWCAP2_FSGSBASE: u64 = 1 << 1;

/// Whether `rdfsbase` and friends work (the same in every replica).
static FSGSBASE: AtomicBool = AtomicBool::new(false);

/// Makes a system call at the site, which the filters let through.
fn site_call(number: c_long, args: [u64; 6]) -> i64 {
    let result: i64;
    // SAFETY: the site is `syscall; ret`, mapped before any call; the call
    // follows the kernel's convention and clobbers only rcx and r11. Whether
    // the call itself is safe is the caller's business, as with libc::syscall.
    unsafe {
        asm!(
            "call {site}",
            site = in(reg) SITE_PAGE,
            inlateout("rax") number => result,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    result
}

fn check(result: i64) -> io::Result<i64> {
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result as i32))
    } else {
        Ok(result)
    }
}

/// Installs the stub in the calling process (a replica started by the
/// engine's stub backend, which holds its slot at [`SLOT_FD`] and the bell at
/// [`BELL_FD`]) and hands the replica over to it; returns once the engine
/// answered the first trapped call.
pub fn install() -> io::Result<()> {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave the process.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    FSGSBASE.store(hwcap2 & HWCAP2_FSGSBASE != 0, Ordering::Relaxed);
    map_site()?;
    // SAFETY: both are page mappings kept for the life of the process.
    unsafe { set_pages(map_shared(SLOT_FD, 0)?, map_shared(BELL_FD, 0)?) };
    handle_on_signal_stack(&[libc::SIGSYS, libc::SIGSEGV], on_event)?;
    install_with(&filter(Outside::Trap, Some(SITE_RETURN)), site_call)?;
    // The first call the new filter traps hands the replica to the stub.
    // SAFETY: getppid has no arguments and no memory effects.
    unsafe { libc::getppid() };
    Ok(())
}

/// Maps one page of `fd` shared, at `address` (0: where the kernel likes;
/// otherwise in place of what is there); through the site, since the filter
/// the replica started with stops file mappings.
fn map_shared(fd: i32, address: u64) -> io::Result<*mut u8> {
    let fixed = if address == 0 { 0 } else { libc::MAP_FIXED };
    let mapped = check(site_call(
        libc::SYS_mmap,
        [
            address,
            PAGE_LEN as u64,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_SHARED | fixed) as u64,
            fd as u64,
            0,
        ],
    ))?;
    Ok(mapped as *mut u8)
}

/// Maps [`SITE_PAGE`] with the site's code; anonymous mappings and
/// `mprotect` are calls every filter allows.
fn map_site() -> io::Result<()> {
    // SAFETY: a fixed, non-replacing anonymous mapping of one page that
    // nothing else uses; it is written before it is made executable.
    unsafe {
        let page = libc::mmap(
            SITE_PAGE as *mut c_void,
            PAGE_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if page == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(SITE_CODE.as_ptr(), page.cast(), SITE_CODE.len());
        if libc::mprotect(page, PAGE_LEN, libc::PROT_READ | libc::PROT_EXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In a copy just forked: opens the engine's descriptor of the copy's own
/// slot and maps it where the parent's was. A copy that cannot ends; the
/// engine sees it die.
fn take_own_slot(engine: u32, fd: u32) {
    let mut path = [0_u8; 48];
    let mut len = 0;
    for part in [
        Part::Text(b"/proc/"),
        Part::Number(engine),
        Part::Text(b"/fd/"),
        Part::Number(fd),
    ] {
        len = part.write(&mut path, len);
    }
    let opened = site_call(
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            path.as_ptr() as u64,
            libc::O_RDWR as u64,
            0,
            0,
            0,
        ],
    );
    let taken = opened >= 0
        && site_call(libc::SYS_dup2, [opened as u64, SLOT_FD as u64, 0, 0, 0, 0]) >= 0
        && site_call(libc::SYS_close, [opened as u64, 0, 0, 0, 0, 0]) >= 0
        && map_shared(SLOT_FD, own_slot() as *const Slot as u64).is_ok();
    if !taken {
        site_call(libc::SYS_exit_group, [126, 0, 0, 0, 0, 0]);
    }
}

/// A piece of a path, written without allocating.
enum Part {
    Text(&'static [u8]),
    Number(u32),
}

impl Part {
    /// Writes the part at `at` (keeping a final NUL) and returns the new end.
    fn write(&self, path: &mut [u8], at: usize) -> usize {
        let mut digits = [0_u8; 10];
        let bytes: &[u8] = match *self {
            Part::Text(text) => text,
            Part::Number(mut number) => {
                let mut start = digits.len();
                loop {
                    start -= 1;
                    digits[start] = b'0' + (number % 10) as u8;
                    number /= 10;
                    if number == 0 {
                        break;
                    }
                }
                &digits[start..]
            }
        };
        let end = (at + bytes.len()).min(path.len() - 1);
        path[at..end].copy_from_slice(&bytes[..end - at]);
        end
    }
}

fn futex(word: &AtomicU32, operation: c_int, value: u32) {
    site_call(
        libc::SYS_futex,
        [
            word.as_ptr() as u64,
            operation as u64,
            u64::from(value),
            0,
            0,
            0,
        ],
    );
}

#[derive(Clone, Copy)]
enum Segment {
    Fs,
    Gs,
}

fn segment_base(segment: Segment) -> u64 {
    let mut base = 0_u64;
    if FSGSBASE.load(Ordering::Relaxed) {
        // SAFETY: the kernel enabled the instructions (HWCAP2); they read a
        // register and touch no memory.
        unsafe {
            match segment {
                Segment::Fs => asm!("rdfsbase {}", out(reg) base, options(nomem, nostack)),
                Segment::Gs => asm!("rdgsbase {}", out(reg) base, options(nomem, nostack)),
            }
        }
    } else {
        let code = match segment {
            Segment::Fs => ARCH_GET_FS,
            Segment::Gs => ARCH_GET_GS,
        };
        site_call(
            libc::SYS_arch_prctl,
            [code, &mut base as *mut u64 as u64, 0, 0, 0, 0],
        );
    }
    base
}

/// Sets a segment base; a value the CPU refuses ends the replica (a fault
/// in the handler is fatal), which the engine then replaces.
fn set_segment_base(segment: Segment, base: u64) {
    if FSGSBASE.load(Ordering::Relaxed) {
        // SAFETY: as for reading; the base belongs to this thread alone.
        unsafe {
            match segment {
                Segment::Fs => asm!("wrfsbase {}", in(reg) base, options(nomem, nostack)),
                Segment::Gs => asm!("wrgsbase {}", in(reg) base, options(nomem, nostack)),
            }
        }
    } else {
        let code = match segment {
            Segment::Fs => ARCH_SET_FS,
            Segment::Gs => ARCH_SET_GS,
        };
        site_call(libc::SYS_arch_prctl, [code, base, 0, 0, 0, 0]);
    }
}

/// The hand-over's calls on Linux, through the site.
struct LinuxKernel;

impl Kernel for LinuxKernel {
    fn wait(&self, word: &AtomicU32, value: u32) {
        futex(word, libc::FUTEX_WAIT, value);
    }

    fn wake(&self, word: &AtomicU32) {
        futex(word, libc::FUTEX_WAKE, i32::MAX as u32);
    }

    fn fork_copy(&self, slot: &Slot) -> Forked {
        let engine = slot.fork_pid.load(Ordering::Relaxed);
        let fd = slot.fork_fd.load(Ordering::Relaxed);
        // A copy whose parent is the engine, which reaps it like the others.
        let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as u64;
        match site_call(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]) {
            0 => {
                take_own_slot(engine, fd);
                site_call(
                    libc::SYS_prctl,
                    [
                        libc::PR_SET_PDEATHSIG as u64,
                        libc::SIGKILL as u64,
                        0,
                        0,
                        0,
                        0,
                    ],
                );
                Forked::Copy
            }
            child => Forked::Parent(child),
        }
    }

    fn slot(&self) -> &'static Slot {
        own_slot()
    }
}

/// The gregs index of each `user_regs_struct` word the context has.
const FROM_CONTEXT: [(usize, c_int); 18] = [
    (reg::R15, libc::REG_R15),
    (reg::R14, libc::REG_R14),
    (reg::R13, libc::REG_R13),
    (reg::R12, libc::REG_R12),
    (reg::RBP, libc::REG_RBP),
    (reg::RBX, libc::REG_RBX),
    (reg::R11, libc::REG_R11),
    (reg::R10, libc::REG_R10),
    (reg::R9, libc::REG_R9),
    (reg::R8, libc::REG_R8),
    (reg::RAX, libc::REG_RAX),
    (reg::RCX, libc::REG_RCX),
    (reg::RDX, libc::REG_RDX),
    (reg::RSI, libc::REG_RSI),
    (reg::RDI, libc::REG_RDI),
    (reg::RIP, libc::REG_RIP),
    (reg::EFLAGS, libc::REG_EFL),
    (reg::RSP, libc::REG_RSP),
];

/// The handler of every event: posts, waits for the answer, carries it out.
extern "C" fn on_event(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo and
    // ucontext, which stay valid until the handler returns.
    let (info, context) = unsafe { (&*info, &mut *context.cast::<libc::ucontext_t>()) };
    let gregs = &mut context.uc_mcontext.gregs;
    let mut words = [0_u64; REGISTER_WORDS];
    for (word, index) in FROM_CONTEXT {
        words[word] = gregs[index as usize] as u64;
    }
    let segments = gregs[libc::REG_CSGSFS as usize] as u64;
    words[reg::CS] = segments & 0xffff;
    words[reg::GS] = (segments >> 16) & 0xffff;
    words[reg::FS] = (segments >> 32) & 0xffff;
    words[reg::SS] = segments >> 48;
    words[reg::FS_BASE] = segment_base(Segment::Fs);
    words[reg::GS_BASE] = segment_base(Segment::Gs);
    let (stop, code, address) = if signal == libc::SIGSYS {
        // A trapped call is rolled back: rax holds its number, as orig_rax
        // does at a ptrace stop, where rax reads -ENOSYS.
        let number = words[reg::RAX];
        words[reg::ORIG_RAX] = number;
        words[reg::RAX] = (-libc::ENOSYS) as i64 as u64;
        (StopKind::Syscall, 0, number)
    } else {
        words[reg::ORIG_RAX] = u64::MAX;
        // SAFETY: every SIGSEGV siginfo carries si_addr.
        let address = unsafe { info.si_addr() } as u64;
        (StopKind::Fault, info.si_code as u32, address)
    };

    let record = Record {
        stop,
        code,
        address,
        regs: words,
    };
    let slot = hand_over(&record, bell(), &LinuxKernel);

    for (word, index) in FROM_CONTEXT {
        gregs[index as usize] = slot.regs[word].load(Ordering::Relaxed) as i64;
    }
    // Set whatever the handler saw on entry: a repair may have replaced its
    // frame with that of the replica it copied.
    set_segment_base(Segment::Fs, slot.regs[reg::FS_BASE].load(Ordering::Relaxed));
    set_segment_base(Segment::Gs, slot.regs[reg::GS_BASE].load(Ordering::Relaxed));
    let number = slot.regs[reg::ORIG_RAX].load(Ordering::Relaxed);
    if stop == StopKind::Syscall && number != u64::MAX {
        // The engine left the call to the replica (it touches only the
        // replica's own state): make it with the voted arguments.
        let argument = |word: usize| slot.regs[word].load(Ordering::Relaxed);
        let result = site_call(
            number as c_long,
            [
                argument(reg::RDI),
                argument(reg::RSI),
                argument(reg::RDX),
                argument(reg::R10),
                argument(reg::R8),
                argument(reg::R9),
            ],
        );
        gregs[libc::REG_RAX as usize] = result;
    }
}
