//! The frame format, pure: encoding into a buffer and decoding from one, with no I/O.
//!
//! ```text
//! u32 length (little-endian, of everything after it) | u8 format version | u8 kind | u64 id | body
//! ```
//!
//! The length comes first so a reader knows how much to wait for, and it is checked against the
//! limit before a byte of the body is buffered: a peer that announces 4 GiB gets its connection
//! closed, not 4 GiB of memory. The writer checks the same limit ([`encode_within`]), so a
//! message too large for the peer fails alone instead of costing the connection and every call
//! on it. Every frame carries the format version, so a node of another
//! release is refused on its first frame instead of being misread. `kind` says what the body is
//! (a request kind of the application, or one of the response and handshake kinds below); `id`
//! matches an answer to its request, so answers may come back in any order.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// The first bytes a client sends on a new connection. The leading zero byte is what no HTTP
/// request starts with, so a node can serve this transport and HTTP on one port.
pub const MAGIC: [u8; 4] = *b"\0DKV";

/// Format of frames and handshake; bump on any incompatible change, of the frames or of what the
/// application sends in them (2: dkv's entries carry an expiry deadline; 3: a replica's
/// answer to a client write says whether it counts towards W).
pub const VERSION: u8 = 3;

/// Bytes after the length prefix that every frame has: version, kind, id.
pub const HEADER: usize = 1 + 1 + 8;

/// Request kinds of the application are `1..=MAX_REQUEST_KIND`.
pub const MAX_REQUEST_KIND: u8 = 0x7f;
/// The answer to a request: its body is the application's response.
pub const KIND_OK: u8 = 0x80;
/// The request was refused: the body is a [`Refusal`].
pub const KIND_REFUSED: u8 = 0x81;
/// First frame of a connection, from the client: a [`Hello`].
pub const KIND_HELLO: u8 = 0xf0;
/// The server accepted the hello.
pub const KIND_WELCOME: u8 = 0xf1;
/// The server refused the hello; the body is the reason, in UTF-8. The connection then closes.
pub const KIND_GOODBYE: u8 = 0xf2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub id: u64,
    pub body: Bytes,
}

/// A refused request: a status in HTTP's numbering (so callers keep one vocabulary: 400 bad
/// message, 409 stale epoch, ...) and one line that says why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal { status, message: message.into() }
    }
}

/// What a client presents before its first request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    pub version: u8,
    pub cluster: String,
    pub secret: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("frame in format version {0}, this node speaks {VERSION}: run one dkv release across the cluster")]
    Version(u8),
    #[error(
        "the peer answered in TLS: it runs with --tls-cert and this node without; give every member the same TLS \
         flags, --tls-cert, --tls-key and --tls-peer-ca"
    )]
    Tls,
}

/// Largest length the prefix can say.
pub const MAX_LEN: usize = u32::MAX as usize;

