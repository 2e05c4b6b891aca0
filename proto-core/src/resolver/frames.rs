//! The resolver service's request and reply frames (see PROTOCOL.md, "Resolver protocol").
//! Same framing as links — `u32` length, type byte, body — on their own connection, with their
//! own size limit.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::{ClientId, RegistrationId, RegistryError};
use crate::uri::MeshId;
use crate::wire::{put_addr, DecodeError, Reader, LEN_PREFIX, MAX_ADDRESSES};

/// Largest resolver frame (type byte and body).
pub const MAX_RESOLVER_FRAME: usize = 4096;
/// Most records one Resolved reply carries.
pub const MAX_RESOLVED_RECORDS: usize = 32;

/// A request to the resolver service. `req` is chosen by the client and echoed in the reply,
/// so requests can be pipelined on one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Add a record.
    Register {
        /// Request number.
        req: u32,
        /// The client.
        client: ClientId,
        /// The mesh.
        mesh: MeshId,
        /// The node's listen addresses.
        addrs: SmallVec<[SocketAddr; 2]>,
    },
    /// Replace a record's addresses (or register anew if unknown).
    Update {
        /// Request number.
        req: u32,
        /// The client.
        client: ClientId,
        /// The mesh.
        mesh: MeshId,
        /// The registration.
        id: RegistrationId,
        /// The new addresses.
        addrs: SmallVec<[SocketAddr; 2]>,
    },
    /// Extend a record's life.
    Refresh {
        /// Request number.
        req: u32,
        /// The client.
        client: ClientId,
        /// The mesh.
        mesh: MeshId,
        /// The registration.
        id: RegistrationId,
    },
    /// Remove a record.
    Unregister {
        /// Request number.
        req: u32,
        /// The client.
        client: ClientId,
        /// The mesh.
        mesh: MeshId,
        /// The registration.
        id: RegistrationId,
    },
    /// Ask for members.
    Resolve {
        /// Request number.
        req: u32,
        /// The client (its own records are never returned).
        client: ClientId,
        /// The mesh.
        mesh: MeshId,
        /// Records wanted.
        max: u8,
    },
    /// Ask whether the service controls the mesh's shape.
    GetServiceInfo {
        /// Request number.
        req: u32,
    },
}

/// The service's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Register or Update succeeded.
    Registered {
        /// Request number.
        req: u32,
        /// The registration (new, or the same for an Update of an own record).
        id: RegistrationId,
        /// Seconds it lives without a refresh.
        lifetime_secs: u32,
    },
    /// Refresh succeeded.
    Refreshed {
        /// Request number.
        req: u32,
        /// Seconds it lives from now.
        lifetime_secs: u32,
    },
    /// Members found: each record's addresses.
    Resolved {
        /// Request number.
        req: u32,
        /// Records.
        records: Vec<SmallVec<[SocketAddr; 2]>>,
    },
    /// The service's settings.
    ServiceInfo {
        /// Request number.
        req: u32,
        /// True if clients must not share referrals.
        control_shape: bool,
    },
    /// Unregister succeeded.
    Done {
        /// Request number.
        req: u32,
    },
    /// The request failed.
    Error {
        /// Request number (0 when the request could not be read).
        req: u32,
        /// Why.
        error: RegistryError,
    },
}

impl Request {
    /// The request number.
    pub fn req(&self) -> u32 {
        match self {
            Request::Register { req, .. }
            | Request::Update { req, .. }
            | Request::Refresh { req, .. }
            | Request::Unregister { req, .. }
            | Request::Resolve { req, .. }
            | Request::GetServiceInfo { req } => *req,
        }
    }
}

impl Reply {
    /// The request number it answers.
    pub fn req(&self) -> u32 {
        match self {
            Reply::Registered { req, .. }
            | Reply::Refreshed { req, .. }
            | Reply::Resolved { req, .. }
            | Reply::ServiceInfo { req, .. }
            | Reply::Done { req }
            | Reply::Error { req, .. } => *req,
        }
    }
}

/// Takes the next whole resolver frame off `buf` (type byte and body), `Ok(None)` if more bytes
/// are needed. The length is checked against [`MAX_RESOLVER_FRAME`] before anything waits.
pub fn split_resolver_frame(buf: &mut Bytes) -> Result<Option<Bytes>, DecodeError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else { return Ok(None) };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    if len > MAX_RESOLVER_FRAME {
        return Err(DecodeError::FrameTooLarge { len, max: MAX_RESOLVER_FRAME });
    }
    if buf.len() < LEN_PREFIX + len {
        return Ok(None);
    }
    buf.advance(LEN_PREFIX);
    Ok(Some(buf.split_to(len)))
}

fn begin(out: &mut BytesMut, ty: u8) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(ty);
    start
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - LEN_PREFIX) as u32;
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

