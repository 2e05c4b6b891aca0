//! Auto mode: the resolver a node uses when the application names none. It asks the
//! resolver service when one is configured and it answers, else LAN discovery, else the
//! bootstrap list; which one answered is counted in [`AutoStats`] (see
//! [`PeerNode::resolver_stats`](crate::PeerNode::resolver_stats)) and logged.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use peerchannel_core::{MeshId, NodeId};

use crate::lan::LanResolver;
use crate::resolver::{BoxFuture, Resolver};
use crate::service_client::ServiceResolver;

/// A backend of Auto mode.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The peerchannel resolver service.
    Service,
    /// LAN discovery (UDP multicast).
    Lan,
    /// The configured bootstrap list.
    Bootstrap,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Service => "the resolver service",
            Backend::Lan => "LAN discovery",
            Backend::Bootstrap => "the bootstrap list",
        })
    }
}

/// What Auto mode has, and which backend answered the resolves so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AutoStats {
    /// A resolver service is configured.
    pub has_service: bool,
    /// LAN discovery is running.
    pub has_lan: bool,
    /// Resolves answered by the service.
    pub by_service: u64,
    /// Resolves answered by LAN discovery.
    pub by_lan: u64,
    /// Resolves answered from the bootstrap list.
    pub by_bootstrap: u64,
    /// Resolves no backend could answer.
    pub unanswered: u64,
    /// The backend that answered the latest resolve.
    pub last: Option<Backend>,
}

struct Inner {
    service: Option<ServiceResolver>,
    lan: Option<LanResolver>,
    bootstrap: Vec<SocketAddr>,
    by_service: AtomicU64,
    by_lan: AtomicU64,
    by_bootstrap: AtomicU64,
    unanswered: AtomicU64,
    last: Mutex<Option<Backend>>,
    /// After the service fails, resolves go straight to the next backend until then, so a
    /// down service (whose connect may take its whole timeout) does not delay every join.
    service_down_until: Mutex<Option<tokio::time::Instant>>,
}

/// How long Auto mode skips a resolver service that failed.
pub const SERVICE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The Auto-mode resolver: service, else LAN discovery, else the bootstrap list. Built by the
/// node's builder when no resolver is given; also usable directly. A service that fails is
/// skipped for [`SERVICE_RETRY_AFTER`], then asked again.
#[derive(Clone)]
pub struct AutoResolver {
    inner: Arc<Inner>,
}

impl fmt::Debug for AutoResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutoResolver")
            .field("service", &self.inner.service.as_ref().map(|s| s.addr()))
            .field("lan", &self.inner.lan.is_some())
            .field("bootstrap", &self.inner.bootstrap)
            .finish()
    }
}

impl AutoResolver {
    /// Auto mode over the given backends (any may be absent).
    pub fn new(service: Option<ServiceResolver>, lan: Option<LanResolver>, bootstrap: Vec<SocketAddr>) -> Self {
        AutoResolver {
            inner: Arc::new(Inner {
                service,
                lan,
                bootstrap,
                by_service: AtomicU64::new(0),
                by_lan: AtomicU64::new(0),
                by_bootstrap: AtomicU64::new(0),
                unanswered: AtomicU64::new(0),
                last: Mutex::new(None),
                service_down_until: Mutex::new(None),
            }),
        }
    }

    /// The service client, if a service is configured.
    pub fn service(&self) -> Option<&ServiceResolver> {
        self.inner.service.as_ref()
    }

    /// The LAN discovery resolver, if it runs.
    pub fn lan(&self) -> Option<&LanResolver> {
        self.inner.lan.as_ref()
    }

