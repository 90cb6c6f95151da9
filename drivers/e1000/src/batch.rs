//! The batched form of `network.<name>`'s frames (the `batch` path): many
//! frames per read or write, so a burst crosses the process boundary once.
//!
//! A batch is records back to back, with no padding and no header:
//!
//! | bytes      | field                                   |
//! |------------|-----------------------------------------|
//! | 0..2       | `n`, the frame's length, little-endian  |
//! | 2..2 + n   | the frame, as one frame read or written |
//!
//! A record that claims more bytes than the batch has left is cut short:
//! [`records`] yields [`CutShort`] for it and stops.
//!
//! A read fills the batch until the receive ring is empty or the buffer has
//! no room for another whole frame, so a batch that comes back with room for
//! another whole frame found the ring empty: its reader may wait for the next
//! readiness event instead of reading again to hear "would block".

/// Bytes of a record's length field.
pub const LEN_BYTES: usize = 2;

/// A record whose length runs past the end of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutShort;

/// The bytes a record of a `frame_len`-byte frame takes.
pub const fn record_len(frame_len: usize) -> usize {
    LEN_BYTES + frame_len
}

/// The frames of `batch`, in order; a record cut short ends it.
pub fn records(batch: &[u8]) -> impl Iterator<Item = Result<&[u8], CutShort>> {
    let mut rest = Some(batch);
    std::iter::from_fn(move || match split_first(rest.take()?)? {
        Ok((frame, next)) => {
            rest = Some(next);
            Some(Ok(frame))
        }
        Err(cut) => Some(Err(cut)),
    })
}

/// A batch's first frame, and the records after it.
pub type FirstAndRest<'a> = (&'a [u8], &'a [u8]);

/// The first frame of `batch` and the records after it; `None` for an empty
/// batch.
pub fn split_first(batch: &[u8]) -> Option<Result<FirstAndRest<'_>, CutShort>> {
    let (len, after) = match batch {
        [] => return None,
        [lo, hi, after @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), after),
        [_] => return Some(Err(CutShort)),
    };
    if after.len() < len {
        return Some(Err(CutShort));
    }
    Some(Ok(after.split_at(len)))
}

/// Writes the length field of a `frame_len`-byte frame at the start of `out`.
///
/// # Panics
/// If `out` is shorter than [`LEN_BYTES`] or `frame_len` does not fit in
/// 16 bits: both are the caller's sizing, not input.
pub fn put_len(out: &mut [u8], frame_len: usize) {
    let len = u16::try_from(frame_len).expect("a frame is shorter than 64 KiB");
    out[..LEN_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// Appends `frame` as a record to `batch`.
pub fn push(batch: &mut Vec<u8>, frame: &[u8]) {
    let at = batch.len();
    batch.resize(at + LEN_BYTES, 0);
    put_len(&mut batch[at..], frame.len());
    batch.extend_from_slice(frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pushed_come_back_in_order() {
        let mut batch = Vec::new();
        push(&mut batch, &[1; 60]);
        push(&mut batch, &[2; 1514]);
        push(&mut batch, &[]);
        assert_eq!(
            batch.len(),
            record_len(60) + record_len(1514) + record_len(0)
        );
        assert_eq!(&batch[..2], &[60, 0]);
        assert_eq!(&batch[62..64], &1514u16.to_le_bytes());
        let frames: Vec<&[u8]> = records(&batch).map(Result::unwrap).collect();
        assert_eq!(frames, [&[1; 60][..], &[2; 1514][..], &[][..]]);
    }

    #[test]
    fn a_record_cut_short_ends_the_batch() {
        let mut batch = Vec::new();
        push(&mut batch, &[1; 20]);
        push(&mut batch, &[2; 30]);
        let whole = batch.len();
        for cut in [whole - 1, record_len(20) + 1] {
            let got: Vec<_> = records(&batch[..cut]).collect();
            assert_eq!(got, [Ok(&[1; 20][..]), Err(CutShort)], "cut at {cut}");
        }
        assert_eq!(records(&[]).count(), 0);
        assert_eq!(records(&[5, 0, 1]).collect::<Vec<_>>(), [Err(CutShort)]);
    }
}
