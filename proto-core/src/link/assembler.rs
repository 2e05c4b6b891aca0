use bytes::{Buf, Bytes, BytesMut};

use crate::wire::{self, DecodeError, FloodFrame, LEN_PREFIX};

/// Cuts a received byte stream into frames.
///
/// Whole frames inside one received `Bytes` are sliced out of it without copying; a frame split
/// across two reads is copied into a reassembly buffer, which never grows beyond one frame (the
/// length prefix is checked before the buffer is reserved). One split is not copied: a flood
/// whose first two bytes (type, hops left) end a read and whose rest comes whole in the next.
/// That is how a relay writes a flood (its forward head, then the body it received), so a
/// transport that hands a write's chunks on as separate reads passes floods through without a
/// copy.
#[derive(Debug, Default)]
pub struct FrameAssembler {
    /// A whole frame handed back with [`unread`](Self::unread): the next one returned.
    held: Option<Assembled>,
    partial: BytesMut,
    rest: Bytes,
    copied: u64,
}

/// A frame out of the assembler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// A whole frame (type byte and body) in one buffer.
    Frame(Bytes),
    /// A flood whose first two bytes came in an earlier read than its body, which was not
    /// copied.
    Flood(FloodFrame),
}

impl Assembled {
    /// The frame in one buffer (a copy for a [`Flood`](Self::Flood)).
    pub fn into_frame(self) -> Bytes {
        match self {
            Assembled::Frame(f) => f,
            Assembled::Flood(f) => f.to_frame(),
        }
    }

    /// The frame's length (type byte included, length prefix not).
    pub fn frame_len(&self) -> usize {
        match self {
            Assembled::Frame(f) => f.len(),
            Assembled::Flood(f) => f.frame_len(),
        }
    }
}

/// The prefix plus the type byte: enough to check a frame's announced length.
const HEADER: usize = LEN_PREFIX + 1;
/// The prefix and a flood's first two bytes: what a relay writes before the body (its forward
/// head).
const FLOOD_SPLIT: usize = wire::FORWARD_HEAD_LEN;

