//! Decoding a faulting port instruction (`in`/`out`/`ins`/`outs`) and its effect on registers.
//!
//! Port I/O without `ioperm` faults before any effect, and siginfo says neither the port,
//! the width nor the register, so the instruction at RIP is decoded here. A `rep ins`/
//! `rep outs` faults on its first iteration; it is described as a whole so the emulator
//! performs the entire repeat at once instead of trapping once per element.

use std::fmt;

use iced_x86::{
    Code, Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind, Register,
};
use nix::libc::user_regs_struct;

/// The longest x86 instruction; more bytes than this never need to be read at RIP.
pub const MAX_INSTRUCTION_LEN: usize = 15;

/// The most bytes one string instruction may move. The whole repeat is emulated at
/// once, so a wild RCX in a faulty replica must not make the emulator copy gigabytes.
pub const MAX_STRING_BYTES: u64 = 1 << 20;

/// EFLAGS.DF: string instructions walk memory downwards when set.
const EFLAGS_DF: u64 = 1 << 10;

/// Operand size of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Byte = 1,
    Word = 2,
    Dword = 4,
}

impl Width {
    /// The operand size in bytes.
    pub fn bytes(self) -> u64 {
        self as u64
    }

    fn mask(self) -> u64 {
        match self {
            Width::Byte => 0xff,
            Width::Word => 0xffff,
            Width::Dword => 0xffff_ffff,
        }
    }
}

/// Whether data flows from the device (`in`) or to it (`out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// `in al/ax/eax, imm8/dx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortIn {
    pub port: u16,
    pub width: Width,
    /// Instruction length: how far RIP advances.
    pub len: u64,
}

/// `out imm8/dx, al/ax/eax`, with the value taken from RAX at decode time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortOut {
    pub port: u16,
    pub width: Width,
    pub value: u32,
    /// Instruction length: how far RIP advances.
    pub len: u64,
}

/// `ins`/`outs`, with or without `rep`: `count` elements of `width` bytes, the first at
/// `address`, each next one `step` bytes further (negative when EFLAGS.DF is set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortString {
    pub direction: Direction,
    pub port: u16,
    pub width: Width,
    pub count: u64,
    pub address: u64,
    pub step: i64,
    /// Whether the count came from RCX (which then ends at 0).
    pub repeated: bool,
    /// Instruction length: how far RIP advances.
    pub len: u64,
}

/// One decoded port instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAccess {
    In(PortIn),
    Out(PortOut),
    String(PortString),
}

/// The device a traced replica's port instructions reach, performed once for the group.
pub trait PortDevice {
    /// The value an `in` of `width` from `port` reads.
    fn read(&mut self, port: u16, width: Width) -> u32;
    /// Takes the value an `out` of `width` writes to `port`.
    fn write(&mut self, port: u16, width: Width, value: u32);
}

impl PortAccess {
    /// For an `outs`, the replica memory it sends (start and length); the caller reads it
    /// and hands it to [`Self::perform`].
    pub fn outs_span(&self) -> Option<(u64, usize)> {
        match self {
            PortAccess::String(access) if access.direction == Direction::Out => Some(access.span()),
            _ => None,
        }
    }

    /// Performs the instruction once against `device` and completes `regs` as the CPU
    /// would have. `outs_data` is the memory of [`Self::outs_span`] (empty otherwise).
    /// For an `ins`, returns where to store which bytes in the replica.
    pub fn perform(
        &self,
        device: &mut dyn PortDevice,
        regs: &mut user_regs_struct,
        outs_data: &[u8],
    ) -> Option<(u64, Vec<u8>)> {
        match self {
            PortAccess::In(access) => {
                access.apply(regs, device.read(access.port, access.width));
                None
            }
            PortAccess::Out(access) => {
                device.write(access.port, access.width, access.value);
                access.apply(regs);
                None
            }
            PortAccess::String(access) => {
                let store = match access.direction {
                    Direction::Out => {
                        for value in access.values_from_span(outs_data) {
                            device.write(access.port, access.width, value);
                        }
                        None
                    }
                    Direction::In => {
                        let values: Vec<u32> = (0..access.count)
                            .map(|_| device.read(access.port, access.width))
                            .collect();
                        Some((access.span().0, access.span_from_values(&values)))
                    }
                };
                access.apply(regs);
                store
            }
        }
    }
}

