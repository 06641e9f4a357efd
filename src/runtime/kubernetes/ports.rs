//! Host ports for a room's pod: pure, from the ports live Troupe pods hold.
//!
//! Must always hold: a port handed out is inside the scheduler's `portRange` and held by no other
//! live room the runtime knows; ports that a host-port conflict showed to be taken on every
//! eligible node are tried last. The search starts at a random offset, so controllers (and a
//! restarted one) do not all crowd the bottom of the range.

use std::collections::{BTreeSet, HashSet};

use crate::spec::PortRange;

/// `n` distinct free ports of `range`, scanning from `offset` (taken modulo the range's length)
/// and wrapping around. Ports in `avoid` are used only when nothing else is left.
pub fn pick(
    range: PortRange,
    n: usize,
    used: &HashSet<u16>,
    avoid: &BTreeSet<u16>,
    offset: u32,
) -> Option<Vec<u16>> {
    if n == 0 {
        return Some(vec![]);
    }
    let len = range.len();
    if len == 0 {
        return None;
    }
    let scan = || {
        (0..len).map(move |i| {
            let port = u32::from(range.start) + (offset.wrapping_add(i) % len);
            u16::try_from(port).expect("a port inside the range fits u16")
        })
    };
    let mut out: Vec<u16> = scan()
        .filter(|p| !used.contains(p) && !avoid.contains(p))
        .take(n)
        .collect();
    if out.len() < n {
        out.extend(
            scan()
                .filter(|p| !used.contains(p) && avoid.contains(p))
                .take(n - out.len()),
        );
    }
    (out.len() == n).then_some(out)
}

/// A random scan offset.
pub fn random_offset() -> u32 {
    let mut bytes = [0u8; 4];
    // Without randomness the scan starts at the bottom of the range: still correct.
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    #[test]
    fn picks_free_ports_from_the_offset_wrapping_around() {
        let used: HashSet<u16> = [40001, 40003].into();
        let none = BTreeSet::new();
        assert_eq!(
            pick(range(40000, 40005), 2, &used, &none, 3),
            Some(vec![40004, 40000])
        );
        assert_eq!(
            pick(range(40000, 40005), 3, &used, &none, 0),
            Some(vec![40000, 40002, 40004])
        );
        assert_eq!(pick(range(40000, 40005), 4, &used, &none, 0), None);
        assert_eq!(pick(range(40000, 40000), 1, &used, &none, 0), None);
        assert_eq!(pick(range(40000, 40000), 0, &used, &none, 0), Some(vec![]));
    }

    #[test]
    fn ports_that_conflicted_are_used_last() {
        let used = HashSet::new();
        let avoid: BTreeSet<u16> = [40000, 40001].into();
        assert_eq!(
            pick(range(40000, 40003), 1, &used, &avoid, 0),
            Some(vec![40002])
        );
        assert_eq!(
            pick(range(40000, 40003), 2, &used, &avoid, 0),
            Some(vec![40002, 40000])
        );
    }

    #[test]
    fn the_top_of_the_port_space_fits() {
        let used = HashSet::new();
        assert_eq!(
            pick(range(65534, 65535), 1, &used, &BTreeSet::new(), 7),
            Some(vec![65534])
        );
    }
}
