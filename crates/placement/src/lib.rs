//! Placement: which nodes store a key.
//!
//! dkv places keys with **consistent hashing over virtual nodes**. Every physical node owns a
//! set of 64-bit *tokens* (128 by default, [`DEFAULT_VNODES`]) on a ring covering the whole
//! `u64` space. A key is hashed with [`key_hash`]; it belongs to the first token clockwise at
//! or after its hash, wrapping past `u64::MAX` to the smallest token. Its *preference list*
//! — the replicas that store it — is the first N distinct physical nodes met on that walk
//! ([`Ring::preference_list`]). Many small token ranges per node, instead of one large arc,
//! even out the load, and when a node joins or leaves only the ranges next to its own tokens
//! change hands: roughly `1/nodes` of the keys move, and only to or from that node.
//!
//! The key hash is xxh3-64 because placement must be *identical on every node and across
//! releases*: a key that hashes differently on two nodes, or after an upgrade, is silently
//! lost to its readers. `std`'s `DefaultHasher` is explicitly unstable across Rust versions and
//! ahash is randomly seeded, so neither may ever be used here. xxh3 has a fixed specification,
//! spreads short keys well and costs a few nanoseconds.
//!
//! Tokens are **data, not a function**: [`tokens_for`] derives a node's initial tokens from its
//! id, but the result is stored in the node's member record (persisted in its data directory and
//! presented again when it re-registers), and [`Ring::new`] simply takes whatever tokens each
//! member carries. Every node that sees the same membership therefore builds the same ring, and
//! the way tokens are chosen for a *new* node can get smarter without a protocol change or any
//! existing node noticing — [`choose_tokens`] already does: it keeps the most balanced of several
//! candidate token sets, so a join moves close to the ideal share of keys.
//!
//! This crate is the lowest layer of dkv: pure code, no I/O, and generic over the node handle
//! so that it knows nothing about membership.

mod hash;
mod ownership;
mod ring;
mod tokens;

pub use hash::{key_hash, tokens_for, Token, DEFAULT_VNODES};
pub use ring::{Replicas, Ring, INLINE_REPLICAS};
pub use tokens::{choose_tokens, TOKEN_CANDIDATES};
