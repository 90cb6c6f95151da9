//! The e1000 (82540EM) registers the guest programs use: the driver's own
//! definitions (`e1000::regs`, named as in the Software Developer's Manual), so the
//! tests and the driver cannot disagree about a register.

pub use e1000::regs::{
    address_from_eeprom, address_from_ral_rah, rah, ral, BAR0_SIZE, EEPROM_ETHERNET_ADDRESS_WORDS,
    EERD, EERD_ADDR_SHIFT, EERD_DATA_SHIFT, EERD_DONE, EERD_START, RAH_AV, STATUS, STATUS_LU, TCTL,
    TCTL_EN, TCTL_PSP, TDBAH, TDBAL, TDH, TDLEN, TDT,
};
