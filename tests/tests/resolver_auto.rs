//! Auto mode: the resolver service when it answers, else LAN discovery (UDP multicast, here
//! on the loopback interface so nothing leaves the machine), else a clear error at open.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use peerchannel_tests::{fast_config, init_tracing, loopback, wait_until, PATIENCE};
use peerchannel_tokio::service::{ResolverServer, ServerConfig};
use peerchannel_tokio::{Backend, Error, LanConfig, LanResolver, PeerNode};

/// LAN discovery confined to the loopback interface, on a port no other test uses.
fn lan_on_loopback() -> LanConfig {
    let port = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map_or(47767, |a| a.port());
    LanConfig { port, interface_v4: Ipv4Addr::LOCALHOST, ipv6: false, ..LanConfig::default() }
}

/// An address where no service listens (a port just released).
async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// Whether this host can do multicast on loopback; `Err` says why not.
async fn multicast_works(cfg: &LanConfig) -> Result<(), String> {
    let a = LanResolver::start(cfg.clone()).map_err(|e| format!("cannot join the group on loopback: {e}"))?;
    let b = LanResolver::start(cfg.clone()).map_err(|e| format!("cannot join the group on loopback: {e}"))?;
    let mesh = peerchannel_tests::mesh_id("probe");
    let node = peerchannel_tokio::NodeId::new(7).ok_or("node id")?;
    peerchannel_tokio::Resolver::register(&a, &mesh, node, &["127.0.0.1:9".parse().map_err(|_| "addr")?])
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..3 {
        if b.query(&mesh, 3).await.map_err(|e| format!("cannot send to the group: {e}"))?.len() == 1 {
            return Ok(());
        }
    }
    Err("multicast sent on loopback is not delivered back on this host".into())
}

#[tokio::test]
async fn auto_falls_back_to_lan_discovery_when_the_service_is_down() {
    init_tracing();
    let lan = lan_on_loopback();
    if let Err(why) = multicast_works(&lan).await {
        println!("SKIPPED auto_falls_back_to_lan_discovery_when_the_service_is_down: {why}");
        return;
    }
    let dead = dead_addr().await;
    let builder = || {
        PeerNode::builder()
            .config(fast_config("lanfall"))
            .listen(loopback())
            .resolver_service(dead)
            .lan_config(lan.clone())
    };
    let first = builder().open_alone().open().await.unwrap();
    let second = builder().open().await.expect("the second node joins through LAN discovery");
    assert_eq!(second.neighbors().await.unwrap()[0].node, first.id());
    let s = second.resolver_stats().expect("Auto mode");
    assert!(s.has_service && s.has_lan);
    assert!(s.by_lan >= 1, "LAN discovery answered: {s:?}");
    assert_eq!(s.by_service, 0, "the dead service answered nothing: {s:?}");
    assert_eq!(s.last, Some(Backend::Lan));
    let svc = second.auto_resolver().and_then(|a| a.service()).expect("service client").stats();
    assert!(svc.failures >= 1, "the service was tried first: {svc:?}");
    second.close().await;
    first.close().await;
}

#[tokio::test]
async fn auto_uses_the_service_when_it_answers() {
    init_tracing();
    let server =
        ResolverServer::bind(loopback(), ServerConfig { summary_interval: None, ..Default::default() }).await.unwrap();
    let addr = server.local_addr();
    let builder = || {
        PeerNode::builder()
            .config(fast_config("autosvc"))
            .listen(loopback())
            .resolver_service(addr)
            .lan_discovery(false)
    };
    let first = builder().open_alone().open().await.unwrap();
    wait_until("the first node registered", PATIENCE, || async { server.stats().records == 1 }).await;
    let second = builder().open().await.expect("joins through the service");
    let s = second.resolver_stats().unwrap();
    assert!(s.by_service >= 1 && s.by_lan == 0, "{s:?}");
    assert_eq!(s.last, Some(Backend::Service));
    second.close().await;
    first.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn auto_with_nothing_reachable_fails_open_clearly_and_fast() {
    init_tracing();
    let dead = dead_addr().await;
    let started = tokio::time::Instant::now();
    // Service down, LAN off, no bootstrap list: the open fails, it does not hang.
    let r = PeerNode::builder()
        .config(fast_config("nowhere"))
        .listen(loopback())
        .resolver_service(dead)
        .lan_discovery(false)
        .open_timeout(Duration::from_secs(60))
        .open()
        .await;
    assert!(matches!(r, Err(Error::NoPeersFound)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "failed fast: {:?}", started.elapsed());
    // Nothing configured at all and LAN off: refused before any I/O.
    let r = PeerNode::builder().config(fast_config("nowhere")).lan_discovery(false).open().await;
    assert!(matches!(r, Err(Error::NoPeers)), "{r:?}");
}