impl FrameAssembler {
    /// Adds received bytes. Call [`next_frame`](Self::next_frame) until it returns `Ok(None)`
    /// before pushing more.
    pub fn push(&mut self, data: Bytes) {
        if self.rest.is_empty() {
            self.rest = data;
        } else {
            // Only reachable if the caller pushes without draining; keep every byte in order.
            let mut joined = BytesMut::with_capacity(self.rest.len() + data.len());
            joined.extend_from_slice(&self.rest);
            joined.extend_from_slice(&data);
            self.copied += joined.len() as u64;
            self.rest = joined.freeze();
        }
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    #[inline]
    pub fn next_frame(&mut self, max_frame: usize) -> Result<Option<Assembled>, DecodeError> {
        if let Some(frame) = self.held.take() {
            return Ok(Some(frame));
        }
        // The common cases, once per frame of a read: a whole frame in the input, or the end
        // of a read that ended with a frame.
        if self.partial.is_empty() {
            if let Some(frame) = wire::split_frame(&mut self.rest, max_frame)? {
                return Ok(Some(Assembled::Frame(frame)));
            }
            if self.rest.is_empty() {
                return Ok(None);
            }
        }
        self.next_partial_frame(max_frame)
    }

    /// [`next_frame`](Self::next_frame) when the next frame does not lie whole in the input:
    /// it is completed from the input, or waits for more.
    fn next_partial_frame(&mut self, max_frame: usize) -> Result<Option<Assembled>, DecodeError> {
        if self.partial.is_empty() {
            // A read of exactly a flood's first bytes, as a relay writes them before the body:
            // `split_frame` checked the length and the type, so keep them and wait for the body.
            if self.rest.len() == FLOOD_SPLIT && wire::is_flood_type(self.rest[LEN_PREFIX]) {
                let head = core::mem::take(&mut self.rest);
                self.partial.extend_from_slice(&head);
                self.copied += FLOOD_SPLIT as u64;
                return Ok(None);
            }
        }
        // Reassembly: first the header, then exactly the rest of one frame.
        if self.partial.len() < HEADER {
            let n = (HEADER - self.partial.len()).min(self.rest.len());
            self.copy_from_rest(n);
            if self.partial.len() < HEADER {
                return Ok(None);
            }
        }
        let need = wire::announced_len(&self.partial, max_frame)?.map_or(HEADER, |len| LEN_PREFIX + len);
        let ty = self.partial[LEN_PREFIX];
        if need > FLOOD_SPLIT && wire::is_flood_type(ty) {
            // Up to the hops left, without reserving the frame: if the read ends there, the
            // body may come whole in the next one.
            if self.partial.len() < FLOOD_SPLIT {
                self.copy_from_rest((FLOOD_SPLIT - self.partial.len()).min(self.rest.len()));
            }
            if self.partial.len() == FLOOD_SPLIT {
                if self.rest.len() >= need - FLOOD_SPLIT {
                    let first = [self.partial[LEN_PREFIX], self.partial[LEN_PREFIX + 1]];
                    self.partial.clear();
                    let body = self.rest.split_to(need - FLOOD_SPLIT);
                    return Ok(Some(Assembled::Flood(FloodFrame { first, body })));
                }
                if self.rest.is_empty() {
                    return Ok(None);
                }
            }
        }
        if self.partial.capacity() < need {
            self.partial.reserve(need - self.partial.len());
        }
        let n = (need - self.partial.len()).min(self.rest.len());
        self.copy_from_rest(n);
        if self.partial.len() == need {
            Ok(Some(Assembled::Frame(self.take_partial())))
        } else {
            Ok(None)
        }
    }

    /// Calls `f` with each whole frame (type byte and body) waiting in the unparsed input,
    /// without taking any: a read-only look ahead, so the node can prepare for a batch (warm
    /// caches) before it processes the frames one by one. Stops at the first incomplete or
    /// malformed frame, which [`next_frame`](Self::next_frame) will handle.
    pub fn peek_whole_frames(&self, mut f: impl FnMut(&[u8])) {
        let mut buf = &self.rest[..];
        if !self.partial.is_empty() {
            // A frame begun in an earlier read (the usual case when reads do not end on frame
            // boundaries): skip what completes it, and look at the whole frames after it.
            let mut prefix = [0u8; LEN_PREFIX];
            let have = self.partial.len().min(LEN_PREFIX);
            prefix[..have].copy_from_slice(&self.partial[..have]);
            let Some(more) = buf.get(..LEN_PREFIX - have) else { return };
            prefix[have..].copy_from_slice(more);
            let frame_end = LEN_PREFIX.saturating_add(u32::from_be_bytes(prefix) as usize);
            let Some(after) = buf.get(frame_end.saturating_sub(self.partial.len())..) else { return };
            buf = after;
        }
        while let Some(prefix) = buf.get(..LEN_PREFIX) {
            let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
            let Some(frame) = buf.get(LEN_PREFIX..LEN_PREFIX.saturating_add(len)).filter(|_| len > 0) else {
                return;
            };
            f(frame);
            buf = &buf[LEN_PREFIX + len..];
        }
    }

    /// Hands back the frame [`next_frame`](Self::next_frame) just returned, to be returned
    /// again first (the node holds a flood its neighbors have no room for yet).
    pub fn unread(&mut self, frame: Assembled) {
        debug_assert!(self.held.is_none(), "one frame is handed back at a time");
        self.held = Some(frame);
    }

    fn copy_from_rest(&mut self, n: usize) {
        // Copied and advanced past, not split off: no reference count for a few header bytes.
        self.partial.extend_from_slice(&self.rest[..n]);
        self.rest.advance(n);
        self.copied += n as u64;
    }

    fn take_partial(&mut self) -> Bytes {
        let mut frame = self.partial.split().freeze();
        let _ = frame.split_to(LEN_PREFIX);
        frame
    }

    /// Bytes copied for reassembly so far (frames split across reads); zero means every frame
    /// was handed on without copying.
    pub fn copied_bytes(&self) -> u64 {
        self.copied
    }

    /// Takes every byte held but not yet returned as a frame, in order (when the stream
    /// switches to TLS after the Hello, the rest belongs to the TLS session).
    pub fn take_unparsed(&mut self) -> Bytes {
        if self.partial.is_empty() && self.held.is_none() {
            return core::mem::take(&mut self.rest);
        }
        let mut joined = BytesMut::new();
        if let Some(frame) = self.held.take() {
            // As it was on the wire: its length prefix, then the frame.
            joined.extend_from_slice(&u32::try_from(frame.frame_len()).unwrap_or(u32::MAX).to_be_bytes());
            match frame {
                Assembled::Frame(f) => joined.extend_from_slice(&f),
                Assembled::Flood(f) => {
                    joined.extend_from_slice(&f.first);
                    joined.extend_from_slice(&f.body);
                }
            }
        }
        joined.extend_from_slice(&self.partial);
        self.partial.clear();
        joined.extend_from_slice(&self.rest);
        self.rest = Bytes::new();
        joined.freeze()
    }

    /// Whether bytes are held beyond the end of the next frame: only then can a look ahead find
    /// more than one frame. While the next frame's length is not known yet (its first bytes
    /// came in a read too short to hold it), any input after those bytes counts as beyond it.
    pub fn beyond_next_frame(&self) -> bool {
        if self.held.is_some() {
            return !self.partial.is_empty() || !self.rest.is_empty();
        }
        // The next frame: the partial one, else the first in `rest`.
        let (start, have) =
            if self.partial.is_empty() { (&self.rest[..], 0) } else { (&self.partial[..], self.partial.len()) };
        let Some(prefix) = start.get(..LEN_PREFIX) else { return !self.partial.is_empty() && !self.rest.is_empty() };
        let need = LEN_PREFIX.saturating_add(u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize);
        // Bytes of `rest` that belong to the next frame.
        let in_rest = need.saturating_sub(have);
        self.rest.len() > in_rest
    }

    /// Bytes held (partial frame and unparsed input).
    pub fn buffered(&self) -> usize {
        self.held.as_ref().map_or(0, |f| LEN_PREFIX + f.frame_len()) + self.partial.len() + self.rest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_control, Frame};

    fn frames(n: u64) -> Bytes {
        let mut out = BytesMut::new();
        for i in 0..n {
            encode_control(&Frame::Ping(i), &mut out);
        }
        out.freeze()
    }

    #[test]
    fn knows_whether_bytes_are_held_beyond_the_next_frame() {
        let two = frames(2);
        let one_len = two.len() / 2;
        let mut a = FrameAssembler::default();
        assert!(!a.beyond_next_frame(), "nothing held");
        a.push(two.slice(..one_len));
        assert!(!a.beyond_next_frame(), "exactly one frame");
        a.push(two.slice(one_len..one_len + 1));
        assert!(a.beyond_next_frame(), "one frame and a byte of the next");
        let first = a.next_frame(1 << 20).unwrap().unwrap();
        assert!(!a.beyond_next_frame(), "a byte of a frame, its length unknown, is not beyond it");
        a.unread(first);
        assert!(a.beyond_next_frame(), "a frame handed back, and a byte after it");
        assert!(a.next_frame(1 << 20).unwrap().is_some());
        // The next frame begun in an earlier read (its first bytes kept aside).
        let mut a = FrameAssembler::default();
        a.push(two.slice(..3));
        assert!(a.next_frame(1 << 20).unwrap().is_none());
        assert!(!a.beyond_next_frame(), "three bytes of a frame and nothing after them");
        a.push(two.slice(3..6));
        assert!(a.beyond_next_frame(), "length not known yet: more input counts as beyond");
        assert!(a.next_frame(1 << 20).unwrap().is_none());
        assert!(!a.beyond_next_frame(), "length known, the frame not complete");
        a.push(two.slice(6..one_len));
        assert!(!a.beyond_next_frame(), "completed exactly");
        a.push(two.slice(one_len..));
        assert!(a.beyond_next_frame(), "and the whole next frame");
        assert_eq!(drain(&mut a).len(), 2);
        assert!(!a.beyond_next_frame());
    }

    fn drain(a: &mut FrameAssembler) -> Vec<Frame> {
        let mut got = Vec::new();
        while let Some(f) = a.next_frame(1 << 20).unwrap() {
            got.push(wire::decode_frame(&f.into_frame()).unwrap());
        }
        got
    }

    #[test]
    fn whole_frames_are_not_copied() {
        let mut a = FrameAssembler::default();
        a.push(frames(5));
        assert_eq!(drain(&mut a).len(), 5);
        assert_eq!(a.copied_bytes(), 0);
    }

    #[test]
    fn peeking_sees_the_whole_frames_and_takes_nothing() {
        let all = frames(3);
        let mut a = FrameAssembler::default();
        // Two whole frames and part of the third.
        a.push(all.slice(..all.len() - 2));
        let mut peeked = Vec::new();
        a.peek_whole_frames(|f| peeked.push(wire::decode_frame(&Bytes::copy_from_slice(f)).unwrap()));
        assert_eq!(peeked, vec![Frame::Ping(0), Frame::Ping(1)]);
        assert_eq!(drain(&mut a), peeked);
        // A partial frame in reassembly: nothing to peek at until more arrives.
        a.peek_whole_frames(|_| panic!("peeked at a partial frame"));
        a.push(all.slice(all.len() - 2..));
        assert_eq!(drain(&mut a), vec![Frame::Ping(2)]);
        // The read that completes a partial frame: the whole frames after it are seen, whether
        // the partial frame's length prefix had arrived whole or not.
        let more = frames(4);
        // Cuts inside the first frame's length prefix (1, 3), right after it (4), in its body (6).
        for cut in [1, 3, 4, 6] {
            let mut a = FrameAssembler::default();
            a.push(more.slice(..cut));
            assert!(drain(&mut a).is_empty());
            a.push(more.slice(cut..));
            let mut peeked = Vec::new();
            a.peek_whole_frames(|f| peeked.push(wire::decode_frame(&Bytes::copy_from_slice(f)).unwrap()));
            assert_eq!(peeked, vec![Frame::Ping(1), Frame::Ping(2), Frame::Ping(3)], "cut at {cut}");
            assert_eq!(drain(&mut a).len(), 4);
        }
        // A zero length stops the walk (next_frame reports it).
        a.push(Bytes::from_static(&[0, 0, 0, 0, 9]));
        a.peek_whole_frames(|_| panic!("peeked past an empty frame"));
    }

    #[test]
    fn any_split_reassembles_in_order() {
        let all = frames(4);
        for cut in 0..=all.len() {
            for cut2 in cut..=all.len() {
                let mut a = FrameAssembler::default();
                let mut got = Vec::new();
                for piece in [all.slice(..cut), all.slice(cut..cut2), all.slice(cut2..)] {
                    a.push(piece);
                    got.extend(drain(&mut a));
                }
                let want: Vec<Frame> = (0..4).map(Frame::Ping).collect();
                assert_eq!(got, want, "cuts at {cut},{cut2}");
                assert_eq!(a.buffered(), 0);
            }
        }
    }

    #[test]
    fn byte_by_byte_works() {
        let all = frames(3);
        let mut a = FrameAssembler::default();
        let mut got = Vec::new();
        for i in 0..all.len() {
            a.push(all.slice(i..i + 1));
            got.extend(drain(&mut a));
        }
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn hostile_length_fails_before_buffering() {
        let mut a = FrameAssembler::default();
        a.push(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
        assert!(matches!(a.next_frame(1000), Err(DecodeError::FrameTooLarge { .. })));
        let mut a = FrameAssembler::default();
        a.push(Bytes::from_static(&[0, 0, 0x10]));
        assert_eq!(a.next_frame(1000), Ok(None));
        a.push(Bytes::from_static(&[0x00, 0x07]));
        assert!(matches!(a.next_frame(1 << 20), Err(DecodeError::FrameTooLarge { max: 512, .. })));
    }

    #[test]
    fn an_unread_frame_comes_back_first_and_counts_as_held() {
        let wire_bytes = frames(3);
        let mut a = FrameAssembler::default();
        a.push(wire_bytes.clone());
        let first = a.next_frame(1 << 20).unwrap().unwrap();
        assert!(matches!(first, Assembled::Frame(_)));
        let held = a.buffered();
        a.unread(first.clone());
        assert_eq!(a.buffered(), held + LEN_PREFIX + first.frame_len());
        assert_eq!(a.next_frame(1 << 20).unwrap().unwrap(), first);
        // Handed back again, everything not yet processed is given up as it was on the wire.
        a.unread(first);
        assert_eq!(a.take_unparsed(), wire_bytes);
        assert_eq!(a.buffered(), 0);
    }

    /// A Ping, a 1 KiB flood and a Ping, as on the wire; the flood's frame alone; and where the
    /// flood starts on the wire (its length prefix).
    fn ping_flood_ping() -> (Bytes, Bytes, usize) {
        let mut out = BytesMut::new();
        encode_control(&Frame::Ping(1), &mut out);
        let at = out.len();
        wire::encode_flood_header(7, 9, &[3; 16], 42, b"/chat", 1024, &mut out);
        out.extend_from_slice(&[0xA5; 1024]);
        let end = out.len();
        encode_control(&Frame::Ping(2), &mut out);
        let all = out.freeze();
        let flood = all.slice(at + LEN_PREFIX..end);
        (all, flood, at)
    }

    #[test]
    fn a_flood_whose_body_follows_its_first_two_bytes_is_not_copied() {
        let (all, flood, at) = ping_flood_ping();
        // A relay's write: the Ping, then the forward head (prefix, type, hops left) ending the
        // read, then the body (and the next Ping) in the next. Cuts inside the head work too.
        for cut in [at + 1, at + LEN_PREFIX, at + LEN_PREFIX + 1, at + FLOOD_SPLIT] {
            let mut a = FrameAssembler::default();
            a.push(all.slice(..cut));
            assert_eq!(a.next_frame(1 << 20).unwrap().unwrap().into_frame(), all.slice(4..at));
            assert_eq!(a.next_frame(1 << 20), Ok(None), "cut at {cut}");
            let body = all.slice(cut..);
            a.push(body.clone());
            let Some(Assembled::Flood(f)) = a.next_frame(1 << 20).unwrap() else { panic!("cut at {cut}: copied") };
            assert_eq!(f.to_frame(), flood);
            // The body is the pushed buffer itself, from the hop limit on.
            assert_eq!(f.body.as_ptr(), body[at + FLOOD_SPLIT - cut..].as_ptr());
            assert_eq!(a.copied_bytes(), FLOOD_SPLIT as u64);
            assert_eq!(drain(&mut a), vec![Frame::Ping(2)]);
            assert_eq!(a.buffered(), 0);
        }
    }

    #[test]
    fn a_flood_split_elsewhere_is_reassembled_whole() {
        let (all, flood, at) = ping_flood_ping();
        // Cut in the body: the head and the first part are copied, the frame comes out whole.
        let mut a = FrameAssembler::default();
        a.push(all.slice(..at + 100));
        assert_eq!(drain(&mut a), vec![Frame::Ping(1)]);
        a.push(all.slice(at + 100..));
        assert_eq!(a.next_frame(1 << 20).unwrap(), Some(Assembled::Frame(flood.clone())));
        // The head alone, then the body in two reads: nothing is lost on the way.
        let mut a = FrameAssembler::default();
        a.push(all.slice(..at + FLOOD_SPLIT));
        assert_eq!(drain(&mut a), vec![Frame::Ping(1)]);
        a.push(all.slice(at + FLOOD_SPLIT..at + 500));
        assert_eq!(a.next_frame(1 << 20), Ok(None));
        a.push(all.slice(at + 500..));
        assert_eq!(a.next_frame(1 << 20).unwrap(), Some(Assembled::Frame(flood)));
        assert_eq!(drain(&mut a), vec![Frame::Ping(2)]);
    }

    #[test]
    fn any_split_of_a_flood_between_pings_reassembles_in_order() {
        let (all, flood, _) = ping_flood_ping();
        let want = |a: &mut FrameAssembler| {
            let mut got = Vec::new();
            while let Some(f) = a.next_frame(1 << 20).unwrap() {
                got.push(f.into_frame());
            }
            got
        };
        for cut in (0..=all.len()).step_by(7).chain(20..40) {
            for cut2 in (cut..=all.len()).step_by(97).chain([all.len()]) {
                let mut a = FrameAssembler::default();
                let mut got = Vec::new();
                for piece in [all.slice(..cut), all.slice(cut..cut2), all.slice(cut2..)] {
                    a.push(piece);
                    got.extend(want(&mut a));
                }
                assert_eq!(got.len(), 3, "cuts at {cut},{cut2}");
                assert_eq!(got[1], flood, "cuts at {cut},{cut2}");
                assert_eq!(a.buffered(), 0);
            }
        }
    }

    #[test]
    fn an_unread_split_flood_is_given_up_as_it_was_on_the_wire() {
        let (all, flood, at) = ping_flood_ping();
        let mut a = FrameAssembler::default();
        a.push(all.slice(..at + FLOOD_SPLIT));
        assert_eq!(drain(&mut a), vec![Frame::Ping(1)]);
        a.push(all.slice(at + FLOOD_SPLIT..));
        let f = a.next_frame(1 << 20).unwrap().unwrap();
        assert!(matches!(f, Assembled::Flood(_)));
        let held = a.buffered();
        a.unread(f.clone());
        assert_eq!(a.buffered(), held + LEN_PREFIX + flood.len());
        assert_eq!(a.next_frame(1 << 20).unwrap(), Some(f.clone()));
        a.unread(f);
        assert_eq!(a.take_unparsed(), all.slice(at..));
    }
}
