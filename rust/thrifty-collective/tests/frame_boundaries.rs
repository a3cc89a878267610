//! Frames at the lengths around every limit the protocol has (the handshake, control and
//! data frame limits, and `u32`): a header is accepted up to its limit and refused one byte
//! past it, before any payload is read; payloads round-trip at every length near the limits;
//! a stream cut anywhere is reported as truncated with the exact counts.

use std::io::{Cursor, Read};

use proptest::prelude::*;
use thrifty_collective::frame::{
    data_tag, read_frame, write_frame, FrameHeader, FrameKind, ProtocolError, HEADER_LEN,
    MAX_AUTH_FRAME, MAX_CONTROL_FRAME, MAX_DATA_FRAME,
};

const LIMITS: [usize; 3] = [MAX_AUTH_FRAME, MAX_CONTROL_FRAME, MAX_DATA_FRAME];

const KINDS: [FrameKind; 3] = [FrameKind::Auth, FrameKind::Control, FrameKind::Data];

/// A reader of `len` zero bytes that counts what was taken, so a test can tell whether a
/// payload was read without holding it.
struct Zeros {
    left: usize,
    taken: usize,
}

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left);
        buf[..n].fill(0);
        self.left -= n;
        self.taken += n;
        Ok(n)
    }
}

/// A header announcing `len` bytes followed by `available` payload bytes.
fn frame_reader(
    kind: FrameKind,
    len: usize,
    available: usize,
) -> std::io::Chain<Cursor<Vec<u8>>, Zeros> {
    let header = FrameHeader::new(kind, len, 7).encode().to_vec();
    Cursor::new(header).chain(Zeros {
        left: available,
        taken: 0,
    })
}

/// Lengths within two of a limit, of the `u32` range, or of a small power of two.
fn boundary_len() -> impl Strategy<Value = usize> {
    let anchors = vec![
        0usize,
        1,
        255,
        MAX_AUTH_FRAME,
        1 << 16,
        1 << 20,
        MAX_CONTROL_FRAME,
        MAX_DATA_FRAME,
        u32::MAX as usize,
        1 << 32,
        usize::MAX - 2,
    ];
    (proptest::sample::select(anchors), -2isize..=2).prop_map(|(a, d)| a.saturating_add_signed(d))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every header decodes back to itself under a limit it fits and is refused as oversized
    /// under one it does not; lengths beyond `u32` saturate rather than wrap to a small size.
    #[test]
    fn headers_at_every_limit(
        len in boundary_len(),
        kind in proptest::sample::select(KINDS.to_vec()),
        tag in any::<u64>(),
        limit in prop_oneof![proptest::sample::select(LIMITS.to_vec()), boundary_len()],
    ) {
        let header = FrameHeader::new(kind, len, tag);
        prop_assert_eq!(header.len as usize, len.min(u32::MAX as usize));
        let encoded = header.encode();
        prop_assert_eq!(encoded.len(), HEADER_LEN);
        match FrameHeader::decode(&encoded, limit) {
            Ok(decoded) => {
                prop_assert!(header.len as usize <= limit);
                prop_assert_eq!(decoded, header);
            }
            Err(ProtocolError::Oversized { len: claimed, max }) => {
                prop_assert!(header.len as usize > limit);
                prop_assert_eq!((claimed, max), (header.len as usize, limit));
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
        }
    }

    /// A frame at most `limit` long is read whole; one byte longer is refused having read
    /// only the header.
    #[test]
    fn payloads_around_the_limit(
        limit in proptest::sample::select(vec![MAX_AUTH_FRAME, 1000, 4096, 65_536]),
        delta in -3isize..=3,
        kind in proptest::sample::select(KINDS.to_vec()),
    ) {
        let len = limit.saturating_add_signed(delta);
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let mut stream = Vec::new();
        write_frame(&mut stream, kind, data_tag(3, 9), &payload).unwrap();
        prop_assert_eq!(stream.len(), HEADER_LEN + len);
        let mut reader = Cursor::new(stream);
        match read_frame(&mut reader, limit) {
            Ok((header, body)) => {
                prop_assert!(len <= limit);
                prop_assert_eq!(header.kind, kind);
                prop_assert_eq!(header.tag, data_tag(3, 9));
                prop_assert_eq!(body, payload);
            }
            Err(ProtocolError::Oversized { .. }) => {
                prop_assert!(len > limit);
                prop_assert_eq!(reader.position() as usize, HEADER_LEN);
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
        }
    }

    /// A stream cut anywhere inside a frame (header or payload) is truncated, with the
    /// counts of the part that was cut.
    #[test]
    fn a_stream_cut_anywhere_is_truncated(
        len in prop_oneof![0usize..600, (MAX_AUTH_FRAME - 2)..=(MAX_AUTH_FRAME + 2)],
        cut in any::<prop::sample::Index>(),
    ) {
        let payload = vec![0x5au8; len];
        let mut stream = Vec::new();
        write_frame(&mut stream, FrameKind::Control, 0, &payload).unwrap();
        let at = cut.index(stream.len());
        match read_frame(&mut Cursor::new(&stream[..at]), MAX_CONTROL_FRAME) {
            Err(ProtocolError::Truncated { expected, got }) => {
                if at < HEADER_LEN {
                    prop_assert_eq!((expected, got), (HEADER_LEN, at));
                } else {
                    prop_assert_eq!((expected, got), (len, at - HEADER_LEN));
                }
            }
            other => return Err(TestCaseError::fail(format!("cut at {at} of {}: {other:?}", stream.len()))),
        }
    }
}

#[test]
fn frames_at_the_real_limits() {
    for (kind, limit) in KINDS.into_iter().zip(LIMITS) {
        // At the limit: the whole payload is read.
        let mut reader = frame_reader(kind, limit, limit);
        let (header, body) = read_frame(&mut reader, limit).expect("a frame at the limit");
        assert_eq!(
            (header.kind, header.len as usize, body.len()),
            (kind, limit, limit)
        );
        // One byte past it: refused before a payload byte is taken.
        let mut reader = frame_reader(kind, limit + 1, limit + 1);
        assert!(matches!(
            read_frame(&mut reader, limit),
            Err(ProtocolError::Oversized { len, max }) if len == limit + 1 && max == limit
        ));
        assert_eq!(reader.into_inner().1.taken, 0, "{kind:?}");
        // A payload one byte short of what the header claims is truncated.
        let mut reader = frame_reader(kind, limit, limit - 1);
        assert!(matches!(
            read_frame(&mut reader, limit),
            Err(ProtocolError::Truncated { expected, got }) if expected == limit && got == limit - 1
        ));
    }
    // A length that does not fit the header's u32 saturates, so no limit accepts it.
    let header = FrameHeader::new(FrameKind::Data, (u32::MAX as usize) + 1, 0);
    assert_eq!(header.len, u32::MAX);
    assert!(matches!(
        FrameHeader::decode(&header.encode(), MAX_DATA_FRAME),
        Err(ProtocolError::Oversized { .. })
    ));
}

#[test]
fn data_tags_keep_the_sequence_and_the_index_apart() {
    for seq in [0u64, 1, u64::from(u32::MAX)] {
        for index in [0u32, 1, u32::MAX] {
            let tag = data_tag(seq, index);
            assert_eq!(tag >> 32, seq);
            assert_eq!(tag as u32, index);
        }
    }
}
