//! `net.p2p://mesh/path` addresses: mesh IDs and channel paths, validated once at the edge.

use core::fmt;
use std::sync::Arc;

/// The URI scheme of peerchannel channels.
pub const SCHEME: &str = "net.p2p";

/// Longest channel path in bytes (the original's limit on the channel URI).
pub const MAX_PATH_LEN: usize = 4096;

/// Longest mesh ID in bytes (a DNS name).
pub const MAX_MESH_ID_LEN: usize = 253;

/// Why a mesh ID, path or channel URI was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriError {
    /// The URI does not start with `net.p2p://`.
    WrongScheme,
    /// The mesh ID is empty.
    EmptyMeshId,
    /// The mesh ID is longer than 253 bytes.
    MeshIdTooLong,
    /// A label of the mesh ID is empty or longer than 63 bytes.
    BadLabel,
    /// The mesh ID has a character other than ASCII letters, digits, `-` and `.`.
    BadMeshChar(char),
    /// A label of the mesh ID starts or ends with `-`.
    LabelHyphen,
    /// The path is longer than 4096 bytes.
    PathTooLong(usize),
    /// The path does not start with `/`.
    PathNotAbsolute,
    /// The path holds a control character, `?` or `#`.
    BadPathChar(char),
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::WrongScheme => {
                write!(f, "a channel URI starts with `net.p2p://`, e.g. net.p2p://soccerpals/chat")
            }
            UriError::EmptyMeshId => write!(f, "the mesh ID is empty; name the mesh, e.g. `soccerpals`"),
            UriError::MeshIdTooLong => write!(f, "the mesh ID is longer than {MAX_MESH_ID_LEN} bytes"),
            UriError::BadLabel => write!(f, "each dot-separated label of a mesh ID must be 1 to 63 characters"),
            UriError::BadMeshChar(c) => write!(f, "a mesh ID may hold only letters, digits, `-` and `.`, not {c:?}"),
            UriError::LabelHyphen => write!(f, "a label of a mesh ID may not start or end with `-`"),
            UriError::PathTooLong(n) => write!(f, "the channel path is {n} bytes; the limit is {MAX_PATH_LEN}"),
            UriError::PathNotAbsolute => write!(f, "a channel path starts with `/`, e.g. /chat"),
            UriError::BadPathChar(c) => write!(f, "a channel path may not hold {c:?}"),
        }
    }
}

impl std::error::Error for UriError {}

/// The name of a mesh: a DNS host name (labels of letters, digits and hyphens), compared
/// case-insensitively and stored in lower case.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeshId(Arc<str>);

impl MeshId {
    /// Validates and normalises a mesh ID such as `soccerpals` or `team.example`.
    pub fn new(name: &str) -> Result<Self, UriError> {
        if name.is_empty() {
            return Err(UriError::EmptyMeshId);
        }
        if name.len() > MAX_MESH_ID_LEN {
            return Err(UriError::MeshIdTooLong);
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(UriError::BadLabel);
            }
            if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
                return Err(UriError::BadMeshChar(c));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(UriError::LabelHyphen);
            }
        }
        Ok(MeshId(name.to_ascii_lowercase().into()))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MeshId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MeshId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeshId({})", self.0)
    }
}

/// The service path of a channel inside a mesh, e.g. `/chat`. Matched exactly (case-sensitive).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelPath(Arc<str>);

