//! The e1000 (82540EM) registers the guest programs use, named and laid out as in the
//! PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's Manual,
//! section 13.4. Every one is 32 bits wide and is accessed only as a whole.

/// Size of BAR 0, the memory-mapped register space.
pub const BAR0_SIZE: u64 = 128 << 10;

/// Device Status (read only).
pub const STATUS: u64 = 0x0008;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;

/// EEPROM Read: write an address with START, poll for DONE, take the data.
pub const EERD: u64 = 0x0014;
pub const EERD_START: u32 = 1 << 0;
/// Set on the 82540EM (bit 4; later parts moved it) when the word is in DATA.
pub const EERD_DONE: u32 = 1 << 4;
pub const EERD_ADDR_SHIFT: u32 = 8;
pub const EERD_DATA_SHIFT: u32 = 16;
/// EEPROM words 0-2 hold the Ethernet address, low byte first.
pub const EEPROM_ETHERNET_ADDRESS_WORDS: u32 = 3;

/// Transmit Control.
pub const TCTL: u64 = 0x0400;
pub const TCTL_EN: u32 = 1 << 1;
/// Pad short packets.
pub const TCTL_PSP: u32 = 1 << 3;

/// Transmit Descriptor Base Address Low and High, Length, Head and Tail.
pub const TDBAL: u64 = 0x3800;
pub const TDBAH: u64 = 0x3804;
pub const TDLEN: u64 = 0x3808;
pub const TDH: u64 = 0x3810;
pub const TDT: u64 = 0x3818;

/// Receive Address Low and High of entry `n` (0-15); entry 0 holds the EEPROM's address.
pub const fn ral(n: u64) -> u64 {
    0x5400 + 8 * n
}
pub const fn rah(n: u64) -> u64 {
    0x5404 + 8 * n
}
/// RAH: the entry is valid (the NIC filters on it).
pub const RAH_AV: u32 = 1 << 31;

/// The Ethernet address held in RAL/RAH of one entry.
pub fn address_from_ral_rah(ral: u32, rah: u32) -> [u8; 6] {
    let mut mac = [0; 6];
    mac[..4].copy_from_slice(&ral.to_le_bytes());
    mac[4..].copy_from_slice(&rah.to_le_bytes()[..2]);
    mac
}

/// The Ethernet address held in EEPROM words 0-2.
pub fn address_from_eeprom(words: [u16; 3]) -> [u8; 6] {
    let mut mac = [0; 6];
    for (pair, word) in mac.chunks_exact_mut(2).zip(words) {
        pair.copy_from_slice(&word.to_le_bytes());
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn addresses_decode_low_byte_first() {
        // What QEMU's e1000 reports for 52:54:00:12:34:56.
        assert_eq!(address_from_ral_rah(0x1200_5452, 0x8000_5634), MAC);
        assert_eq!(address_from_eeprom([0x5452, 0x1200, 0x5634]), MAC);
    }

    #[test]
    fn receive_address_entries_are_eight_bytes_apart() {
        assert_eq!((ral(0), rah(0)), (0x5400, 0x5404));
        assert_eq!((ral(1), rah(1)), (0x5408, 0x540c));
    }
}
