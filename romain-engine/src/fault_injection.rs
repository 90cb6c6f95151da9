//! Faults injected into a chosen replica on command, to show that the group masks or
//! repairs them: bit flips in a register or in memory, a kill, a stop, an endless loop.
//!
//! | command                          | fault                                         |
//! |----------------------------------|-----------------------------------------------|
//! | `flip <i> reg <register> <bit>`  | flip one bit of a register (`rax`, `rip`, ...) |
//! | `flip <i> mem <address> <bit>`   | flip one bit of the byte at an address         |
//! | `kill <i>`                       | SIGKILL the replica                           |
//! | `stop <i>`                       | SIGSTOP the replica: a hang                   |
//! | `hang <i>`                       | send the replica into an endless loop         |

use std::fmt;
use std::str::FromStr;

use crate::vote::{Register, ReplicaIndex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    RegisterBit { register: Register, bit: u8 },
    MemoryBit { address: u64, bit: u8 },
    Kill,
    Stop,
    Spin,
}

/// A fault and the replica it goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    pub replica: ReplicaIndex,
    pub fault: Fault,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectionError(String);

impl fmt::Display for InjectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InjectionError {}

fn error(text: impl Into<String>) -> InjectionError {
    InjectionError(text.into())
}

fn number(word: Option<&str>, what: &str) -> Result<u64, InjectionError> {
    let word = word.ok_or_else(|| error(format!("missing {what}")))?;
    let parsed = match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => word.parse(),
    };
    parsed.map_err(|_| error(format!("{word:?} is not a {what}")))
}

impl FromStr for Injection {
    type Err = InjectionError;

    fn from_str(text: &str) -> Result<Self, InjectionError> {
        let mut words = text.split_whitespace();
        let verb = words.next().ok_or_else(|| error("empty command"))?;
        let replica = number(words.next(), "replica index")? as ReplicaIndex;
        let fault = match verb {
            "kill" => Fault::Kill,
            "stop" => Fault::Stop,
            "hang" => Fault::Spin,
            "flip" => {
                let target = words.next();
                let fault = match target {
                    Some("reg") => {
                        let name = words.next().ok_or_else(|| error("missing register"))?;
                        let register = Register::from_name(name)
                            .ok_or_else(|| error(format!("unknown register {name:?}")))?;
                        Fault::RegisterBit {
                            register,
                            bit: bit(words.next())?,
                        }
                    }
                    Some("mem") => Fault::MemoryBit {
                        address: number(words.next(), "address")?,
                        bit: bit(words.next())?,
                    },
                    _ => {
                        return Err(error(
                            "flip needs `reg <register> <bit>` or `mem <address> <bit>`",
                        ))
                    }
                };
                fault
            }
            other => return Err(error(format!("unknown fault {other:?}"))),
        };
        if words.next().is_some() {
            return Err(error(format!("too many words in {text:?}")));
        }
        Ok(Injection { replica, fault })
    }
}

fn bit(word: Option<&str>) -> Result<u8, InjectionError> {
    match number(word, "bit number")? {
        bit @ 0..=63 => Ok(bit as u8),
        other => Err(error(format!("bit {other} is not in 0..=63"))),
    }
}

impl fmt::Display for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replica = self.replica;
        match self.fault {
            Fault::RegisterBit { register, bit } => {
                write!(
                    f,
                    "flip {replica} reg {} {bit}",
                    register.name().to_lowercase()
                )
            }
            Fault::MemoryBit { address, bit } => write!(f, "flip {replica} mem {address:#x} {bit}"),
            Fault::Kill => write!(f, "kill {replica}"),
            Fault::Stop => write!(f, "stop {replica}"),
            Fault::Spin => write!(f, "hang {replica}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault_and_prints_it_back() {
        for text in [
            "flip 1 reg rax 3",
            "flip 0 reg rip 63",
            "flip 2 mem 0x7ffff7ff1000 7",
            "kill 2",
            "stop 0",
            "hang 1",
        ] {
            let injection: Injection = text.parse().unwrap();
            assert_eq!(injection.to_string(), text);
        }
        assert_eq!(
            "flip 1 reg R15 0".parse::<Injection>().unwrap().fault,
            Fault::RegisterBit {
                register: Register::R15,
                bit: 0
            }
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for text in [
            "",
            "flip",
            "flip x reg rax 1",
            "flip 1 reg rzz 1",
            "flip 1 reg rax 64",
            "flip 1 mem nowhere 1",
            "flip 1 disk 0 1",
            "kill 1 now",
            "explode 1",
        ] {
            assert!(text.parse::<Injection>().is_err(), "{text:?}");
        }
    }
}
