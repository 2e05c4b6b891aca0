//! The node side of a resolver service: register once online, refresh at half the granted
//! lifetime (not at expiry, as the original did), re-register when the service forgot the
//! record (it restarted), update on address changes, unregister on graceful close. Sans-IO:
//! requests come out, replies and failures go in, time is an argument.

use core::time::Duration;
use std::net::SocketAddr;

use smallvec::SmallVec;

use super::frames::{Reply, Request};
use super::{ClientId, RegistrationId, RegistryError};
use crate::time::Instant;
use crate::uri::MeshId;

/// How long a request may go unanswered before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay after a failure; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    Register,
    Update,
    Refresh,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Not started, or stopped.
    Idle,
    /// A request is in flight.
    Waiting { req: u32, kind: Kind, id: Option<RegistrationId>, deadline: Instant },
    /// Registered; refresh due at `refresh_at`.
    Registered { id: RegistrationId, refresh_at: Instant },
    /// The last attempt failed; retry at `retry_at`.
    Backoff { id: Option<RegistrationId>, retry_at: Instant },
}

/// One node's registration with a resolver service.
#[derive(Clone, Debug)]
pub struct Registrar {
    client: ClientId,
    mesh: MeshId,
    addrs: SmallVec<[SocketAddr; 2]>,
    state: State,
    /// The addresses changed while a request was in flight: update once it is answered.
    stale: bool,
    next_req: u32,
    backoff: Duration,
    /// Registrations granted so far (re-registrations after a service restart included).
    pub registrations: u64,
    /// Requests that failed or timed out.
    pub failures: u64,
}

impl Registrar {
    /// A registrar for `client`'s node in `mesh`, not yet registered.
    pub fn new(client: ClientId, mesh: MeshId) -> Self {
        Registrar {
            client,
            mesh,
            addrs: SmallVec::new(),
            state: State::Idle,
            stale: false,
            next_req: 1,
            backoff: FIRST_BACKOFF,
            registrations: 0,
            failures: 0,
        }
    }