    /// Which backends answered so far.
    pub fn stats(&self) -> AutoStats {
        let i = &self.inner;
        AutoStats {
            has_service: i.service.is_some(),
            has_lan: i.lan.is_some(),
            by_service: i.by_service.load(Ordering::Relaxed),
            by_lan: i.by_lan.load(Ordering::Relaxed),
            by_bootstrap: i.by_bootstrap.load(Ordering::Relaxed),
            unanswered: i.unanswered.load(Ordering::Relaxed),
            last: *i.last.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    fn answered(&self, b: Backend, mesh: &MeshId, n: usize) {
        let c = match b {
            Backend::Service => &self.inner.by_service,
            Backend::Lan => &self.inner.by_lan,
            Backend::Bootstrap => &self.inner.by_bootstrap,
        };
        c.fetch_add(1, Ordering::Relaxed);
        *self.inner.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(b);
        tracing::debug!(%mesh, backend = %b, addresses = n, "resolved");
    }

    async fn resolve_in_order(self, mesh: MeshId, max: usize) -> io::Result<Vec<SocketAddr>> {
        let mut last_err = None;
        let skip_service = self
            .inner
            .service_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| tokio::time::Instant::now() < t);
        if let Some(s) = self.inner.service.as_ref().filter(|_| !skip_service) {
            match s.resolve(&mesh, max).await {
                Ok(a) if !a.is_empty() => {
                    self.answered(Backend::Service, &mesh, a.len());
                    return Ok(a);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "resolver service failed; trying the next backend");
                    *self.inner.service_down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(tokio::time::Instant::now() + SERVICE_RETRY_AFTER);
                    last_err = Some(e);
                }
            }
        }
        if let Some(l) = &self.inner.lan {
            match l.resolve(&mesh, max).await {
                Ok(a) if !a.is_empty() => {
                    self.answered(Backend::Lan, &mesh, a.len());
                    return Ok(a);
                }
                Ok(_) => {}
                Err(e) => last_err = Some(e),
            }
        }
        if !self.inner.bootstrap.is_empty() {
            let a: Vec<SocketAddr> = self.inner.bootstrap.iter().copied().take(max.max(1)).collect();
            self.answered(Backend::Bootstrap, &mesh, a.len());
            return Ok(a);
        }
        self.inner.unanswered.fetch_add(1, Ordering::Relaxed);
        match last_err {
            // Only failures: report the last one (a silent empty answer would hide it).
            Some(e) if self.inner.lan.is_none() => Err(e),
            _ => Ok(Vec::new()),
        }
    }
}

impl Resolver for AutoResolver {
    fn resolve(&self, mesh: &MeshId, max_addresses: usize) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        Box::pin(self.clone().resolve_in_order(mesh.clone(), max_addresses))
    }

    /// Registers with every backend, so nodes that find the mesh either way find this one.
    fn register(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        let service = self.inner.service.as_ref().map(|s| s.register(mesh, node, addrs));
        let lan = self.inner.lan.as_ref().map(|l| l.register(mesh, node, addrs));
        Box::pin(async move {
            let lan = match lan {
                Some(f) => Some(f.await),
                None => None,
            };
            let service = match service {
                Some(f) => Some(f.await),
                None => None,
            };
            match (service, lan) {
                (Some(Ok(())), _) | (None, Some(Ok(()))) | (None, None) => Ok(()),
                (Some(Err(e)), Some(Ok(()))) => {
                    tracing::warn!(error = %e, "resolver service registration failed (retrying); registered on the LAN");
                    Ok(())
                }
                (Some(Err(e)), _) | (None, Some(Err(e))) => Err(e),
            }
        })
    }

    fn update(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        let service = self.inner.service.as_ref().map(|s| s.update(mesh, node, addrs));
        let lan = self.inner.lan.as_ref().map(|l| l.update(mesh, node, addrs));
        Box::pin(async move {
            if let Some(f) = lan {
                let _ = f.await;
            }
            match service {
                Some(f) => f.await,
                None => Ok(()),
            }
        })
    }

    fn unregister(&self, mesh: &MeshId, node: NodeId) -> BoxFuture<io::Result<()>> {
        let service = self.inner.service.as_ref().map(|s| s.unregister(mesh, node));
        let lan = self.inner.lan.as_ref().map(|l| l.unregister(mesh, node));
        Box::pin(async move {
            if let Some(f) = lan {
                let _ = f.await;
            }
            match service {
                Some(f) => f.await,
                None => Ok(()),
            }
        })
    }

    fn can_share_referrals(&self) -> BoxFuture<io::Result<bool>> {
        match &self.inner.service {
            Some(s) => Resolver::can_share_referrals(s),
            None => Box::pin(async { Ok(true) }),
        }
    }
}
