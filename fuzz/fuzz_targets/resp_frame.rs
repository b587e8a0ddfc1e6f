//! The RESP2 command parser (`dkv_node::front::resp::frame::parse`), as a client's bytes reach it.
//!
//! Input: one byte that picks the [`Limits`], then the bytes of the connection. Asserts, beyond
//! "no panic":
//! * a command is only taken when it is complete: `Ok(None)` consumes nothing, `Ok(Some)`
//!   consumes at least one byte, and no command breaks the limits;
//! * every command re-encodes (as a RESP array of bulk strings) to bytes that parse to the same
//!   command, consuming exactly them;
//! * the bytes split anywhere give the same commands and the same final error as all at once, the
//!   way they arrive from TCP in pieces: an error is never premature, a prefix never differs.

#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use dkv_node::front::resp::frame::{parse, Args, Limits};
use libfuzzer_sys::fuzz_target;

/// What one parse of a buffer came to: the commands, then an error or a wait for more bytes.
#[derive(Debug, PartialEq)]
struct Outcome {
    commands: Vec<Args>,
    error: bool,
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    let limits = limits(pick);

    let whole = all_at_once(stream, &limits);
    let pieces = in_pieces(stream, &limits, 1 + (pick >> 6) as usize);
    assert_eq!(whole, pieces, "bytes in pieces parsed differently from all at once");

    for command in &whole.commands {
        assert!(command.len() <= limits.max_args, "{} args over max_args {}", command.len(), limits.max_args);
        re_encodes(command, &limits);
    }
});

/// Small limits reach every limit check with small inputs; the large ones are the server's.
fn limits(pick: u8) -> Limits {
    let of = |bits: u8, values: [usize; 4]| values[bits as usize & 3];
    Limits {
        max_bulk: of(pick, [0, 1, 16, 1 << 20]),
        max_args: of(pick >> 2, [0, 1, 4, 1 << 20]),
        max_inline: of(pick >> 4, [0, 1, 32, 64 * 1024]),
    }
}

fn all_at_once(stream: &[u8], limits: &Limits) -> Outcome {
    let mut buf = BytesMut::from(stream);
    let mut out = Outcome { commands: Vec::new(), error: false };
    loop {
        let before = buf.clone();
        match parse(&mut buf, limits) {
            Ok(Some(command)) => {
                assert!(buf.len() < before.len(), "a command that consumed nothing");
                assert!(before.ends_with(&buf), "parse changed bytes it did not consume");
                out.commands.push(command);
            }
            Ok(None) => {
                assert_eq!(buf, before, "waiting for more bytes, yet consumed some");
                return out;
            }
            Err(_) => {
                out.error = true;
                return out;
            }
        }
    }
}

/// The same bytes arriving `step` bytes at a time (then the rest), parsed after each arrival.
fn in_pieces(stream: &[u8], limits: &Limits, step: usize) -> Outcome {
    let mut buf = BytesMut::new();
    let mut out = Outcome { commands: Vec::new(), error: false };
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match parse(&mut buf, limits) {
                Ok(Some(command)) => out.commands.push(command),
                Ok(None) => break,
                Err(_) => {
                    out.error = true;
                    return out;
                }
            }
        }
    }
    out
}

/// `command` as a client library would send it parses back to itself. An inline command's words
/// may be longer than `max_bulk` (they are bounded by `max_inline`), so the bulk limit is raised
/// to cover them.
fn re_encodes(command: &[Bytes], limits: &Limits) {
    let mut encoded = BytesMut::new();
    encoded.put_slice(format!("*{}\r\n", command.len()).as_bytes());
    for arg in command {
        encoded.put_slice(format!("${}\r\n", arg.len()).as_bytes());
        encoded.put_slice(arg);
        encoded.put_slice(b"\r\n");
    }
    let limits = Limits { max_bulk: limits.max_bulk.max(limits.max_inline), ..*limits };
    let again = parse(&mut encoded, &limits).expect("a parsed command re-encodes to a valid frame");
    assert_eq!(again.as_deref(), Some(command), "re-encoded command parsed to another one");
    assert!(encoded.is_empty(), "re-encoded command left {} bytes", encoded.len());
}
