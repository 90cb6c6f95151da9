//! The batch wire format of `call` on an `mmio:` register handle.
//!
//! A batch is a sequence of fixed-size register operations, back to back, with
//! no header; the payload length is a multiple of [`OP_SIZE`]. Every field is
//! little-endian:
//!
//! | bytes   | field    | meaning                                                     |
//! |---------|----------|-------------------------------------------------------------|
//! | 0..6    | `offset` | register offset in the handle's region (48 bits)            |
//! | 6       | `width`  | access width in bytes: 1, 2, 4 or 8                          |
//! | 7       | `kind`   | 0 = read, 1 = write                                         |
//! | 8..16   | `value`  | write: the value (no bits above `width`); read: ignored on the way in, the value read (zero-extended) on the way out |
//!
//! The server checks the whole batch before it performs any operation, then
//! performs them in order and returns the number performed; read values come
//! back in place, so a client reads them from the same buffer ([`Batch::value`]).
//! A batch's `call` takes no metadata. Fixed-size records keep decoding a few
//! shifts per operation, with no allocation.
//!
//! One `call` is no batch: an empty payload with the single metadata word
//! [`START_BUS_MASTER`] asks the scheme to let the handle's PCI function master
//! the bus (see the scheme's docs); it returns 0.

use std::fmt;

/// Bytes per encoded operation.
pub const OP_SIZE: usize = 16;

/// The metadata word of the `call` that starts the function's bus mastering.
pub const START_BUS_MASTER: u64 = 1;

/// Largest encodable register offset (48 bits).
pub const MAX_OFFSET: u64 = (1 << 48) - 1;

/// Width of one register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Width {
    U8 = 1,
    U16 = 2,
    U32 = 4,
    U64 = 8,
}

impl Width {
    pub const ALL: [Width; 4] = [Width::U8, Width::U16, Width::U32, Width::U64];

    /// The width of an access of `bytes` bytes.
    pub fn from_bytes(bytes: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.bytes() == bytes)
    }

    pub fn bytes(self) -> usize {
        self as usize
    }

    /// The largest value an access of this width carries.
    pub fn max_value(self) -> u64 {
        u64::MAX >> (64 - 8 * self.bytes())
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-byte", self.bytes())
    }
}

/// Whether an operation reads or writes its register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Read = 0,
    Write = 1,
}

/// One register operation of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegisterOp {
    pub kind: OpKind,
    pub width: Width,
    pub offset: u64,
    /// The value written, or the value read once the batch has run.
    pub value: u64,
}

/// Why bytes are not a batch, or an operation cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The payload is not a whole number of operations.
    Length(usize),
    UnknownKind(u8),
    BadWidth(u8),
    OffsetTooLarge(u64),
    /// A write value with bits set above its width.
    ValueTooWide {
        width: Width,
        value: u64,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(len) => write!(f, "batch of {len} bytes is not a multiple of {OP_SIZE}"),
            Self::UnknownKind(kind) => write!(f, "unknown operation kind {kind}"),
            Self::BadWidth(width) => write!(f, "width {width} is not 1, 2, 4 or 8"),
            Self::OffsetTooLarge(offset) => write!(f, "offset {offset:#x} does not fit in 48 bits"),
            Self::ValueTooWide { width, value } => {
                write!(f, "value {value:#x} does not fit a {width} write")
            }
        }
    }
}

impl std::error::Error for WireError {}

impl RegisterOp {
    pub fn read(offset: u64, width: Width) -> Self {
        Self {
            kind: OpKind::Read,
            width,
            offset,
            value: 0,
        }
    }

    pub fn write(offset: u64, width: Width, value: u64) -> Self {
        Self {
            kind: OpKind::Write,
            width,
            offset,
            value,
        }
    }

    pub fn encode(&self) -> Result<[u8; OP_SIZE], WireError> {
        if self.offset > MAX_OFFSET {
            return Err(WireError::OffsetTooLarge(self.offset));
        }
        if self.kind == OpKind::Write && self.value > self.width.max_value() {
            return Err(WireError::ValueTooWide {
                width: self.width,
                value: self.value,
            });
        }
        let control = self.offset | (self.width as u64) << 48 | (self.kind as u64) << 56;
        Ok((u128::from(control) | u128::from(self.value) << 64).to_le_bytes())
    }

