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
///
/// Input in a buffer of its own ([`push_owned`](Self::push_owned)) is cut into buffers of
/// their own: its whole floods come out as [`Assembled::Owned`], length prefix included, so
/// the node can rewrite a flood's hops left in place and forward it whole.
#[derive(Debug, Default)]
pub struct FrameAssembler {
    /// A whole frame handed back with [`unread`](Self::unread): the next one returned.
    held: Option<Assembled>,
    partial: BytesMut,
    rest: Bytes,
    /// Owned input, after `rest`. While it holds bytes, `rest` holds at most the end of the
    /// frame in `partial`, so `owned` starts on a frame boundary.
    owned: BytesMut,
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
    /// A whole flood (length prefix, type byte and body) from owned input: a buffer of its
    /// own, which may be rewritten in place.
    Owned(BytesMut),
}

impl Assembled {
    /// The frame in one buffer (a copy for a [`Flood`](Self::Flood)).
    pub fn into_frame(self) -> Bytes {
        match self {
            Assembled::Frame(f) => f,
            Assembled::Flood(f) => f.to_frame(),
            Assembled::Owned(mut f) => {
                f.advance(LEN_PREFIX);
                f.freeze()
            }
        }
    }

    /// The frame's length (type byte included, length prefix not).
    pub fn frame_len(&self) -> usize {
        match self {
            Assembled::Frame(f) => f.len(),
            Assembled::Flood(f) => f.frame_len(),
            Assembled::Owned(f) => f.len() - LEN_PREFIX,
        }
    }
}

/// Received bytes as the adapter handed them over.
#[derive(Debug)]
pub enum Received {
    /// Shared with the adapter (or other readers): used as they are.
    Shared(Bytes),
    /// The node's own: frames in them may be rewritten in place.
    Owned(BytesMut),
}

impl core::ops::Deref for Received {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Received::Shared(b) => b,
            Received::Owned(b) => b,
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
        if !self.owned.is_empty() {
            // Not drained (see below): the owned input joins as shared input, in order.
            let owned = self.owned.split().freeze();
            self.push(owned);
        }
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

    /// Adds received bytes, shared or owned.
    pub fn push_received(&mut self, data: Received) {
        match data {
            Received::Shared(b) => self.push(b),
            Received::Owned(b) => self.push_owned(b),
        }
    }

    /// Adds received bytes in a buffer of their own, which the assembler may cut and rewrite
    /// (the adapter keeps no handle to them). Call [`next_frame`](Self::next_frame) until it
    /// returns `Ok(None)` before pushing more.
    pub fn push_owned(&mut self, mut data: BytesMut) {
        if !self.rest.is_empty() || !self.owned.is_empty() {
            // Only if the caller pushes without draining: joined as shared input, in order.
            self.push(data.freeze());
            return;
        }
        if !self.partial.is_empty() {
            // The first bytes end a frame begun in an earlier read: they go the shared way
            // (reassembly, or a relay's split flood), and the frames after them stay owned.
            let end = self.partial_frame_end(&data).unwrap_or(usize::MAX).min(data.len());
            self.rest = data.split_to(end).freeze();
        }
        self.owned = data;
    }

    /// How many bytes at the start of `next` end the frame in `partial`; `None` while its
    /// length prefix is incomplete even with them.
    fn partial_frame_end(&self, next: &[u8]) -> Option<usize> {
        let mut prefix = [0u8; LEN_PREFIX];
        let have = self.partial.len().min(LEN_PREFIX);
        prefix[..have].copy_from_slice(&self.partial[..have]);
        prefix[have..].copy_from_slice(next.get(..LEN_PREFIX - have)?);
        let frame_end = LEN_PREFIX.saturating_add(u32::from_be_bytes(prefix) as usize);
        Some(frame_end.saturating_sub(self.partial.len()))
    }

