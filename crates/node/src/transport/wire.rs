//! The messages nodes send each other, and what each one answers.
//!
//! They travel as postcard bodies in the frames of the `dkv-transport` crate, which carry the
//! format version, the request id and the message [`Kind`]. Keys travel as raw bytes and entries
//! with their versions, so every internal transfer is idempotent (see
//! `dkv_storage::Entry::supersedes`). Every request carries the sender's membership epoch: a
//! receiver behind it refreshes its view first, one ahead of it refuses with
//! [`STATUS_STALE_EPOCH`] so the sender re-plans.
//!
//! [`encode`] and [`decode`], with their leading version byte, are for what a node keeps on disk
//! (pending hints).
//!
//! Entries carry their expiry deadline ([`Entry::expires`]) since the release that added expiry:
//! that changed the encoding of every message holding an entry, so the transport's frame format
//! went to 2 (`dkv_transport::frame::VERSION`: a node of the previous release is refused at the
//! handshake, saying why) and [`WIRE_VERSION`] to 2 (hints saved by the previous release still
//! load: see `replication/hints/store.rs`). The frame format went to 3 when a replica's answer
//! to a client write began to say whether it is complete ([`WriteOutcome::Applied`]).

use bytes::Bytes;
use dkv_storage::{Cursor, Entry, Version};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::replication::consistency::Level;

/// Format of what [`encode`] writes: 2 since entries carry a deadline (1 had none).
pub const WIRE_VERSION: u8 = 2;

/// Status a node refuses with when the sender's membership epoch is older than its own: the
/// sender must refresh its view and re-plan (the targets may have changed).
pub const STATUS_STALE_EPOCH: u16 = 409;
/// Status a leaving node refuses a hand-off with: it cannot take keys it is about to give away.
pub const STATUS_LEAVING: u16 = 423;

/// What a request frame carries. The answer to each is named beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`ApplyRequest`] → [`ApplyReply`].
    Apply = 1,
    /// [`ReadRequest`] → [`ReadResponse`].
    Read = 2,
    /// [`RangeRequest`] → [`RangePage`].
    Range = 3,
    /// [`SyncSummary`] → [`SyncDiff`].
    SyncSummary = 4,
    // 5 was a whole bucket in one message, whatever its size; a node of that release refuses 9
    // as unknown, which says what is wrong.
    /// [`SyncBucket`] → [`SyncBucketReply`].
    SyncBucket = 9,
    /// [`RefreshRequest`] → nothing.
    Refresh = 6,
    /// [`ForwardRequest`] → [`ForwardReply`].
    Forward = 7,
    /// [`ClockRequest`] → [`ClockReply`].
    Clock = 8,
    /// [`ScanRequest`] → [`ScanReply`].
    Scan = 10,
    /// [`SyncSummarySettled`] → [`SyncDiff`]. A node of a release before it refuses it as
    /// unknown; the sender then sends a [`SyncSummary`].
    SyncSummarySettled = 11,
    /// [`WritesRequest`] → [`WritesReply`]. A node of a release before it refuses it as unknown;
    /// the sender then sends each write as an [`ApplyRequest`].
    Writes = 12,
    /// [`ReadsRequest`] → [`ReadsReply`]. A node of a release before it refuses it as unknown;
    /// the sender then sends each read as a [`ReadRequest`].
    Reads = 13,
    /// [`SyncVersions`] → [`SyncVersionsReply`]. A node of a release before it refuses it as
    /// unknown; the sender then sends its entries whole, as a [`SyncBucket`].
    SyncVersions = 14,
    /// [`SyncSummary`] → [`SyncDiff`], from a node that skips rounds with peers it was found
    /// equal with while its store is unchanged: a receiver that knows it records the pair's
    /// equality too and takes the same duty (`replication/pairs.rs`). A node of a release before
    /// it refuses it as unknown; the sender then sends a [`SyncSummary`] and records nothing.
    SyncSummaryTracked = 15,
    /// [`ReadsRequest`] → [`ReadsReply<Head>`]: the entries' heads, without their values. A node
    /// of a release before it refuses it as unknown; the sender then sends a [`ReadsRequest`].
    Heads = 16,
    /// [`ForwardRequest`] of a read → [`ForwardReply<Length>`]. A node of a release before it
    /// refuses it as unknown; the sender then sends a [`Kind::Forward`].
    ForwardHead = 17,
    /// [`LeaseRequest`] → [`LeaseReply`]: how long since the peer last heard from the seed
    /// (`life/lease.rs`). Answered at any epoch. A node of a release before it refuses it as
    /// unknown, and counts as one that still reaches the seed.
    Lease = 18,
    /// [`KeepHintsRequest`] → nothing: hints a leaving node could not deliver, for a member that
    /// stays to keep and deliver as its own. A node of a release before it refuses it as
    /// unknown; the leaving node then tries another member.
    KeepHints = 19,
    /// [`SettingsRequest`] → [`Settings`]: the settings every member must share, asked by a
    /// node before it registers (`life/membership.rs`). A node of a release before it refuses
    /// it as unknown, and is not compared.
    Settings = 20,
    /// [`ViewRequest`] → the answering node's view in the seed's compact encoding if it is newer
    /// than the asker's, else nothing: asked while the seed does not answer
    /// (`life/peer_views.rs`). A node of a release before it refuses it as unknown.
    View = 21,
}

