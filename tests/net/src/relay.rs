//! Moving frames from one port to another, counted: the bridge's core, apart from
//! the devices, so it is tested with in-memory ports.

use std::fmt;
use std::io;

/// Where frames come from.
pub trait FrameSource {
    /// One frame into `buf`; `None` when none is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
}

/// Where frames go.
pub trait FrameSink {
    /// Sends one frame whole. `InvalidInput` means this frame is refused (its size),
    /// and the relay drops it; any other error means the port is broken.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;

    /// Sends what [`send`](Self::send) gathered, for a sink that sends many
    /// frames at once; the relay calls it before it stops.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Frames and bytes that went one way, and frames dropped on the way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub frames: u64,
    pub bytes: u64,
    pub dropped: u64,
}

/// Why [`pump`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// The source had no more frames.
    Drained,
    /// `budget` frames moved and the source may have more: come back after serving
    /// the other direction.
    BudgetSpent,
}

/// Moves up to `budget` frames from `source` to `sink` through `buf`, counting them
/// in `flow`, and flushes the sink.
pub fn pump(
    source: &mut impl FrameSource,
    sink: &mut impl FrameSink,
    buf: &mut [u8],
    budget: usize,
    flow: &mut Flow,
) -> io::Result<Pumped> {
    for _ in 0..budget {
        let Some(len) = source.recv(buf)? else {
            sink.flush()?;
            return Ok(Pumped::Drained);
        };
        match sink.send(&buf[..len]) {
            Ok(()) => {
                flow.frames += 1;
                flow.bytes += len as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                flow.dropped += 1;
                log::debug!("dropped a {len}-byte frame: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    sink.flush()?;
    Ok(Pumped::BudgetSpent)
}

/// Both directions of a bridge between a NIC and a TAP device.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BridgeCounters {
    pub nic_to_tap: Flow,
    pub tap_to_nic: Flow,
    /// Times the NIC was opened again after its driver was restarted.
    pub reopened: u64,
    /// Link changes the NIC reported and the TAP device followed.
    pub link_changes: u64,
}

/// The first words of the line a bridge prints when it stops.
const COUNTERS: &str = "tap-bridge counters";

impl BridgeCounters {
    /// Reads the line [`fmt::Display`] writes; `None` for any other line.
    pub fn parse(line: &str) -> Option<Self> {
        let mut counters = Self::default();
        // One bit per counter: each must appear exactly once.
        let mut seen = 0u8;
        for pair in line.trim_end().strip_prefix(COUNTERS)?.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            let nic_counter = match key {
                "nic.reopened" => Some((&mut counters.reopened, 6)),
                "nic.link_changes" => Some((&mut counters.link_changes, 7)),
                _ => None,
            };
            if let Some((counter, bit)) = nic_counter {
                if seen & 1 << bit != 0 {
                    return None;
                }
                seen |= 1 << bit;
                *counter = value;
                continue;
            }
            let (direction, field) = key.split_once('.')?;
            let (flow, first_bit) = match direction {
                "nic_to_tap" => (&mut counters.nic_to_tap, 0),
                "tap_to_nic" => (&mut counters.tap_to_nic, 3),
                _ => return None,
            };
            let (counter, offset) = match field {
                "frames" => (&mut flow.frames, 0),
                "bytes" => (&mut flow.bytes, 1),
                "dropped" => (&mut flow.dropped, 2),
                _ => return None,
            };
            let bit = 1 << (first_bit + offset);
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            *counter = value;
        }
        (seen == 0b1111_1111).then_some(counters)
    }
}

impl fmt::Display for BridgeCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{COUNTERS}")?;
        for (name, flow) in [
            ("nic_to_tap", self.nic_to_tap),
            ("tap_to_nic", self.tap_to_nic),
        ] {
            write!(
                f,
                " {name}.frames={} {name}.bytes={} {name}.dropped={}",
                flow.frames, flow.bytes, flow.dropped
            )?;
        }
        write!(
            f,
            " nic.reopened={} nic.link_changes={}",
            self.reopened, self.link_changes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Frames waiting to be read.
    struct Queue(VecDeque<Vec<u8>>);

    impl FrameSource for Queue {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
            Ok(self.0.pop_front().map(|frame| {
                buf[..frame.len()].copy_from_slice(&frame);
                frame.len()
            }))
        }
    }

    /// Keeps frames of 14 to 1514 bytes, refuses the others, and breaks on a frame
    /// starting with 0xff.
    #[derive(Default)]
    struct Wire(Vec<Vec<u8>>);

    impl FrameSink for Wire {
        fn send(&mut self, frame: &[u8]) -> io::Result<()> {
            if frame.first() == Some(&0xff) {
                return Err(io::Error::other("cable cut"));
            }
            if !(14..=1514).contains(&frame.len()) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "size"));
            }
            self.0.push(frame.to_vec());
            Ok(())
        }
    }

    fn frames(lens: &[usize]) -> Queue {
        Queue(
            lens.iter()
                .map(|&len| vec![len as u8 & 0x7f; len])
                .collect(),
        )
    }

    #[test]
    fn moves_frames_in_order_and_counts_them() {
        let mut source = frames(&[60, 1514, 100]);
        let mut wire = Wire::default();
        let mut flow = Flow::default();
        let pumped = pump(&mut source, &mut wire, &mut [0; 2048], 8, &mut flow).unwrap();
        assert_eq!(pumped, Pumped::Drained);
        assert_eq!(
            wire.0.iter().map(Vec::len).collect::<Vec<_>>(),
            [60, 1514, 100]
        );
        assert_eq!(wire.0[2], vec![100; 100]);
        let moved = Flow {
            frames: 3,
            bytes: 1674,
            dropped: 0,
        };
        assert_eq!(flow, moved);
    }

    #[test]
    fn stops_at_the_budget_and_goes_on_later() {
        let mut source = frames(&[60, 61, 62]);
        let mut wire = Wire::default();
        let mut flow = Flow::default();
        let buf = &mut [0; 2048];
        assert_eq!(
            pump(&mut source, &mut wire, buf, 2, &mut flow).unwrap(),
            Pumped::BudgetSpent
        );
        assert_eq!(flow.frames, 2);
        assert_eq!(
            pump(&mut source, &mut wire, buf, 2, &mut flow).unwrap(),
            Pumped::Drained
        );
        assert_eq!(flow.frames, 3);
    }

    /// Gathers frames and hands them to its wire only when flushed.
    #[derive(Default)]
    struct Gathering {
        gathered: Vec<Vec<u8>>,
        wire: Wire,
        flushes: u32,
    }

    impl FrameSink for Gathering {
        fn send(&mut self, frame: &[u8]) -> io::Result<()> {
            self.gathered.push(frame.to_vec());
            Ok(())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            for frame in self.gathered.drain(..) {
                self.wire.send(&frame)?;
            }
            Ok(())
        }
    }

    #[test]
    fn a_gathering_sink_is_flushed_once_per_pump_whether_drained_or_out_of_budget() {
        let mut source = frames(&[60, 61, 62]);
        let mut sink = Gathering::default();
        let mut flow = Flow::default();
        let buf = &mut [0; 2048];
        assert_eq!(
            pump(&mut source, &mut sink, buf, 2, &mut flow).unwrap(),
            Pumped::BudgetSpent
        );
        assert_eq!((sink.flushes, sink.wire.0.len()), (1, 2));
        assert_eq!(
            pump(&mut source, &mut sink, buf, 2, &mut flow).unwrap(),
            Pumped::Drained
        );
        assert_eq!((sink.flushes, sink.wire.0.len()), (2, 3));
        assert_eq!(sink.wire.0[2], vec![62; 62]);
    }

    #[test]
    fn refused_frames_are_dropped_and_counted_a_broken_sink_is_an_error() {
        let mut source = frames(&[10, 60, 1600]);
        let mut wire = Wire::default();
        let mut flow = Flow::default();
        pump(&mut source, &mut wire, &mut [0; 2048], 8, &mut flow).unwrap();
        assert_eq!((flow.frames, flow.dropped), (1, 2));

        let mut source = Queue(VecDeque::from([vec![0xff; 60], vec![1; 60]]));
        let err = pump(&mut source, &mut wire, &mut [0; 2048], 8, &mut flow).unwrap_err();
        assert!(err.to_string().contains("cable cut"), "{err}");
        assert_eq!(source.0.len(), 1, "nothing is read after the failure");
    }

    #[test]
    fn counters_line_round_trips_and_other_lines_do_not_parse() {
        let counters = BridgeCounters {
            nic_to_tap: Flow {
                frames: 1,
                bytes: 2,
                dropped: 3,
            },
            tap_to_nic: Flow {
                frames: 4,
                bytes: 5,
                dropped: 6,
            },
            reopened: 7,
            link_changes: 8,
        };
        let line = counters.to_string();
        assert_eq!(
            line,
            "tap-bridge counters nic_to_tap.frames=1 nic_to_tap.bytes=2 nic_to_tap.dropped=3 \
             tap_to_nic.frames=4 tap_to_nic.bytes=5 tap_to_nic.dropped=6 nic.reopened=7 \
             nic.link_changes=8"
        );
        assert_eq!(BridgeCounters::parse(&line), Some(counters));
        let short = line.replace(" tap_to_nic.dropped=6", "");
        assert_eq!(BridgeCounters::parse(&short), None);
        let twice = line.replace("tap_to_nic.dropped=6", "tap_to_nic.frames=4");
        assert_eq!(BridgeCounters::parse(&twice), None);
        let reopened_twice = format!("{line} nic.reopened=7");
        assert_eq!(BridgeCounters::parse(&reopened_twice), None);
        let no_link = line.replace(" nic.link_changes=8", "");
        assert_eq!(BridgeCounters::parse(&no_link), None);
        let unknown = line.replace("nic_to_tap.bytes", "nic_to_tap.octets");
        assert_eq!(BridgeCounters::parse(&unknown), None);
        assert_eq!(BridgeCounters::parse("tap-bridge relaying"), None);
    }
}
