//! The general register set of a replica, as compared at every externalization event.

use std::fmt;

/// The x86-64 general-purpose registers plus RIP, RFLAGS and the FS/GS bases: everything a
/// replica's future depends on besides its memory, so a corrupted value here is caught at
/// the next event instead of at some later, harder to explain effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
}

/// Names one field of [`Registers`], so a difference can say which register differed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Register {
    Rax,
    Rbx,
    Rcx,
    Rdx,
    Rsi,
    Rdi,
    Rbp,
    Rsp,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    Rip,
    Rflags,
    FsBase,
    GsBase,
}

impl Register {
    /// Every register, in the order differences are reported.
    pub const ALL: [Register; 20] = [
        Register::Rax,
        Register::Rbx,
        Register::Rcx,
        Register::Rdx,
        Register::Rsi,
        Register::Rdi,
        Register::Rbp,
        Register::Rsp,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
        Register::Rip,
        Register::Rflags,
        Register::FsBase,
        Register::GsBase,
    ];

    /// The assembler name, upper case as in the manuals.
    pub fn name(self) -> &'static str {
        match self {
            Register::Rax => "RAX",
            Register::Rbx => "RBX",
            Register::Rcx => "RCX",
            Register::Rdx => "RDX",
            Register::Rsi => "RSI",
            Register::Rdi => "RDI",
            Register::Rbp => "RBP",
            Register::Rsp => "RSP",
            Register::R8 => "R8",
            Register::R9 => "R9",
            Register::R10 => "R10",
            Register::R11 => "R11",
            Register::R12 => "R12",
            Register::R13 => "R13",
            Register::R14 => "R14",
            Register::R15 => "R15",
            Register::Rip => "RIP",
            Register::Rflags => "RFLAGS",
            Register::FsBase => "FS_BASE",
            Register::GsBase => "GS_BASE",
        }
    }

    /// The register called `name`, in any case ("rip", "RIP", "fs_base").
    pub fn from_name(name: &str) -> Option<Register> {
        Register::ALL
            .into_iter()
            .find(|register| register.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Registers {
    /// The value of `register`.
    pub fn get(&self, register: Register) -> u64 {
        match register {
            Register::Rax => self.rax,
            Register::Rbx => self.rbx,
            Register::Rcx => self.rcx,
            Register::Rdx => self.rdx,
            Register::Rsi => self.rsi,
            Register::Rdi => self.rdi,
            Register::Rbp => self.rbp,
            Register::Rsp => self.rsp,
            Register::R8 => self.r8,
            Register::R9 => self.r9,
            Register::R10 => self.r10,
            Register::R11 => self.r11,
            Register::R12 => self.r12,
            Register::R13 => self.r13,
            Register::R14 => self.r14,
            Register::R15 => self.r15,
            Register::Rip => self.rip,
            Register::Rflags => self.rflags,
            Register::FsBase => self.fs_base,
            Register::GsBase => self.gs_base,
        }
    }

    /// Sets `register` to `value`.
    pub fn set(&mut self, register: Register, value: u64) {
        let slot = match register {
            Register::Rax => &mut self.rax,
            Register::Rbx => &mut self.rbx,
            Register::Rcx => &mut self.rcx,
            Register::Rdx => &mut self.rdx,
            Register::Rsi => &mut self.rsi,
            Register::Rdi => &mut self.rdi,
            Register::Rbp => &mut self.rbp,
            Register::Rsp => &mut self.rsp,
            Register::R8 => &mut self.r8,
            Register::R9 => &mut self.r9,
            Register::R10 => &mut self.r10,
            Register::R11 => &mut self.r11,
            Register::R12 => &mut self.r12,
            Register::R13 => &mut self.r13,
            Register::R14 => &mut self.r14,
            Register::R15 => &mut self.r15,
            Register::Rip => &mut self.rip,
            Register::Rflags => &mut self.rflags,
            Register::FsBase => &mut self.fs_base,
            Register::GsBase => &mut self.gs_base,
        };
        *slot = value;
    }

    /// The registers whose values differ, in [`Register::ALL`] order, as
    /// `(register, self's value, other's value)`.
    pub fn differing(&self, other: &Registers) -> impl Iterator<Item = (Register, u64, u64)> + '_ {
        let other = *other;
        Register::ALL
            .into_iter()
            .map(move |register| (register, self.get(register), other.get(register)))
            .filter(|(_, mine, theirs)| mine != theirs)
    }
}

#[cfg(target_os = "linux")]
impl From<&nix::libc::user_regs_struct> for Registers {
    fn from(regs: &nix::libc::user_regs_struct) -> Self {
        Registers {
            rax: regs.rax,
            rbx: regs.rbx,
            rcx: regs.rcx,
            rdx: regs.rdx,
            rsi: regs.rsi,
            rdi: regs.rdi,
            rbp: regs.rbp,
            rsp: regs.rsp,
            r8: regs.r8,
            r9: regs.r9,
            r10: regs.r10,
            r11: regs.r11,
            r12: regs.r12,
            r13: regs.r13,
            r14: regs.r14,
            r15: regs.r15,
            rip: regs.rip,
            rflags: regs.eflags,
            fs_base: regs.fs_base,
            gs_base: regs.gs_base,
        }
    }
}

#[cfg(target_os = "linux")]
impl Registers {
    /// Writes these values into `regs`, keeping the fields this type does not hold
    /// (`orig_rax`, the segment selectors) as they are, so a changed set can go back to
    /// the process it came from.
    pub fn apply_to(&self, regs: &mut nix::libc::user_regs_struct) {
        regs.rax = self.rax;
        regs.rbx = self.rbx;
        regs.rcx = self.rcx;
        regs.rdx = self.rdx;
        regs.rsi = self.rsi;
        regs.rdi = self.rdi;
        regs.rbp = self.rbp;
        regs.rsp = self.rsp;
        regs.r8 = self.r8;
        regs.r9 = self.r9;
        regs.r10 = self.r10;
        regs.r11 = self.r11;
        regs.r12 = self.r12;
        regs.r13 = self.r13;
        regs.r14 = self.r14;
        regs.r15 = self.r15;
        regs.rip = self.rip;
        regs.eflags = self.rflags;
        regs.fs_base = self.fs_base;
        regs.gs_base = self.gs_base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `differing` walks `Register::ALL` while equality compares fields: they only agree
    /// if `ALL` names every field once and `get`/`set` map each name to its own field.
    #[test]
    fn every_field_is_named_exactly_once() {
        assert_eq!(Register::ALL.len() * 8, std::mem::size_of::<Registers>());
        let mut regs = Registers::default();
        for (i, register) in Register::ALL.into_iter().enumerate() {
            regs.set(register, i as u64 + 1);
        }
        for (i, register) in Register::ALL.into_iter().enumerate() {
            assert_eq!(regs.get(register), i as u64 + 1, "{register}");
        }
        let unique: std::collections::HashSet<_> = Register::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(unique.len(), Register::ALL.len());
    }

    #[test]
    fn differing_lists_only_changed_registers_in_order() {
        let healthy = Registers::default();
        let mut faulty = healthy;
        faulty.r15 = 7;
        faulty.rax = 0x43;
        let found: Vec<_> = healthy.differing(&faulty).collect();
        assert_eq!(found, vec![(Register::Rax, 0, 0x43), (Register::R15, 0, 7)]);
        assert_eq!(healthy.differing(&healthy).count(), 0);
    }

    #[test]
    fn names_parse_in_any_case() {
        for register in Register::ALL {
            assert_eq!(Register::from_name(register.name()), Some(register));
            let lower = register.name().to_ascii_lowercase();
            assert_eq!(Register::from_name(&lower), Some(register));
        }
        assert_eq!(Register::from_name("Rip"), Some(Register::Rip));
        assert_eq!(Register::from_name("eax"), None);
        assert_eq!(Register::from_name(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn applying_to_ptrace_registers_round_trips_and_keeps_the_rest() {
        // SAFETY: user_regs_struct is plain integers, for which all-zero is valid.
        let mut raw: nix::libc::user_regs_struct = unsafe { std::mem::zeroed() };
        raw.orig_rax = 99;
        raw.cs = 0x33;
        let mut regs = Registers::default();
        for (i, register) in Register::ALL.into_iter().enumerate() {
            regs.set(register, 0x100 + i as u64);
        }
        regs.apply_to(&mut raw);
        assert_eq!(Registers::from(&raw), regs);
        assert_eq!((raw.orig_rax, raw.cs), (99, 0x33));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn converts_from_ptrace_registers() {
        // SAFETY: user_regs_struct is plain integers, for which all-zero is valid.
        let mut raw: nix::libc::user_regs_struct = unsafe { std::mem::zeroed() };
        raw.rax = 1;
        raw.r15 = 2;
        raw.rip = 3;
        raw.eflags = 0x246;
        raw.fs_base = 4;
        raw.gs_base = 5;
        raw.orig_rax = 99;
        let regs = Registers::from(&raw);
        assert_eq!(
            regs,
            Registers {
                rax: 1,
                r15: 2,
                rip: 3,
                rflags: 0x246,
                fs_base: 4,
                gs_base: 5,
                ..Registers::default()
            }
        );
    }
}
