//! LAN discovery, sans-IO: the packet format and the rate limits. The adapter owns the UDP
//! multicast sockets (IPv4 `239.255.77.77`, IPv6 `ff02::7767`, port 7767 by default) and calls
//! these. See PROTOCOL.md, "LAN discovery".

use core::time::Duration;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::mesh::is_dialable;
use crate::time::Instant;
use crate::uri::MeshId;

/// Largest LAN discovery packet.
pub const MAX_PACKET: usize = 1200;
/// Records in one answer at most.
pub const MAX_RECORDS: usize = 8;
/// Addresses per record at most.
pub const MAX_ADDRS: usize = 8;
const MAGIC: [u8; 4] = *b"PCLD";
const VERSION: u8 = 1;
const KIND_QUERY: u8 = 1;
const KIND_ANSWER: u8 = 2;

/// A LAN discovery packet. Wire format (big-endian):
///
/// ```text
/// "PCLD" | version u8 = 1 | kind u8 (1 query, 2 answer) | query id u32 | sender u64
/// | mesh length u8 | mesh ID (ASCII)
/// query:  max records u8
/// answer: records u8 (<= 8), each: node u64 | addresses u8 (<= 8),
///         each: family u8 (4 or 6) | IP (4 or 16 bytes) | port u16
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LanPacket {
    /// Who is in `mesh`? Answers go back by unicast to the query's source.
    Query {
        /// Matches answers to the query.
        id: u32,
        /// The querying resolver (random per process), so it ignores itself.
        sender: u64,
        /// The mesh.
        mesh: MeshId,
        /// Records wanted.
        max: u8,
    },
    /// Members of `mesh` that the answering resolver registered.
    Answer {
        /// The query answered.
        id: u32,
        /// The answering resolver.
        sender: u64,
        /// The mesh.
        mesh: MeshId,
        /// Node and its listen addresses.
        records: Vec<(u64, Vec<SocketAddr>)>,
    },
}

impl LanPacket {
    /// Encodes the packet; records and addresses beyond the limits are left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        let (kind, id, sender, mesh) = match self {
            LanPacket::Query { id, sender, mesh, .. } => (KIND_QUERY, id, sender, mesh),
            LanPacket::Answer { id, sender, mesh, .. } => (KIND_ANSWER, id, sender, mesh),
        };
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(kind);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&sender.to_be_bytes());
        out.push(mesh.as_str().len() as u8);
        out.extend_from_slice(mesh.as_str().as_bytes());
        match self {
            LanPacket::Query { max, .. } => out.push(*max),
            LanPacket::Answer { records, .. } => {
                let records = &records[..records.len().min(MAX_RECORDS)];
                out.push(records.len() as u8);
                for (node, addrs) in records {
                    out.extend_from_slice(&node.to_be_bytes());
                    let addrs = &addrs[..addrs.len().min(MAX_ADDRS)];
                    out.push(addrs.len() as u8);
                    for a in addrs {
                        match a.ip() {
                            IpAddr::V4(ip) => {
                                out.push(4);
                                out.extend_from_slice(&ip.octets());
                            }
                            IpAddr::V6(ip) => {
                                out.push(6);
                                out.extend_from_slice(&ip.octets());
                            }
                        }
                        out.extend_from_slice(&a.port().to_be_bytes());
                    }
                }
            }
        }
        out
    }

    /// Decodes and validates a packet; `None` for anything malformed.
    pub fn decode(b: &[u8]) -> Option<LanPacket> {
        if b.len() > MAX_PACKET {
            return None;
        }
        let mut r = Cursor { b, pos: 0 };
        if r.take(4)? != MAGIC || r.u8()? != VERSION {
            return None;
        }
        let kind = r.u8()?;
        let id = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let sender = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
        let len = usize::from(r.u8()?);
        let name = std::str::from_utf8(r.take(len)?).ok()?;
        let mesh = MeshId::new(name).ok().filter(|m| m.as_str() == name)?;
        let p = match kind {
            KIND_QUERY => LanPacket::Query { id, sender, mesh, max: r.u8()? },
            KIND_ANSWER => {
                let n = usize::from(r.u8()?);
                if n > MAX_RECORDS {
                    return None;
                }
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let node = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
                    let k = usize::from(r.u8()?);
                    if k > MAX_ADDRS || node == 0 {
                        return None;
                    }
                    let mut addrs = Vec::with_capacity(k);
                    for _ in 0..k {
                        let ip = match r.u8()? {
                            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).ok()?)),
                            6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(r.take(16)?).ok()?)),
                            _ => return None,
                        };
                        let port = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
                        let a = SocketAddr::new(ip, port);
                        if !is_dialable(a) {
                            return None;
                        }
                        addrs.push(a);
                    }
                    records.push((node, addrs));
                }
                LanPacket::Answer { id, sender, mesh, records }
            }
            _ => return None,
        };
        (r.pos == b.len()).then_some(p)
    }
}

/// Bounds-checked reads for [`LanPacket::decode`].
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
}

/// A token bucket per source address (one second's worth of burst), the table bounded: when
/// it is full, the least recently seen half of the sources is forgotten.
#[derive(Debug)]
pub struct SourceLimiter {
    per_sec: f64,
    buckets: BTreeMap<IpAddr, (f64, Instant)>,
}