/// Why the bytes at RIP are not an emulatable port instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the instruction does.
    Truncated,
    /// The bytes are not a valid instruction.
    Invalid,
    /// A valid instruction that does not access ports.
    NotPortIo(Mnemonic),
    /// `ins`/`outs` with a `67` prefix (ECX/ESI/EDI addressing); drivers do not emit it.
    AddressSize32,
    /// The string would move more than [`MAX_STRING_BYTES`] or wrap around the address space.
    StringOutOfRange { count: u64, address: u64 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "instruction bytes end before the instruction"),
            DecodeError::Invalid => write!(f, "invalid instruction"),
            DecodeError::NotPortIo(m) => write!(f, "not a port instruction: {m:?}"),
            DecodeError::AddressSize32 => {
                write!(f, "string port instruction with 32-bit addressing")
            }
            DecodeError::StringOutOfRange { count, address } => {
                write!(
                    f,
                    "string port instruction of {count} elements at {address:#x} out of range"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes the 64-bit instruction in `bytes` (the memory at RIP) against `regs`.
pub fn decode(bytes: &[u8], regs: &user_regs_struct) -> Result<PortAccess, DecodeError> {
    let bytes = &bytes[..bytes.len().min(MAX_INSTRUCTION_LEN)];
    let mut decoder = Decoder::with_ip(64, bytes, regs.rip, DecoderOptions::NONE);
    let instruction = decoder.decode();
    match decoder.last_error() {
        DecoderError::None => {}
        DecoderError::NoMoreBytes => return Err(DecodeError::Truncated),
        _ => return Err(DecodeError::Invalid),
    }
    let len = instruction.len() as u64;
    let dx_port = regs.rdx as u16;
    let imm_port = u16::from(instruction.immediate8());
    let port_in = |port, width| Ok(PortAccess::In(PortIn { port, width, len }));
    let port_out = |port, width: Width| {
        let value = (regs.rax & width.mask()) as u32;
        Ok(PortAccess::Out(PortOut {
            port,
            width,
            value,
            len,
        }))
    };
    let string = |direction, width| port_string(&instruction, regs, direction, width);
    match instruction.code() {
        Code::In_AL_imm8 => port_in(imm_port, Width::Byte),
        Code::In_AX_imm8 => port_in(imm_port, Width::Word),
        Code::In_EAX_imm8 => port_in(imm_port, Width::Dword),
        Code::In_AL_DX => port_in(dx_port, Width::Byte),
        Code::In_AX_DX => port_in(dx_port, Width::Word),
        Code::In_EAX_DX => port_in(dx_port, Width::Dword),
        Code::Out_imm8_AL => port_out(imm_port, Width::Byte),
        Code::Out_imm8_AX => port_out(imm_port, Width::Word),
        Code::Out_imm8_EAX => port_out(imm_port, Width::Dword),
        Code::Out_DX_AL => port_out(dx_port, Width::Byte),
        Code::Out_DX_AX => port_out(dx_port, Width::Word),
        Code::Out_DX_EAX => port_out(dx_port, Width::Dword),
        Code::Insb_m8_DX => string(Direction::In, Width::Byte),
        Code::Insw_m16_DX => string(Direction::In, Width::Word),
        Code::Insd_m32_DX => string(Direction::In, Width::Dword),
        Code::Outsb_DX_m8 => string(Direction::Out, Width::Byte),
        Code::Outsw_DX_m16 => string(Direction::Out, Width::Word),
        Code::Outsd_DX_m32 => string(Direction::Out, Width::Dword),
        _ => Err(DecodeError::NotPortIo(instruction.mnemonic())),
    }
}

fn port_string(
    instruction: &Instruction,
    regs: &user_regs_struct,
    direction: Direction,
    width: Width,
) -> Result<PortAccess, DecodeError> {
    let memory_operand = match direction {
        Direction::In => instruction.op0_kind(),
        Direction::Out => instruction.op1_kind(),
    };
    let address = match memory_operand {
        // ES cannot be overridden and its base is 0 in 64-bit mode.
        OpKind::MemoryESRDI => regs.rdi,
        OpKind::MemorySegRSI => {
            segment_base(instruction.memory_segment(), regs).wrapping_add(regs.rsi)
        }
        _ => return Err(DecodeError::AddressSize32),
    };
    // F2 on ins/outs repeats just like F3: only cmps/scas test ZF.
    let repeated = instruction.has_rep_prefix() || instruction.has_repne_prefix();
    let count = if repeated { regs.rcx } else { 1 };
    let out_of_range = DecodeError::StringOutOfRange { count, address };
    let total = count
        .checked_mul(width.bytes())
        .filter(|&n| n <= MAX_STRING_BYTES)
        .ok_or(out_of_range)?;
    let backwards = regs.eflags & EFLAGS_DF != 0;
    let in_range = if backwards {
        address
            .checked_add(width.bytes())
            .and_then(|end| end.checked_sub(total))
            .is_some()
    } else {
        address.checked_add(total).is_some()
    };
    if !in_range {
        return Err(out_of_range);
    }
    let step = if backwards {
        -(width.bytes() as i64)
    } else {
        width.bytes() as i64
    };
    Ok(PortAccess::String(PortString {
        direction,
        port: regs.rdx as u16,
        width,
        count,
        address,
        step,
        repeated,
        len: instruction.len() as u64,
    }))
}

/// In 64-bit mode only FS and GS have a base; ES, CS, SS and DS are flat.
fn segment_base(segment: Register, regs: &user_regs_struct) -> u64 {
    match segment {
        Register::FS => regs.fs_base,
        Register::GS => regs.gs_base,
        _ => 0,
    }
}

impl PortIn {
    /// Completes the `in` with `value` read from the device: `in al`/`in ax` merge into
    /// RAX, `in eax` zero-extends like every 32-bit register write.
    pub fn apply(&self, regs: &mut user_regs_struct, value: u32) {
        let value = u64::from(value) & self.width.mask();
        regs.rax = match self.width {
            Width::Dword => value,
            Width::Byte | Width::Word => (regs.rax & !self.width.mask()) | value,
        };
        regs.rip = regs.rip.wrapping_add(self.len);
    }
}

impl PortOut {
    /// Completes the `out` once the value reached the device.
    pub fn apply(&self, regs: &mut user_regs_struct) {
        regs.rip = regs.rip.wrapping_add(self.len);
    }
}

impl PortString {
    /// The lowest address and the length of the memory the whole repeat touches.
    pub fn span(&self) -> (u64, usize) {
        let total = self.count.wrapping_mul(self.width.bytes());
        let start = if self.step < 0 {
            self.address
                .wrapping_add(self.width.bytes())
                .wrapping_sub(total)
        } else {
            self.address
        };
        (start, total as usize)
    }

    /// The element values in execution order, given the memory of [`Self::span`] (for `outs`).
    pub fn values_from_span(&self, span: &[u8]) -> Vec<u32> {
        let mut values: Vec<u32> = span
            .chunks_exact(self.width.bytes() as usize)
            .map(|element| {
                element
                    .iter()
                    .rev()
                    .fold(0, |acc, &b| (acc << 8) | u32::from(b))
            })
            .collect();
        if self.step < 0 {
            values.reverse();
        }
        values
    }

    /// The memory of [`Self::span`] after storing `values` in execution order (for `ins`).
    pub fn span_from_values(&self, values: &[u32]) -> Vec<u8> {
        let width = self.width.bytes() as usize;
        let mut ordered = values.to_vec();
        if self.step < 0 {
            ordered.reverse();
        }
        ordered
            .iter()
            .flat_map(|value| value.to_le_bytes()[..width].to_vec())
            .collect()
    }

    /// Completes the whole repeat: the pointer register moves past every element, a
    /// repeated form ends with RCX = 0, and RIP moves past the instruction.
    pub fn apply(&self, regs: &mut user_regs_struct) {
        let moved = (self.count as i64).wrapping_mul(self.step) as u64;
        let pointer = match self.direction {
            Direction::In => &mut regs.rdi,
            Direction::Out => &mut regs.rsi,
        };
        *pointer = pointer.wrapping_add(moved);
        if self.repeated {
            regs.rcx = 0;
        }
        regs.rip = regs.rip.wrapping_add(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RIP: u64 = 0x40_1000;

    fn regs() -> user_regs_struct {
        // SAFETY: user_regs_struct is plain integers; all zeroes is a valid value.
        let mut regs: user_regs_struct = unsafe { std::mem::zeroed() };
        regs.rip = RIP;
        regs.rax = 0x1122_3344_5566_7788;
        regs.rdx = 0xdead_0000_0000_02f8;
        regs
    }

    fn decode_in(bytes: &[u8]) -> PortIn {
        match decode(bytes, &regs()) {
            Ok(PortAccess::In(access)) => access,
            other => panic!("{bytes:02x?} decoded as {other:?}"),
        }
    }

    fn decode_out(bytes: &[u8]) -> PortOut {
        match decode(bytes, &regs()) {
            Ok(PortAccess::Out(access)) => access,
            other => panic!("{bytes:02x?} decoded as {other:?}"),
        }
    }

    fn decode_string(bytes: &[u8], regs: &user_regs_struct) -> PortString {
        match decode(bytes, regs) {
            Ok(PortAccess::String(access)) => access,
            other => panic!("{bytes:02x?} decoded as {other:?}"),
        }
    }

    #[test]
    fn in_from_dx_in_every_width() {
        assert_eq!(
            decode_in(&[0xec]),
            PortIn {
                port: 0x2f8,
                width: Width::Byte,
                len: 1
            }
        );
        assert_eq!(
            decode_in(&[0x66, 0xed]),
            PortIn {
                port: 0x2f8,
                width: Width::Word,
                len: 2
            }
        );
        assert_eq!(
            decode_in(&[0xed]),
            PortIn {
                port: 0x2f8,
                width: Width::Dword,
                len: 1
            }
        );
    }

    #[test]
    fn in_from_imm8() {
        assert_eq!(
            decode_in(&[0xe4, 0x60]),
            PortIn {
                port: 0x60,
                width: Width::Byte,
                len: 2
            }
        );
        assert_eq!(
            decode_in(&[0xe5, 0x61]),
            PortIn {
                port: 0x61,
                width: Width::Dword,
                len: 2
            }
        );
    }

    #[test]
    fn rex_w_does_not_widen_in() {
        assert_eq!(
            decode_in(&[0x48, 0xed]),
            PortIn {
                port: 0x2f8,
                width: Width::Dword,
                len: 2
            }
        );
    }

    #[test]
    fn out_takes_the_value_of_its_width_from_rax() {
        let byte = PortOut {
            port: 0x2f8,
            width: Width::Byte,
            value: 0x88,
            len: 1,
        };
        assert_eq!(decode_out(&[0xee]), byte);
        let word = PortOut {
            port: 0x2f8,
            width: Width::Word,
            value: 0x7788,
            len: 2,
        };
        assert_eq!(decode_out(&[0x66, 0xef]), word);
        let dword = PortOut {
            port: 0x2f8,
            width: Width::Dword,
            value: 0x5566_7788,
            len: 1,
        };
        assert_eq!(decode_out(&[0xef]), dword);
        let imm = PortOut {
            port: 0x80,
            width: Width::Byte,
            value: 0x88,
            len: 2,
        };
        assert_eq!(decode_out(&[0xe6, 0x80]), imm);
    }

    #[test]
    fn trailing_bytes_after_the_instruction_are_ignored() {
        assert_eq!(decode_in(&[0xec, 0x90, 0x90, 0x90]).len, 1);
    }

    #[test]
    fn in_al_and_ax_merge_and_in_eax_zero_extends() {
        let mut r = regs();
        decode_in(&[0xec]).apply(&mut r, 0xffff_ffab);
        assert_eq!((r.rax, r.rip), (0x1122_3344_5566_77ab, RIP + 1));
        let mut r = regs();
        decode_in(&[0x66, 0xed]).apply(&mut r, 0xabcd);
        assert_eq!((r.rax, r.rip), (0x1122_3344_5566_abcd, RIP + 2));
        let mut r = regs();
        decode_in(&[0xed]).apply(&mut r, 0x8765_4321);
        assert_eq!((r.rax, r.rip), (0x8765_4321, RIP + 1));
    }

    #[test]
    fn out_only_advances_rip() {
        let mut r = regs();
        decode_out(&[0xe6, 0x80]).apply(&mut r);
        let mut expected = regs();
        expected.rip = RIP + 2;
        assert_eq!(format!("{r:?}"), format!("{expected:?}"));
    }

    #[test]
    fn rep_outsb_forwards_moves_rsi_and_clears_rcx() {
        let mut r = regs();
        r.rsi = 0x7000;
        r.rcx = 3;
        let access = decode_string(&[0xf3, 0x6e], &r);
        let expected = PortString {
            direction: Direction::Out,
            port: 0x2f8,
            width: Width::Byte,
            count: 3,
            address: 0x7000,
            step: 1,
            repeated: true,
            len: 2,
        };
        assert_eq!(access, expected);
        assert_eq!(access.span(), (0x7000, 3));
        assert_eq!(access.values_from_span(b"abc"), [0x61, 0x62, 0x63]);
        access.apply(&mut r);
        assert_eq!((r.rsi, r.rcx, r.rip), (0x7003, 0, RIP + 2));
    }

    #[test]
    fn repne_prefix_repeats_like_rep() {
        let mut r = regs();
        r.rcx = 5;
        let access = decode_string(&[0xf2, 0x6c], &r);
        assert_eq!((access.repeated, access.count), (true, 5));
    }

    #[test]
    fn rep_insw_backwards_walks_rdi_down() {
        let mut r = regs();
        r.rdi = 0x8004;
        r.rcx = 3;
        r.eflags = EFLAGS_DF;
        let access = decode_string(&[0x66, 0xf3, 0x6d], &r);
        assert_eq!(
            (access.direction, access.width, access.step),
            (Direction::In, Width::Word, -2)
        );
        // Elements land at 0x8004, 0x8002, 0x8000: the first value is highest in memory.
        assert_eq!(access.span(), (0x8000, 6));
        assert_eq!(
            access.span_from_values(&[0x1111, 0x2222, 0x3333]),
            [0x33, 0x33, 0x22, 0x22, 0x11, 0x11]
        );
        access.apply(&mut r);
        assert_eq!((r.rdi, r.rcx, r.rip), (0x7ffe, 0, RIP + 3));
    }

    #[test]
    fn single_insd_and_outsd_move_one_element_and_keep_rcx() {
        let mut r = regs();
        r.rdi = 0x9000;
        r.rcx = 77;
        let ins = decode_string(&[0x6d], &r);
        assert_eq!(
            (ins.count, ins.width, ins.repeated),
            (1, Width::Dword, false)
        );
        assert_eq!(ins.span_from_values(&[0x0403_0201]), [1, 2, 3, 4]);
        ins.apply(&mut r);
        assert_eq!((r.rdi, r.rcx), (0x9004, 77));
        let outs = decode_string(&[0x6f], &r);
        assert_eq!(outs.values_from_span(&[1, 2, 3, 4]), [0x0403_0201]);
    }

    #[test]
    fn outs_with_a_gs_override_adds_the_gs_base() {
        let mut r = regs();
        r.gs_base = 0x10_0000;
        r.rsi = 0x20;
        assert_eq!(decode_string(&[0x65, 0x6e], &r).address, 0x10_0020);
        assert_eq!(decode_string(&[0x6c], &r).port, 0x2f8);
    }

    #[test]
    fn non_port_instructions_say_what_they_were() {
        assert_eq!(
            decode(&[0x90], &regs()),
            Err(DecodeError::NotPortIo(Mnemonic::Nop))
        );
        assert_eq!(
            decode(&[0x0f, 0x31], &regs()),
            Err(DecodeError::NotPortIo(Mnemonic::Rdtsc))
        );
    }

    #[test]
    fn truncated_and_invalid_bytes_are_errors() {
        assert_eq!(decode(&[0xe4], &regs()), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x66], &regs()), Err(DecodeError::Truncated));
        assert_eq!(decode(&[], &regs()), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x06, 0x90], &regs()), Err(DecodeError::Invalid));
    }

    #[test]
    fn address_size_override_is_refused() {
        assert_eq!(
            decode(&[0x67, 0xf3, 0x6e], &regs()),
            Err(DecodeError::AddressSize32)
        );
    }

    #[test]
    fn huge_or_wrapping_repeats_are_refused() {
        let mut r = regs();
        r.rcx = u64::MAX;
        assert!(matches!(
            decode(&[0xf3, 0x6c], &r),
            Err(DecodeError::StringOutOfRange { .. })
        ));
        r.rcx = 4;
        r.rdi = 1;
        r.eflags = EFLAGS_DF;
        assert!(matches!(
            decode(&[0xf3, 0x6c], &r),
            Err(DecodeError::StringOutOfRange { .. })
        ));
        r.rdi = u64::MAX - 1;
        r.eflags = 0;
        assert!(matches!(
            decode(&[0xf3, 0x6c], &r),
            Err(DecodeError::StringOutOfRange { .. })
        ));
    }
}