    /// The next whole frame from owned input, `Ok(None)` if it holds no whole frame.
    fn next_owned(&mut self, max_frame: usize) -> Result<Option<Assembled>, DecodeError> {
        let Some(len) = wire::announced_len(&self.owned, max_frame)? else { return Ok(None) };
        if self.owned.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        let mut frame = self.owned.split_to(LEN_PREFIX + len);
        if len >= 2 && wire::is_flood_type(frame[LEN_PREFIX]) {
            return Ok(Some(Assembled::Owned(frame)));
        }
        frame.advance(LEN_PREFIX);
        Ok(Some(Assembled::Frame(frame.freeze())))
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self, max_frame: usize) -> Result<Option<Assembled>, DecodeError> {
        if let Some(frame) = self.held.take() {
            return Ok(Some(frame));
        }
        if self.partial.is_empty() && self.rest.is_empty() && !self.owned.is_empty() {
            if let Some(frame) = self.next_owned(max_frame)? {
                return Ok(Some(frame));
            }
            // A frame that does not end in this input: the shared way from here.
            self.rest = self.owned.split().freeze();
        }
        if self.partial.is_empty() {
            if let Some(frame) = wire::split_frame(&mut self.rest, max_frame)? {
                return Ok(Some(Assembled::Frame(frame)));
            }
            if self.rest.is_empty() {
                return Ok(None);
            }
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
                    return Ok(Some(Assembled::Flood(FloodFrame::from_parts(first, body))));
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
            let Some(after) = self.partial_frame_end(buf).and_then(|end| buf.get(end..)) else { return };
            buf = after;
        }
        // Owned input starts on a frame boundary, where the shared input ends.
        if peek_frames_in(buf, &mut f) {
            peek_frames_in(&self.owned, &mut f);
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
        if self.partial.is_empty() && self.held.is_none() && self.owned.is_empty() {
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
                    joined.extend_from_slice(f.body());
                }
                Assembled::Owned(f) => joined.extend_from_slice(&f[LEN_PREFIX..]),
            }
        }
        joined.extend_from_slice(&self.partial);
        self.partial.clear();
        joined.extend_from_slice(&self.rest);
        self.rest = Bytes::new();
        joined.extend_from_slice(&self.owned);
        self.owned.clear();
        joined.freeze()
    }

    /// Whether bytes are held beyond the end of the next frame: only then can a look ahead find
    /// more than one frame. While the next frame's length is not known yet (its first bytes
    /// came in a read too short to hold it), any input after those bytes counts as beyond it.
    pub fn beyond_next_frame(&self) -> bool {
        // Input after the partial frame, if any.
        let input = self.rest.len() + self.owned.len();
        if self.held.is_some() {
            return !self.partial.is_empty() || input > 0;
        }
        // The next frame: the partial one, else the first of the input (owned input is only
        // read once `rest` is empty).
        let (start, have) = if !self.partial.is_empty() {
            (&self.partial[..], self.partial.len())
        } else if !self.rest.is_empty() {
            (&self.rest[..], 0)
        } else {
            (&self.owned[..], 0)
        };
        let Some(prefix) = start.get(..LEN_PREFIX) else { return !self.partial.is_empty() && input > 0 };
        let need = LEN_PREFIX.saturating_add(u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize);
        // Bytes of the input that belong to the next frame.
        input > need.saturating_sub(have)
    }

    /// Bytes held (partial frame and unparsed input).
    pub fn buffered(&self) -> usize {
        self.held.as_ref().map_or(0, |f| LEN_PREFIX + f.frame_len())
            + self.partial.len()
            + self.rest.len()
            + self.owned.len()
    }
}

