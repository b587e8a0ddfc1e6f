//! Decoding the bodies of node-to-node messages (`dkv_node::transport::wire`): each request as the
//! answering node's handler decodes it (`Kind::from_u8` on the frame's kind, then postcard), and
//! each answer as the calling node decodes it.
//!
//! Input: one byte that picks the message (a request kind `1..=0x7f` as on the wire, or an answer
//! at `0x80 + n`, `n` below 15), then the postcard body. Asserts, beyond "no panic":
//! * a kind byte is read as the `Kind` whose byte it is;
//! * a body that decodes re-encodes to bytes that decode again, to a value that encodes the same
//!   (postcard accepts some non-canonical inputs, so the first encoding may differ from the input,
//!   but it must then be stable);
//! * a batch of writes read in place (`WritesRequest::decode_shared`, as a replica reads it) is
//!   the batch the owned decoding reads, and refused where that one is;
//! * entries that arrive in a batch stay within the batch limit when a node splits them again
//!   (`split_batches`), and none is lost.

#![no_main]

use dkv_node::transport::wire::{self, Kind};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    if pick < 0x80 {
        request(pick, body);
    } else {
        answer(pick - 0x80, body);
    }
});

/// As `transport::internal::Internal::handle` decodes a request frame. The match names every
/// kind, so a new message does not build here until it is fuzzed too.
fn request(kind: u8, body: &[u8]) {
    let Some(k) = Kind::from_u8(kind) else { return };
    assert_eq!(k as u8, kind, "byte {kind} read as kind {k:?}, which is another byte");
    match k {
        Kind::Apply => {
            if let Some(req) = round_trip::<wire::ApplyRequest>(body) {
                batches(req.entries);
            }
        }
        Kind::Writes => {
            // The replica reads this kind in place (`decode_shared`): it must read what the
            // owned decoding reads, and refuse what it refuses.
            let shared = wire::WritesRequest::decode_shared(&bytes::Bytes::copy_from_slice(body));
            match round_trip::<wire::WritesRequest>(body) {
                Some(req) => {
                    let shared = shared.expect("read in place, refused where decoded whole");
                    assert_eq!(shared.epoch, req.epoch);
                    assert_eq!(shared.entries.len(), req.entries.len());
                    for (a, b) in shared.entries.iter().zip(&req.entries) {
                        assert_eq!((&a.key, &a.entry), (&b.key, &b.entry));
                    }
                    batches(req.entries);
                }
                None => assert!(shared.is_err(), "read in place, refused when decoded whole"),
            }
        }
        Kind::Read => drop(round_trip::<wire::ReadRequest>(body)),
        Kind::Reads | Kind::Heads => drop(round_trip::<wire::ReadsRequest>(body)),
        Kind::Range => {
            if let Some(req) = round_trip::<wire::RangeRequest>(body) {
                if let Some(after) = req.after.clone() {
                    assert_eq!(wire::cursor_to_wire(wire::cursor_from_wire(after.clone())), after);
                }
            }
        }
        Kind::SyncSummary | Kind::SyncSummaryTracked => drop(round_trip::<wire::SyncSummary>(body)),
        Kind::SyncSummarySettled => drop(round_trip::<wire::SyncSummarySettled>(body)),
        Kind::SyncBucket => {
            if let Some(req) = round_trip::<wire::SyncBucket>(body) {
                batches(req.entries);
            }
        }
        Kind::SyncVersions => drop(round_trip::<wire::SyncVersions>(body)),
        Kind::Refresh => drop(round_trip::<wire::RefreshRequest>(body)),
        Kind::Forward | Kind::ForwardHead => drop(round_trip::<wire::ForwardRequest>(body)),
        Kind::Clock => drop(round_trip::<wire::ClockRequest>(body)),
        Kind::Lease => drop(round_trip::<wire::LeaseRequest>(body)),
        Kind::KeepHints => drop(round_trip::<wire::KeepHintsRequest>(body)),
        Kind::Settings => drop(round_trip::<wire::SettingsRequest>(body)),
        Kind::Scan => drop(round_trip::<wire::ScanRequest>(body)),
        Kind::View => drop(round_trip::<wire::ViewRequest>(body)),
    }
}

/// As `transport::peer::Peers::call` decodes the answer to each request.
fn answer(which: u8, body: &[u8]) {
    match which % 16 {
        0 => drop(round_trip::<wire::ApplyReply>(body)),
        1 => drop(round_trip::<wire::ReadResponse>(body)),
        2 => {
            if let Some(page) = round_trip::<wire::RangePage>(body) {
                batches(page.entries);
            }
        }
        3 => drop(round_trip::<wire::SyncDiff>(body)),
        4 => {
            if let Some(reply) = round_trip::<wire::SyncBucketReply>(body) {
                batches(reply.entries);
            }
        }
        5 => drop(round_trip::<wire::ClockReply>(body)),
        6 => drop(round_trip::<wire::ForwardReply>(body)),
        7 => drop(round_trip::<wire::ScanReply>(body)),
        8 => {
            if let Some(reply) = round_trip::<wire::WritesReply>(body) {
                for outcome in reply.outcomes {
                    let _ = outcome.into_result();
                }
            }
        }
        9 => drop(round_trip::<wire::ReadsReply>(body)),
        10 => {
            if let Some(reply) = round_trip::<wire::SyncVersionsReply>(body) {
                batches(reply.entries);
            }
        }
        11 => drop(round_trip::<wire::ReadsReply<wire::Head>>(body)),
        12 => drop(round_trip::<wire::ForwardReply<wire::Length>>(body)),
        13 => drop(round_trip::<wire::LeaseReply>(body)),
        // A peer's view (`Kind::View`), in the seed's compact encoding, checked as the asker
        // checks it before it takes it.
        14 => {
            let view = dkv_membership::compact::decode::<dkv_membership::View>(body, dkv_node::transport::seed::VERSION);
            if let Ok(view) = view {
                let _ = dkv_membership::registry::validate_view(&view);
            }
        }
        _ => drop(round_trip::<()>(body)),
    }
}

fn round_trip<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let value: T = postcard::from_bytes(body).ok()?;
    let first = postcard::to_allocvec(&value).expect("encoding a decoded message");
    let again: T = postcard::from_bytes(&first).expect("a decoded message re-encodes to a valid one");
    let second = postcard::to_allocvec(&again).expect("encoding a decoded message");
    assert_eq!(first, second, "re-encoding is not stable");
    Some(value)
}

fn batches(entries: Vec<wire::KeyEntry>) {
    let count = entries.len();
    let split = wire::split_batches(entries);
    assert_eq!(split.iter().map(Vec::len).sum::<usize>(), count, "split_batches lost or made entries");
    for batch in &split {
        assert!(!batch.is_empty(), "an empty batch");
        let bytes: usize = batch.iter().map(|kv| kv.key.len() + kv.entry.value_len()).sum();
        assert!(batch.len() == 1 || bytes <= wire::BATCH_BYTES, "a batch of {bytes} bytes over the limit");
    }
}
