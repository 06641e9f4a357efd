//! Host ports for a room's pod: pure, from the ports live Troupe pods hold.
//!
//! Must always hold: a port handed out is inside the scheduler's `portRange` and held by no other
//! live room the runtime knows; ports that a host-port conflict showed to be taken on every
//! eligible node are tried last. Ports are handed out round-robin through the range (a cursor per
//! scheduler, see [`next_offset`]): a port freed by a room that just ended — possibly still held
//! by its terminating pod — is the last to be handed out again.

use std::collections::{BTreeSet, HashSet};

use crate::domain::spec::PortRange;

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
    if range.is_empty() {
        return None;
    }
    let scan = || range.scan_from(offset);
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

/// Where the next scan starts: just after the last port handed out.
pub fn next_offset(range: PortRange, picked: &[u16]) -> u32 {
    picked.last().map_or(0, |&p| {
        u32::from(p).saturating_sub(u32::from(range.start)) + 1
    })
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
    fn ports_go_round_robin_through_the_range() {
        let r = range(40000, 40004);
        let none = BTreeSet::new();
        let first = pick(r, 2, &HashSet::new(), &none, 0).unwrap();
        assert_eq!(first, [40000, 40001]);
        let next = pick(r, 2, &HashSet::new(), &none, next_offset(r, &first)).unwrap();
        assert_eq!(next, [40002, 40003]);
        let again = pick(r, 1, &HashSet::new(), &none, next_offset(r, &next)).unwrap();
        assert_eq!(again, [40000], "wraps around");
        assert_eq!(next_offset(r, &[]), 0);
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
