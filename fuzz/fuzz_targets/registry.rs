//! `registry`: arbitrary resolver requests to the resolver service (sans-IO).
//!
//! The fuzzer drives one `ResolverService` over a `Registry` with small quotas (meshes, records
//! per mesh, records per source IP, lifetime), so every limit is reached: well-formed requests
//! built from arbitrary fields (from a few clients, meshes and source addresses, with
//! registration IDs either granted earlier or made up), raw request bytes, and time jumps with
//! expiry.
//!
//! Checked after every step:
//! - `Registry::check_invariants()` (indexes agree, quotas hold);
//! - the service's reply is one whole, decodable reply frame; a decodable request's reply
//!   echoes its request number; a malformed request gets `Error { req: 0, BadRequest }` and
//!   the connection is to be closed;
//! - a well-formed request round-trips through the codec (encode, split, decode);
//! - raw bytes that decode as a request re-encode to the same bytes (one encoding each);
//! - a registration is granted for the configured lifetime, and a Resolve never returns more
//!   records than asked for or the protocol's cap;
//! - expiry (which every operation runs first) leaves the registry consistent.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use peerchannel_core::resolver::frames::{
    decode_reply, decode_request, encode_request, split_resolver_frame, Reply, Request, MAX_RESOLVED_RECORDS,
};
use peerchannel_core::resolver::registry::{Registry, RegistryConfig};
use peerchannel_core::resolver::service::{AfterReply, ResolverService};
use peerchannel_core::resolver::{ClientId, RegistrationId, RegistryError};
use peerchannel_core::{Instant, MeshId};

const MESHES: [&str; 5] = ["soccerpals", "chess", "a.b.c", "x", "m-1"];

#[derive(Arbitrary, Debug)]
enum Op {
    Register { src: u8, client: u8, mesh: u8, addrs: Vec<Addr> },
    Update { src: u8, client: u8, mesh: u8, id: IdSel, addrs: Vec<Addr> },
    Refresh { src: u8, client: u8, mesh: u8, id: IdSel },
    Unregister { src: u8, client: u8, mesh: u8, id: IdSel },
    Resolve { src: u8, client: u8, mesh: u8, max: u8 },
    Info { src: u8 },
    Raw { src: u8, bytes: Vec<u8> },
    Advance { secs: u16 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum IdSel {
    /// The n-th registration granted so far.
    Granted(u8),
    Made([u8; 16]),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

fn source(n: u8) -> IpAddr {
    if n % 5 == 4 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n % 4))
    }
}

struct Driver {
    service: ResolverService,
    now: Instant,
    req: u32,
    /// (client, mesh, id, expires) of every registration granted.
    granted: Vec<(ClientId, MeshId, RegistrationId, Instant)>,
    lifetime: Duration,
}

impl Driver {
    fn id(&self, sel: IdSel) -> RegistrationId {
        match sel {
            IdSel::Granted(n) if !self.granted.is_empty() => self.granted[usize::from(n) % self.granted.len()].2,
            IdSel::Granted(n) => RegistrationId([n; 16]),
            IdSel::Made(b) => RegistrationId(b),
        }
    }

    /// Sends one request frame (type byte and body); returns the reply and what to do after.
    fn exchange(&mut self, src: IpAddr, frame: &[u8]) -> (Reply, AfterReply) {
        let mut out = BytesMut::new();
        let after = self.service.handle_frame(self.now, src, frame, &mut out);
        let mut out = out.freeze();
        let reply = split_resolver_frame(&mut out).expect("reply frame splits").expect("reply frame is whole");
        assert!(out.is_empty(), "{} bytes after the reply frame", out.len());
        let decoded = decode_reply(&reply).expect("reply decodes");
        if let Err(e) = self.service.registry().check_invariants() {
            panic!("registry invariant broken: {e}");
        }
        (decoded, after)
    }

