//! Bytes as a peer sends them, for tests that feed a node by hand.
#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};
use peerchannel_core::wire::{encode_control, Connect, Frame, Hello, VERSION};
use peerchannel_core::{MeshId, NodeId};

/// A NodeId from a non-zero number.
pub fn nid(n: u64) -> NodeId {
    NodeId::new(n).unwrap()
}

/// One control frame, with its length prefix.
pub fn frame(f: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode_control(f, &mut out);
    out.freeze()
}

/// A length prefix announcing `body`, then `body`: any bytes as a frame.
pub fn raw(body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

/// The Hello of an unsecured peer of `mesh`.
pub fn hello(mesh: &str) -> Bytes {
    frame(&Frame::Hello(Hello { version: VERSION, security: 0, mesh: MeshId::new(mesh).unwrap() }))
}

/// A Connect from `node`, announcing no listen addresses.
pub fn connect(node: u64) -> Bytes {
    frame(&Frame::Connect(Connect { node: nid(node), addrs: Default::default() }))
}

/// Several pieces in one buffer, as one read.
pub fn cat(parts: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for p in parts {
        out.put_slice(p);
    }
    out.freeze()
}