impl Kind {
    pub fn from_u8(k: u8) -> Option<Kind> {
        use Kind::*;
        [
            Apply,
            Read,
            Range,
            SyncSummary,
            SyncBucket,
            Refresh,
            Forward,
            Clock,
            Scan,
            SyncSummarySettled,
            Writes,
            Reads,
            SyncVersions,
            SyncSummaryTracked,
            Heads,
            ForwardHead,
            Lease,
            KeepHints,
            Settings,
            View,
        ]
        .into_iter()
        .find(|x| *x as u8 == k)
    }
}

/// A key operation, as clients ask for it and as a forward carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    Get,
    Put,
    Delete,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyEntry {
    pub key: Bytes,
    pub entry: Entry,
}

impl KeyEntry {
    /// Its key and value bytes: what a batch is bounded by.
    pub fn bytes(&self) -> usize {
        self.key.len() + self.entry.value_len()
    }

    /// This entry with its key and value copied into one buffer of their own. The key and value
    /// may be slices of a client's read buffer or a peer's frame, which anything kept past the
    /// request (a replica call still running, a hint) would otherwise pin whole. One buffer,
    /// not two: each costs an allocation, and another one for its count of owners.
    pub fn detached(&self) -> KeyEntry {
        let value = self.entry.value.as_deref().unwrap_or_default();
        let mut buf = bytes::BytesMut::with_capacity(self.key.len() + value.len());
        buf.extend_from_slice(&self.key);
        buf.extend_from_slice(value);
        let buf = buf.freeze();
        let key = buf.slice(..self.key.len());
        let value = self.entry.value.as_ref().map(|_| buf.slice(self.key.len()..));
        KeyEntry { key, entry: Entry { version: self.entry.version, value, expires: self.entry.expires } }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyKind {
    /// A coordinated client write to a replica.
    Write,
    /// Keys handed over by a node that no longer owns them (rebalance or leave).
    Handoff,
    /// A write this replica missed, delivered later by the coordinator that kept it.
    Hint,
    /// A newer version found by a read, sent to a replica that answered with an older one.
    Repair,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub epoch: u64,
    pub kind: ApplyKind,
    pub entries: Vec<KeyEntry>,
}

/// A replica's answer to an apply. For a client write ([`ApplyKind::Write`]), `superseded` is
/// the newer version the replica holds instead: it did not apply the write, and the coordinator
/// stamps it above that version and sends it again; `complete` says whether a write it applied
/// counts towards W (see [`WriteOutcome::Applied`]). Other kinds always apply "newest wins".
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApplyReply {
    pub superseded: Option<Version>,
    pub complete: bool,
}

/// Client writes a coordinator sends one replica together (see `replication/batch.rs`): each is
/// judged as an [`ApplyKind::Write`] alone would be, and answered in [`WritesReply`], in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WritesRequest {
    pub epoch: u64,
    pub entries: Vec<KeyEntry>,
}

impl WritesRequest {
    /// The request in `body` as a replica reads it: its keys and values stay slices of `body`,
    /// where [`decode`] copies each into an allocation of its own (two per write, on the
    /// replica's hottest path, and each one a cache miss in the allocator). Nothing keeps `body`
    /// alive past the batch: an engine stores its own copy of what it applies (`Engine::apply`).
    /// The bytes are those [`decode`] reads: postcard writes a `Bytes` and a `&[u8]` alike.
    pub fn decode_shared(body: &Bytes) -> Result<WritesRequest, postcard::Error> {
        #[derive(Deserialize)]
        struct Writes<'a> {
            epoch: u64,
            #[serde(borrow)]
            entries: Vec<Write<'a>>,
        }
        #[derive(Deserialize)]
        struct Write<'a> {
            key: &'a [u8],
            #[serde(borrow)]
            entry: Stamped<'a>,
        }
        #[derive(Deserialize)]
        struct Stamped<'a> {
            version: Version,
            #[serde(borrow)]
            value: Option<&'a [u8]>,
            expires: Option<u64>,
        }
        let Writes { epoch, entries } = postcard::from_bytes(body)?;
        let entries = entries
            .into_iter()
            .map(|w| KeyEntry {
                key: body.slice_ref(w.key),
                entry: Entry {
                    version: w.entry.version,
                    value: w.entry.value.map(|v| body.slice_ref(v)),
                    expires: w.entry.expires,
                },
            })
            .collect();
        Ok(WritesRequest { epoch, entries })
    }
}

