//! The versioned wire format: every byte on every connection travels in a frame.
//!
//! A frame is a 16-byte header followed by `len` payload bytes:
//!
//! ```text
//! magic "TH" | version u8 | kind u8 | len u32 LE | tag u64 LE | payload[len]
//! ```
//!
//! `tag` is zero on control frames; on data frames it names the collective and the chunk
//! (`seq << 32 | index`), so a receiver can tell a stray frame from the one it expects.
//! The decoder checks magic, version, kind and the length limit before it reads a payload,
//! and it grows the payload buffer only as bytes arrive: a peer cannot make us allocate a
//! length it merely claims.

use std::fmt;
use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

pub const MAGIC: [u8; 2] = *b"TH";
/// Bumped on any incompatible change; a peer speaking another version is dropped.
pub const PROTOCOL_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 16;
/// The largest data frame: far above any chunk the schedules send.
pub const MAX_DATA_FRAME: usize = 64 << 20;
/// The largest control frame (views, votes with small payloads).
pub const MAX_CONTROL_FRAME: usize = 16 << 20;
/// The largest handshake frame.
pub const MAX_AUTH_FRAME: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Auth = 1,
    Control = 2,
    Data = 3,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Result<Self, ProtocolError> {
        match byte {
            1 => Ok(Self::Auth),
            2 => Ok(Self::Control),
            3 => Ok(Self::Data),
            other => Err(ProtocolError::UnknownKind(other)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub len: u32,
    pub tag: u64,
}

impl FrameHeader {
    pub fn new(kind: FrameKind, len: usize, tag: u64) -> Self {
        // Callers never build frames above MAX_DATA_FRAME, which fits in u32.
        Self {
            kind,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            tag,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = PROTOCOL_VERSION;
        out[3] = self.kind as u8;
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..16].copy_from_slice(&self.tag.to_le_bytes());
        out
    }

    /// Parse and validate a header; `max_len` is the largest payload this connection accepts.
    pub fn decode(bytes: &[u8; HEADER_LEN], max_len: usize) -> Result<Self, ProtocolError> {
        if bytes[0..2] != MAGIC {
            return Err(ProtocolError::BadMagic([bytes[0], bytes[1]]));
        }
        if bytes[2] != PROTOCOL_VERSION {
            return Err(ProtocolError::UnknownVersion(bytes[2]));
        }
        let kind = FrameKind::from_byte(bytes[3])?;
        let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if len as usize > max_len {
            return Err(ProtocolError::Oversized {
                len: len as usize,
                max: max_len,
            });
        }
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&bytes[8..16]);
        Ok(Self {
            kind,
            len,
            tag: u64::from_le_bytes(tag),
        })
    }
}

/// `seq << 32 | index`: the tag of a data frame.
pub fn data_tag(seq: u64, index: u32) -> u64 {
    (seq << 32) | u64::from(index)
}

/// Why a connection was dropped. Each is logged with the peer's address.
#[derive(Debug)]
pub enum ProtocolError {
    Io(io::Error),
    BadMagic([u8; 2]),
    UnknownVersion(u8),
    UnknownKind(u8),
    Oversized {
        len: usize,
        max: usize,
    },
    /// The stream ended inside a frame.
    Truncated {
        expected: usize,
        got: usize,
    },
    /// A frame of the wrong kind, or a payload that does not decode.
    Malformed(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::BadMagic(m) => write!(f, "not a thrifty frame (magic {m:02x?})"),
            Self::UnknownVersion(v) => write!(
                f,
                "unknown protocol version {v} (this side speaks {PROTOCOL_VERSION})"
            ),
            Self::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            Self::Oversized { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            Self::Truncated { expected, got } => {
                write!(f, "stream ended after {got} of {expected} bytes")
            }
            Self::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<io::Error> for ProtocolError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl ProtocolError {
    /// Whether this is a timeout of the underlying socket rather than bad data.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Read exactly `buf.len()` bytes, reporting a clean EOF as `Truncated`.
fn read_exact_counted(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtocolError> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(ProtocolError::Truncated {
                    expected: buf.len(),
                    got,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Read one frame, checking its header against `max_len` before reading the payload.
pub fn read_frame(
    reader: &mut impl Read,
    max_len: usize,
) -> Result<(FrameHeader, Vec<u8>), ProtocolError> {
    let mut head = [0u8; HEADER_LEN];
    read_exact_counted(reader, &mut head)?;
    let header = FrameHeader::decode(&head, max_len)?;
    let len = header.len as usize;
    // Grown as data arrives (read_to_end over take), never preallocated to the claimed size.
    let mut payload = Vec::new();
    let got = reader.take(len as u64).read_to_end(&mut payload)?;
    if got != len {
        return Err(ProtocolError::Truncated { expected: len, got });
    }
    Ok((header, payload))
}

/// Write one frame (header and payload) and flush it.
pub fn write_frame(
    writer: &mut impl Write,
    kind: FrameKind,
    tag: u64,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    let header = FrameHeader::new(kind, payload.len(), tag).encode();
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    writer.write_all(&frame)?;
    writer.flush()?;
    Ok(())
}

pub fn encode_message<T: Serialize>(message: &T) -> Vec<u8> {
    // Serialising our own enums into a Vec cannot fail.
    postcard::to_allocvec(message).unwrap_or_default()
}

pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    postcard::from_bytes(payload).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// Send one control message.
pub fn send_control<T: Serialize>(
    writer: &mut impl Write,
    message: &T,
) -> Result<(), ProtocolError> {
    write_frame(writer, FrameKind::Control, 0, &encode_message(message))
}

/// Receive one control message; any other frame kind is malformed.
pub fn recv_control<T: DeserializeOwned>(reader: &mut impl Read) -> Result<T, ProtocolError> {
    let (header, payload) = read_frame(reader, MAX_CONTROL_FRAME)?;
    if header.kind != FrameKind::Control {
        return Err(ProtocolError::Malformed(format!(
            "expected a control frame, got {:?}",
            header.kind
        )));
    }
    decode_message(&payload)
}