fn put_mesh(out: &mut BytesMut, m: &MeshId) {
    out.put_u8(m.as_str().len() as u8);
    out.put_slice(m.as_str().as_bytes());
}

fn put_addrs(out: &mut BytesMut, a: &[SocketAddr]) {
    let n = a.len().min(MAX_ADDRESSES);
    out.put_u8(n as u8);
    for x in &a[..n] {
        put_addr(out, x);
    }
}

/// Appends a request frame.
pub fn encode_request(r: &Request, out: &mut BytesMut) {
    let (ty, req) = match r {
        Request::Register { .. } => (0x30, r.req()),
        Request::Update { .. } => (0x31, r.req()),
        Request::Refresh { .. } => (0x32, r.req()),
        Request::Unregister { .. } => (0x33, r.req()),
        Request::Resolve { .. } => (0x34, r.req()),
        Request::GetServiceInfo { .. } => (0x35, r.req()),
    };
    let start = begin(out, ty);
    out.put_u32(req);
    match r {
        Request::Register { client, mesh, addrs, .. } => {
            out.put_slice(&client.0);
            put_mesh(out, mesh);
            put_addrs(out, addrs);
        }
        Request::Update { client, mesh, id, addrs, .. } => {
            out.put_slice(&client.0);
            put_mesh(out, mesh);
            out.put_slice(&id.0);
            put_addrs(out, addrs);
        }
        Request::Refresh { client, mesh, id, .. } | Request::Unregister { client, mesh, id, .. } => {
            out.put_slice(&client.0);
            put_mesh(out, mesh);
            out.put_slice(&id.0);
        }
        Request::Resolve { client, mesh, max, .. } => {
            out.put_slice(&client.0);
            put_mesh(out, mesh);
            out.put_u8(*max);
        }
        Request::GetServiceInfo { .. } => {}
    }
    finish(out, start);
}

/// Appends a reply frame. A Resolved reply carries at most [`MAX_RESOLVED_RECORDS`] records.
pub fn encode_reply(r: &Reply, out: &mut BytesMut) {
    let ty = match r {
        Reply::Registered { .. } => 0x38,
        Reply::Refreshed { .. } => 0x39,
        Reply::Resolved { .. } => 0x3A,
        Reply::ServiceInfo { .. } => 0x3B,
        Reply::Done { .. } => 0x3C,
        Reply::Error { .. } => 0x3D,
    };
    let start = begin(out, ty);
    out.put_u32(r.req());
    match r {
        Reply::Registered { id, lifetime_secs, .. } => {
            out.put_slice(&id.0);
            out.put_u32(*lifetime_secs);
        }
        Reply::Refreshed { lifetime_secs, .. } => out.put_u32(*lifetime_secs),
        Reply::Resolved { records, .. } => {
            let n = records.len().min(MAX_RESOLVED_RECORDS);
            out.put_u8(n as u8);
            for rec in &records[..n] {
                put_addrs(out, rec);
            }
        }
        Reply::ServiceInfo { control_shape, .. } => out.put_u8(u8::from(*control_shape)),
        Reply::Done { .. } => {}
        Reply::Error { error, .. } => out.put_u8(*error as u8),
    }
    finish(out, start);
}

fn mesh(r: &mut Reader<'_>) -> Result<MeshId, DecodeError> {
    let len = usize::from(r.u8()?);
    let name = core::str::from_utf8(r.take(len)?).map_err(|_| DecodeError::BadMeshId)?;
    let m = MeshId::new(name).map_err(|_| DecodeError::BadMeshId)?;
    if m.as_str() != name {
        return Err(DecodeError::BadMeshId);
    }
    Ok(m)
}

fn addrs(r: &mut Reader<'_>) -> Result<SmallVec<[SocketAddr; 2]>, DecodeError> {
    let n = usize::from(r.u8()?);
    if n > MAX_ADDRESSES {
        return Err(DecodeError::TooManyAddresses(n));
    }
    (0..n).map(|_| r.addr()).collect()
}

