//! Storage layer of dkv: what a node keeps for each key, and where.
//!
//! Every stored value carries a [`Version`]: a hybrid-logical-clock timestamp plus the id of the
//! node that coordinated the write. A delete is not a removal but a *tombstone* — an [`Entry`] with
//! a version and no value — so that a replica, a late hand-off or a data move carrying an older
//! value can never bring a deleted key back: whichever copy has the higher version wins, everywhere,
//! whatever order copies arrive in. That single rule ([`Entry::supersedes`]) is what makes every
//! data movement in the cluster idempotent.
//!
//! Engines implement [`Engine`]; they keep keys ordered by `(placement hash, key)` so that the keys
//! of one ring range are contiguous and a range can be streamed without a full scan.
//! The layer knows nothing of HTTP, membership or the ring's members.

mod codec;
mod datadir;
pub mod digests;
mod durable;
mod engine;
mod hlc;
mod index;
mod journal_cut;
mod memory;
mod version;

pub use datadir::{DataDir, DataDirError, Identity, FORMAT_VERSION, SEED_RECORD};
pub use digests::Digests;
pub use durable::DurableEngine;
pub use engine::{Applied, Budget, Cursor, Engine, EngineStats, Expired, KeyVersion, StorageError, StorageResult};
pub use hlc::Hlc;
pub use journal_cut::JournalCut;
pub use memory::MemoryEngine;
pub use version::{Entry, Version};

/// The longest key any engine stores: the memory engine keeps a key's length in 16 bits, and
/// the durable engine's LSM tree takes keys (the 8-byte hash and the key) of at most 64 KiB.
/// `--max-key-size` may not exceed it.
pub const MAX_KEY_BYTES: usize = 32 * 1024;
