//! Host port bookkeeping for local rooms. All local rooms share one address, so ports are booked
//! across every scheduler, not per scheduler.
//!
//! Must always hold: a port is held by at most one live room; a room's ports are released only once
//! its process group is gone; a port something else on the machine holds (per the probe) is never
//! handed out. Allocation is all or nothing: a room gets every port it declares or none.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use crate::domain::spec::{PortRange, Protocol};

/// Ports booked by live rooms, and where each scheduler's next search starts.
#[derive(Debug, Default)]
pub struct PortBook {
    used: HashSet<u16>,
    /// Next port to try per scheduler: allocation goes round the range rather than always from its
    /// start, so a port a room just released is not handed straight to the next room (a client
    /// still holding the old address would reach the wrong room).
    cursor: HashMap<String, u16>,
}

impl PortBook {
    /// Book one port per entry of `protocols` from `range`, skipping booked ports and those
    /// `is_free` rejects. `None` (and nothing booked) when the range has too few free ports.
    pub fn allocate(
        &mut self,
        scheduler: &str,
        range: PortRange,
        protocols: &[Protocol],
        mut is_free: impl FnMut(u16, Protocol) -> bool,
    ) -> Option<Vec<u16>> {
        if protocols.is_empty() {
            return Some(Vec::new());
        }
        if range.is_empty() {
            return None;
        }
        let mut offset = self
            .cursor
            .get(scheduler)
            .copied()
            .filter(|p| range.contains(*p))
            .map_or(0, |p| u32::from(p - range.start));
        let mut chosen: Vec<u16> = Vec::with_capacity(protocols.len());
        for &protocol in protocols {
            let (i, port) = range.scan_from(offset).enumerate().find(|&(_, p)| {
                !self.used.contains(&p) && !chosen.contains(&p) && is_free(p, protocol)
            })?;
            offset += i as u32 + 1;
            chosen.push(port);
        }
        self.used.extend(chosen.iter().copied());
        let next = range
            .scan_from(offset)
            .next()
            .expect("a range with a free port is not empty");
        self.cursor.insert(scheduler.to_owned(), next);
        Some(chosen)
    }

    /// Book ports a room already holds (an adopted room). Returns those that were booked already.
    pub fn claim(&mut self, ports: impl IntoIterator<Item = u16>) -> Vec<u16> {
        ports
            .into_iter()
            .filter(|p| !self.used.insert(*p))
            .collect()
    }

    pub fn release(&mut self, ports: &[u16]) {
        for p in ports {
            self.used.remove(p);
        }
    }

    #[cfg(test)]
    fn is_booked(&self, port: u16) -> bool {
        self.used.contains(&port)
    }
}

/// Whether `port` can be bound on `host` for `protocol` right now: binds and drops a socket.
/// SCTP is probed as TCP (std has no SCTP sockets; the two usually go together).
pub fn probe(host: IpAddr, port: u16, protocol: Protocol) -> bool {
    let addr = SocketAddr::new(host, port);
    match protocol {
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
        Protocol::Tcp | Protocol::Sctp => TcpListener::bind(addr).is_ok(),
    }
}

/// The address to probe ports on for a configured host: the host itself when it is an IP address,
/// else loopback (where local rooms listen).
pub fn probe_addr(host: &str) -> IpAddr {
    host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Where the kernel takes the local ports of outgoing connections from.
const EPHEMERAL_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The kernel's ephemeral port range (first and last port, inclusive), when it can be read.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    parse_ephemeral_range(&std::fs::read_to_string(EPHEMERAL_RANGE_FILE).ok()?)
}

fn parse_ephemeral_range(text: &str) -> Option<(u16, u16)> {
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    match (fields.next()?, fields.next()?) {
        (Ok(first), Ok(last)) if first <= last => Some((first, last)),
        _ => None,
    }
}

