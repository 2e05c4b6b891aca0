//! A node whose listen addresses change tells the resolver service (an Update driven by the
//! core's `Registrar`) and announces the new address to neighbors it meets afterwards.

use std::net::SocketAddr;

use peerchannel_core::resolver::registry::RegistryConfig;
use peerchannel_tests::{init_tracing, loopback, mesh_id, open_alone_with_service, wait_until, PATIENCE};
use peerchannel_tokio::service::{ResolverServer, ServerConfig};
use peerchannel_tokio::{Resolver, ServiceResolver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_addresses_reach_the_resolver_service() {
    init_tracing();
    let cfg = ServerConfig { registry: RegistryConfig::default(), summary_interval: None, ..ServerConfig::default() };
    let server = ResolverServer::bind(loopback(), cfg).await.unwrap();
    let addr = server.local_addr();
    let node = open_alone_with_service("moving", addr).await;
    let asker = ServiceResolver::new(addr);
    let mesh = mesh_id("moving");
    let first = node.local_addr();
    wait_until("the node is registered at its listen address", PATIENCE, || async {
        asker.resolve(&mesh, 8).await.map(|a| a.contains(&first)).unwrap_or(false)
    })
    .await;
    // Say the host moved (a new interface address; the test uses another loopback address).
    let moved = SocketAddr::new("127.0.0.2".parse().unwrap(), first.port());
    node.set_listen_addrs(vec![moved]).unwrap();
    wait_until("the service lists the new address instead", PATIENCE, || async {
        asker.resolve(&mesh, 8).await.map(|a| a == vec![moved]).unwrap_or(false)
    })
    .await;
    assert_eq!(server.stats().records, 1, "an update, not a second registration");
    node.close().await;
    server.shutdown().await;
}