impl ChannelPath {
    /// Validates a path: starts with `/`, at most 4096 bytes, no control characters, `?` or `#`.
    pub fn new(path: &str) -> Result<Self, UriError> {
        validate_path(path)?;
        Ok(ChannelPath(path.into()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's bytes, as they travel on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Checks the rules of [`ChannelPath::new`] without allocating (used by the codec).
pub fn validate_path(path: &str) -> Result<(), UriError> {
    if path.len() > MAX_PATH_LEN {
        return Err(UriError::PathTooLong(path.len()));
    }
    if !path.starts_with('/') {
        return Err(UriError::PathNotAbsolute);
    }
    if let Some(c) = path.chars().find(|c| c.is_control() || *c == '?' || *c == '#') {
        return Err(UriError::BadPathChar(c));
    }
    Ok(())
}

/// [`validate_path`] on raw bytes, as they arrive in a flood. ASCII paths (the usual case) are
/// checked byte by byte without decoding UTF-8.
pub fn validate_path_bytes(path: &[u8]) -> Result<(), UriError> {
    // One pass over printable ASCII, the usual case; anything else takes the full check.
    let plain = |b: &u8| (0x20..0x7f).contains(b) && *b != b'?' && *b != b'#';
    if path.len() <= MAX_PATH_LEN && path.first() == Some(&b'/') && path.iter().all(plain) {
        return Ok(());
    }
    let text = core::str::from_utf8(path).map_err(|_| UriError::PathNotAbsolute)?;
    validate_path(text)
}

impl fmt::Display for ChannelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelPath({})", self.0)
    }
}

/// A full channel address: `net.p2p://<mesh>/<path>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelUri {
    /// The mesh the channel belongs to.
    pub mesh: MeshId,
    /// The channel's path in that mesh (`/` when the URI has none).
    pub path: ChannelPath,
}

impl ChannelUri {
    /// Parses `net.p2p://soccerpals/chat`. The scheme is case-insensitive; a missing path is `/`.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let rest = uri
            .get(..SCHEME.len() + 3)
            .filter(|p| p.eq_ignore_ascii_case("net.p2p://"))
            .map(|p| &uri[p.len()..])
            .ok_or(UriError::WrongScheme)?;
        let (mesh, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(ChannelUri { mesh: MeshId::new(mesh)?, path: ChannelPath::new(path)? })
    }
}

impl fmt::Display for ChannelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://{}{}", self.mesh, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_channel_uris() {
        let u = ChannelUri::parse("net.p2p://SoccerPals/chat").unwrap();
        assert_eq!(u.mesh.as_str(), "soccerpals");
        assert_eq!(u.path.as_str(), "/chat");
        assert_eq!(u.to_string(), "net.p2p://soccerpals/chat");
        let bare = ChannelUri::parse("NET.P2P://team.example").unwrap();
        assert_eq!(bare.path.as_str(), "/");
    }

    #[test]
    fn rejects_bad_uris_with_the_reason() {
        assert_eq!(ChannelUri::parse("http://x/chat"), Err(UriError::WrongScheme));
        assert_eq!(ChannelUri::parse("net.p2p:/"), Err(UriError::WrongScheme));
        assert_eq!(ChannelUri::parse("net.p2p:///chat"), Err(UriError::EmptyMeshId));
        assert_eq!(MeshId::new("a..b"), Err(UriError::BadLabel));
        assert_eq!(MeshId::new("-ab"), Err(UriError::LabelHyphen));
        assert_eq!(MeshId::new("ab_c"), Err(UriError::BadMeshChar('_')));
        assert_eq!(MeshId::new(&"a".repeat(64)), Err(UriError::BadLabel));
        assert_eq!(MeshId::new(&"a.".repeat(130)), Err(UriError::MeshIdTooLong));
        assert_eq!(ChannelPath::new("chat"), Err(UriError::PathNotAbsolute));
        assert_eq!(ChannelPath::new("/a?b"), Err(UriError::BadPathChar('?')));
        assert_eq!(ChannelPath::new("/a\nb"), Err(UriError::BadPathChar('\n')));
        let long = format!("/{}", "x".repeat(MAX_PATH_LEN));
        assert_eq!(ChannelPath::new(&long), Err(UriError::PathTooLong(MAX_PATH_LEN + 1)));
        assert!(ChannelPath::new(&long[..MAX_PATH_LEN]).is_ok());
    }

    #[test]
    fn byte_validation_agrees_with_text_validation() {
        for p in ["/", "/chat", "chat", "/a?b", "/a#b", "/a\u{7f}", "/\u{e9}t\u{e9}", "/\u{85}x", ""] {
            assert_eq!(validate_path_bytes(p.as_bytes()), validate_path(p), "{p:?}");
        }
        assert!(validate_path_bytes(&[b'/', 0xff]).is_err());
    }

    #[test]
    fn errors_tell_the_user_what_to_do() {
        assert!(UriError::WrongScheme.to_string().contains("net.p2p://"));
    }
}