    fn request(&mut self, src: IpAddr, r: Request) {
        let mut wire = BytesMut::new();
        encode_request(&r, &mut wire);
        let mut wire = wire.freeze();
        let frame = split_resolver_frame(&mut wire).expect("request splits").expect("whole");
        assert_eq!(decode_request(&frame).expect("request decodes"), r, "request does not round-trip");
        let (reply, after) = self.exchange(src, &frame);
        assert_eq!(after, AfterReply::KeepOpen);
        assert_eq!(reply.req(), r.req(), "reply to another request: {reply:?}");
        match (&r, &reply) {
            (
                Request::Register { client, mesh, .. } | Request::Update { client, mesh, .. },
                Reply::Registered { id, lifetime_secs, .. },
            ) => {
                assert_eq!(u64::from(*lifetime_secs), self.lifetime.as_secs());
                self.granted.push((*client, mesh.clone(), *id, self.now + self.lifetime));
            }
            (Request::Resolve { max, .. }, Reply::Resolved { records, .. }) => {
                assert!(records.len() <= usize::from(*max).min(MAX_RESOLVED_RECORDS), "{} records", records.len());
            }
            (Request::Refresh { id, .. }, Reply::Refreshed { .. }) => {
                for g in self.granted.iter_mut().filter(|g| g.2 == *id) {
                    g.3 = self.now + self.lifetime;
                }
            }
            _ => {}
        }
    }

    fn step(&mut self, op: Op) {
        self.req = self.req.wrapping_add(1);
        let req = self.req;
        let client = |n: u8| ClientId([n % 6; 16]);
        let mesh = |n: u8| MeshId::new(MESHES[usize::from(n) % MESHES.len()]).unwrap();
        let addrs = |a: &[Addr]| {
            a.iter()
                .take(8)
                .map(|a| match *a {
                    Addr::V4(ip, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
                    Addr::V6(ip, port) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
                })
                .collect()
        };
        match op {
            Op::Register { src, client: c, mesh: m, addrs: a } => {
                self.request(source(src), Request::Register { req, client: client(c), mesh: mesh(m), addrs: addrs(&a) })
            }
            Op::Update { src, client: c, mesh: m, id, addrs: a } => {
                let id = self.id(id);
                self.request(
                    source(src),
                    Request::Update { req, client: client(c), mesh: mesh(m), id, addrs: addrs(&a) },
                )
            }
            Op::Refresh { src, client: c, mesh: m, id } => {
                let id = self.id(id);
                self.request(source(src), Request::Refresh { req, client: client(c), mesh: mesh(m), id })
            }
            Op::Unregister { src, client: c, mesh: m, id } => {
                let id = self.id(id);
                self.request(source(src), Request::Unregister { req, client: client(c), mesh: mesh(m), id })
            }
            Op::Resolve { src, client: c, mesh: m, max } => {
                self.request(source(src), Request::Resolve { req, client: client(c), mesh: mesh(m), max })
            }
            Op::Info { src } => self.request(source(src), Request::GetServiceInfo { req }),
            Op::Raw { src, bytes } => {
                let decoded = decode_request(&bytes);
                let (reply, after) = self.exchange(source(src), &bytes);
                match decoded {
                    Ok(r) => {
                        let mut again = BytesMut::new();
                        encode_request(&r, &mut again);
                        assert_eq!(&again[4..], &bytes[..], "{r:?} does not re-encode to its bytes");
                        assert_eq!(after, AfterReply::KeepOpen);
                        assert_eq!(reply.req(), r.req());
                    }
                    Err(_) => {
                        assert_eq!(after, AfterReply::Close);
                        assert_eq!(reply, Reply::Error { req: 0, error: RegistryError::BadRequest });
                    }
                }
            }
            // Every registry operation first drops what expired, so the next request sees it.
            Op::Advance { secs } => self.now = self.now + Duration::from_secs(u64::from(secs % 1200)),
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let cfg = RegistryConfig {
        lifetime: Duration::from_secs(60),
        max_meshes: 3,
        max_records_per_mesh: 5,
        max_records_per_source: 4,
        max_addresses_per_record: 4,
        max_resolve: 8,
        ..RegistryConfig::default()
    };
    let lifetime = cfg.lifetime;
    let service = ResolverService::new(Registry::new(cfg, [7; 32]));
    let mut d = Driver { service, now: Instant::ZERO, req: 0, granted: Vec::new(), lifetime };
    for op in ops.into_iter().take(256) {
        d.step(op);
    }
});
