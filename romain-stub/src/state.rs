//! What a replica's stub keeps in the process, the same on every platform:
//! its signal stack, and where its slot and the group's bell are mapped (the
//! same addresses in every replica, which run without address-space
//! randomisation, so the pointers compare equal between replicas).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, Ordering};
use std::io;

#[cfg(target_os = "linux")]
use nix::libc;

use crate::slot::{Bell, Slot};

/// The stub's signal stack: room for the kernel's signal frame (with the
/// extended FP state) and the handler.
pub const SIGNAL_STACK_LEN: usize = 64 * 1024;

#[repr(C, align(16))]
struct SignalStack(UnsafeCell<[u8; SIGNAL_STACK_LEN]>);

// SAFETY: only the replica's single thread touches the stack, and only as its
// signal stack (and the engine, from outside, while the thread waits).
unsafe impl Sync for SignalStack {}

static SIGNAL_STACK: SignalStack = SignalStack(UnsafeCell::new([0; SIGNAL_STACK_LEN]));

static SLOT: AtomicPtr<Slot> = AtomicPtr::new(core::ptr::null_mut());
static BELL: AtomicPtr<Bell> = AtomicPtr::new(core::ptr::null_mut());

/// The start of the signal stack.
pub fn signal_stack() -> *mut u8 {
    SIGNAL_STACK.0.get().cast()
}

/// Records where the slot and the bell are mapped, and the signal stack in
/// the slot, for the engine to leave out of its comparisons.
///
/// # Safety
///
/// Both pointers are page mappings that stay for the life of the process.
pub unsafe fn set_pages(slot: *mut u8, bell: *mut u8) {
    SLOT.store(slot.cast(), Ordering::Relaxed);
    BELL.store(bell.cast(), Ordering::Relaxed);
    let slot = own_slot();
    slot.stack_start
        .store(signal_stack() as u64, Ordering::Relaxed);
    slot.stack_len
        .store(SIGNAL_STACK_LEN as u64, Ordering::Relaxed);
}

/// The replica's slot; mapped (`set_pages`) before any event.
pub fn own_slot() -> &'static Slot {
    // SAFETY: set_pages' promise; the slot is all atomics.
    unsafe { &*SLOT.load(Ordering::Relaxed) }
}

/// The group's bell; mapped before any event.
pub fn bell() -> &'static Bell {
    // SAFETY: as for the slot.
    unsafe { &*BELL.load(Ordering::Relaxed) }
}

/// The signature of the stub's handlers (`SA_SIGINFO`).
pub type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Makes the signal stack the thread's and `handler` the handler of
/// `signals`, run on that stack with every signal blocked.
pub fn handle_on_signal_stack(signals: &[libc::c_int], handler: Handler) -> io::Result<()> {
    let stack = libc::stack_t {
        ss_sp: signal_stack().cast(),
        ss_flags: 0,
        ss_size: SIGNAL_STACK_LEN,
    };
    // SAFETY: the stack is a static of the length given, used by no one else.
    if unsafe { libc::sigaltstack(&stack, core::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for &signal in signals {
        // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO
        // signature and blocks every signal while it runs.
        unsafe {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigfillset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, core::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
