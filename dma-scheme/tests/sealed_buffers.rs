//! What a client can do to the memory object it maps: use it, not resize it.
//!
//! The host transport hands a client a descriptor of the buffer's memfd. With it
//! the client could `ftruncate` the buffer (shrinking it frees pages the daemon
//! still lists, growing it holds memory beyond the quota) unless the daemon sealed
//! the size before handing it out.
#![cfg(target_os = "linux")]

use std::num::NonZeroUsize;

use dma_scheme::{DmaScheme, UniformQuota};
use nix::errno::Errno;
use nix::fcntl::{fallocate, fcntl, FallocateFlags, FcntlArg, SealFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::stat::fstat;
use nix::unistd::ftruncate;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::OpenResult;
use scheme_runtime::{caller_ctx, SchemeDaemon};

use dma_scheme::backend::MemfdBackend;

const PAGE: usize = 4096;

#[test]
fn a_client_cannot_shrink_or_grow_the_buffer_it_was_handed() {
    let mut scheme = DmaScheme::new(MemfdBackend, UniformQuota(Some(1 << 20)));
    let ctx = caller_ctx(100, 1000, 1000);
    let root = scheme.scheme_root().unwrap();
    let Ok(OpenResult::ThisScheme { number: id, .. }) =
        scheme.openat(root, "alloc?size=4096", 0, 0, &ctx)
    else {
        panic!("a 4 KiB buffer")
    };
    let grant = scheme.map_fd(id, 0, PAGE, &ctx).unwrap();

    assert_eq!(ftruncate(&grant.fd, 0), Err(Errno::EPERM), "shrink to 0");
    assert_eq!(
        ftruncate(&grant.fd, 1 << 30),
        Err(Errno::EPERM),
        "grow to 1 GiB"
    );
    assert_eq!(
        fallocate(&grant.fd, FallocateFlags::empty(), PAGE as i64, PAGE as i64),
        Err(Errno::EPERM),
        "grow by allocating past the end"
    );
    assert_eq!(
        fallocate(
            &grant.fd,
            FallocateFlags::FALLOC_FL_KEEP_SIZE,
            PAGE as i64,
            PAGE as i64
        ),
        Err(Errno::EPERM),
        "hold pages past the end without growing"
    );
    assert_eq!(
        fcntl(&grant.fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE)),
        Err(Errno::EPERM),
        "no seals of its own either"
    );
    assert_eq!(fstat(&grant.fd).unwrap().st_size, PAGE as i64);

    // The buffer is still an ordinary shared read-write mapping for the client.
    // SAFETY: a fresh shared mapping of the granted fd, unmapped below.
    let base = unsafe {
        mmap(
            None,
            NonZeroUsize::new(PAGE).unwrap(),
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            &grant.fd,
            0,
        )
    }
    .unwrap();
    // SAFETY: PAGE bytes mapped read-write just above.
    unsafe {
        base.cast::<u8>().as_ptr().write_volatile(0x5a);
        assert_eq!(base.cast::<u8>().as_ptr().read_volatile(), 0x5a);
        munmap(base, PAGE).unwrap();
    }
}
