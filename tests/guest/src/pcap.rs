//! Reads the frames of a classic pcap capture, the format QEMU's filter-dump writes.

const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
/// The magic number as written by a little- or a big-endian host (microsecond stamps).
const MAGIC: u32 = 0xa1b2_c3d4;

/// The captured bytes of every frame, in capture order.
pub fn frames(capture: &[u8]) -> Result<Vec<&[u8]>, String> {
    let magic = word(capture, 0)
        .ok_or_else(|| format!("{} bytes is too short for a pcap header", capture.len()))?;
    let read_u32: fn([u8; 4]) -> u32 = if u32::from_le_bytes(magic) == MAGIC {
        u32::from_le_bytes
    } else if u32::from_be_bytes(magic) == MAGIC {
        u32::from_be_bytes
    } else {
        return Err(format!("not a pcap file (magic {magic:02x?})"));
    };
    let mut rest = capture
        .get(GLOBAL_HEADER_LEN..)
        .ok_or("pcap global header is truncated")?;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let captured_len = word(rest, 8)
            .filter(|_| rest.len() >= RECORD_HEADER_LEN)
            .ok_or_else(|| format!("record header {} is truncated", frames.len()))?;
        let captured_len = read_u32(captured_len) as usize;
        let end = RECORD_HEADER_LEN + captured_len;
        let frame = rest
            .get(RECORD_HEADER_LEN..end)
            .ok_or_else(|| format!("frame {} is truncated", frames.len()))?;
        frames.push(frame);
        rest = &rest[end..];
    }
    Ok(frames)
}

fn word(bytes: &[u8], at: usize) -> Option<[u8; 4]> {
    bytes.get(at..at + 4)?.try_into().ok()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A little-endian capture of `frames`, as QEMU on x86 writes it.
    pub fn capture(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = MAGIC.to_le_bytes().to_vec();
        out.extend_from_slice(&[2, 0, 4, 0]); // version 2.4
        out.extend_from_slice(&[0; 8]); // time zone, accuracy
        out.extend_from_slice(&65535u32.to_le_bytes()); // snapshot length
        out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
        for frame in frames {
            out.extend_from_slice(&[0; 8]); // time stamp
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(frame);
        }
        out
    }

    #[test]
    fn reads_every_frame() {
        let bytes = capture(&[b"first frame", b"", b"third"]);
        assert_eq!(
            frames(&bytes).unwrap(),
            vec![&b"first frame"[..], b"", b"third"]
        );
        assert_eq!(frames(&capture(&[])).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn big_endian_captures_are_read_too() {
        let mut bytes = MAGIC.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 20]);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&3u32.to_be_bytes());
        bytes.extend_from_slice(&3u32.to_be_bytes());
        bytes.extend_from_slice(b"abc");
        assert_eq!(frames(&bytes).unwrap(), vec![&b"abc"[..]]);
    }

    #[test]
    fn damaged_captures_are_errors() {
        let good = capture(&[b"frame"]);
        assert!(frames(&good[..3]).unwrap_err().contains("too short"));
        assert!(frames(&good[..20]).unwrap_err().contains("global header"));
        assert!(frames(&good[..30]).unwrap_err().contains("record header 0"));
        assert!(frames(&good[..good.len() - 1])
            .unwrap_err()
            .contains("frame 0"));
        assert!(frames(b"GIF89a and more")
            .unwrap_err()
            .contains("not a pcap"));
    }
}
