//! Arbitrary input refuses cleanly, never panics.

use driver_policy::{Bdf, DeviceId, Policy, PortRange};
use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_policy_text(text in "\\PC*") {
        let _ = text.parse::<Policy>();
    }

    #[test]
    fn arbitrary_driver_tables(key in "[a-z_]{1,12}", value in "(-?[0-9]{1,12}|\"[0-9a-fxA-FX:.\\-KMG]{0,16}\"|\\[[0-9, ]{0,10}\\])") {
        let text = format!("[driver.d]\nuid = 5\n{key} = {value}\n");
        let _ = text.parse::<Policy>();
    }

    #[test]
    fn arbitrary_values(text in "[0-9a-fxA-FX:.\\-]{0,20}") {
        let _ = text.parse::<Bdf>();
        let _ = text.parse::<DeviceId>();
        let _ = text.parse::<PortRange>();
    }

    #[test]
    fn printed_values_parse_back(first: u16, last: u16, domain: u16, bus: u8, device in 0u8..32, function in 0u8..8) {
        if let Some(range) = PortRange::new(first, last) {
            prop_assert_eq!(range.to_string().parse::<PortRange>(), Ok(range));
        }
        let bdf = Bdf { domain, bus, device, function };
        prop_assert_eq!(bdf.to_string().parse::<Bdf>(), Ok(bdf));
    }
}
