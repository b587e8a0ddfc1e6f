//! Reading saved hints (a chunk of `hints.log`, or the `hints.bin` of the releases before), of
//! this release's format or of the one before.
//!
//! Each is a `wire::encode`d list of [`SavedHint`]s, its first byte the wire format. Format 1
//! (the release before expiry) held entries without a deadline; postcard is not self-describing,
//! so those bytes are read with the old shape of an entry and given no deadline. A node upgraded
//! with hints pending thus still delivers them.

use bytes::Bytes;
use dkv_storage::{Entry, Version};
use serde::Deserialize;

use super::SavedHint;
use crate::transport::wire::{self, KeyEntry, WireError};

/// An entry as wire format 1 encoded it.
#[derive(Deserialize)]
struct EntryV1 {
    version: Version,
    value: Option<Bytes>,
}

#[derive(Deserialize)]
struct KeyEntryV1 {
    key: Bytes,
    entry: EntryV1,
}

#[derive(Deserialize)]
struct SavedHintV1 {
    target: u64,
    at_ms: u64,
    kv: KeyEntryV1,
}

/// The hints in `bytes`, as [`crate::life::local`] saved them in this release or the one before.
pub fn decode_saved(bytes: &[u8]) -> Result<Vec<SavedHint>, WireError> {
    match bytes.split_first() {
        Some((1, rest)) => {
            let old: Vec<SavedHintV1> = postcard::from_bytes(rest)?;
            Ok(old
                .into_iter()
                .map(|h| {
                    let (key, old) = (h.kv.key, h.kv.entry);
                    let entry = Entry { version: old.version, value: old.value, expires: None };
                    SavedHint { target: h.target, at_ms: h.at_ms, kv: KeyEntry { key, entry } }
                })
                .collect())
        }
        _ => wire::decode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_saved_by_the_release_before_expiry_still_load() {
        // What that release wrote: format byte 1, then the list with entries of two fields.
        #[derive(serde::Serialize)]
        struct OldEntry {
            version: Version,
            value: Option<Bytes>,
        }
        #[derive(serde::Serialize)]
        struct OldKeyEntry {
            key: Bytes,
            entry: OldEntry,
        }
        #[derive(serde::Serialize)]
        struct OldHint {
            target: u64,
            at_ms: u64,
            kv: OldKeyEntry,
        }
        let v = Version { ts: 7, node: 2 };
        let old = vec![
            OldHint {
                target: 5,
                at_ms: 99,
                kv: OldKeyEntry { key: "a".into(), entry: OldEntry { version: v, value: Some("x".into()) } },
            },
            OldHint {
                target: 6,
                at_ms: 98,
                kv: OldKeyEntry { key: "b".into(), entry: OldEntry { version: v, value: None } },
            },
        ];
        let bytes = postcard::to_extend(&old, vec![1u8]).unwrap();
        let read = decode_saved(&bytes).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].target, read[0].at_ms, &read[0].kv.key[..]), (5, 99, &b"a"[..]));
        assert_eq!(read[0].kv.entry, Entry::value(v, "x".into()));
        assert_eq!(read[1].kv.entry, Entry::tombstone(v));

        // This release's, with a deadline.
        let now = vec![SavedHint {
            target: 1,
            at_ms: 2,
            kv: KeyEntry { key: "c".into(), entry: Entry::expiring(v, "y".into(), Some(123)) },
        }];
        let read = decode_saved(&wire::encode(&now)).unwrap();
        assert_eq!(read[0].kv.entry.expires, Some(123));
        assert!(decode_saved(&[9, 0]).is_err(), "a format from the future");
    }
}
