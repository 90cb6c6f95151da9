//! What each request means to a scheme.
//!
//! The host server (requests from clients) and the replica loop (requests from
//! the supervisor) both decode a request and perform it here, so a request
//! means the same wherever it comes from. What is particular to a transport
//! stays with it: which handle a connection holds, parking, readiness, passing a
//! descriptor for `mmap`.

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use syscall::error::{Error, Result, EINVAL, EOPNOTSUPP, EWOULDBLOCK};
use syscall::flag::EventFlags;
use syscall::Stat;

use crate::wire::{Opcode, RequestHeader, MAX_PAYLOAD};

/// A decoded request.
pub struct Operation<'a> {
    /// The method, its open or wanted event flags, offset and length.
    pub header: RequestHeader,
    /// The handle; for open, the directory it opens from (the scheme root).
    pub id: usize,
    /// The handle's fcntl flags (open, read, write).
    pub fcntl_flags: u32,
    pub metadata: &'a [u64],
    /// Open: the path; write: the data; call: the payload, edited in place.
    pub payload: &'a mut [u8],
}

/// What a request produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Performed {
    /// Open: the new handle; fevent: the ready event flags' bits.
    pub result: Result<usize>,
    /// Open: the new handle's `NewFdFlags` bits.
    pub extra: u8,
    /// How much of the data buffer goes back: the data read, the call payload as
    /// the scheme left it, the `Stat`, the path.
    pub data_len: usize,
}

impl Performed {
    pub fn status(result: Result<usize>) -> Self {
        Self::with_data(result, 0)
    }

    fn with_data(result: Result<usize>, data_len: usize) -> Self {
        Self {
            result,
            extra: 0,
            data_len,
        }
    }
}

/// Performs `operation` on `scheme`, leaving what goes back in `data`, which
/// holds at least [`MAX_PAYLOAD`] bytes. `mmap` is refused: passing a
/// descriptor is the transport's business.
pub fn perform(
    scheme: &mut impl SchemeSync,
    operation: Operation<'_>,
    ctx: &CallerCtx,
    data: &mut [u8],
) -> Performed {
    let Operation {
        header,
        id,
        fcntl_flags,
        metadata,
        payload,
    } = operation;
    match header.opcode {
        Opcode::Open => open(scheme, id, payload, header.flags as usize, fcntl_flags, ctx),
        Opcode::Read => {
            let want = (header.len as usize).min(MAX_PAYLOAD);
            let result = scheme.read(id, &mut data[..want], header.offset, fcntl_flags, ctx);
            Performed::with_data(result, result.map_or(0, |n| n.min(want)))
        }
        Opcode::Write => {
            Performed::status(scheme.write(id, payload, header.offset, fcntl_flags, ctx))
        }
        Opcode::Call => {
            let result = scheme.call(id, payload, metadata, ctx);
            // The payload goes back as the scheme left it, whatever the result.
            data[..payload.len()].copy_from_slice(payload);
            Performed::with_data(result, payload.len())
        }
        Opcode::Fstat => {
            let mut stat = Stat::default();
            // The bytes go out whole, padding included: zeroed, they carry no
            // stale stack memory, and replicas' replies do not differ by it.
            let bytes: &mut [u8] = &mut stat;
            bytes.fill(0);
            let result = scheme.fstat(id, &mut stat, ctx);
            let data_len = if result.is_ok() { stat.len() } else { 0 };
            data[..data_len].copy_from_slice(&stat[..data_len]);
            Performed::with_data(result.map(|()| 0), data_len)
        }
        Opcode::Fpath => {
            let want = (header.len as usize).min(MAX_PAYLOAD);
            let result = scheme.fpath(id, &mut data[..want], ctx);
            Performed::with_data(result, result.map_or(0, |n| n.min(want)))
        }
        Opcode::Fevent => {
            let wanted = EventFlags::from_bits_truncate(header.flags as usize);
            Performed::status(scheme.fevent(id, wanted, ctx).map(|ready| ready.bits()))
        }
        Opcode::Close => {
            scheme.on_close(id);
            Performed::status(Ok(0))
        }
        Opcode::Mmap => Performed::status(Err(Error::new(EOPNOTSUPP))),
    }
}