    pub fn decode(bytes: &[u8; OP_SIZE]) -> Result<Self, WireError> {
        let (control, value) = split(bytes);
        let kind = match (control >> 56) as u8 {
            0 => OpKind::Read,
            1 => OpKind::Write,
            other => return Err(WireError::UnknownKind(other)),
        };
        let width_byte = (control >> 48) as u8;
        let width = Width::from_bytes(width_byte.into()).ok_or(WireError::BadWidth(width_byte))?;
        let op = Self {
            kind,
            width,
            offset: control & MAX_OFFSET,
            value,
        };
        if kind == OpKind::Write && value > width.max_value() {
            return Err(WireError::ValueTooWide { width, value });
        }
        Ok(op)
    }
}

/// The control word (offset, width, kind) and the value of an encoded operation.
fn split(bytes: &[u8; OP_SIZE]) -> (u64, u64) {
    let both = u128::from_le_bytes(*bytes);
    (both as u64, (both >> 64) as u64)
}

/// The operations of a batch payload, as fixed-size records.
pub fn records(payload: &[u8]) -> Result<&[[u8; OP_SIZE]], WireError> {
    match payload.as_chunks::<OP_SIZE>() {
        (records, []) => Ok(records),
        _ => Err(WireError::Length(payload.len())),
    }
}

/// [`records`], mutable: the server writes read values back through these.
pub fn records_mut(payload: &mut [u8]) -> Result<&mut [[u8; OP_SIZE]], WireError> {
    let len = payload.len();
    match payload.as_chunks_mut::<OP_SIZE>() {
        (records, []) => Ok(records),
        _ => Err(WireError::Length(len)),
    }
}

/// Stores the value read by the operation in `record`.
pub fn set_value(record: &mut [u8; OP_SIZE], value: u64) {
    record[8..].copy_from_slice(&value.to_le_bytes());
}

