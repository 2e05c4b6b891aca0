//! TLS 1.3 on a link, driven sans-IO: ciphertext in from the adapter, plaintext frames out to
//! the frame assembler, queued frames encrypted when the adapter pulls bytes to write.

use std::io::{BufRead, IoSlice, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::client::Resumption;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::verify::{auth_failure_from_tls, AuthFailure, PeerVerifier};
use super::NodeIdentity;

/// The exporter label of the password proof's session binding (RFC 8446 §7.5).
const PROOF_EXPORTER_LABEL: &[u8] = b"EXPORTER-peerchannel-password-proof";
/// Plaintext encrypted per pull at most: a few full TLS records, so one pull makes one large
/// write without holding much ciphertext.
const ENCRYPT_BATCH: usize = 64 * 1024;

/// The wall-clock time certificates are checked against. The core reads no clock: the adapter
/// passes the time in ([`Input::WallClock`](crate::Input::WallClock)) and the node moves it on
/// with its own virtual time. Until then the time is the Unix epoch: password meshes do not
/// care, and in a certificate mesh every peer's certificate is then "not yet valid" — a clear
/// failure rather than an unchecked one.
#[derive(Clone, Debug, Default)]
pub struct WallClock(Arc<AtomicU64>);

impl WallClock {
    /// Sets the current time, in seconds since the Unix epoch.
    pub fn set(&self, unix_secs: u64) {
        self.0.store(unix_secs, Ordering::Relaxed);
    }

    /// The current time as last set (the epoch if never).
    pub fn now(&self) -> UnixTime {
        UnixTime::since_unix_epoch(core::time::Duration::from_secs(self.0.load(Ordering::Relaxed)))
    }
}

impl rustls::time_provider::TimeProvider for WallClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.now())
    }
}

/// The rustls configurations of one node, built once and shared by its links.
#[derive(Debug)]
pub struct TlsConfigs {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl TlsConfigs {
    /// TLS 1.3 only, mutual authentication with `identity`, peers checked by `verifier`, no
    /// session resumption (every link authenticates afresh, and handshakes have one shape, which
    /// keeps simulations reproducible).
    pub fn new(identity: &NodeIdentity, verifier: Arc<PeerVerifier>, clock: &WallClock) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let time: Arc<dyn rustls::time_provider::TimeProvider> = Arc::new(clock.clone());
        let certified = identity.certified_key();
        let mut client = ClientConfig::builder_with_details(provider.clone(), time.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));
        client.resumption = Resumption::disabled();
        client.enable_sni = false;
        let mut server = ServerConfig::builder_with_details(provider, time)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        server.send_tls13_tickets = 0;
        Ok(TlsConfigs { client: Arc::new(client), server: Arc::new(server) })
    }

    /// A TLS session for a link this node dialed (the TLS client) or accepted (the server).
    pub fn session(&self, initiator: bool) -> Result<TlsSession, rustls::Error> {
        let mut conn: Connection = if initiator {
            // Peers have no names; the verifier ignores this one (and no SNI is sent).
            let name = ServerName::from(std::net::IpAddr::from([0, 0, 0, 0]));
            ClientConnection::new(self.client.clone(), name)?.into()
        } else {
            ServerConnection::new(self.server.clone())?.into()
        };
        // The node bounds what it encrypts per pull (ENCRYPT_BATCH); no second limit here.
        conn.set_buffer_limit(None);
        Ok(TlsSession { conn, plain: BytesMut::new(), failed: false })
    }
}

/// Why a TLS session failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFailure(pub AuthFailure);

/// One link's TLS session.
pub struct TlsSession {
    conn: Connection,
    plain: BytesMut,
    failed: bool,
}

impl core::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsSession").field("handshaking", &self.conn.is_handshaking()).finish()
    }
}

impl TlsSession {
    /// Feeds received ciphertext; returns the plaintext it decrypted (possibly empty), in one
    /// contiguous buffer so that whole frames inside it are handed on without copying. On a
    /// failure the session keeps the alert for the peer (see [`has_output`](Self::has_output)).
    pub fn receive(&mut self, mut data: &[u8]) -> Result<Bytes, TlsFailure> {
        if self.failed {
            return Ok(Bytes::new());
        }
        // Plaintext is never longer than the ciphertext it came in: one reservation suffices.
        self.plain.reserve(data.len());
        while !data.is_empty() {
            let n = match self.conn.read_tls(&mut data) {
                Ok(n) => n,
                Err(e) => return self.fail(AuthFailure::Tls(e.to_string())),
            };
            let ready = match self.conn.process_new_packets() {
                Ok(io) => io.plaintext_bytes_to_read(),
                Err(e) => {
                    let failure = auth_failure_from_tls(&e);
                    return self.fail(failure);
                }
            };
            // Taken chunk by chunk from rustls' buffer: reading into a slice would first
            // have to zero it, one more pass over every byte received.
            let mut left = ready;
            while left > 0 {
                let mut reader = self.conn.reader();
                let chunk = match reader.fill_buf() {
                    Ok(chunk) if !chunk.is_empty() => chunk,
                    Ok(_) => return self.fail(AuthFailure::Tls("plaintext announced but not readable".into())),
                    Err(e) => return self.fail(AuthFailure::Tls(e.to_string())),
                };
                let n = chunk.len().min(left);
                self.plain.extend_from_slice(&chunk[..n]);
                reader.consume(n);
                left -= n;
            }
            if n == 0 {
                break;
            }
        }
        Ok(self.plain.split().freeze())
    }

    fn fail<T>(&mut self, failure: AuthFailure) -> Result<T, TlsFailure> {
        self.failed = true;
        Err(TlsFailure(failure))
    }

    /// Whether the handshake is complete (application data may flow).
    pub fn is_established(&self) -> bool {
        !self.conn.is_handshaking() && !self.failed
    }

    /// Whether the session has ciphertext (handshake messages, alerts) waiting to be written.
    pub fn has_output(&self) -> bool {
        self.conn.wants_write()
    }

    /// Keying material bound to this session (RFC 8446 exporter), which the password proof
    /// covers so that a proof recorded on one link is worthless on another.
    pub fn session_binding(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        self.conn.export_keying_material(&mut out, PROOF_EXPORTER_LABEL, None).ok()?;
        Some(out)
    }

    /// The peer's certificate chain (end-entity first), once the handshake checked it.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// Encrypts `chunks` (plaintext frames, in order).
    pub fn encrypt(&mut self, chunks: &[Bytes]) {
        let mut slices: smallvec::SmallVec<[IoSlice<'_>; 32]> = chunks.iter().map(|c| IoSlice::new(c)).collect();
        let mut writer = self.conn.writer();
        let mut slices = &mut slices[..];
        // With no buffer limit rustls takes everything; loop anyway rather than lose bytes.
        while !slices.is_empty() {
            match writer.write_vectored(slices) {
                Ok(0) | Err(_) => break,
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
            }
        }
    }

    /// Moves the session's pending ciphertext into `out`.
    pub fn write_into(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// How much plaintext one pull encrypts at most.
    pub const BATCH: usize = ENCRYPT_BATCH;
    /// Bytes a TLS 1.3 record adds to its plaintext at most with rustls' ring suites: the
    /// 5-byte header, the content type byte and a 16-byte AEAD tag.
    pub const RECORD_OVERHEAD: usize = 5 + 1 + 16;
}