fn open(
    scheme: &mut impl SchemeSync,
    dir: usize,
    path: &[u8],
    flags: usize,
    fcntl_flags: u32,
    ctx: &CallerCtx,
) -> Performed {
    let Ok(path) = std::str::from_utf8(path) else {
        return Performed::status(Err(Error::new(EINVAL)));
    };
    match scheme.openat(dir, path, flags, fcntl_flags, ctx) {
        Ok(OpenResult::ThisScheme { number, flags }) => Performed {
            result: Ok(number),
            extra: flags.bits(),
            data_len: 0,
        },
        Ok(OpenResult::WouldBlock) => Performed::status(Err(Error::new(EWOULDBLOCK))),
        Ok(other) => {
            log::warn!("open {path:?} answered {other:?}, which cannot be passed on to the caller");
            Performed::status(Err(Error::new(EOPNOTSUPP)))
        }
        Err(error) => Performed::status(Err(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller_ctx;
    use syscall::error::{EBADF, EIO};
    use syscall::schemev2::NewFdFlags;

    /// Answers each method in a way a test can recognise.
    #[derive(Default)]
    struct Probe {
        closed: Vec<usize>,
    }

    impl SchemeSync for Probe {
        fn openat(
            &mut self,
            dir: usize,
            path: &str,
            flags: usize,
            fcntl_flags: u32,
            _: &CallerCtx,
        ) -> Result<OpenResult> {
            match path {
                "file" => Ok(OpenResult::ThisScheme {
                    number: dir * 100 + flags + fcntl_flags as usize,
                    flags: NewFdFlags::POSITIONED,
                }),
                "later" => Ok(OpenResult::WouldBlock),
                "elsewhere" => Ok(OpenResult::OtherScheme { fd: 3 }),
                _ => Err(Error::new(EIO)),
            }
        }

        fn read(
            &mut self,
            id: usize,
            buf: &mut [u8],
            offset: u64,
            _: u32,
            _: &CallerCtx,
        ) -> Result<usize> {
            buf.fill(id as u8 + offset as u8);
            // Claims more than fits, to show the reply never carries more than asked.
            Ok(buf.len() + 10)
        }

        fn call(
            &mut self,
            _: usize,
            payload: &mut [u8],
            metadata: &[u64],
            _: &CallerCtx,
        ) -> Result<usize> {
            payload.reverse();
            if metadata.is_empty() {
                Err(Error::new(EINVAL))
            } else {
                Ok(metadata.len())
            }
        }

        fn fstat(&mut self, id: usize, stat: &mut Stat, _: &CallerCtx) -> Result<()> {
            if id == 0 {
                return Err(Error::new(EBADF));
            }
            stat.st_size = 42;
            Ok(())
        }

        fn on_close(&mut self, id: usize) {
            self.closed.push(id);
        }
    }

    fn run(
        probe: &mut Probe,
        opcode: Opcode,
        id: usize,
        len: u64,
        metadata: &[u64],
        payload: &mut [u8],
    ) -> (Performed, Vec<u8>) {
        let mut data = vec![0u8; MAX_PAYLOAD];
        let operation = Operation {
            header: RequestHeader {
                opcode,
                flags: 2,
                offset: 1,
                len,
            },
            id,
            fcntl_flags: 4,
            metadata,
            payload,
        };
        let performed = perform(probe, operation, &caller_ctx(1, 2, 3), &mut data);
        data.truncate(performed.data_len);
        (performed, data)
    }

    #[test]
    fn open_passes_number_and_flags_and_refuses_what_it_cannot_pass_on() {
        let mut probe = Probe::default();
        let (opened, _) = run(&mut probe, Opcode::Open, 7, 0, &[], &mut b"file".to_vec());
        assert_eq!(opened.result, Ok(706));
        assert_eq!(opened.extra, NewFdFlags::POSITIONED.bits());
        let errno = |path: &[u8]| {
            run(
                &mut Probe::default(),
                Opcode::Open,
                0,
                0,
                &[],
                &mut path.to_vec(),
            )
            .0
            .result
            .unwrap_err()
            .errno
        };
        assert_eq!(errno(b"later"), EWOULDBLOCK);
        assert_eq!(errno(b"elsewhere"), EOPNOTSUPP);
        assert_eq!(errno(b"broken"), EIO);
        assert_eq!(errno(&[0xff, 0xfe]), EINVAL);
    }

    #[test]
    fn data_goes_back_within_what_was_asked() {
        let mut probe = Probe::default();
        let (read, data) = run(&mut probe, Opcode::Read, 5, 3, &[], &mut []);
        assert_eq!(read.result, Ok(13));
        assert_eq!(data, [6, 6, 6]);
        let (read, _) = run(&mut probe, Opcode::Read, 5, u64::MAX, &[], &mut []);
        assert_eq!(read.data_len, MAX_PAYLOAD);

        let (called, data) = run(
            &mut probe,
            Opcode::Call,
            1,
            0,
            &[9, 9],
            &mut b"abc".to_vec(),
        );
        assert_eq!((called.result, data), (Ok(2), b"cba".to_vec()));
        let (failed, data) = run(&mut probe, Opcode::Call, 1, 0, &[], &mut b"ab".to_vec());
        assert_eq!(failed.result.unwrap_err().errno, EINVAL);
        assert_eq!(
            data, b"ba",
            "the payload goes back even when the call fails"
        );

        let (stat, data) = run(&mut probe, Opcode::Fstat, 1, 0, &[], &mut []);
        assert_eq!(stat.result, Ok(0));
        let mut expected = Stat::default();
        let bytes: &mut [u8] = &mut expected;
        bytes.fill(0);
        expected.st_size = 42;
        assert_eq!(
            data,
            &expected[..],
            "the Stat goes back whole, padding zeroed"
        );
        let (no_stat, data) = run(&mut probe, Opcode::Fstat, 0, 0, &[], &mut []);
        assert_eq!((no_stat.result, data.len()), (Err(Error::new(EBADF)), 0));
    }

    #[test]
    fn close_reaches_the_scheme_and_mmap_is_refused() {
        let mut probe = Probe::default();
        assert_eq!(
            run(&mut probe, Opcode::Close, 8, 0, &[], &mut []).0.result,
            Ok(0)
        );
        assert_eq!(probe.closed, [8]);
        let (mapped, _) = run(&mut probe, Opcode::Mmap, 8, 4096, &[], &mut []);
        assert_eq!(mapped.result.unwrap_err().errno, EOPNOTSUPP);
    }
}