/// One outcome per entry of a [`WritesRequest`], in its order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WritesReply {
    pub outcomes: Vec<WriteOutcome>,
}

/// What a replica did with one client write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// Stored (or already held at this version). `complete` when the replica holds every
    /// acknowledged write of the key (`Node::settled_for`): only then could it have answered
    /// "superseded" to a write stamped below an earlier one, so only then does its
    /// acknowledgement count towards W. A replica that gained the key in a membership change
    /// and has not finished an anti-entropy round since may lack the newest write.
    Applied { complete: bool },
    /// Not applied: the replica holds this newer version (see [`ApplyReply`]).
    Superseded(Version),
    /// Not applied, for this reason (a version too far ahead of the replica's clock, say); the
    /// status and message are what a refused [`ApplyRequest`] would have answered.
    Refused { status: u16, message: String },
}

/// A replica's answer to a client write that it did not refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Applied; `complete` as in [`WriteOutcome::Applied`].
    Applied { complete: bool },
    /// Not applied: the replica holds this newer version.
    Superseded(Version),
}

impl WriteOutcome {
    /// `Ok` with what the replica did; `Err` with the refusal's status and message.
    pub fn into_result(self) -> Result<Ack, (u16, String)> {
        match self {
            WriteOutcome::Applied { complete } => Ok(Ack::Applied { complete }),
            WriteOutcome::Superseded(v) => Ok(Ack::Superseded(v)),
            WriteOutcome::Refused { status, message } => Err((status, message)),
        }
    }
}

impl From<Ack> for ApplyReply {
    fn from(ack: Ack) -> ApplyReply {
        match ack {
            Ack::Applied { complete } => ApplyReply { superseded: None, complete },
            Ack::Superseded(held) => ApplyReply { superseded: Some(held), complete: false },
        }
    }
}

impl From<ApplyReply> for Ack {
    fn from(reply: ApplyReply) -> Ack {
        match reply.superseded {
            Some(v) => Ack::Superseded(v),
            None => Ack::Applied { complete: reply.complete },
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadRequest {
    pub epoch: u64,
    pub key: Bytes,
}

/// Reads a coordinator sends one replica together (see `replication/batch.rs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadsRequest {
    pub epoch: u64,
    pub keys: Vec<Bytes>,
}

/// What the replica holds for the first `entries.len()` keys of a [`ReadsRequest`], in order:
/// all of them, or as many as fit in [`BATCH_BYTES`] of values (at least one), the sender asking
/// again for the rest. `settled` as in [`ReadResponse`]. Whole entries ([`Kind::Reads`]), or
/// their heads ([`Kind::Heads`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadsReply<T = Entry> {
    pub entries: Vec<Option<T>>,
    pub settled: bool,
}

/// What a replica holds for one key: its entry, or (a read of heads) the entry's [`Head`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadResponse<T = Entry> {
    pub entry: Option<T>,
    /// The replica holds every key it should for the current view (it is serving and a full
    /// anti-entropy round ran since the view last changed), so its "not found" can be trusted.
    pub settled: bool,
}

