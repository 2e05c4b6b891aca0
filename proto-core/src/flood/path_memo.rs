//! Which open channel a flood's path names, with the path's check, remembering the last path.

use crate::uri::{validate_path_bytes, ChannelPath, UriError};

/// Remembers the last path of a received flood that was found valid, and which of the node's
/// open channels (by position) it names, if any. The floods of a mesh share a few paths, so
/// most copies are answered by one comparison, instead of a byte-by-byte check of the path and
/// a search of the channels' names (in the forwarding bench, about 4% of a relayed frame). It
/// lives inline in the node, beside the state every frame reads, so the comparison reads no
/// other memory (the channels' names are on the heap, cold in a large simulation). Only short
/// paths are remembered; the channels' positions are forgotten whenever the channels change.
#[derive(Debug, Default)]
pub(crate) struct PathMemo {
    /// Bytes of `path` in use; 0 when nothing is remembered.
    len: u8,
    path: [u8; PathMemo::MAX],
    /// The channel's position, `NONE` when the path names no open channel.
    channel: u32,
}

const NONE: u32 = u32::MAX;

impl PathMemo {
    /// The longest path remembered.
    const MAX: usize = 19;

    /// The position in `channels` (the open channels, sorted by their bytes) of the channel
    /// `path` names, if any; an error if `path` is not a valid path. A path that names an open
    /// channel was checked when the channel was opened; any other is checked here.
    pub(crate) fn channel_of(&mut self, path: &[u8], channels: &[ChannelPath]) -> Result<Option<usize>, UriError> {
        if let Some(channel) = self.get(path) {
            return Ok(channel);
        }
        let channel = position(channels, path);
        if channel.is_none() {
            validate_path_bytes(path)?;
        }
        self.remember(path, channel);
        Ok(channel)
    }

    /// For the remembered path: `Some(channel)` (the position of the open channel it names, or
    /// `None`). `None` when `path` is not the one remembered.
    #[inline]
    fn get(&self, path: &[u8]) -> Option<Option<usize>> {
        // Nothing remembered: `len` is 0, and the empty path is never remembered (it is not
        // valid).
        let len = usize::from(self.len);
        if len == 0 || self.path.get(..len) != Some(path) {
            return None;
        }
        Some((self.channel != NONE).then_some(self.channel as usize))
    }

    /// Remembers `path`, found valid, as naming the channel at position `channel` (if any).
    /// A path too long to keep is not remembered.
    fn remember(&mut self, path: &[u8], channel: Option<usize>) {
        let channel = match channel.map(u32::try_from) {
            None => NONE,
            Some(Ok(c)) if c != NONE => c,
            Some(_) => return, // more channels than a u32 counts: not worth remembering
        };
        let Some(slot) = self.path.get_mut(..path.len()) else { return };
        slot.copy_from_slice(path);
        self.len = path.len() as u8;
        self.channel = channel;
    }

    /// Forgets the remembered path (the channels' positions changed).
    pub(crate) fn forget(&mut self) {
        self.len = 0;
    }
}

/// The position of the channel named `bytes` in `channels` (sorted by their bytes). A sorted
/// list, not a map: a node usually has a few channels, scanned (a map's lookup cost about 3% of
/// a relayed frame), and one with many is searched by halving.
fn position(channels: &[ChannelPath], bytes: &[u8]) -> Option<usize> {
    if channels.len() <= 8 {
        return channels.iter().position(|c| c.as_bytes() == bytes);
    }
    channels.binary_search_by(|c| c.as_bytes().cmp(bytes)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_open_channels_checks_other_paths_and_remembers_the_last() {
        let few: Vec<ChannelPath> = ["/a", "/chat"].iter().map(|p| ChannelPath::new(p).unwrap()).collect();
        let mut many: Vec<ChannelPath> = (0..20).map(|i| ChannelPath::new(&format!("/t/{i:02}")).unwrap()).collect();
        many.sort();
        for channels in [&few, &many] {
            let mut m = PathMemo::default();
            for (at, c) in channels.iter().enumerate() {
                assert_eq!(m.channel_of(c.as_bytes(), channels), Ok(Some(at)));
                assert_eq!(m.get(c.as_bytes()), Some(Some(at)), "remembered");
                assert_eq!(m.channel_of(c.as_bytes(), channels), Ok(Some(at)));
            }
            assert_eq!(m.channel_of(b"/none", channels), Ok(None));
            assert_eq!(m.get(b"/none"), Some(None), "remembered");
            assert_eq!(m.channel_of(b"/none", channels), Ok(None));
            // An invalid path is refused every time, and the last valid one stays remembered.
            for bad in [&b"none"[..], b"/none?x", b""] {
                assert!(m.channel_of(bad, channels).is_err());
                assert!(m.channel_of(bad, channels).is_err(), "an invalid path was remembered");
                assert_eq!(m.get(b"/none"), Some(None));
            }
        }
    }

    #[test]
    fn answers_only_for_the_path_remembered_until_forgotten() {
        let mut m = PathMemo::default();
        assert_eq!(m.get(b""), None, "nothing remembered answers nothing, not even the empty path");
        assert_eq!(m.get(b"/chat"), None);
        m.remember(b"/chat", Some(2));
        assert_eq!(m.get(b"/chat"), Some(Some(2)));
        assert_eq!(m.get(b"/cha"), None, "a prefix is another path");
        assert_eq!(m.get(b"/chat/x"), None);
        assert_eq!(m.get(b""), None);
        m.remember(b"/news", None);
        assert_eq!(m.get(b"/news"), Some(None), "a valid path of no open channel");
        assert_eq!(m.get(b"/chat"), None, "one path at a time");
        m.forget();
        assert_eq!(m.get(b"/news"), None);
        // Too long to keep: not remembered, and the memo stays as it was.
        m.remember(b"/chat", Some(0));
        m.remember(&[b'a'; PathMemo::MAX + 1], Some(1));
        assert_eq!(m.get(&[b'a'; PathMemo::MAX + 1]), None);
        assert_eq!(m.get(b"/chat"), Some(Some(0)));
        // The longest kept.
        let longest = [b'/'; PathMemo::MAX];
        m.remember(&longest, Some(3));
        assert_eq!(m.get(&longest), Some(Some(3)));
    }
}
