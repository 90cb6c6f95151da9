//! The frames the test exchanges with QEMU's user-network gateway: an ARP request
//! and its reply, and ICMP echo requests and replies over IPv4.

/// The address QEMU's user network gives a guest, and its gateway's.
pub const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
pub const GATEWAY_IP: [u8; 4] = [10, 0, 2, 2];

const BROADCAST: [u8; 6] = [0xff; 6];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const IPPROTO_ICMP: u8 = 1;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ETHERNET_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
/// Bytes of echo payload, as `ping -s 32` sends.
const ECHO_PAYLOAD: usize = 32;

fn ethernet(destination: [u8; 6], source: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = destination.to_vec();
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

fn ethertype(frame: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?))
}

/// Who has the gateway's address? Tell the guest.
pub fn arp_request(mac: [u8; 6]) -> Vec<u8> {
    let mut frame = ethernet(BROADCAST, mac, ETHERTYPE_ARP);
    frame.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&ARP_REQUEST.to_be_bytes());
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&GUEST_IP);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&GATEWAY_IP);
    frame
}

/// The gateway's hardware address, if `frame` is its ARP reply to the guest.
pub fn gateway_arp_reply(frame: &[u8]) -> Option<[u8; 6]> {
    let arp = frame.get(ETHERNET_HEADER..ETHERNET_HEADER + 28)?;
    let is_reply = ethertype(frame)? == ETHERTYPE_ARP
        && arp[6..8] == ARP_REPLY.to_be_bytes()
        && arp[14..18] == GATEWAY_IP
        && arp[24..28] == GUEST_IP;
    is_reply.then(|| arp[8..14].try_into().expect("six bytes"))
}

/// An ICMP echo request from the guest to the gateway.
pub fn echo_request(mac: [u8; 6], gateway: [u8; 6], id: u16, seq: u16) -> Vec<u8> {
    let mut icmp = vec![ICMP_ECHO_REQUEST, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend((0..ECHO_PAYLOAD).map(|i| i as u8));
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((IPV4_HEADER + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&seq.to_be_bytes()); // identification
    ip.extend_from_slice(&[0x40, 0, 64, IPPROTO_ICMP, 0, 0]); // don't fragment, TTL 64
    ip.extend_from_slice(&GUEST_IP);
    ip.extend_from_slice(&GATEWAY_IP);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut frame = ethernet(gateway, mac, ETHERTYPE_IPV4);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&icmp);
    frame
}

/// `frame` is the gateway's echo reply with this id and sequence number.
pub fn is_echo_reply(frame: &[u8], id: u16, seq: u16) -> bool {
    let (Some(ip), Some(icmp)) = (
        frame.get(ETHERNET_HEADER..ETHERNET_HEADER + IPV4_HEADER),
        frame.get(ETHERNET_HEADER + IPV4_HEADER..ETHERNET_HEADER + IPV4_HEADER + 8),
    ) else {
        return false;
    };
    ethertype(frame) == Some(ETHERTYPE_IPV4)
        && ip[9] == IPPROTO_ICMP
        && ip[12..16] == GATEWAY_IP
        && ip[16..20] == GUEST_IP
        && icmp[0] == ICMP_ECHO_REPLY
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const GATEWAY: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

    #[test]
    fn checksum_matches_rfc_1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2, complemented 0x220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(checksum(&[0xff]), 0x00ff);
    }

    #[test]
    fn arp_request_asks_for_the_gateway() {
        let frame = arp_request(MAC);
        assert_eq!(frame.len(), 42);
        assert_eq!(&frame[..6], &BROADCAST);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[38..42], &GATEWAY_IP);
        assert_eq!(gateway_arp_reply(&frame), None, "a request is no reply");
    }

    #[test]
    fn recognises_the_gateways_arp_reply() {
        let mut reply = ethernet(MAC, GATEWAY, ETHERTYPE_ARP);
        reply.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        reply.extend_from_slice(&GATEWAY);
        reply.extend_from_slice(&GATEWAY_IP);
        reply.extend_from_slice(&MAC);
        reply.extend_from_slice(&GUEST_IP);
        assert_eq!(gateway_arp_reply(&reply), Some(GATEWAY));
        reply[21] = 1; // the operation: a request
        assert_eq!(gateway_arp_reply(&reply), None);
        assert_eq!(gateway_arp_reply(&reply[..30]), None, "truncated");
    }

    #[test]
    fn echo_request_checksums_verify_and_its_reflection_matches() {
        let request = echo_request(MAC, GATEWAY, 7, 3);
        assert_eq!(request.len(), 14 + 20 + 8 + 32);
        assert_eq!(checksum(&request[14..34]), 0, "IPv4 header");
        assert_eq!(checksum(&request[34..]), 0, "ICMP message");
        assert!(!is_echo_reply(&request, 7, 3), "a request is no reply");

        // What the gateway sends back: addresses swapped, type 0.
        let mut reply = request.clone();
        reply[26..30].copy_from_slice(&GATEWAY_IP);
        reply[30..34].copy_from_slice(&GUEST_IP);
        reply[34] = ICMP_ECHO_REPLY;
        assert!(is_echo_reply(&reply, 7, 3));
        assert!(!is_echo_reply(&reply, 7, 4), "another sequence number");
        assert!(!is_echo_reply(&reply, 8, 3), "another identifier");
        assert!(!is_echo_reply(&reply[..40], 7, 3), "truncated");
    }
}
