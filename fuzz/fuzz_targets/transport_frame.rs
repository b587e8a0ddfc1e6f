//! The internal transport's frame decoder (`dkv_transport::frame::Codec`), as a peer's bytes reach
//! it, and the transport's own postcard bodies: the hello a server reads first and the refusal a
//! client reads in an answer.
//!
//! Input: one byte that picks the frame limit, then the bytes of the connection. Asserts, beyond
//! "no panic":
//! * a length prefix that the decoder waits on never claims more than the limit (it would reserve
//!   that much), and a decoded frame is never over it;
//! * every decoded frame re-encodes to exactly the bytes it was decoded from, and the writer's
//!   check of the same limit (`frame::encode_within`) lets it through: reader and writer agree on
//!   the limit;
//! * the bytes split anywhere give the same frames and the same final error as all at once;
//! * a hello or refusal body that decodes re-encodes to bytes that decode to the same value.

#![no_main]

use bytes::BytesMut;
use dkv_transport::frame::{self, Codec, Frame, Hello, Refusal, HEADER};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    error: bool,
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    // Below the header, the header alone, small, the server's limit before the hello, large.
    let max = [0, HEADER, 64, 64 * 1024, 1 << 20][pick as usize % 5];
    let step = 1 + (pick / 5) as usize % 8;

    let whole = decode(stream, max, stream.len().max(1));
    let pieces = decode(stream, max, step);
    assert_eq!(whole, pieces, "bytes in pieces decoded differently from all at once");

    let mut consumed = 0;
    for f in &whole.frames {
        assert!(HEADER + f.body.len() <= max, "frame of {} bytes over the limit {max}", HEADER + f.body.len());
        let mut again = BytesMut::new();
        frame::encode_within(&mut again, max, f.kind, f.id, |b| b.extend_from_slice(&f.body))
            .expect("a frame the reader accepts is one the writer sends");
        assert_eq!(&again[..], &stream[consumed..consumed + again.len()], "frame re-encoded to other bytes");
        consumed += again.len();
        bodies(f);
    }
});

/// Decode every frame of `stream`, arriving `step` bytes at a time.
fn decode(stream: &[u8], max: usize, step: usize) -> Outcome {
    let mut codec = Codec { max };
    let mut buf = BytesMut::new();
    let mut out = Outcome { frames: Vec::new(), error: false };
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => out.frames.push(f),
                Ok(None) => {
                    if buf.len() >= 4 {
                        let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
                        assert!(len <= max, "waiting for a frame of {len} bytes, over the limit {max}");
                    }
                    break;
                }
                Err(_) => {
                    out.error = true;
                    return out;
                }
            }
        }
    }
    out
}

/// The bodies the transport itself decodes: what the server reads first, and what a client reads
/// in a refused answer.
fn bodies(f: &Frame) {
    match f.kind {
        frame::KIND_HELLO => round_trip::<Hello>(&f.body),
        frame::KIND_REFUSED => round_trip::<Refusal>(&f.body),
        _ => {}
    }
}

fn round_trip<T>(body: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = postcard::from_bytes::<T>(body) else { return };
    let mut encoded = BytesMut::new();
    frame::put_postcard(&mut encoded, &value);
    let again: T = postcard::from_bytes(&encoded).expect("a decoded body re-encodes to a valid one");
    assert_eq!(again, value, "body changed on a round trip");
}
