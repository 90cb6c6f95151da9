//! The stub on Redox, on the kernel of `recipes/kernel`, whose patch delivers
//! a thread's #GP (a port instruction without port rights, `rdtsc` under
//! CR4.TSD) and its #PF on a page mapped without rights to the thread itself
//! as SIGSEGV with its context, instead of killing it.
//!
//! Redox has no seccomp: a replica's calls cannot be trapped, so the replica
//! is put where its calls reach nothing. [`install`] maps the slot and the
//! bell from the descriptors the engine handed over and then enters the null
//! namespace (`setrens(0, 0)`), where no scheme can be opened; the engine
//! starts a replica with no other descriptor. What remains to catch are its
//! faults, which the handler posts exactly as the Linux stub does.
//!
//! Type-checked here (`make redox-check`); it runs on Redox with the patched
//! kernel and an engine, which does not run on Redox yet.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, c_void};
use libredox::flag::{MAP_SHARED, PROT_READ, PROT_WRITE};
use syscall::flag::{CallFlags, FUTEX_WAIT, FUTEX_WAKE};

use crate::rendezvous::{hand_over, Forked, Kernel, Record};
use crate::slot::{reg, Slot, StopKind, PAGE_LEN, REGISTER_WORDS};
use crate::state::{bell, handle_on_signal_stack, own_slot, set_pages};
use crate::{BELL_FD, SLOT_FD};

/// The verb on a thread's kernel handle that sets its fault controls (the
/// patch's `CTL_VERB`), and its two bits.
const FAULT_CONTROL_VERB: u64 = 249;
const FORWARD_FAULTS: u64 = 1;
const RESTRICT_TSC: u64 = 2;

extern "C" {
    /// relibc: the calling thread's handle in the `proc` scheme.
    fn redox_cur_thrfd_v0() -> usize;
}

/// Sets the calling thread's fault controls; returns the ones it had. A
/// kernel without the patch refuses the verb.
fn set_fault_controls(bits: u64) -> io::Result<u64> {
    // SAFETY: relibc's accessor for this thread's proc handle; no arguments.
    let thread = unsafe { redox_cur_thrfd_v0() };
    let kernel = libredox::Fd::new(libredox::call::dup(thread, b"open_via_dup")?);
    let old = kernel.call_wo(&[], CallFlags::empty(), &[FAULT_CONTROL_VERB, bits])?;
    Ok(old as u64)
}

/// Whether the running kernel forwards faults to the threads that ask (the
/// patched kernel): asks for nothing, and puts back what the thread had.
pub fn kernel_forwards_faults() -> bool {
    match set_fault_controls(0) {
        Ok(old) => set_fault_controls(old).is_ok(),
        Err(_) => false,
    }
}

fn map_shared(fd: i32) -> io::Result<*mut u8> {
    // SAFETY: a shared mapping of one page of a descriptor the engine handed
    // over; nothing else in the process maps it.
    let mapped = unsafe {
        libredox::call::mmap(libredox::call::MmapArgs {
            addr: std::ptr::null_mut(),
            length: PAGE_LEN,
            prot: PROT_READ | PROT_WRITE,
            flags: MAP_SHARED,
            fd: fd as usize,
            offset: 0,
        })?
    };
    Ok(mapped.cast())
}

/// Installs the stub in the calling replica: its faults are forwarded to it
/// and posted to the engine, and it enters the null namespace.
pub fn install() -> io::Result<()> {
    set_fault_controls(FORWARD_FAULTS | RESTRICT_TSC).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("the kernel does not forward faults to threads (recipes/kernel): {error}"),
        )
    })?;
    // SAFETY: both are page mappings kept for the life of the process.
    unsafe { set_pages(map_shared(SLOT_FD)?, map_shared(BELL_FD)?) };
    handle_on_signal_stack(&[libc::SIGSEGV], on_fault)?;
    // From here on the replica reaches nothing but its slot and the bell.
    libredox::call::setrens(0, 0)?;
    Ok(())
}

struct RedoxKernel;