/// Ask a data holder for the next page of entries whose future replicas include `for_node` (a
/// join), starting after `after` (from the beginning when `None`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RangeRequest {
    pub epoch: u64,
    pub for_node: u64,
    pub after: Option<(u64, Bytes)>,
}

/// One page of a range: at most about [`BATCH_BYTES`] of keys and values. `next` is where the
/// following page starts; `None` at the end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RangePage {
    pub entries: Vec<KeyEntry>,
    pub next: Option<(u64, Bytes)>,
}

pub fn cursor_to_wire(c: Cursor) -> (u64, Bytes) {
    (c.hash, c.key)
}

pub fn cursor_from_wire((hash, key): (u64, Bytes)) -> Cursor {
    Cursor { hash, key }
}

/// Anti-entropy, step 1: the sender's digest of every bucket of the keys both nodes replicate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncSummary {
    pub epoch: u64,
    pub from: u64,
    pub digests: Vec<u64>,
}

/// Anti-entropy, step 1 of a periodic round: a [`SyncSummary`] of the entries whose version is
/// at most `horizon` (a hybrid-clock timestamp a few seconds back), and the receiver compares
/// its entries up to the same horizon. Writes still in flight to some replicas then make no
/// difference, where under a steady write load they made nearly every bucket differ and the
/// round exchanged the whole store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncSummarySettled {
    pub summary: SyncSummary,
    pub horizon: u64,
}

/// The buckets whose digests differ.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncDiff {
    pub buckets: Vec<u32>,
}

/// Anti-entropy, step 2, one page of a differing bucket: the sender's entries of the keys both
/// nodes replicate in the part `(after, upto]` of the bucket — from its start when `after` is
/// `None`, to its end when `upto` is — at most about [`BATCH_BYTES`] of them. The receiver
/// applies them and answers with its own entries of that part that the sender lacks or has older.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncBucket {
    pub epoch: u64,
    pub from: u64,
    pub bucket: u32,
    pub after: Option<(u64, Bytes)>,
    pub upto: Option<(u64, Bytes)>,
    pub entries: Vec<KeyEntry>,
}

/// The receiver's entries the sender lacks, at most about [`BATCH_BYTES`]: when they would be
/// more, the receiver stops early and says where (`stopped`); the sender's next page then starts
/// there. `None`: the whole part asked about was compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncBucketReply {
    pub entries: Vec<KeyEntry>,
    pub stopped: Option<(u64, Bytes)>,
}

/// A page of a differing bucket as [`SyncBucket`] would carry it, but keys and versions only:
/// the receiver says which of them it needs ([`SyncVersionsReply::wanted`]), and only those go
/// with their values. Under a steady write load every bucket differs by a few keys (those
/// overwritten between the two nodes' scans), and shipping whole buckets shipped the store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncVersions {
    pub epoch: u64,
    pub from: u64,
    pub bucket: u32,
    pub after: Option<(u64, Bytes)>,
    pub upto: Option<(u64, Bytes)>,
    pub versions: Vec<(Bytes, Version)>,
}

/// The receiver's entries the sender lacks or holds older ([`SyncBucketReply::entries`], and
/// `stopped` as there), and the sender's keys it lacks or holds older, of the part it compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncVersionsReply {
    pub entries: Vec<KeyEntry>,
    pub stopped: Option<(u64, Bytes)>,
    pub wanted: Vec<Bytes>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub epoch: u64,
}

/// "What do you run with?", before a node registers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SettingsRequest {}

/// The settings every member must share: nodes that disagree on N pick different replicas for
/// a key, and neither finds the copies the other wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `--replication`.
    pub replicas: u64,
}

/// Hints a leaving node hands to a member that stays (`replication/hints/delivery.rs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeepHintsRequest {
    pub hints: Vec<HandedHint>,
}

/// A hint as handed on: for whom, how old (its age counts from the write), and the write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HandedHint {
    pub target: u64,
    pub age_ms: u64,
    pub kv: KeyEntry,
}

/// "What time is it?" (see `life/clock.rs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClockRequest {}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClockReply {
    /// The answering node's wall clock, in ms since the Unix epoch.
    pub now_ms: u64,
}

