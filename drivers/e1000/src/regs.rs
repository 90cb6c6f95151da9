//! The 82540EM registers this driver uses, named and laid out as in the PCI/PCI-X
//! Family of Gigabit Ethernet Controllers Software Developer's Manual (section 13.4).
//! Every register is 32 bits wide and is accessed only as a whole.

/// Size of BAR 0, the memory-mapped register space.
pub const BAR0_SIZE: usize = 128 << 10;

/// Device Control.
pub const CTRL: u32 = 0x0000;
/// CTRL: link reset.
pub const CTRL_LRST: u32 = 1 << 3;
/// CTRL: auto-speed detection enable.
pub const CTRL_ASDE: u32 = 1 << 5;
/// CTRL: set link up.
pub const CTRL_SLU: u32 = 1 << 6;
/// CTRL: invert loss-of-signal.
pub const CTRL_ILOS: u32 = 1 << 7;
/// CTRL: device reset, self-clearing.
pub const CTRL_RST: u32 = 1 << 26;
/// CTRL: VLAN mode enable.
pub const CTRL_VME: u32 = 1 << 30;
/// CTRL: PHY reset.
pub const CTRL_PHY_RST: u32 = 1 << 31;

/// Device Status (read only).
pub const STATUS: u32 = 0x0008;
/// STATUS: full duplex.
pub const STATUS_FD: u32 = 1 << 0;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: link speed, bits 7:6 (00 = 10, 01 = 100, 1x = 1000 Mb/s).
pub const STATUS_SPEED_SHIFT: u32 = 6;

/// EEPROM Read: write an address with START, poll for DONE, take the data.
pub const EERD: u32 = 0x0014;
pub const EERD_START: u32 = 1 << 0;
/// Set on the 82540EM (bit 4; later parts moved it) when the word is in DATA.
pub const EERD_DONE: u32 = 1 << 4;
pub const EERD_ADDR_SHIFT: u32 = 8;
pub const EERD_DATA_SHIFT: u32 = 16;
/// EEPROM words 0-2 hold the Ethernet address, low byte first.
pub const EEPROM_ETHERNET_ADDRESS_WORDS: u32 = 3;

/// Interrupt Cause Read; reading clears it.
pub const ICR: u32 = 0x00c0;
/// ICR and IMS bit 0: Transmit Descriptor Written Back.
pub const ICR_TXDW: u32 = 1 << 0;
/// ICR and IMS bit 2: Link Status Change.
pub const ICR_LSC: u32 = 1 << 2;
/// ICR and IMS bit 7: Receiver Timer Interrupt (a frame was stored; RDTR is 0).
pub const ICR_RXT0: u32 = 1 << 7;
/// Interrupt Mask Set/Read: every bit written as 1 enables that cause.
pub const IMS: u32 = 0x00d0;
/// Interrupt Mask Clear: every bit written as 1 masks that cause.
pub const IMC: u32 = 0x00d8;
/// Every interrupt cause.
pub const IMC_ALL: u32 = u32::MAX;

/// Receive Control.
pub const RCTL: u32 = 0x0100;
pub const RCTL_EN: u32 = 1 << 1;
/// Accept broadcast frames.
pub const RCTL_BAM: u32 = 1 << 15;
/// Strip the Ethernet CRC before the frame reaches the buffer.
pub const RCTL_SECRC: u32 = 1 << 26;
// BSIZE (bits 17:16) = 00 with BSEX clear selects 2048-byte receive buffers, which
// is what the rings use; long packets (LPE) stay off, so every frame fits one buffer.

/// Transmit Control.
pub const TCTL: u32 = 0x0400;
pub const TCTL_EN: u32 = 1 << 1;
/// Pad short packets to the Ethernet minimum.
pub const TCTL_PSP: u32 = 1 << 3;
/// Collision threshold (bits 11:4); the manual recommends 0x0f.
pub const TCTL_CT: u32 = 0x0f << 4;
/// Collision distance (bits 21:12); 0x40 (64 byte times) for full duplex.
pub const TCTL_COLD_FULL_DUPLEX: u32 = 0x40 << 12;

/// Transmit Inter Packet Gap.
pub const TIPG: u32 = 0x0410;
/// The manual's values for 10/100/1000BASE-T on the 82540EM (table 13-77):
/// IPGT 10, IPGR1 8, IPGR2 6.
pub const TIPG_82540EM_COPPER: u32 = 10 | 8 << 10 | 6 << 20;

/// Receive Descriptor Base Address Low and High, Length, Head, Tail.
pub const RDBAL: u32 = 0x2800;
pub const RDBAH: u32 = 0x2804;
pub const RDLEN: u32 = 0x2808;
pub const RDH: u32 = 0x2810;
pub const RDT: u32 = 0x2818;
/// Receive Delay Timer; 0 writes descriptors back as soon as a frame is in.
pub const RDTR: u32 = 0x2820;

/// Transmit Descriptor Base Address Low and High, Length, Head, Tail.
pub const TDBAL: u32 = 0x3800;
pub const TDBAH: u32 = 0x3804;
pub const TDLEN: u32 = 0x3808;
pub const TDH: u32 = 0x3810;
pub const TDT: u32 = 0x3818;

/// Statistics registers (manual section 13.7): each counts since it was last read,
/// and a 64-bit pair clears when its high half is read.
///
/// CRC Error Count.
pub const CRCERRS: u32 = 0x4000;
/// Missed Packets Count: frames dropped for want of room in the receive FIFO.
pub const MPC: u32 = 0x4010;
/// Good Packets Received Count.
pub const GPRC: u32 = 0x4074;
/// Broadcast Packets Received Count.
pub const BPRC: u32 = 0x4078;
/// Multicast Packets Received Count.
pub const MPRC: u32 = 0x407c;
/// Good Packets Transmitted Count.
pub const GPTC: u32 = 0x4080;
/// Good Octets Received Count, low and high.
pub const GORCL: u32 = 0x4088;
pub const GORCH: u32 = 0x408c;
/// Good Octets Transmitted Count, low and high.
pub const GOTCL: u32 = 0x4090;
pub const GOTCH: u32 = 0x4094;
/// Receive No Buffers Count: frames that found no free receive descriptor.
pub const RNBC: u32 = 0x40a0;
/// Total Packets Received and Transmitted.
pub const TPR: u32 = 0x40d0;
pub const TPT: u32 = 0x40d4;

/// Multicast Table Array: 128 registers of hash bits.
pub const MTA: u32 = 0x5200;
pub const MTA_LEN: u32 = 128;

/// Receive Address Low and High of entry `n` (0-15); entry 0 holds the station's
/// address.
pub const fn ral(n: u32) -> u32 {
    0x5400 + 8 * n
}
pub const fn rah(n: u32) -> u32 {
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

/// RAL and RAH (with the valid bit) that hold `mac`.
pub fn ral_rah_from_address(mac: [u8; 6]) -> (u32, u32) {
    let ral = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
    let rah = u32::from_le_bytes([mac[4], mac[5], 0, 0]) | RAH_AV;
    (ral, rah)
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
        assert_eq!(ral_rah_from_address(MAC), (0x1200_5452, 0x8000_5634));
    }

    #[test]
    fn layout_matches_the_manual() {
        assert_eq!((ral(0), rah(0), ral(15)), (0x5400, 0x5404, 0x5478));
        assert_eq!(MTA + 4 * (MTA_LEN - 1), 0x53fc);
        assert_eq!(TIPG_82540EM_COPPER, 0x0060_200a);
        assert_eq!(TCTL_CT | TCTL_COLD_FULL_DUPLEX, 0x0004_00f0);
    }
}