/// Append one frame to `out`; `body` writes the body (so it goes straight into the buffer).
/// A frame longer than `max` (after its length prefix; at most [`MAX_LEN`]) is not appended:
/// `out` is left as it was.
pub fn encode_within(
    out: &mut BytesMut,
    max: usize,
    kind: u8,
    id: u64,
    body: impl FnOnce(&mut BytesMut),
) -> Result<(), FrameError> {
    let start = out.len();
    out.put_u32_le(0);
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u64_le(id);
    body(out);
    match length_prefix(out.len() - start - 4, max) {
        Ok(prefix) => {
            out[start..start + 4].copy_from_slice(&prefix.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// The prefix of a frame of `len` bytes, if it is within `max` and what 4 bytes can say.
fn length_prefix(len: usize, max: usize) -> Result<u32, FrameError> {
    match u32::try_from(len) {
        Ok(prefix) if len <= max => Ok(prefix),
        _ => Err(FrameError::TooLarge { len, max: max.min(MAX_LEN) }),
    }
}

/// [`encode_within`] for frames known to be small (handshakes, refusals, tests).
pub fn encode(out: &mut BytesMut, kind: u8, id: u64, body: impl FnOnce(&mut BytesMut)) {
    encode_within(out, MAX_LEN, kind, id, body).expect("a handshake or refusal frame is far below 4 GiB");
}

/// Append `value` to `out` in postcard.
pub fn put_postcard<T: serde::Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    postcard::serialize_with_flavor(value, Append(out)).expect("encoding into memory cannot fail");
}

/// Postcard's output straight into a buffer. Its `io::Write` output (`to_io`) writes each byte of
/// a varint with a `write_all` of its own: encoding an anti-entropy summary (1 024 varints) that
/// way was a twentieth of a 200-node cluster's start-up CPU.
struct Append<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.put_u8(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Splits frames off a read buffer; refuses one over `max` bytes before buffering it.
#[derive(Clone, Debug)]
pub struct Codec {
    pub max: usize,
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        if src.len() >= 5 && src[4] != VERSION && is_tls_record(&src[..5]) {
            return Err(invalid(FrameError::Tls)); // its "length" may be over `max`
        }
        let len = u32::from_le_bytes(src[..4].try_into().expect("4 bytes")) as usize;
        if len > self.max {
            return Err(invalid(FrameError::TooLarge { len, max: self.max }));
        }
        if len < HEADER {
            return Err(invalid(FrameError::Short(len)));
        }
        if src.len() >= 5 && src[4] != VERSION {
            return Err(invalid(FrameError::Version(src[4])));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(5);
        let kind = src.get_u8();
        let id = src.get_u64_le();
        let body = src.split_to(len - HEADER).freeze();
        Ok(Some(Frame { kind, id, body }))
    }
}

/// Whether the start of what a peer sent reads as a TLS record (a handshake or an alert, TLS 1.0
/// to 1.3) rather than a frame: a node in the clear that called one with TLS read the alert it
/// got back as "a frame in format version 2" and blamed the release (found by a hunt,
/// 2026-12-07). Asked only of what is not a frame of this version already.
fn is_tls_record(head: &[u8]) -> bool {
    matches!(head, [0x15 | 0x16, 0x03, 0x01..=0x04, ..])
}

fn invalid(e: FrameError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Frame>, String> {
        let mut buf = BytesMut::from(bytes);
        let mut codec = Codec { max };
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut buf = BytesMut::new();
        encode(&mut buf, 3, 7, |b| b.extend_from_slice(b"hello"));
        encode(&mut buf, KIND_OK, u64::MAX, |_| {});
        let all = buf.freeze();
        let want = vec![
            Frame { kind: 3, id: 7, body: Bytes::from_static(b"hello") },
            Frame { kind: KIND_OK, id: u64::MAX, body: Bytes::new() },
        ];
        assert_eq!(decode_all(&all, 1 << 20).unwrap(), want);
        for cut in 0..all.len() {
            let mut codec = Codec { max: 1 << 20 };
            let mut buf = BytesMut::from(&all[..cut]);
            let mut got = Vec::new();
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&all[cut..]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_length_alone() {
        // Only the 4-byte length has arrived: that is enough to refuse, and nothing is reserved.
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let cap = buf.capacity();
        let e = Codec { max: 1024 }.decode(&mut buf).unwrap_err();
        assert!(e.to_string().contains("over the limit of 1024 bytes"), "{e}");
        assert_eq!(buf.capacity(), cap, "nothing allocated for the announced body");
    }

    #[test]
    fn a_tls_record_is_named_as_one() {
        // A TLS 1.2 alert record (what a TLS server answers a plain hello with), and a handshake.
        for record in [&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32][..], &[0x16, 0x03, 0x01, 0x00, 0xf4, 0x01]] {
            let e = decode_all(record, 1024).unwrap_err();
            assert!(e.contains("the peer answered in TLS") && e.contains("--tls-cert"), "{e}");
        }
    }

    #[test]
    fn short_frames_and_other_versions_are_refused() {
        let e = decode_all(&[3, 0, 0, 0, VERSION, 1, 0], 1024).unwrap_err();
        assert!(e.contains("shorter than its header"), "{e}");
        let mut buf = BytesMut::new();
        encode(&mut buf, 1, 1, |_| {});
        buf[4] = VERSION + 1;
        let e = decode_all(&buf, 1024).unwrap_err();
        assert!(e.contains("run one dkv release"), "{e}");
    }

    #[test]
    fn a_frame_over_the_limit_is_not_appended() {
        let mut buf = BytesMut::new();
        encode(&mut buf, 1, 1, |b| b.extend_from_slice(b"first"));
        let before = buf.clone();
        let e = encode_within(&mut buf, 100, 2, 2, |b| b.extend_from_slice(&[0; 200])).unwrap_err();
        assert_eq!(e, FrameError::TooLarge { len: HEADER + 200, max: 100 });
        assert_eq!(buf, before, "the buffer is as it was");
        encode_within(&mut buf, HEADER + 200, 2, 2, |b| b.extend_from_slice(&[0; 200])).unwrap();
        assert_eq!(decode_all(&buf, 1024).unwrap().len(), 2);
        // Past what the 4-byte prefix can say: refused whatever the limit, not cut to 32 bits.
        assert_eq!(length_prefix(MAX_LEN, usize::MAX), Ok(u32::MAX));
        assert_eq!(
            length_prefix(MAX_LEN + 1, usize::MAX),
            Err(FrameError::TooLarge { len: MAX_LEN + 1, max: MAX_LEN })
        );
        assert_eq!(length_prefix(1 << 33, usize::MAX), Err(FrameError::TooLarge { len: 1 << 33, max: MAX_LEN }));
    }

    #[test]
    fn postcard_bodies_go_straight_into_the_buffer() {
        let mut buf = BytesMut::new();
        let hello = Hello { version: VERSION, cluster: "c".into(), secret: None };
        encode(&mut buf, KIND_HELLO, 0, |b| put_postcard(b, &hello));
        let f = decode_all(&buf, 1024).unwrap().remove(0);
        assert_eq!(postcard::from_bytes::<Hello>(&f.body).unwrap(), hello);
    }
}
