//! Decoding a load or store that faulted on a page kept unmapped in replicas (a device
//! BAR mapped for direct access), and its effect on registers.
//!
//! The fault gives the exact address; the width, the direction and the register come
//! from the instruction. Drivers reach registers with plain `mov`s (volatile reads and
//! writes compile to them) and zero-extending loads; anything else is refused rather
//! than guessed at.

use std::fmt;

use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, Instruction, Register};
use nix::libc::user_regs_struct;

use super::port_io::MAX_INSTRUCTION_LEN;

/// The device behind a trapped memory window, performed once for the group.
pub trait MemoryDevice {
    /// The value a load of `width` bytes at `offset` in the window reads.
    fn read(&mut self, offset: u64, width: u8) -> u64;
    /// Takes the low `width` bytes of `value`, stored at `offset` in the window.
    fn write(&mut self, offset: u64, width: u8, value: u64);
}

/// A decoded load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryAccess {
    /// Loads `width` bytes into `register`, zero-extended (`movzx`, or a 32-bit
    /// destination) or merged (an 8- or 16-bit destination).
    Load {
        width: u8,
        register: Register,
        zero_extend: bool,
        len: u64,
    },
    /// Stores the low `width` bytes of `value`.
    Store { width: u8, value: u64, len: u64 },
}

/// Why a faulting instruction is not an emulatable load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryDecodeError {
    Truncated,
    Invalid,
    /// A valid instruction this engine does not emulate on device memory.
    Unsupported(Code),
}

impl fmt::Display for MemoryDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("instruction bytes end before the instruction"),
            Self::Invalid => f.write_str("invalid instruction"),
            Self::Unsupported(code) => write!(f, "{code:?} is not emulated on device memory"),
        }
    }
}

impl std::error::Error for MemoryDecodeError {}

/// Decodes the instruction in `bytes` (the memory at RIP) against `regs`.
pub fn decode_memory_access(
    bytes: &[u8],
    regs: &user_regs_struct,
) -> Result<MemoryAccess, MemoryDecodeError> {
    let bytes = &bytes[..bytes.len().min(MAX_INSTRUCTION_LEN)];
    let mut decoder = Decoder::with_ip(64, bytes, regs.rip, DecoderOptions::NONE);
    let instruction = decoder.decode();
    match decoder.last_error() {
        DecoderError::None => {}
        DecoderError::NoMoreBytes => return Err(MemoryDecodeError::Truncated),
        _ => return Err(MemoryDecodeError::Invalid),
    }
    let len = instruction.len() as u64;
    let load = |width, zero_extend| {
        Ok(MemoryAccess::Load {
            width,
            register: instruction.op0_register(),
            zero_extend,
            len,
        })
    };
    let store_register = |width| {
        Ok(MemoryAccess::Store {
            width,
            value: read_register(regs, instruction.op1_register()),
            len,
        })
    };
    let store_immediate = |width| {
        Ok(MemoryAccess::Store {
            width,
            value: immediate(&instruction),
            len,
        })
    };
    match instruction.code() {
        Code::Mov_r8_rm8 => load(1, false),
        Code::Mov_r16_rm16 => load(2, false),
        Code::Mov_r32_rm32 => load(4, true),
        Code::Mov_r64_rm64 => load(8, true),
        Code::Movzx_r32_rm8 | Code::Movzx_r64_rm8 => load(1, true),
        Code::Movzx_r32_rm16 | Code::Movzx_r64_rm16 => load(2, true),
        Code::Mov_rm8_r8 => store_register(1),
        Code::Mov_rm16_r16 => store_register(2),
        Code::Mov_rm32_r32 => store_register(4),
        Code::Mov_rm64_r64 => store_register(8),
        Code::Mov_rm8_imm8 => store_immediate(1),
        Code::Mov_rm16_imm16 => store_immediate(2),
        Code::Mov_rm32_imm32 => store_immediate(4),
        Code::Mov_rm64_imm32 => store_immediate(8),
        code => Err(MemoryDecodeError::Unsupported(code)),
    }
}

fn immediate(instruction: &Instruction) -> u64 {
    // iced gives the immediate already sign-extended to the operand size.
    instruction.immediate(1)
}

impl MemoryAccess {
    /// Completes the instruction once the device answered a load with `value`.
    pub fn apply(&self, regs: &mut user_regs_struct, value: u64) {
        match *self {
            MemoryAccess::Load {
                width,
                register,
                zero_extend,
                len,
            } => {
                let value = value & mask(width);
                write_register(regs, register, value, zero_extend);
                regs.rip = regs.rip.wrapping_add(len);
            }
            MemoryAccess::Store { len, .. } => regs.rip = regs.rip.wrapping_add(len),
        }
    }

    pub fn width(&self) -> u8 {
        match *self {
            MemoryAccess::Load { width, .. } | MemoryAccess::Store { width, .. } => width,
        }
    }
}

fn mask(width: u8) -> u64 {
    match width {
        8 => u64::MAX,
        width => (1 << (u32::from(width) * 8)) - 1,
    }
}