impl Kernel for RedoxKernel {
    fn wait(&self, word: &AtomicU32, value: u32) {
        // SAFETY: the word lies in the mapped slot; a wait that is woken,
        // interrupted or finds the word changed returns.
        let _ = unsafe {
            syscall::call::futex(
                word.as_ptr().cast(),
                FUTEX_WAIT,
                value as i32,
                0,
                std::ptr::null_mut(),
            )
        };
    }

    fn wake(&self, word: &AtomicU32) {
        // SAFETY: as for `wait`.
        let _ = unsafe {
            syscall::call::futex(
                word.as_ptr().cast(),
                FUTEX_WAKE,
                i32::MAX,
                0,
                std::ptr::null_mut(),
            )
        };
    }

    /// A replica is not copied from inside its stub on Redox: the engine
    /// starts a fresh one instead.
    fn fork_copy(&self, _slot: &Slot) -> Forked {
        Forked::Parent(-i64::from(syscall::error::ENOSYS))
    }

    fn slot(&self) -> &'static Slot {
        own_slot()
    }
}

/// The forwarded fault's si_code and address: the patch describes them in
/// the slot relibc reports as the sender's pid (low half) and uid (high
/// half), bits 0-47 the address (sign-extended) and 48-63 the si_code.
fn fault_of(info: &libc::siginfo_t) -> (u32, u64) {
    let raw = u64::from(info.si_pid as u32) | (u64::from(info.si_uid as u32) << 32);
    let code = (raw >> 48) as u32;
    let address = ((raw << 16) as i64 >> 16) as u64;
    (code, address)
}

/// The handler of every forwarded fault: posts, waits, carries out the answer.
extern "C" fn on_fault(_signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: relibc hands an SA_SIGINFO handler a valid siginfo and
    // ucontext, which stay valid until the handler returns.
    let (info, context) = unsafe { (&*info, &mut *context.cast::<libc::ucontext_t>()) };
    let (code, address) = fault_of(info);
    let mcontext = &mut context.uc_mcontext;
    let mut regs = [0_u64; REGISTER_WORDS];
    for (word, value) in [
        (reg::R15, mcontext.r15),
        (reg::R14, mcontext.r14),
        (reg::R13, mcontext.r13),
        (reg::R12, mcontext.r12),
        (reg::RBP, mcontext.rbp),
        (reg::RBX, mcontext.rbx),
        (reg::R11, mcontext.r11),
        (reg::R10, mcontext.r10),
        (reg::R9, mcontext.r9),
        (reg::R8, mcontext.r8),
        (reg::RAX, mcontext.rax),
        (reg::RCX, mcontext.rcx),
        (reg::RDX, mcontext.rdx),
        (reg::RSI, mcontext.rsi),
        (reg::RDI, mcontext.rdi),
        (reg::RIP, mcontext.rip),
        (reg::EFLAGS, mcontext.rflags),
        (reg::RSP, mcontext.rsp),
    ] {
        regs[word] = value as u64;
    }
    regs[reg::ORIG_RAX] = u64::MAX;
    let record = Record {
        stop: StopKind::Fault,
        code,
        address,
        regs,
    };
    let slot = hand_over(&record, bell(), &RedoxKernel);
    let answer = |word: usize| slot.regs[word].load(Ordering::Relaxed) as _;
    mcontext.r15 = answer(reg::R15);
    mcontext.r14 = answer(reg::R14);
    mcontext.r13 = answer(reg::R13);
    mcontext.r12 = answer(reg::R12);
    mcontext.rbp = answer(reg::RBP);
    mcontext.rbx = answer(reg::RBX);
    mcontext.r11 = answer(reg::R11);
    mcontext.r10 = answer(reg::R10);
    mcontext.r9 = answer(reg::R9);
    mcontext.r8 = answer(reg::R8);
    mcontext.rax = answer(reg::RAX);
    mcontext.rcx = answer(reg::RCX);
    mcontext.rdx = answer(reg::RDX);
    mcontext.rsi = answer(reg::RSI);
    mcontext.rdi = answer(reg::RDI);
    mcontext.rip = answer(reg::RIP);
    mcontext.rflags = answer(reg::EFLAGS);
    mcontext.rsp = answer(reg::RSP);
}