    /// The current registration, if any.
    pub fn registration(&self) -> Option<RegistrationId> {
        match self.state {
            State::Registered { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Registers `addrs` (the node is online).
    pub fn start(&mut self, now: Instant, addrs: &[SocketAddr]) -> Option<Request> {
        self.addrs = addrs.iter().copied().collect();
        match self.state {
            State::Idle => Some(self.send(now, Kind::Register, None)),
            _ => None,
        }
    }

    /// The node's addresses changed: update the record (or register, if there is none).
    pub fn addresses_changed(&mut self, now: Instant, addrs: &[SocketAddr]) -> Option<Request> {
        self.addrs = addrs.iter().copied().collect();
        match self.state {
            State::Registered { id, .. } => Some(self.send(now, Kind::Update, Some(id))),
            State::Backoff { id, .. } => {
                Some(self.send(now, if id.is_some() { Kind::Update } else { Kind::Register }, id))
            }
            // A request in flight carries the old addresses: update once it is answered.
            State::Waiting { .. } => {
                self.stale = true;
                None
            }
            State::Idle => None,
        }
    }

    /// The node is leaving: unregister (no reply is needed).
    pub fn stop(&mut self) -> Option<Request> {
        let id = match self.state {
            State::Registered { id, .. } => Some(id),
            State::Waiting { id, .. } | State::Backoff { id, .. } => id,
            State::Idle => None,
        };
        self.state = State::Idle;
        let req = self.take_req();
        id.map(|id| Request::Unregister { req, client: self.client, mesh: self.mesh.clone(), id })
    }

    /// The service answered.
    pub fn on_reply(&mut self, now: Instant, reply: &Reply) -> Option<Request> {
        let State::Waiting { req, kind, id, .. } = self.state else { return None };
        if reply.req() != req {
            return None;
        }
        match (kind, reply) {
            (Kind::Register | Kind::Update, Reply::Registered { id, lifetime_secs, .. }) => {
                self.registrations += u64::from(kind == Kind::Register);
                self.granted(now, *id, *lifetime_secs);
                self.update_if_stale(now, *id)
            }
            (Kind::Refresh, Reply::Refreshed { lifetime_secs, .. }) => {
                let id = id?;
                self.granted(now, id, *lifetime_secs);
                self.update_if_stale(now, id)
            }
            // The service no longer knows the record (it restarted, or the record expired):
            // register again at once.
            (_, Reply::Error { error: RegistryError::NotFound, .. }) => Some(self.send(now, Kind::Register, None)),
            _ => {
                self.fail(now, id);
                None
            }
        }
    }

    /// The request `req` could not be delivered or answered (connection refused, reset).
    pub fn on_failure(&mut self, now: Instant, req: u32) {
        if let State::Waiting { req: r, id, .. } = self.state {
            if r == req {
                self.fail(now, id);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => None,
            State::Waiting { deadline, .. } => Some(deadline),
            State::Registered { refresh_at, .. } => Some(refresh_at),
            State::Backoff { retry_at, .. } => Some(retry_at),
        }
    }

    /// Runs what is due: a refresh, a retry, or the timeout of an unanswered request.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Request> {
        match self.state {
            State::Registered { id, refresh_at } if now >= refresh_at => Some(self.send(now, Kind::Refresh, Some(id))),
            State::Waiting { id, deadline, .. } if now >= deadline => {
                self.fail(now, id);
                None
            }
            State::Backoff { id, retry_at } if now >= retry_at => {
                let kind = if id.is_some() { Kind::Refresh } else { Kind::Register };
                Some(self.send(now, kind, id))
            }
            _ => None,
        }
    }

    fn update_if_stale(&mut self, now: Instant, id: RegistrationId) -> Option<Request> {
        if core::mem::take(&mut self.stale) {
            Some(self.send(now, Kind::Update, Some(id)))
        } else {
            None
        }
    }

    fn granted(&mut self, now: Instant, id: RegistrationId, lifetime_secs: u32) {
        // Half the lifetime leaves a whole second half for retries before the record expires.
        let refresh_at = now + Duration::from_secs(u64::from(lifetime_secs.max(2)) / 2);
        self.state = State::Registered { id, refresh_at };
        self.backoff = FIRST_BACKOFF;
    }

    fn fail(&mut self, now: Instant, id: Option<RegistrationId>) {
        self.failures += 1;
        self.state = State::Backoff { id, retry_at: now + self.backoff };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn take_req(&mut self) -> u32 {
        let r = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        r
    }

    fn send(&mut self, now: Instant, kind: Kind, id: Option<RegistrationId>) -> Request {
        let req = self.take_req();
        self.state = State::Waiting { req, kind, id, deadline: now + REQUEST_TIMEOUT };
        let (client, mesh, addrs) = (self.client, self.mesh.clone(), self.addrs.clone());
        match (kind, id) {
            (Kind::Refresh, Some(id)) => Request::Refresh { req, client, mesh, id },
            (Kind::Update, Some(id)) => Request::Update { req, client, mesh, id, addrs },
            _ => Request::Register { req, client, mesh, addrs },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::registry::{Registry, RegistryConfig};
    use crate::resolver::service::ResolverService;

    fn setup() -> (Registrar, ResolverService) {
        let mesh = MeshId::new("m").unwrap();
        (Registrar::new(ClientId([1; 16]), mesh), service([9; 32]))
    }

    fn service(secret: [u8; 32]) -> ResolverService {
        let cfg = RegistryConfig { lifetime: Duration::from_secs(600), ..Default::default() };
        ResolverService::new(Registry::new(cfg, secret))
    }

    fn addrs() -> Vec<SocketAddr> {
        vec!["10.0.0.1:7000".parse().unwrap()]
    }

    fn exchange(r: &mut Registrar, s: &mut ResolverService, now: Instant, req: Request) -> Option<Request> {
        let reply = s.handle(now, "10.0.0.1".parse().unwrap(), req);
        r.on_reply(now, &reply)
    }

    #[test]
    fn registers_then_refreshes_at_half_lifetime() {
        let (mut r, mut s) = setup();
        let t0 = Instant::ZERO;
        let req = r.start(t0, &addrs()).unwrap();
        assert!(exchange(&mut r, &mut s, t0, req).is_none());
        let id = r.registration().unwrap();
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(300)));
        assert!(r.handle_timeout(t0 + Duration::from_secs(299)).is_none());
        let t1 = t0 + Duration::from_secs(300);
        let refresh = r.handle_timeout(t1).unwrap();
        assert!(matches!(refresh, Request::Refresh { id: i, .. } if i == id));
        exchange(&mut r, &mut s, t1, refresh);
        assert_eq!(r.registration(), Some(id));
        assert_eq!(r.poll_timeout(), Some(t1 + Duration::from_secs(300)));
    }

    #[test]
    fn re_registers_when_the_service_forgot() {
        let (mut r, mut s) = setup();
        let t0 = Instant::ZERO;
        let req = r.start(t0, &addrs()).unwrap();
        exchange(&mut r, &mut s, t0, req);
        let old = r.registration().unwrap();
        // The service restarts with an empty directory (and a new secret).
        s = service([10; 32]);
        let t1 = t0 + Duration::from_secs(300);
        let refresh = r.handle_timeout(t1).unwrap();
        let again = exchange(&mut r, &mut s, t1, refresh).expect("re-register");
        assert!(matches!(again, Request::Register { .. }));
        exchange(&mut r, &mut s, t1, again);
        assert!(r.registration().is_some_and(|id| id != old));
        assert_eq!(s.registry().len(), 1);
        assert_eq!(r.registrations, 2);
    }

    #[test]
    fn failures_back_off_and_retry() {
        let (mut r, mut s) = setup();
        let t0 = Instant::ZERO;
        let Some(Request::Register { req, .. }) = r.start(t0, &addrs()) else { panic!() };
        r.on_failure(t0, req);
        assert_eq!(r.poll_timeout(), Some(t0 + FIRST_BACKOFF));
        let retry = r.handle_timeout(t0 + FIRST_BACKOFF).unwrap();
        // Unanswered: times out, next backoff is doubled.
        let t1 = t0 + FIRST_BACKOFF + REQUEST_TIMEOUT;
        assert!(r.handle_timeout(t1).is_none());
        assert_eq!(r.poll_timeout(), Some(t1 + FIRST_BACKOFF * 2));
        // A late reply to the abandoned request is ignored.
        assert!(exchange(&mut r, &mut s, t1, retry).is_none());
        assert!(r.registration().is_none());
        let again = r.handle_timeout(t1 + FIRST_BACKOFF * 2).unwrap();
        exchange(&mut r, &mut s, t1, again);
        assert!(r.registration().is_some());
        assert_eq!(r.failures, 2);
    }

    #[test]
    fn address_change_updates_and_stop_unregisters() {
        let (mut r, mut s) = setup();
        let t0 = Instant::ZERO;
        let req = r.start(t0, &addrs()).unwrap();
        exchange(&mut r, &mut s, t0, req);
        let id = r.registration().unwrap();
        let new: Vec<SocketAddr> = vec!["10.0.0.2:7000".parse().unwrap()];
        let up = r.addresses_changed(t0, &new).unwrap();
        assert!(matches!(&up, Request::Update { addrs, .. } if addrs[..] == new[..]));
        exchange(&mut r, &mut s, t0, up);
        assert_eq!(r.registration(), Some(id));
        // A change while a request is in flight is sent once that request is answered.
        let t1 = t0 + Duration::from_secs(300);
        let refresh = r.handle_timeout(t1).unwrap();
        let newer: Vec<SocketAddr> = vec!["10.0.0.3:7000".parse().unwrap()];
        assert!(r.addresses_changed(t1, &newer).is_none());
        let follow = exchange(&mut r, &mut s, t1, refresh).expect("update after the refresh");
        assert!(matches!(&follow, Request::Update { addrs, .. } if addrs[..] == newer[..]));
        exchange(&mut r, &mut s, t1, follow);
        assert_eq!(r.registration(), Some(id));
        let bye = r.stop().unwrap();
        assert!(matches!(bye, Request::Unregister { id: i, .. } if i == id));
        s.handle(t0, "10.0.0.1".parse().unwrap(), bye);
        assert!(s.registry().is_empty());
        assert_eq!(r.poll_timeout(), None);
    }
}