fn done<T>(r: &Reader<'_>, v: T) -> Result<T, DecodeError> {
    if r.pos == r.buf.len() {
        Ok(v)
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

/// Decodes a request frame (as returned by [`split_resolver_frame`]).
pub fn decode_request(frame: &[u8]) -> Result<Request, DecodeError> {
    let mut r = Reader { buf: frame, pos: 0 };
    let ty = r.u8()?;
    let req = r.u32()?;
    let v = match ty {
        0x30 => Request::Register { req, client: ClientId(r.array()?), mesh: mesh(&mut r)?, addrs: addrs(&mut r)? },
        0x31 => Request::Update {
            req,
            client: ClientId(r.array()?),
            mesh: mesh(&mut r)?,
            id: RegistrationId(r.array()?),
            addrs: addrs(&mut r)?,
        },
        0x32 => {
            Request::Refresh { req, client: ClientId(r.array()?), mesh: mesh(&mut r)?, id: RegistrationId(r.array()?) }
        }
        0x33 => Request::Unregister {
            req,
            client: ClientId(r.array()?),
            mesh: mesh(&mut r)?,
            id: RegistrationId(r.array()?),
        },
        0x34 => Request::Resolve { req, client: ClientId(r.array()?), mesh: mesh(&mut r)?, max: r.u8()? },
        0x35 => Request::GetServiceInfo { req },
        other => return Err(DecodeError::UnknownFrameType(other)),
    };
    done(&r, v)
}

/// Decodes a reply frame.
pub fn decode_reply(frame: &[u8]) -> Result<Reply, DecodeError> {
    let mut r = Reader { buf: frame, pos: 0 };
    let ty = r.u8()?;
    let req = r.u32()?;
    let v = match ty {
        0x38 => Reply::Registered { req, id: RegistrationId(r.array()?), lifetime_secs: r.u32()? },
        0x39 => Reply::Refreshed { req, lifetime_secs: r.u32()? },
        0x3A => {
            let n = usize::from(r.u8()?);
            if n > MAX_RESOLVED_RECORDS {
                return Err(DecodeError::TooManyReferrals(n));
            }
            let records = (0..n).map(|_| addrs(&mut r)).collect::<Result<_, _>>()?;
            Reply::Resolved { req, records }
        }
        0x3B => Reply::ServiceInfo { req, control_shape: r.u8()? != 0 },
        0x3C => Reply::Done { req },
        0x3D => {
            let c = r.u8()?;
            Reply::Error { req, error: RegistryError::from_code(c).ok_or(DecodeError::BadReason(c))? }
        }
        other => return Err(DecodeError::UnknownFrameType(other)),
    };
    done(&r, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::smallvec;

    fn m() -> MeshId {
        MeshId::new("soccerpals").unwrap()
    }

    fn one(out: &BytesMut) -> Bytes {
        let mut b = out.clone().freeze();
        let f = split_resolver_frame(&mut b).unwrap().unwrap();
        assert!(b.is_empty());
        f
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let c = ClientId([7; 16]);
        let id = RegistrationId([9; 16]);
        let a: SmallVec<[SocketAddr; 2]> = smallvec!["10.0.0.1:7000".parse().unwrap(), "[::1]:9".parse().unwrap()];
        let reqs = vec![
            Request::Register { req: 1, client: c, mesh: m(), addrs: a.clone() },
            Request::Update { req: 2, client: c, mesh: m(), id, addrs: a.clone() },
            Request::Refresh { req: 3, client: c, mesh: m(), id },
            Request::Unregister { req: 4, client: c, mesh: m(), id },
            Request::Resolve { req: 5, client: c, mesh: m(), max: 3 },
            Request::GetServiceInfo { req: 6 },
        ];
        for r in reqs {
            let mut out = BytesMut::new();
            encode_request(&r, &mut out);
            assert_eq!(decode_request(&one(&out)).unwrap(), r);
        }
        let replies = vec![
            Reply::Registered { req: 1, id, lifetime_secs: 600 },
            Reply::Refreshed { req: 2, lifetime_secs: 600 },
            Reply::Resolved { req: 3, records: vec![a.clone(), smallvec![]] },
            Reply::ServiceInfo { req: 4, control_shape: true },
            Reply::Done { req: 5 },
            Reply::Error { req: 6, error: RegistryError::MeshFull },
        ];
        for r in replies {
            let mut out = BytesMut::new();
            encode_reply(&r, &mut out);
            assert_eq!(decode_reply(&one(&out)).unwrap(), r);
        }
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        assert_eq!(decode_request(&[0x30, 0, 0, 0, 1]), Err(DecodeError::Truncated));
        assert_eq!(decode_request(&[0x99, 0, 0, 0, 1]), Err(DecodeError::UnknownFrameType(0x99)));
        assert_eq!(decode_request(&[0x35, 0, 0, 0, 1, 0]), Err(DecodeError::TrailingBytes));
        let mut bad_mesh = vec![0x34, 0, 0, 0, 1];
        bad_mesh.extend_from_slice(&[0; 16]);
        bad_mesh.extend_from_slice(&[3, b'B', b'_', b'x', 1]);
        assert_eq!(decode_request(&bad_mesh), Err(DecodeError::BadMeshId));
        let mut big = Bytes::from_static(&[0, 0, 0x10, 1, 0x30]);
        assert!(matches!(split_resolver_frame(&mut big), Err(DecodeError::FrameTooLarge { .. })));
        assert_eq!(decode_reply(&[0x3D, 0, 0, 0, 1, 99]), Err(DecodeError::BadReason(99)));
    }
}