/// A batch being built by a client: push operations, pass
/// [`payload_mut`](Self::payload_mut) to `call`, then read the results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(ops: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(ops * OP_SIZE),
        }
    }

    /// Appends `op`; returns its index.
    pub fn push(&mut self, op: RegisterOp) -> Result<usize, WireError> {
        self.bytes.extend_from_slice(&op.encode()?);
        Ok(self.len() - 1)
    }

    /// Appends a read; returns its index, under which [`value`](Self::value) finds the result.
    pub fn read(&mut self, offset: u64, width: Width) -> Result<usize, WireError> {
        self.push(RegisterOp::read(offset, width))
    }

    /// Appends a write; returns its index.
    pub fn write(&mut self, offset: u64, width: Width, value: u64) -> Result<usize, WireError> {
        self.push(RegisterOp::write(offset, width, value))
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.bytes.len() / OP_SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// The encoded batch, the payload of `call`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// The value field of operation `index`: after `call`, what a read returned.
    pub fn value(&self, index: usize) -> Option<u64> {
        let record = self.bytes.as_chunks::<OP_SIZE>().0.get(index)?;
        Some(split(record).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_as_documented() {
        let op = RegisterOp::write(0x0012_3456_789a, Width::U32, 0xdead_beef);
        assert_eq!(
            op.encode().unwrap(),
            [0x9a, 0x78, 0x56, 0x34, 0x12, 0x00, 4, 1, 0xef, 0xbe, 0xad, 0xde, 0, 0, 0, 0]
        );
        let read = RegisterOp::read(8, Width::U8).encode().unwrap();
        assert_eq!(read, [8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn widths() {
        assert_eq!(Width::from_bytes(4), Some(Width::U32));
        assert_eq!(Width::from_bytes(3), None);
        assert_eq!(Width::from_bytes(0), None);
        assert_eq!(Width::U8.max_value(), 0xff);
        assert_eq!(Width::U64.max_value(), u64::MAX);
        assert_eq!(Width::U16.to_string(), "2-byte");
    }

    #[test]
    fn decode_rejects() {
        let mut bytes = RegisterOp::read(0, Width::U32).encode().unwrap();
        bytes[7] = 2;
        assert_eq!(RegisterOp::decode(&bytes), Err(WireError::UnknownKind(2)));
        bytes[7] = 0;
        bytes[6] = 3;
        assert_eq!(RegisterOp::decode(&bytes), Err(WireError::BadWidth(3)));
        let mut write = RegisterOp::write(0, Width::U16, 0xffff).encode().unwrap();
        write[10] = 1;
        assert_eq!(
            RegisterOp::decode(&write),
            Err(WireError::ValueTooWide {
                width: Width::U16,
                value: 0x1ffff
            })
        );
    }

    #[test]
    fn read_ignores_incoming_value() {
        let mut bytes = RegisterOp::read(4, Width::U8).encode().unwrap();
        set_value(&mut bytes, u64::MAX);
        assert_eq!(RegisterOp::decode(&bytes).unwrap().value, u64::MAX);
        assert_eq!(RegisterOp::decode(&bytes).unwrap().kind, OpKind::Read);
    }

    #[test]
    fn encode_rejects() {
        assert_eq!(
            RegisterOp::read(MAX_OFFSET + 1, Width::U8).encode(),
            Err(WireError::OffsetTooLarge(MAX_OFFSET + 1))
        );
        assert_eq!(
            RegisterOp::write(0, Width::U8, 0x100).encode(),
            Err(WireError::ValueTooWide {
                width: Width::U8,
                value: 0x100
            })
        );
        assert_eq!(
            WireError::ValueTooWide {
                width: Width::U8,
                value: 0x100
            }
            .to_string(),
            "value 0x100 does not fit a 1-byte write"
        );
    }

    #[test]
    fn records_need_whole_operations() {
        assert_eq!(records(&[]).unwrap().len(), 0);
        assert_eq!(records(&[0; 32]).unwrap().len(), 2);
        assert_eq!(records(&[0; 17]), Err(WireError::Length(17)));
        assert_eq!(
            records_mut(&mut [0; 15]).unwrap_err().to_string(),
            "batch of 15 bytes is not a multiple of 16"
        );
    }

    #[test]
    fn batch_builds_and_reads_back() {
        let mut batch = Batch::with_capacity(2);
        assert!(batch.is_empty());
        assert_eq!(batch.read(0x8, Width::U32), Ok(0));
        assert_eq!(batch.write(0x0, Width::U32, 0x0400_0000), Ok(1));
        assert_eq!(
            batch.write(0x0, Width::U8, 0x100),
            Err(WireError::ValueTooWide {
                width: Width::U8,
                value: 0x100
            })
        );
        assert_eq!(batch.len(), 2);
        let records = records_mut(batch.payload_mut()).unwrap();
        set_value(&mut records[0], 0x8008_0783);
        assert_eq!(batch.value(0), Some(0x8008_0783));
        assert_eq!(batch.value(1), Some(0x0400_0000));
        assert_eq!(batch.value(2), None);
        batch.clear();
        assert_eq!(batch.len(), 0);
    }

    fn any_width() -> impl Strategy<Value = Width> {
        prop::sample::select(Width::ALL.to_vec())
    }

    fn any_valid_op() -> impl Strategy<Value = RegisterOp> {
        (any::<bool>(), any_width(), 0..=MAX_OFFSET, any::<u64>()).prop_map(
            |(write, width, offset, value)| {
                if write {
                    RegisterOp::write(offset, width, value & width.max_value())
                } else {
                    RegisterOp::read(offset, width)
                }
            },
        )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(op in any_valid_op()) {
            let bytes = op.encode().unwrap();
            prop_assert_eq!(RegisterOp::decode(&bytes), Ok(op));
        }

        #[test]
        fn malformed_input_never_panics(payload in prop::collection::vec(any::<u8>(), 0..200)) {
            match records(&payload) {
                Ok(records) => {
                    for record in records {
                        if let Ok(op) = RegisterOp::decode(record) {
                            // Whatever decodes is a valid operation and encodes to the same bytes
                            // (up to the ignored value of a read).
                            let again = op.encode().unwrap();
                            prop_assert_eq!(&again[..8], &record[..8]);
                        }
                    }
                }
                Err(WireError::Length(len)) => prop_assert!(len % OP_SIZE != 0),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        #[test]
        fn batch_round_trips(ops in prop::collection::vec(any_valid_op(), 0..40)) {
            let mut batch = Batch::new();
            for op in &ops {
                batch.push(*op).unwrap();
            }
            let decoded: Vec<RegisterOp> = records(batch.payload_mut())
                .unwrap()
                .iter()
                .map(|record| RegisterOp::decode(record).unwrap())
                .collect();
            prop_assert_eq!(decoded, ops);
        }
    }
}