/// How many ports of `range` the kernel may also hand to outgoing connections: a port checked
/// free when a room starts can be taken by one before the room binds it.
pub fn ephemeral_overlap(range: PortRange, ephemeral: (u16, u16)) -> u32 {
    let start = u32::from(range.start).max(u32::from(ephemeral.0));
    let end = u32::from(range.end).min(u32::from(ephemeral.1) + 1);
    end.saturating_sub(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ephemeral_range_is_read_and_overlaps_are_counted() {
        assert_eq!(
            parse_ephemeral_range("32768\t60999\n"),
            Some((32768, 60999))
        );
        assert_eq!(parse_ephemeral_range("60999 32768"), None);
        assert_eq!(parse_ephemeral_range("junk"), None);
        let eph = (32768, 60999);
        assert_eq!(ephemeral_overlap(range(20000, 22000), eph), 0);
        assert_eq!(ephemeral_overlap(range(40000, 40100), eph), 100);
        assert_eq!(ephemeral_overlap(range(32700, 32800), eph), 32);
        assert_eq!(ephemeral_overlap(range(60990, 61010), eph), 10);
    }

    const TCP: Protocol = Protocol::Tcp;

    fn range(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    #[test]
    fn ports_are_distinct_across_rooms_and_schedulers() {
        let mut book = PortBook::default();
        let a = book
            .allocate("a", range(100, 104), &[TCP, TCP], |_, _| true)
            .unwrap();
        let b = book
            .allocate("b", range(100, 104), &[TCP, TCP], |_, _| true)
            .unwrap();
        assert_eq!(a, vec![100, 101]);
        assert_eq!(b, vec![102, 103]);
        assert_eq!(
            book.allocate("a", range(100, 104), &[TCP], |_, _| true),
            None
        );
    }

    #[test]
    fn exhaustion_books_nothing() {
        let mut book = PortBook::default();
        assert_eq!(
            book.allocate("a", range(100, 102), &[TCP, TCP, TCP], |_, _| true),
            None
        );
        assert!(!book.is_booked(100) && !book.is_booked(101));
        assert_eq!(
            book.allocate("a", range(100, 100), &[TCP], |_, _| true),
            None
        );
        assert_eq!(
            book.allocate("a", range(100, 100), &[], |_, _| true),
            Some(vec![])
        );
    }

    #[test]
    fn ports_held_elsewhere_are_skipped_per_protocol() {
        let mut book = PortBook::default();
        let held_udp = |p: u16, proto: Protocol| !(p == 100 && proto == Protocol::Udp);
        assert_eq!(
            book.allocate("a", range(100, 103), &[Protocol::Udp], held_udp),
            Some(vec![101])
        );
        // The round-robin cursor moved past 101; 100 is free for TCP.
        assert_eq!(
            book.allocate("a", range(100, 103), &[TCP, TCP], held_udp),
            Some(vec![102, 100])
        );
    }

    #[test]
    fn a_released_port_is_reused_only_after_the_rest_of_the_range() {
        let mut book = PortBook::default();
        let first = book
            .allocate("a", range(100, 103), &[TCP], |_, _| true)
            .unwrap();
        book.release(&first);
        assert_eq!(
            book.allocate("a", range(100, 103), &[TCP], |_, _| true),
            Some(vec![101])
        );
        assert_eq!(
            book.allocate("a", range(100, 103), &[TCP], |_, _| true),
            Some(vec![102])
        );
        assert_eq!(
            book.allocate("a", range(100, 103), &[TCP], |_, _| true),
            Some(vec![100])
        );
    }

    #[test]
    fn the_last_port_of_the_full_range_wraps() {
        let mut book = PortBook::default();
        let r = range(65534, 65535);
        assert_eq!(
            book.allocate("a", r, &[TCP], |_, _| true),
            Some(vec![65534])
        );
        assert_eq!(book.allocate("a", r, &[TCP], |_, _| true), None);
    }

    #[test]
    fn adopted_ports_are_booked_and_conflicts_reported() {
        let mut book = PortBook::default();
        assert!(book.claim([100, 101]).is_empty());
        assert_eq!(book.claim([101, 102]), vec![101]);
        assert_eq!(
            book.allocate("a", range(100, 104), &[TCP], |_, _| true),
            Some(vec![103])
        );
    }

    #[test]
    fn a_bound_socket_makes_the_probe_fail_for_its_protocol_only() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let lo = probe_addr("127.0.0.1");
        assert!(!probe(lo, port, Protocol::Udp));
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let tport = tcp.local_addr().unwrap().port();
        assert!(!probe(lo, tport, TCP));
        assert_eq!(probe_addr("localhost"), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