/// The 64-bit register a general register lives in, and the bit where it starts.
fn location(register: Register) -> (Register, u32) {
    match register {
        Register::AH | Register::BH | Register::CH | Register::DH => {
            let full = match register {
                Register::AH => Register::RAX,
                Register::BH => Register::RBX,
                Register::CH => Register::RCX,
                _ => Register::RDX,
            };
            (full, 8)
        }
        register => (register.full_register(), 0),
    }
}

fn full_register(regs: &mut user_regs_struct, register: Register) -> Option<&mut u64> {
    Some(match register {
        Register::RAX => &mut regs.rax,
        Register::RBX => &mut regs.rbx,
        Register::RCX => &mut regs.rcx,
        Register::RDX => &mut regs.rdx,
        Register::RSI => &mut regs.rsi,
        Register::RDI => &mut regs.rdi,
        Register::RBP => &mut regs.rbp,
        Register::RSP => &mut regs.rsp,
        Register::R8 => &mut regs.r8,
        Register::R9 => &mut regs.r9,
        Register::R10 => &mut regs.r10,
        Register::R11 => &mut regs.r11,
        Register::R12 => &mut regs.r12,
        Register::R13 => &mut regs.r13,
        Register::R14 => &mut regs.r14,
        Register::R15 => &mut regs.r15,
        _ => return None,
    })
}

/// The value of a general register of any size, zero-extended.
fn read_register(regs: &user_regs_struct, register: Register) -> u64 {
    let (full, shift) = location(register);
    let mut copy = *regs;
    let value = full_register(&mut copy, full).map_or(0, |value| *value);
    (value >> shift) & mask(register.size() as u8)
}

/// Writes `value` into a general register as the CPU would: a 32-bit destination
/// clears the upper half, narrower ones keep the other bits.
fn write_register(regs: &mut user_regs_struct, register: Register, value: u64, zero_extend: bool) {
    let (full, shift) = location(register);
    let size = register.size() as u8;
    let Some(slot) = full_register(regs, full) else {
        return;
    };
    *slot = if zero_extend || size >= 4 {
        value
    } else {
        let field = mask(size) << shift;
        (*slot & !field) | ((value << shift) & field)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const RIP: u64 = 0x40_1000;

    fn regs() -> user_regs_struct {
        // SAFETY: user_regs_struct is plain integers, for which all-zero is valid.
        let mut regs: user_regs_struct = unsafe { std::mem::zeroed() };
        regs.rip = RIP;
        regs
    }

    #[test]
    fn a_32_bit_load_zero_extends_and_moves_rip() {
        let mut state = regs();
        state.rax = u64::MAX;
        // mov eax, [rdi+8]
        let access = decode_memory_access(&[0x8b, 0x47, 0x08], &state).unwrap();
        assert_eq!(access.width(), 4);
        access.apply(&mut state, 0x8008_0783);
        assert_eq!(state.rax, 0x8008_0783);
        assert_eq!(state.rip, RIP + 3);
    }

    #[test]
    fn narrow_loads_merge_and_movzx_clears() {
        let mut state = regs();
        state.rcx = 0x1122_3344_5566_7788;
        // mov cl, [rsi]
        decode_memory_access(&[0x8a, 0x0e], &state)
            .unwrap()
            .apply(&mut state, 0xab);
        assert_eq!(state.rcx, 0x1122_3344_5566_77ab);
        // mov ch, [rsi]
        decode_memory_access(&[0x8a, 0x2e], &state)
            .unwrap()
            .apply(&mut state, 0xcd);
        assert_eq!(state.rcx, 0x1122_3344_5566_cdab);
        // movzx ecx, word [rsi]
        decode_memory_access(&[0x0f, 0xb7, 0x0e], &state)
            .unwrap()
            .apply(&mut state, 0xbeef);
        assert_eq!(state.rcx, 0xbeef);
    }

    #[test]
    fn stores_carry_the_register_or_immediate_value() {
        let mut state = regs();
        state.rdx = 0xffff_ffff_0000_0042;
        state.r9 = 0x0123_4567_89ab_cdef;
        // mov [rdi], edx
        assert_eq!(
            decode_memory_access(&[0x89, 0x17], &state).unwrap(),
            MemoryAccess::Store {
                width: 4,
                value: 0x42,
                len: 2
            }
        );
        // mov [rdi], r9
        assert_eq!(
            decode_memory_access(&[0x4c, 0x89, 0x0f], &state).unwrap(),
            MemoryAccess::Store {
                width: 8,
                value: 0x0123_4567_89ab_cdef,
                len: 3
            }
        );
        // mov dword [rdi+0x3818], 0x10
        let store = decode_memory_access(&[0xc7, 0x87, 0x18, 0x38, 0, 0, 0x10, 0, 0, 0], &state);
        assert_eq!(
            store.unwrap(),
            MemoryAccess::Store {
                width: 4,
                value: 0x10,
                len: 10
            }
        );
    }

    #[test]
    fn other_instructions_are_refused() {
        let state = regs();
        // add [rdi], eax
        assert!(matches!(
            decode_memory_access(&[0x01, 0x07], &state),
            Err(MemoryDecodeError::Unsupported(_))
        ));
        assert_eq!(
            decode_memory_access(&[0x8b], &state),
            Err(MemoryDecodeError::Truncated)
        );
    }
}