/// Calls `f` with each whole frame (type byte and body) at the start of `buf`, one after the
/// other; true if `buf` ends where a frame ends (then the input after it starts a frame).
fn peek_frames_in(mut buf: &[u8], f: &mut impl FnMut(&[u8])) -> bool {
    while let Some(prefix) = buf.get(..LEN_PREFIX) {
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let Some(frame) = buf.get(LEN_PREFIX..LEN_PREFIX.saturating_add(len)).filter(|_| len > 0) else {
            return false;
        };
        f(frame);
        buf = &buf[LEN_PREFIX + len..];
    }
    buf.is_empty()
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
            assert_eq!(f.body().as_ptr(), body[at + FLOOD_SPLIT - cut..].as_ptr());
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

    /// Drains `a`, each frame as it would be on the wire (length prefix included), and whether
    /// it came in a buffer of its own.
    fn drain_wire(a: &mut FrameAssembler) -> Vec<(Bytes, bool)> {
        let mut got = Vec::new();
        while let Some(f) = a.next_frame(1 << 20).unwrap() {
            let owned = matches!(f, Assembled::Owned(_));
            let mut wire = BytesMut::from(&u32::try_from(f.frame_len()).unwrap().to_be_bytes()[..]);
            wire.extend_from_slice(&f.into_frame());
            got.push((wire.freeze(), owned));
        }
        got
    }

    #[test]
    fn owned_input_gives_whole_floods_in_buffers_of_their_own() {
        let (all, flood, at) = ping_flood_ping();
        let data = BytesMut::from(&all[..]);
        let base = data.as_ptr() as usize;
        let mut a = FrameAssembler::default();
        a.push_owned(data);
        assert!(a.beyond_next_frame());
        assert_eq!(a.buffered(), all.len());
        let mut peeked = Vec::new();
        a.peek_whole_frames(|f| peeked.push(f.len()));
        assert_eq!(peeked, vec![at - LEN_PREFIX, flood.len(), at - LEN_PREFIX]);
        let ping = a.next_frame(1 << 20).unwrap().unwrap();
        assert_eq!(ping, Assembled::Frame(all.slice(LEN_PREFIX..at)));
        let Some(Assembled::Owned(w)) = a.next_frame(1 << 20).unwrap() else { panic!("the flood is not owned") };
        // The flood with its length prefix, where it was in the pushed buffer: not a copy.
        assert_eq!(w.as_ptr() as usize, base + at);
        assert_eq!(w[LEN_PREFIX..], flood[..]);
        assert_eq!(drain(&mut a), vec![Frame::Ping(2)]);
        assert_eq!((a.buffered(), a.copied_bytes()), (0, 0));
    }

    #[test]
    fn any_split_of_owned_and_shared_input_reassembles_in_order() {
        let (all, flood, at) = ping_flood_ping();
        let want: Vec<Bytes> = vec![
            all.slice(..at),
            all.slice(at..at + LEN_PREFIX + flood.len()),
            all.slice(at + LEN_PREFIX + flood.len()..),
        ];
        for cut in (0..=all.len()).step_by(7).chain(20..40) {
            for cut2 in (cut..=all.len()).step_by(97).chain([all.len()]) {
                // Each of the three reads shared or owned: all eight ways.
                for kinds in 0..8u8 {
                    let mut a = FrameAssembler::default();
                    let mut got = Vec::new();
                    let pieces = [all.slice(..cut), all.slice(cut..cut2), all.slice(cut2..)];
                    for (n, piece) in pieces.into_iter().enumerate() {
                        let owned = kinds >> n & 1 == 1;
                        if owned {
                            a.push_owned(BytesMut::from(&piece[..]));
                        } else {
                            a.push(piece);
                        }
                        // The look ahead sees the whole frames the drain returns, but for one that
                        // ends a frame begun in an earlier read.
                        let mut peeked = Vec::new();
                        a.peek_whole_frames(|f| peeked.push(Bytes::copy_from_slice(f)));
                        let beyond = a.beyond_next_frame();
                        let frames = drain_wire(&mut a);
                        assert!(frames.len() - peeked.len() <= 1, "cuts at {cut},{cut2}, kinds {kinds}");
                        for (p, (w, _)) in peeked.iter().rev().zip(frames.iter().rev()) {
                            assert_eq!(p[..], w[LEN_PREFIX..]);
                        }
                        assert!(beyond || frames.len() <= 1, "cuts at {cut},{cut2}, kinds {kinds}");
                        // The flood comes out owned exactly when it lay whole in an owned read.
                        let (start, end) = [(0, cut), (cut, cut2), (cut2, all.len())][n];
                        let flood_end = at + LEN_PREFIX + flood.len();
                        let whole_in_owned = owned && start <= at && flood_end <= end;
                        let owned_out = frames.iter().filter(|(_, o)| *o).map(|(w, _)| w.len()).collect::<Vec<_>>();
                        let want_owned = if whole_in_owned { vec![LEN_PREFIX + flood.len()] } else { vec![] };
                        assert_eq!(owned_out, want_owned, "cuts at {cut},{cut2}, kinds {kinds}");
                        got.extend(frames.into_iter().map(|(w, _)| w));
                    }
                    assert_eq!(got, want, "cuts at {cut},{cut2}, kinds {kinds}");
                    assert_eq!(a.buffered(), 0);
                }
            }
        }
    }

    #[test]
    fn owned_input_not_yet_taken_is_given_up_in_order() {
        let (all, _, at) = ping_flood_ping();
        // After the first Ping: the flood (owned) and the last Ping are given up as they came.
        let mut a = FrameAssembler::default();
        a.push_owned(BytesMut::from(&all[..]));
        let _ = a.next_frame(1 << 20).unwrap().unwrap();
        assert_eq!(a.take_unparsed(), all.slice(at..));
        // The owned flood handed back (held), then given up: its prefix is not doubled.
        let mut a = FrameAssembler::default();
        a.push_owned(BytesMut::from(&all[..]));
        let _ = a.next_frame(1 << 20).unwrap().unwrap();
        let flood = a.next_frame(1 << 20).unwrap().unwrap();
        assert!(matches!(flood, Assembled::Owned(_)));
        let held = a.buffered();
        a.unread(flood);
        assert_eq!(a.buffered(), held + LEN_PREFIX + ping_flood_ping().1.len());
        assert_eq!(a.take_unparsed(), all.slice(at..));
        // Part of a frame shared, the rest of the stream owned and not yet taken.
        let mut a = FrameAssembler::default();
        a.push(all.slice(..at + 10));
        assert_eq!(drain(&mut a), vec![Frame::Ping(1)]);
        a.push_owned(BytesMut::from(&all[at + 10..]));
        assert_eq!(a.take_unparsed(), all.slice(at..));
        assert_eq!(a.buffered(), 0);
    }

    #[test]
    fn owned_input_pushed_before_the_last_was_drained_keeps_its_place() {
        let (all, _, at) = ping_flood_ping();
        let mut a = FrameAssembler::default();
        a.push_owned(BytesMut::from(&all[..at]));
        a.push_owned(BytesMut::from(&all[at..]));
        let got: Vec<Bytes> = drain_wire(&mut a).into_iter().map(|(w, _)| w).collect();
        assert_eq!(got.concat(), all[..]);
        let mut a = FrameAssembler::default();
        a.push_owned(BytesMut::from(&all[..at + 3]));
        a.push(all.slice(at + 3..));
        let got: Vec<Bytes> = drain_wire(&mut a).into_iter().map(|(w, _)| w).collect();
        assert_eq!(got.concat(), all[..]);
    }
}