/// Sources remembered by a [`SourceLimiter`] at most.
pub const MAX_SOURCES: usize = 4096;

impl SourceLimiter {
    /// A limiter allowing `per_sec` packets per second per source.
    pub fn new(per_sec: u32) -> Self {
        SourceLimiter { per_sec: f64::from(per_sec), buckets: BTreeMap::new() }
    }

    /// Whether one more packet from `ip` is allowed at `now` (and takes a token if so).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            let mut ages: Vec<Instant> = self.buckets.values().map(|v| v.1).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.buckets.retain(|_, v| v.1 > cut);
        }
        let cap = self.per_sec.max(1.0);
        let (tokens, at) = self.buckets.entry(ip).or_insert((cap, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_sec).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// No source remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Spaces a node's queries: at most one per mesh per `min_interval`; a burst of resolves waits
/// for the next slot instead of flooding the LAN.
#[derive(Debug)]
pub struct QueryPacer {
    min_interval: Duration,
    last: BTreeMap<MeshId, Instant>,
}

impl QueryPacer {
    /// A pacer with the given spacing.
    pub fn new(min_interval: Duration) -> Self {
        QueryPacer { min_interval, last: BTreeMap::new() }
    }

    /// When the next query for `mesh` may go out (at or after `now`); that slot is taken.
    pub fn next_slot(&mut self, mesh: &MeshId, now: Instant) -> Instant {
        if self.last.len() > 1024 {
            let keep = self.min_interval;
            self.last.retain(|_, t| now.saturating_duration_since(*t) < keep);
        }
        let at = self.last.get(mesh).map_or(now, |t| (*t + self.min_interval).max(now));
        self.last.insert(mesh.clone(), at);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh() -> MeshId {
        MeshId::new("soccerpals").unwrap()
    }

    #[test]
    fn packets_round_trip() {
        let q = LanPacket::Query { id: 7, sender: 9, mesh: mesh(), max: 3 };
        assert_eq!(LanPacket::decode(&q.encode()), Some(q));
        let a = LanPacket::Answer {
            id: 7,
            sender: 11,
            mesh: mesh(),
            records: vec![(1, vec!["10.0.0.1:7000".parse().unwrap(), "[fe80::1]:7000".parse().unwrap()])],
        };
        assert_eq!(LanPacket::decode(&a.encode()), Some(a));
    }

    #[test]
    fn malformed_packets_are_rejected() {
        let good = LanPacket::Answer {
            id: 1,
            sender: 2,
            mesh: mesh(),
            records: vec![(1, vec!["10.0.0.1:7".parse().unwrap()])],
        }
        .encode();
        // Every truncation, trailing bytes, a wrong magic or version.
        for n in 0..good.len() {
            assert_eq!(LanPacket::decode(&good[..n]), None, "truncated at {n}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(LanPacket::decode(&trailing), None);
        let mut magic = good.clone();
        magic[0] = b'X';
        assert_eq!(LanPacket::decode(&magic), None);
        let mut version = good.clone();
        version[4] = 2;
        assert_eq!(LanPacket::decode(&version), None);
        // An invalid mesh ID.
        let mut bad = good.clone();
        let at = 4 + 1 + 1 + 4 + 8 + 1;
        bad[at] = b'A';
        assert_eq!(LanPacket::decode(&bad), None);
        // Undialable addresses (port 0, unspecified, multicast) and too many records.
        for a in ["10.0.0.1:0", "0.0.0.0:7", "239.1.1.1:7"] {
            let p = LanPacket::Answer { id: 1, sender: 2, mesh: mesh(), records: vec![(1, vec![a.parse().unwrap()])] };
            assert_eq!(LanPacket::decode(&p.encode()), None, "{a}");
        }
        let mut many = LanPacket::Answer { id: 1, sender: 2, mesh: mesh(), records: vec![] }.encode();
        let n = many.len() - 1;
        many[n] = (MAX_RECORDS + 1) as u8;
        assert_eq!(LanPacket::decode(&many), None);
        assert_eq!(LanPacket::decode(&vec![0u8; MAX_PACKET + 1]), None);
    }

    #[test]
    fn a_source_is_rate_limited_and_the_table_stays_bounded() {
        let mut l = SourceLimiter::new(5);
        let now = Instant::from_millis(1_000);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let allowed = (0..100).filter(|_| l.allow(ip, now)).count();
        assert_eq!(allowed, 5, "a burst gets one second's worth");
        assert!(l.allow(ip, now + Duration::from_millis(250)), "tokens come back over time");
        for i in 0..(MAX_SOURCES as u32 * 2) {
            l.allow(IpAddr::V4(Ipv4Addr::from(i)), now + Duration::from_micros(u64::from(i)));
        }
        assert!(l.len() <= MAX_SOURCES);
    }

    #[test]
    fn queries_for_one_mesh_are_spaced() {
        let mut p = QueryPacer::new(Duration::from_millis(250));
        let t = Instant::from_millis(10);
        assert_eq!(p.next_slot(&mesh(), t), t);
        assert_eq!(p.next_slot(&mesh(), t), t + Duration::from_millis(250));
        assert_eq!(p.next_slot(&mesh(), t), t + Duration::from_millis(500));
        let other = MeshId::new("other").unwrap();
        assert_eq!(p.next_slot(&other, t), t);
    }
}