/// "Is your view newer than mine, at `epoch`?" (see `life/peer_views.rs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViewRequest {
    pub epoch: u64,
}

/// "Do you still hear from the seed?" (see `life/lease.rs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseRequest {}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseReply {
    /// The epoch of the answering node's view.
    pub epoch: u64,
    /// How long it has gone without an answer from the seed, in ms (`None`: it never had one).
    pub unheard_ms: Option<u64>,
}

/// Which keys a scan wants: those that start with `prefix` and match the Redis glob `pattern`
/// (see `replication/glob.rs`). Replicas apply it before answering, so keys that do not match
/// never travel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFilter {
    pub prefix: Bytes,
    pub pattern: Option<Bytes>,
}

/// A page of a key scan (see `replication/scan.rs`): this replica's keys with hashes from `from`
/// to `end` (both included) that pass `filter`, about `limit` entries looked at (a deleted or
/// expired one counting as a sixteenth: up to 16 × `limit` of those) and at most about
/// `max_bytes` of keys and values read. Tombstones come too, with their versions, so the
/// coordinator can tell a deleted key from one a replica missed the delete of.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanRequest {
    pub epoch: u64,
    pub from: u64,
    pub end: u64,
    pub limit: u32,
    pub max_bytes: u32,
    pub filter: KeyFilter,
}

/// One key of a scan page, without its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanEntry {
    pub key: Bytes,
    pub version: Version,
    /// A live value: neither deleted nor expired, on this replica's clock.
    pub live: bool,
}

/// A replica's page, in hash order. It always ends at a hash boundary: `next` is the first hash
/// it did not look at (every key of a smaller hash in the range was looked at), `None` when it
/// looked at the whole range. `looked` counts the entries looked at, matching or not, a deleted
/// or expired one as a sixteenth (rounded up). A replica of the release before counts each as
/// one, and looks at `limit` entries at most.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScanReply {
    pub entries: Vec<ScanEntry>,
    pub next: Option<u64>,
    pub looked: u32,
    /// The replica holds every key it should under the current view (as [`ReadResponse`]'s).
    pub settled: bool,
}

/// A client request passed to a replica of its key by a node that is not one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardRequest {
    pub epoch: u64,
    /// Forwards so far, this one included; bounded so disagreeing views cannot bounce a request.
    pub hops: u8,
    pub op: Op,
    pub key: Bytes,
    pub value: Option<Bytes>,
    /// A put's deadline, ms since the Unix epoch (computed by the node the client asked).
    pub expires: Option<u64>,
    pub level: Option<Level>,
}

/// A live value as a read answers it: not deleted, not past its deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub value: Bytes,
    /// When it expires, ms since the Unix epoch; `None`: never.
    pub expires: Option<u64>,
}

/// An entry without its value: what `EXISTS`, `STRLEN`, `TYPE`, `TTL` and `DEL`'s count need of
/// a key. A replica answers reads of heads with these, so a number about a value of megabytes
/// does not bring the value over from R replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub version: Version,
    /// The value's length in bytes; `None` for a tombstone.
    pub len: Option<u64>,
    /// As [`Entry::expires`].
    pub expires: Option<u64>,
}

impl Head {
    pub fn of(entry: &Entry) -> Head {
        Head { version: entry.version, len: entry.value.as_ref().map(|v| v.len() as u64), expires: entry.expires }
    }
}

/// A live value's length and deadline: a read of a head answers this where a read answers
/// [`Found`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Length {
    pub len: u64,
    /// When the value expires, ms since the Unix epoch; `None`: never.
    pub expires: Option<u64>,
}

