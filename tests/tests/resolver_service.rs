//! The resolver service on loopback: load (100 concurrent clients, 10,000 registrations across
//! 100 meshes, mixed Resolve/Refresh), hostile input, and a 20-node mesh that joins through the
//! service alone and survives a service restart.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerchannel_core::resolver::frames::{
    decode_reply, encode_request, split_resolver_frame, Reply, Request, MAX_RESOLVER_FRAME,
};
use peerchannel_core::resolver::registry::RegistryConfig;
use peerchannel_core::resolver::{ClientId, RegistrationId, RegistryError};
use peerchannel_tests::{
    fast_config, init_tracing, is_one_mesh, loopback, mesh_id, open_alone_with_service, wait_until, PATIENCE,
};
use peerchannel_tokio::service::{ResolverServer, ServerConfig};
use peerchannel_tokio::{PeerNode, ServiceResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw client: pipelines request frames and reads reply frames.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw { stream: TcpStream::connect(addr).await.expect("connect to the service"), buf: BytesMut::new() }
    }

    async fn send_all(&mut self, reqs: &[Request]) {
        let mut out = BytesMut::new();
        for r in reqs {
            encode_request(r, &mut out);
        }
        self.stream.write_all(&out).await.expect("write requests");
    }

    async fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.expect("write bytes");
    }

    /// The next reply, or `None` when the service closed the connection.
    async fn reply(&mut self) -> Option<Reply> {
        loop {
            let mut view: Bytes = self.buf.split().freeze();
            let frame = split_resolver_frame(&mut view).expect("service frames are well formed");
            self.buf.extend_from_slice(&view);
            if let Some(f) = frame {
                return Some(decode_reply(&f).expect("service replies decode"));
            }
            let n = tokio::time::timeout(PATIENCE, self.stream.read_buf(&mut self.buf))
                .await
                .expect("service answers in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    async fn replies(&mut self, n: usize) -> Vec<Reply> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.reply().await.expect("a reply, not a close"));
        }
        v
    }

    /// True once the service has closed the connection (EOF or reset).
    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 256];
        loop {
            match tokio::time::timeout(PATIENCE, self.stream.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn client(i: usize) -> ClientId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    ClientId(b)
}

/// The address client `c` registers in mesh `m`: unique per (client, mesh).
fn addr_of(c: usize, m: usize) -> SocketAddr {
    SocketAddr::from(([10, c as u8, m as u8, 1], 7000))
}

fn mesh_name(m: usize) -> String {
    format!("load{m}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_ten_thousand_registrations_mixed_resolve_and_refresh() {
    init_tracing();
    const CLIENTS: usize = 100;
    const MESHES: usize = 100;
    let cfg = ServerConfig {
        // Every client is 127.0.0.1 here: lift the per-source quota for the load test.
        registry: RegistryConfig { max_records_per_source: 20_000, ..RegistryConfig::default() },
        summary_interval: None,
        ..ServerConfig::default()
    };
    let server = ResolverServer::bind(loopback(), cfg).await.unwrap();
    let addr = server.local_addr();

    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        tasks.spawn(async move {
            let mut raw = Raw::connect(addr).await;
            // Register in every mesh, pipelined.
            let regs: Vec<Request> = (0..MESHES)
                .map(|m| Request::Register {
                    req: m as u32 + 1,
                    client: client(c),
                    mesh: mesh_id(&mesh_name(m)),
                    addrs: [addr_of(c, m)].into_iter().collect(),
                })
                .collect();
            raw.send_all(&regs).await;
            let mut ids: HashMap<usize, RegistrationId> = HashMap::new();
            for r in raw.replies(MESHES).await {
                match r {
                    Reply::Registered { req, id, lifetime_secs: 600 } => {
                        ids.insert(req as usize - 1, id);
                    }
                    other => panic!("client {c}: register failed: {other:?}"),
                }
            }
            assert_eq!(ids.len(), MESHES, "each register answered once, by its own request number");
            (c, ids)
        });
    }
    let mut all: HashMap<usize, HashMap<usize, RegistrationId>> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (c, ids) = r.unwrap();
        all.insert(c, ids);
    }
    let stats = server.stats();
    assert_eq!(stats.records, CLIENTS * MESHES);
    assert_eq!(stats.meshes, MESHES);
    let distinct: BTreeSet<RegistrationId> = all.values().flat_map(|m| m.values().copied()).collect();
    assert_eq!(distinct.len(), CLIENTS * MESHES, "registration IDs are distinct");

    // Mixed: every client refreshes each of its records and resolves in each mesh, interleaved.
    let all = std::sync::Arc::new(all);
    for c in 0..CLIENTS {
        let all = all.clone();
        tasks.spawn(async move {
            let mut raw = Raw::connect(addr).await;
            let mut reqs = Vec::new();
            for m in 0..MESHES {
                let mesh = mesh_id(&mesh_name(m));
                let id = all[&c][&m];
                reqs.push(Request::Refresh { req: (2 * m + 1) as u32, client: client(c), mesh: mesh.clone(), id });
                reqs.push(Request::Resolve { req: (2 * m + 2) as u32, client: client(c), mesh, max: 5 });
            }
            raw.send_all(&reqs).await;
            for r in raw.replies(reqs.len()).await {
                match r {
                    Reply::Refreshed { req, lifetime_secs } => {
                        assert!(req % 2 == 1 && lifetime_secs == 600, "client {c}: refresh reply {req}");
                    }
                    Reply::Resolved { req, records } => {
                        assert_eq!(req % 2, 0);
                        let m = (req as usize - 2) / 2;
                        assert_eq!(records.len(), 5, "client {c} mesh {m}: five records of 99 others");
                        let got: BTreeSet<SocketAddr> = records.iter().map(|r| r[0]).collect();
                        assert_eq!(got.len(), 5, "distinct records");
                        for a in got {
                            assert_ne!(a, addr_of(c, m), "never the asker's own record");
                            let octets = match a.ip() {
                                std::net::IpAddr::V4(v4) => v4.octets(),
                                _ => panic!("unexpected address {a}"),
                            };
                            assert_eq!(octets[2] as usize, m, "a record of mesh {m}, not another mesh: {a}");
                            assert!((octets[1] as usize) < CLIENTS);
                        }
                    }
                    other => panic!("client {c}: unexpected {other:?}"),
                }
            }
            (c, HashMap::new())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let stats = server.stats();
    assert_eq!(stats.records, CLIENTS * MESHES, "refreshes keep every record");
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.requests as usize, CLIENTS * MESHES * 3);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_an_error_or_a_close_and_the_service_keeps_serving() {
    init_tracing();
    let cfg = ServerConfig {
        registry: RegistryConfig { max_records_per_source: 50, ..RegistryConfig::default() },
        summary_interval: None,
        ..ServerConfig::default()
    };
    let server = ResolverServer::bind(loopback(), cfg).await.unwrap();
    let addr = server.local_addr();
    let mesh = mesh_id("victims");

    // A well-behaved client registers first.
    let mut good = Raw::connect(addr).await;
    good.send_all(&[Request::Register {
        req: 1,
        client: client(1),
        mesh: mesh.clone(),
        addrs: ["10.9.9.9:7000".parse().unwrap()].into_iter().collect(),
    }])
    .await;
    let Some(Reply::Registered { id: good_id, .. }) = good.reply().await else { panic!("register") };

    // Garbage bytes: a frame whose body is nonsense → BadRequest, then the connection closes.
    let mut g = Raw::connect(addr).await;
    g.send_bytes(&[0, 0, 0, 5, 0x30, 0xde, 0xad, 0xbe, 0xef]).await;
    assert_eq!(g.reply().await, Some(Reply::Error { req: 0, error: RegistryError::BadRequest }));
    assert!(g.closed().await, "garbage closes the connection");

    // An unknown frame type.
    let mut u = Raw::connect(addr).await;
    u.send_bytes(&[0, 0, 0, 5, 0x77, 0, 0, 0, 1]).await;
    assert_eq!(u.reply().await, Some(Reply::Error { req: 0, error: RegistryError::BadRequest }));
    assert!(u.closed().await);

    // An oversized frame: refused from its length prefix, before the body is waited for.
    let mut big = Raw::connect(addr).await;
    big.send_bytes(&((MAX_RESOLVER_FRAME as u32 + 1).to_be_bytes())).await;
    big.send_bytes(&[0x30]).await;
    assert_eq!(big.reply().await, Some(Reply::Error { req: 0, error: RegistryError::BadRequest }));
    assert!(big.closed().await, "an oversized frame closes the connection");

    // An invalid mesh ID (uppercase, underscore) in an otherwise well-formed Resolve.
    let mut bad_mesh = Raw::connect(addr).await;
    let mut f = vec![0x34, 0, 0, 0, 9];
    f.extend_from_slice(&[1; 16]);
    f.extend_from_slice(&[4, b'B', b'_', b'a', b'd', 3]);
    let mut framed = (f.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&f);
    bad_mesh.send_bytes(&framed).await;
    assert_eq!(bad_mesh.reply().await, Some(Reply::Error { req: 0, error: RegistryError::BadRequest }));
    assert!(bad_mesh.closed().await);

    // An unknown registration ID, and someone else's: NotFound, and the connection stays.
    let mut thief = Raw::connect(addr).await;
    thief
        .send_all(&[
            Request::Refresh { req: 1, client: client(2), mesh: mesh.clone(), id: RegistrationId([7; 16]) },
            Request::Refresh { req: 2, client: client(2), mesh: mesh.clone(), id: good_id },
            Request::Unregister { req: 3, client: client(2), mesh: mesh.clone(), id: good_id },
            Request::Update {
                req: 4,
                client: client(2),
                mesh: mesh.clone(),
                id: good_id,
                addrs: ["10.6.6.6:7000".parse().unwrap()].into_iter().collect(),
            },
            Request::Resolve { req: 5, client: client(3), mesh: mesh.clone(), max: 10 },
        ])
        .await;
    let r = thief.replies(5).await;
    assert_eq!(r[0], Reply::Error { req: 1, error: RegistryError::NotFound });
    assert_eq!(r[1], Reply::Error { req: 2, error: RegistryError::NotFound }, "someone else's ID");
    assert_eq!(r[2], Reply::Error { req: 3, error: RegistryError::NotFound }, "cannot unregister another's");
    // An Update with another's ID registers anew; it must not take over the victim's record.
    assert!(matches!(r[3], Reply::Registered { req: 4, id, .. } if id != good_id));
    let Reply::Resolved { records, .. } = &r[4] else { panic!("resolve: {:?}", r[4]) };
    let addrs: BTreeSet<SocketAddr> = records.iter().map(|r| r[0]).collect();
    assert!(addrs.contains(&"10.9.9.9:7000".parse().unwrap()), "the victim's record is intact: {addrs:?}");

    // A registration flood from one address: refused past the per-source quota.
    let mut flood = Raw::connect(addr).await;
    let reqs: Vec<Request> = (0..200u32)
        .map(|i| Request::Register {
            req: i + 1,
            client: client(100 + i as usize),
            mesh: mesh_id(&format!("flood{}", i % 7)),
            addrs: [SocketAddr::from(([10, 1, (i / 256) as u8, (i % 256) as u8], 7000))].into_iter().collect(),
        })
        .collect();
    flood.send_all(&reqs).await;
    let replies = flood.replies(reqs.len()).await;
    let refused =
        replies.iter().filter(|r| matches!(r, Reply::Error { error: RegistryError::TooManyFromAddress, .. })).count();
    assert!(refused >= 200 - 50, "the flood is refused past the quota ({refused} refused)");
    let stats = server.stats();
    assert!(stats.records <= 50, "the directory stays within the per-source quota: {}", stats.records);
    assert!(stats.closed_bad >= 4 && stats.bad_requests >= 4, "{stats}");

    // The well-behaved client is still served, on its old connection and on a new one.
    good.send_all(&[Request::Refresh { req: 2, client: client(1), mesh: mesh.clone(), id: good_id }]).await;
    assert!(matches!(good.reply().await, Some(Reply::Refreshed { req: 2, .. })));
    let mut fresh = Raw::connect(addr).await;
    fresh.send_all(&[Request::GetServiceInfo { req: 9 }]).await;
    assert_eq!(fresh.reply().await, Some(Reply::ServiceInfo { req: 9, control_shape: false }));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_join_through_the_service_alone_and_survive_its_restart() {
    init_tracing();
    const N: usize = 20;
    // Nodes refresh at half the lifetime: 3 s here.
    let lifetime = Duration::from_secs(6);
    let cfg = || ServerConfig {
        registry: RegistryConfig { lifetime, ..RegistryConfig::default() },
        summary_interval: None,
        ..ServerConfig::default()
    };
    let server = ResolverServer::bind(loopback(), cfg()).await.unwrap();
    let addr = server.local_addr();

    let mut nodes = Vec::new();
    let mut clients = Vec::new();
    for i in 0..N {
        let r = ServiceResolver::new(addr);
        clients.push(r.clone());
        // No bootstrap list: the service is the only way in.
        let mut b = PeerNode::builder().config(fast_config("svc20")).listen(loopback()).resolver(r);
        if i == 0 {
            b = b.open_alone();
        }
        nodes.push(b.open().await.unwrap_or_else(|e| panic!("node {i} failed to join: {e}")));
    }
    let refs: Vec<&PeerNode> = nodes.iter().collect();
    wait_until("20 nodes form one mesh through the service", PATIENCE * 2, || is_one_mesh(&refs, 2, 7)).await;
    wait_until("all 20 registered", PATIENCE, || async { server.stats().records == N }).await;

    // Restart: same address, empty directory, a new secret.
    server.shutdown().await;
    let server = ResolverServer::bind(addr, cfg()).await.unwrap();
    assert_eq!(server.stats().records, 0);
    let restarted = tokio::time::Instant::now();
    wait_until("the directory refills", PATIENCE, || async { server.stats().records == N }).await;
    let took = restarted.elapsed();
    // One refresh interval (half the lifetime), plus one retry backoff (1 s) for a refresh
    // that hit the restart gap, plus slack for a loaded machine.
    assert!(took <= lifetime / 2 + Duration::from_secs(4), "refilled in {took:?}");
    for (i, c) in clients.iter().enumerate() {
        assert!(c.stats().registrations >= 2, "node {i} registered again after the restart: {:?}", c.stats());
    }
    // The mesh is still whole, and a newcomer joins through the restarted service.
    wait_until("still one mesh", PATIENCE, || is_one_mesh(&refs, 2, 7)).await;
    let late = PeerNode::builder()
        .config(fast_config("svc20"))
        .listen(loopback())
        .resolver(ServiceResolver::new(addr))
        .open()
        .await
        .expect("a newcomer joins through the restarted service");
    let mut rx = nodes[0].channel("/x").unwrap();
    late.channel("/x").unwrap().send("after the restart").await.unwrap();
    let m = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    assert_eq!(m.origin, late.id());

    // A graceful close removes the record.
    late.close().await;
    wait_until("the newcomer's record is gone", PATIENCE, || async { server.stats().records == N }).await;
    drop(refs);
    for n in nodes {
        n.close().await;
    }
    assert_eq!(server.stats().records, 0, "graceful closes unregister");
    server.shutdown().await;
}

#[tokio::test]
async fn the_client_times_out_on_a_silent_service_and_follows_the_referral_policy() {
    init_tracing();
    use peerchannel_tokio::{ReferralPolicy, Resolver};
    // A "service" that accepts and never answers: the request times out, it does not hang.
    let silent = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let r = ServiceResolver::new(silent_addr).request_timeout(Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    let e = r.resolve(&mesh_id("quiet"), 3).await.expect_err("no answer is an error");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.stats().failures, 1);
    holder.abort();

    // Referral policy: Service asks the service; Share and DoNotShare decide locally.
    for control_shape in [false, true] {
        let cfg = ServerConfig {
            registry: RegistryConfig { control_shape, ..RegistryConfig::default() },
            summary_interval: None,
            ..ServerConfig::default()
        };
        let server = ResolverServer::bind(loopback(), cfg).await.unwrap();
        let addr = server.local_addr();
        let asked = ServiceResolver::new(addr);
        assert_eq!(asked.can_share_referrals().await.unwrap(), !control_shape);
        let share = ServiceResolver::new(addr).referral_policy(ReferralPolicy::Share);
        assert!(share.can_share_referrals().await.unwrap());
        let never = ServiceResolver::new(addr).referral_policy(ReferralPolicy::DoNotShare);
        assert!(!never.can_share_referrals().await.unwrap());
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_crashed_node_stops_refreshing_and_its_record_expires() {
    init_tracing();
    let cfg = ServerConfig {
        registry: RegistryConfig { lifetime: Duration::from_secs(2), ..RegistryConfig::default() },
        summary_interval: None,
        ..ServerConfig::default()
    };
    let server = ResolverServer::bind(loopback(), cfg).await.unwrap();
    let addr = server.local_addr();
    let node = open_alone_with_service("crash", addr).await;
    wait_until("registered", PATIENCE, || async { server.stats().records == 1 }).await;
    // Dropped without close: no unregister, and no more refreshes either.
    drop(node);
    wait_until("the record expires", PATIENCE, || async { server.stats().records == 0 }).await;
    server.shutdown().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_slot() {
    init_tracing();
    let cfg = ServerConfig { max_connections_per_ip: 3, summary_interval: None, ..ServerConfig::default() };
    let server = ResolverServer::bind(loopback(), cfg).await.unwrap();
    let addr = server.local_addr();
    let mut held = Vec::new();
    for i in 0..3 {
        let mut c = Raw::connect(addr).await;
        c.send_all(&[Request::GetServiceInfo { req: i + 1 }]).await;
        assert!(matches!(c.reply().await, Some(Reply::ServiceInfo { .. })));
        held.push(c);
    }
    let mut extra = Raw::connect(addr).await;
    assert!(extra.closed().await, "a fourth connection from the same address is closed at once");
    assert_eq!(server.stats().refused, 1);
    // The held connections are still served, and a slot frees when one closes.
    held[0].send_all(&[Request::GetServiceInfo { req: 9 }]).await;
    assert!(matches!(held[0].reply().await, Some(Reply::ServiceInfo { req: 9, .. })));
    drop(held.pop());
    wait_until("a slot frees", PATIENCE, || async { server.stats().connections == 2 }).await;
    let mut again = Raw::connect(addr).await;
    again.send_all(&[Request::GetServiceInfo { req: 10 }]).await;
    assert!(matches!(again.reply().await, Some(Reply::ServiceInfo { req: 10, .. })));
    server.shutdown().await;
}
