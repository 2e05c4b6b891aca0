//! Interactive chat over a peerchannel mesh: lines typed go to every member, lines from others
//! are printed with the sender's name.
//!
//! First terminal (the first node runs without `--peer`):
//!
//! ```text
//! cargo run -p peerchannel-tokio --example chat -- --mesh soccerpals --name alice --listen 127.0.0.1:7000
//! ```
//!
//! Second terminal:
//!
//! ```text
//! cargo run -p peerchannel-tokio --example chat -- --mesh soccerpals --name bob --peer 127.0.0.1:7000
//! ```
//!
//! Through a resolver service (`cargo run -p peerchannel-tokio --bin peerchannel-resolver --
//! --listen 127.0.0.1:7700` in another terminal), every chat the same way:
//!
//! ```text
//! cargo run -p peerchannel-tokio --example chat -- --name alice --resolver 127.0.0.1:7700
//! cargo run -p peerchannel-tokio --example chat -- --name bob --resolver 127.0.0.1:7700
//! ```
//!
//! With neither `--peer` nor `--resolver`, chats on one LAN find each other by LAN discovery
//! (UDP multicast); the first one found alone starts the mesh.
//!
//! With `--password <pw>` on every chat, links are TLS 1.3 and only chats that know the
//! password join (a chat with another password, or none, is refused and says why).
//!
//! Commands: `/neighbors`, `/stats`, `/quit` (or Ctrl-D, Ctrl-C) to leave gracefully.
//! Set `RUST_LOG=peerchannel_tokio=debug` to see connects, accepts and closes.

use std::net::SocketAddr;

use clap::Parser;
use peerchannel_tokio::{CloseReason, Error, Event, PeerNode};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser, Debug)]
#[command(about = "Chat with every member of a peerchannel mesh")]
struct Args {
    /// Mesh to join.
    #[arg(long, default_value = "soccerpals")]
    mesh: String,
    /// Your name, shown to the others.
    #[arg(long)]
    name: String,
    /// Address to listen on (default: all interfaces, any port).
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// A member to join through (repeatable). Without it, this node starts the mesh.
    #[arg(long)]
    peer: Vec<SocketAddr>,
    /// A peerchannel-resolver service to register with and find members through. If it
    /// knows no member yet, this node starts the mesh.
    #[arg(long)]
    resolver: Option<SocketAddr>,
    /// Do not use LAN discovery.
    #[arg(long)]
    no_lan: bool,
    /// The mesh password: links are TLS 1.3 and every member must know it.
    #[arg(long)]
    password: Option<String>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let builder = || {
        let mut b = PeerNode::builder().mesh(&args.mesh).listen(args.listen).bootstrap(args.peer.iter().copied());
        if let Some(r) = args.resolver {
            b = b.resolver_service(r);
        }
        if args.no_lan {
            b = b.lan_discovery(false);
        }
        if let Some(pw) = &args.password {
            b = b.password(pw.as_str());
        }
        b
    };
    let node = if !args.peer.is_empty() {
        builder().open().await?
    } else if args.resolver.is_none() && args.no_lan {
        builder().open_alone().open().await?
    } else {
        // Look for the mesh (resolver service, else LAN discovery); start it if nobody is there.
        match builder().open().await {
            Ok(n) => n,
            Err(Error::NoPeersFound | Error::NoResolver { .. }) => {
                println!("* no member of {} found: starting the mesh", args.mesh);
                builder().open_alone().open().await?
            }
            Err(e) => return Err(e.into()),
        }
    };
    if let Some(s) = node.resolver_stats() {
        let how = match s.last {
            Some(b) => format!("found through {b}"),
            None => "started alone".to_owned(),
        };
        println!("* {how} (service: {}, LAN discovery: {})", s.has_service, s.has_lan);
    }
    let announced: Vec<String> = node.listen_addrs().iter().map(|a| a.to_string()).collect();
    let secured = if args.password.is_some() { " (TLS, password)" } else { "" };
    println!("* {} joined mesh {}{secured} as node {}", args.name, node.mesh(), node.id());
    let pw = if args.password.is_some() { " --password <the password>" } else { "" };
    println!("* others join with: --mesh {} --peer {}{pw}", node.mesh(), announced.join(" --peer "));

    // Neighbors found while opening came before the event stream below existed.
    for n in node.neighbors().await? {
        println!("* neighbor: {} at {}", n.node, n.addr);
    }
    let mut chat = node.channel("/chat")?;
    let tx = chat.sender();
    let mut events = node.events();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();

    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                match line.trim() {
                    "" => {}
                    "/quit" => break,
                    "/neighbors" => {
                        for n in node.neighbors().await? {
                            println!("* neighbor {} at {} (utility {}, rtt {:?} ns)", n.node, n.addr, n.utility, n.rtt_nanos);
                        }
                    }
                    "/stats" => println!("* {:#?}", node.stats().await?),
                    text => {
                        // Payload: the name, a NUL, the text.
                        let payload = format!("{}\0{}", args.name, text);
                        tx.send(payload.into_bytes()).await?;
                    }
                }
            }
            msg = chat.recv() => {
                let Some(msg) = msg else { break };
                let text = String::from_utf8_lossy(&msg.payload);
                let (name, body) = text.split_once('\0').unwrap_or(("?", &text));
                println!("[{name}] {body}");
            }
            ev = events.recv() => match ev {
                Some(Event::NeighborUp { node, addr, .. }) => println!("* neighbor up: {node} at {addr}"),
                Some(Event::NeighborDown { node, reason, .. }) => println!("* neighbor down: {node} ({reason})"),
                Some(Event::Offline) => println!("* offline: no neighbors, looking for the mesh"),
                Some(Event::Online) => println!("* online"),
                Some(Event::AuthenticationFailed { addr, failure, .. }) => {
                    println!("* authentication with {addr} failed: {failure}")
                }
                Some(Event::InboundRefused { addr, reason: CloseReason::SecurityMismatch }) => {
                    println!("* refused {addr}: it uses another security mode (or no password)")
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("* leaving");
    drop(chat);
    node.close().await;
    Ok(())
}