/// The replica's answer, errors with their structure (a quorum failure keeps its per-replica
/// reasons), so the node the client talks to renders it as if it had coordinated itself. A
/// [`Kind::Forward`] answers a [`Found`], a [`Kind::ForwardHead`] a [`Length`].
pub type ForwardReply<T = Found> = Result<Option<T>, NodeError>;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty internal message")]
    Empty,
    #[error("internal message format {0}, this node speaks {WIRE_VERSION}: run one dkv release across the cluster")]
    Version(u8),
    #[error("undecodable internal message: {0}")]
    Decode(#[from] postcard::Error),
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let out = vec![WIRE_VERSION];
    postcard::to_extend(msg, out).expect("encoding into a Vec cannot fail")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    match bytes.split_first() {
        None => Err(WireError::Empty),
        Some((&WIRE_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&v, _)) => Err(WireError::Version(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_versions_are_checked() {
        let req = ReadRequest { epoch: 3, key: Bytes::from_static(b"k") };
        let bytes = encode(&req);
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(decode::<ReadRequest>(&bytes).unwrap().epoch, 3);
        let mut other = bytes.clone();
        other[0] = 99;
        assert!(matches!(decode::<ReadRequest>(&other), Err(WireError::Version(99))));
        assert!(matches!(decode::<ReadRequest>(&[]), Err(WireError::Empty)));
    }
}

/// Most key and value bytes sent in one internal batch; a single larger entry goes alone.
pub const BATCH_BYTES: usize = 4 << 20;

/// Largest internal frame for a node with these limits: a batch of at most [`BATCH_BYTES`], or
/// one entry of the largest key and value, whichever is more, with room for the encoding (the
/// per-entry overhead of a batch of small entries, the message's other fields).
pub fn frame_limit(max_key_bytes: usize, max_value_bytes: usize) -> usize {
    BATCH_BYTES.max(max_value_bytes.saturating_add(max_key_bytes)).saturating_add(1 << 20)
}

/// Split `entries` into batches of at most [`BATCH_BYTES`] of keys and values each.
pub fn split_batches(entries: Vec<KeyEntry>) -> Vec<Vec<KeyEntry>> {
    split_by_bytes(entries, KeyEntry::bytes)
}

/// Split `items` into batches of at most [`BATCH_BYTES`] each, by `size`; an item over it goes
/// alone.
pub fn split_by_bytes<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for item in items {
        let size = size(&item);
        if !batch.is_empty() && bytes + size > BATCH_BYTES {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.push(item);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use bytes::Bytes;
    use dkv_storage::{Entry, Version};

    #[test]
    fn batches_stay_under_the_byte_limit_and_big_entries_go_alone() {
        let kv = |n: usize| KeyEntry {
            key: Bytes::from_static(b"k"),
            entry: Entry::value(Version::default(), Bytes::from(vec![0; n])),
        };
        let sizes = [BATCH_BYTES / 2, BATCH_BYTES / 2, 10, BATCH_BYTES * 2, 10];
        let batches = split_batches(sizes.iter().map(|&n| kv(n)).collect());
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![1, 2, 1, 1]);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 5, "nothing lost");
    }

    #[test]
    fn writes_read_in_place_are_the_writes_sent() {
        let v = |ts| Version { ts, node: 7 };
        let entries = vec![
            KeyEntry { key: Bytes::from_static(b"k1"), entry: Entry::value(v(1), Bytes::from(vec![9; 300])) },
            KeyEntry { key: Bytes::from_static(b""), entry: Entry::value(v(2), Bytes::new()) },
            KeyEntry { key: Bytes::from_static(b"gone"), entry: Entry::tombstone(v(3)) },
            KeyEntry {
                key: Bytes::from_static(b"ttl"),
                entry: Entry { version: v(u64::MAX), value: Some(Bytes::from_static(b"x")), expires: Some(1 << 40) },
            },
        ];
        let sent = WritesRequest { epoch: 42, entries };
        let body = Bytes::from(postcard::to_allocvec(&sent).unwrap());
        let read = WritesRequest::decode_shared(&body).unwrap();
        let owned: WritesRequest = postcard::from_bytes(&body).unwrap();
        assert_eq!(read.epoch, 42);
        for got in [&read.entries, &owned.entries] {
            assert_eq!(got.len(), sent.entries.len());
            for (a, b) in got.iter().zip(&sent.entries) {
                assert_eq!((&a.key, &a.entry), (&b.key, &b.entry));
            }
        }
        // In place: the value is a slice of the body, not a copy of it.
        let value = read.entries[0].entry.value.as_ref().unwrap();
        assert!(body.as_ptr_range().contains(&value.as_ptr()), "the value was copied");
        // A body cut short is refused as `decode` refuses it.
        let cut = body.slice(..body.len() - 1);
        assert!(WritesRequest::decode_shared(&cut).is_err());
        assert!(postcard::from_bytes::<WritesRequest>(&cut).is_err());
    }
}
