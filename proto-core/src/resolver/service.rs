//! The resolver service's request handling, sans-IO: a request frame in, a reply frame out.
//! The service binary (in the tokio adapter) owns the sockets and calls this.

use std::net::IpAddr;

use bytes::BytesMut;

use super::frames::{decode_request, encode_reply, Reply, Request, MAX_RESOLVED_RECORDS};
use super::registry::Registry;
use super::RegistryError;
use crate::time::Instant;

/// Counters of a resolver service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Requests answered (errors included).
    pub requests: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Undecodable requests (their connection is closed).
    pub bad_requests: u64,
}

/// Answers resolver requests from a [`Registry`].
#[derive(Debug)]
pub struct ResolverService {
    registry: Registry,
    stats: ServiceStats,
}

/// What to do after a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AfterReply {
    /// Keep the connection.
    KeepOpen,
    /// The request was malformed: send the reply, then close the connection.
    Close,
}

impl ResolverService {
    /// A service over `registry`.
    pub fn new(registry: Registry) -> Self {
        ResolverService { registry, stats: ServiceStats::default() }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Drops expired records now (every request does this too; call it on a timer so an idle
    /// service's memory and counts stay current).
    pub fn expire(&mut self, now: Instant) {
        self.registry.expire(now);
    }

    /// Counters.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Answers one request frame (type byte and body) that arrived from `source`; the reply
    /// frame is appended to `out`.
    pub fn handle_frame(&mut self, now: Instant, source: IpAddr, frame: &[u8], out: &mut BytesMut) -> AfterReply {
        self.stats.requests += 1;
        let reply = match decode_request(frame) {
            Ok(req) => self.handle(now, source, req),
            Err(_) => {
                self.stats.bad_requests += 1;
                self.stats.errors += 1;
                encode_reply(&Reply::Error { req: 0, error: RegistryError::BadRequest }, out);
                return AfterReply::Close;
            }
        };
        if matches!(reply, Reply::Error { .. }) {
            self.stats.errors += 1;
        }
        encode_reply(&reply, out);
        AfterReply::KeepOpen
    }

    /// Answers one decoded request.
    pub fn handle(&mut self, now: Instant, source: IpAddr, request: Request) -> Reply {
        let secs = |d: core::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let r = &mut self.registry;
        match request {
            Request::Register { req, client, mesh, addrs } => match r.register(now, source, client, &mesh, &addrs) {
                Ok(g) => Reply::Registered { req, id: g.id, lifetime_secs: secs(g.lifetime) },
                Err(error) => Reply::Error { req, error },
            },
            Request::Update { req, client, mesh, id, addrs } => {
                match r.update(now, source, client, &mesh, id, &addrs) {
                    Ok(g) => Reply::Registered { req, id: g.id, lifetime_secs: secs(g.lifetime) },
                    Err(error) => Reply::Error { req, error },
                }
            }
            Request::Refresh { req, client, mesh, id } => match r.refresh(now, client, &mesh, id) {
                Ok(l) => Reply::Refreshed { req, lifetime_secs: secs(l) },
                Err(error) => Reply::Error { req, error },
            },
            Request::Unregister { req, client, mesh, id } => match r.unregister(now, client, &mesh, id) {
                Ok(()) => Reply::Done { req },
                Err(error) => Reply::Error { req, error },
            },
            Request::Resolve { req, client, mesh, max } => {
                let records = r.resolve(now, client, &mesh, usize::from(max).min(MAX_RESOLVED_RECORDS));
                Reply::Resolved { req, records }
            }
            Request::GetServiceInfo { req } => Reply::ServiceInfo { req, control_shape: r.config().control_shape },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::frames::{decode_reply, encode_request, split_resolver_frame};
    use crate::resolver::registry::RegistryConfig;
    use crate::resolver::ClientId;
    use crate::uri::MeshId;
    use bytes::Bytes;

    fn roundtrip(s: &mut ResolverService, req: &Request) -> (Reply, AfterReply) {
        let mut wire = BytesMut::new();
        encode_request(req, &mut wire);
        let mut wire = wire.freeze();
        let frame = split_resolver_frame(&mut wire).unwrap().unwrap();
        let mut out = BytesMut::new();
        let after = s.handle_frame(Instant::ZERO, "10.0.0.9".parse().unwrap(), &frame, &mut out);
        let mut out = out.freeze();
        let f = split_resolver_frame(&mut out).unwrap().unwrap();
        (decode_reply(&f).unwrap(), after)
    }

    #[test]
    fn register_resolve_refresh_unregister_over_frames() {
        let mut s = ResolverService::new(Registry::new(RegistryConfig::default(), [1; 32]));
        let mesh = MeshId::new("m").unwrap();
        let a = ClientId([1; 16]);
        let b = ClientId([2; 16]);
        let reg = |req, client| Request::Register {
            req,
            client,
            mesh: mesh.clone(),
            addrs: ["10.1.0.1:7".parse().unwrap()].into_iter().collect(),
        };
        let (Reply::Registered { id, lifetime_secs: 600, .. }, _) = roundtrip(&mut s, &reg(1, a)) else { panic!() };
        roundtrip(&mut s, &reg(2, b));
        let (r, _) = roundtrip(&mut s, &Request::Resolve { req: 3, client: a, mesh: mesh.clone(), max: 3 });
        assert!(matches!(r, Reply::Resolved { req: 3, ref records } if records.len() == 1));
        let (r, _) = roundtrip(&mut s, &Request::Refresh { req: 4, client: b, mesh: mesh.clone(), id });
        assert_eq!(r, Reply::Error { req: 4, error: RegistryError::NotFound }, "someone else's ID");
        let (r, _) = roundtrip(&mut s, &Request::Refresh { req: 5, client: a, mesh: mesh.clone(), id });
        assert_eq!(r, Reply::Refreshed { req: 5, lifetime_secs: 600 });
        let (r, _) = roundtrip(&mut s, &Request::Unregister { req: 6, client: a, mesh: mesh.clone(), id });
        assert_eq!(r, Reply::Done { req: 6 });
        let (r, _) = roundtrip(&mut s, &Request::GetServiceInfo { req: 7 });
        assert_eq!(r, Reply::ServiceInfo { req: 7, control_shape: false });
        assert_eq!(s.stats().requests, 7);
        assert_eq!(s.stats().errors, 1);
    }

    #[test]
    fn garbage_gets_an_error_and_a_close() {
        let mut s = ResolverService::new(Registry::new(RegistryConfig::default(), [1; 32]));
        let mut out = BytesMut::new();
        let after = s.handle_frame(Instant::ZERO, "10.0.0.9".parse().unwrap(), b"\x30garbage", &mut out);
        assert_eq!(after, AfterReply::Close);
        let mut out: Bytes = out.freeze();
        let f = split_resolver_frame(&mut out).unwrap().unwrap();
        assert_eq!(decode_reply(&f).unwrap(), Reply::Error { req: 0, error: RegistryError::BadRequest });
        assert_eq!(s.stats().bad_requests, 1);
    }
}
