//! Where two copies of a page differ: the bytes shared memory's synchronisation
//! points move between the replicas and the device.
//!
//! Under emulation every instruction of the engine's costs, and the C
//! library's `memcmp` compares many bytes per instruction: in the guest it
//! compares an unchanged 4 KiB page in 3-4 µs (a pull's comparison of the 64
//! pages of received packets took 180-240 µs). So a difference is narrowed
//! down by comparing slices, from blocks of [`STEPS`]`[0]` bytes down to
//! words, and only the last few bytes are looked at one at a time.

/// The block sizes a search for a difference narrows through, largest first;
/// each divides the one before, so a differing block holds a differing block
/// of the next size (or a shorter tail).
const STEPS: [usize; 3] = [512, 64, 8];

/// The first position from `from` on where `old` and `new` (of one length)
/// differ.
pub fn first_difference(old: &[u8], new: &[u8], from: usize) -> Option<usize> {
    let len = old.len().min(new.len());
    let mut at = from;
    for step in STEPS {
        while at + step <= len && old[at..at + step] == new[at..at + step] {
            at += step;
        }
    }
    (at..len).find(|&at| old[at] != new[at])
}

/// One past the last position where `old` and `new` (of one length) differ,
/// found from the end; `None` where they are equal.
pub fn last_difference(old: &[u8], new: &[u8]) -> Option<usize> {
    let len = old.len().min(new.len());
    let mut end = len;
    for step in STEPS {
        while end >= step && old[end - step..end] == new[end - step..end] {
            end -= step;
        }
    }
    (1..=end).rev().find(|&end| old[end - 1] != new[end - 1])
}

/// The runs `[start, end)` where `old` and `new` (of one length) differ: what
/// changed in memory both the replicas and the device write, where bytes
/// between that did not change may have changed on the other side.
pub fn changed_runs(old: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
    let len = old.len().min(new.len());
    let mut runs = Vec::new();
    let mut at = 0;
    while let Some(start) = first_difference(old, new, at) {
        at = (start..len).find(|&at| old[at] == new[at]).unwrap_or(len);
        runs.push((start, at));
    }
    runs
}

/// The one run from the first to the last byte where `old` and `new` (of one
/// length) differ: where bytes between that did not change may be written
/// again (memory only one side writes), one piece per page instead of one per
/// changed run.
pub fn changed_span(old: &[u8], new: &[u8]) -> Option<(usize, usize)> {
    let start = first_difference(old, new, 0)?;
    let end = last_difference(old, new)?;
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_runs_are_maximal() {
        assert_eq!(changed_runs(b"abcdef", b"abcdef"), vec![]);
        assert_eq!(changed_runs(b"abcdef", b"xbcdyz"), vec![(0, 1), (4, 6)]);
        // Across words, at their edges and in a tail shorter than a word.
        let old = [0_u8; 21];
        let mut new = old;
        for at in [7, 8, 9, 16, 20] {
            new[at] = 1;
        }
        assert_eq!(changed_runs(&old, &new), vec![(7, 10), (16, 17), (20, 21)]);
        assert_eq!(changed_span(&old, &new), Some((7, 21)));
        assert_eq!(changed_span(&old, &old), None);
        for lone in 0..old.len() {
            let mut new = old;
            new[lone] = 1;
            assert_eq!(changed_runs(&old, &new), vec![(lone, lone + 1)]);
            assert_eq!(changed_span(&old, &new), Some((lone, lone + 1)));
        }
    }

    #[test]
    fn a_difference_is_found_at_any_place_of_a_page_and_its_short_tail() {
        // A page and a bit: every block size has a tail somewhere.
        let old = vec![0_u8; 4096 + 100];
        assert_eq!(first_difference(&old, &old, 0), None);
        assert_eq!(last_difference(&old, &old), None);
        for lone in 0..old.len() {
            let mut new = old.clone();
            new[lone] = 1;
            assert_eq!(first_difference(&old, &new, 0), Some(lone));
            assert_eq!(last_difference(&old, &new), Some(lone + 1));
            assert_eq!(changed_runs(&old, &new), vec![(lone, lone + 1)]);
        }
    }

    #[test]
    fn a_search_from_a_place_finds_only_what_follows_it() {
        let old = vec![0_u8; 2048];
        let mut new = old.clone();
        new[10] = 1;
        new[1500] = 1;
        assert_eq!(first_difference(&old, &new, 0), Some(10));
        assert_eq!(first_difference(&old, &new, 11), Some(1500));
        assert_eq!(first_difference(&old, &new, 1501), None);
        assert_eq!(changed_span(&old, &new), Some((10, 1501)));
        assert_eq!(changed_runs(&old, &new), vec![(10, 11), (1500, 1501)]);
    }
}
