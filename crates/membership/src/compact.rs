//! The compact encoding of the seed's API, for the traffic between nodes and the seed.
//!
//! JSON stays the seed's language for people, curl, the dashboard and nodes of older releases;
//! nodes ask for this one by content type. In JSON a member is about 2.7 KB, most of it 128
//! tokens written as decimal numbers, and reading it means parsing every digit; here a member is
//! its id, address, state and heartbeat time, then its tokens as one byte string of 8-byte
//! little-endian integers, about 1.05 KB, read with a copy.
//!
//! A body is one format-version byte, then the message in postcard. The version is the internal
//! transport's (`dkv_transport::frame::VERSION`), passed in by the caller so this layer needs no
//! I/O crate: nodes and the seed of one release speak one binary format, and a change of either
//! protocol bumps it. The media type carries it too, `application/x-dkv-postcard; v=2`, so a seed
//! answers in this encoding only a node that reads this version, and a node of another release
//! gets JSON. Postcard is positional: any change to a message below needs a new version.
//!
//! The messages are mirrored by wire structs here rather than given a second serde personality:
//! the JSON types skip absent fields, which a positional format cannot do.

use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::api::{HeartbeatAnswer, IdRequest, LeaveRequest, RegisterRequest, RegisterResponse, RemoveRequest};
use crate::clocks::ClusterClock;
use crate::{Changes, Digest, Member, NodeId, NodeState, View};

/// The media type, without its version parameter.
pub const MEDIA_TYPE: &str = "application/x-dkv-postcard";

/// `Content-Type` of a compact body of this version.
pub fn content_type(version: u8) -> String {
    format!("{MEDIA_TYPE}; v={version}")
}

/// The version a media range names when it is the compact encoding: `Some(0)` when it has no
/// (readable) `v` parameter, `None` when it is another media type.
pub fn compact_version(media: &str) -> Option<u8> {
    let mut parts = media.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(MEDIA_TYPE) {
        return None;
    }
    let v = parts.filter_map(|p| p.split_once('=')).find(|(k, _)| k.trim().eq_ignore_ascii_case("v"));
    Some(v.and_then(|(_, v)| v.trim().trim_matches('"').parse().ok()).unwrap_or(0))
}

/// Whether an `Accept` header asks for the compact encoding of `version`.
pub fn accepts(accept: &str, version: u8) -> bool {
    accept.split(',').any(|range| compact_version(range) == Some(version))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompactError {
    #[error("empty compact body")]
    Empty,
    #[error("compact body of format version {got}; this side speaks version {want}")]
    Version { got: u8, want: u8 },
    #[error("malformed compact body: {0}")]
    Malformed(String),
}

/// A message of the seed's API with a compact form.
pub trait Compact: Sized {
    #[doc(hidden)]
    type Wire: Serialize + for<'de> Deserialize<'de>;
    #[doc(hidden)]
    fn to_wire(&self) -> Self::Wire;
    #[doc(hidden)]
    fn from_wire(wire: Self::Wire) -> Self;
    /// The wire form read from a whole body. A message that gained fields at its end since its
    /// version came out reads its shorter, older forms too (see [`tail`]).
    #[doc(hidden)]
    fn read_wire(body: &[u8]) -> Result<Self::Wire, CompactError> {
        whole(body)
    }
}

/// `value` in its compact form: the format version, then its wire form in postcard.
pub fn encode<T: Compact>(value: &T, version: u8) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, version, &mut out);
    out
}

/// [`encode`] appended to `out`, say a frame being built: nothing allocated on the way (a
/// heartbeat's own buffer, allocated, grown and copied, was 3% of an idle node's CPU).
pub fn encode_into<T: Compact>(value: &T, version: u8, out: &mut impl Extend<u8>) {
    /// Postcard takes its output by value; this lends it ours.
    struct Lent<'a, E>(&'a mut E);
    impl<E: Extend<u8>> Extend<u8> for Lent<'_, E> {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
            self.0.extend(bytes)
        }
    }
    out.extend([version]);
    postcard::to_extend(&value.to_wire(), Lent(out)).expect("writing into memory cannot fail");
}

pub fn decode<T: Compact>(bytes: &[u8], version: u8) -> Result<T, CompactError> {
    let (&got, body) = bytes.split_first().ok_or(CompactError::Empty)?;
    if got != version {
        return Err(CompactError::Version { got, want: version });
    }
    T::read_wire(body).map(T::from_wire)
}

fn malformed(e: postcard::Error) -> CompactError {
    CompactError::Malformed(e.to_string())
}

/// `W` and nothing after it.
fn whole<W: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<W, CompactError> {
    let (wire, rest) = postcard::take_from_bytes(body).map_err(malformed)?;
    end(rest)?;
    Ok(wire)
}

/// An optional field added at the end of a message after its version came out: absent where
/// the body ends (a peer of the earlier release), else read in full like any other field.
fn tail<T: for<'de> Deserialize<'de>>(rest: &[u8]) -> Result<(Option<T>, &[u8]), CompactError> {
    if rest.is_empty() {
        return Ok((None, rest));
    }
    postcard::take_from_bytes::<Option<T>>(rest).map_err(malformed)
}

/// The end of a message: nothing may follow.
fn end(rest: &[u8]) -> Result<(), CompactError> {
    match rest.len() {
        0 => Ok(()),
        n => Err(CompactError::Malformed(format!("{n} bytes after the message"))),
    }
}

/// Tokens as one byte string of 8-byte little-endian integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens(Arc<[u64]>);

impl Serialize for Tokens {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = self.0.iter().flat_map(|t| t.to_le_bytes()).collect();
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Tokens;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tokens as 8-byte little-endian integers")
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Tokens, E> {
                if !b.len().is_multiple_of(8) {
                    return Err(E::custom(format!("{} bytes of tokens, not a multiple of 8", b.len())));
                }
                Ok(Tokens(b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()))
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

#[derive(Serialize, Deserialize)]
pub struct WireMember {
    id: u64,
    addr: String,
    state: NodeState,
    last_seen_ms: u64,
    tokens: Tokens,
}

impl Compact for Member {
    type Wire = WireMember;
    fn to_wire(&self) -> WireMember {
        WireMember {
            id: self.id.0,
            addr: self.addr.clone(),
            state: self.state,
            last_seen_ms: self.last_seen_ms,
            tokens: Tokens(self.tokens.clone()),
        }
    }
    fn from_wire(w: WireMember) -> Member {
        Member { id: NodeId(w.id), addr: w.addr, tokens: w.tokens.0, state: w.state, last_seen_ms: w.last_seen_ms }
    }
}

fn members_to_wire(members: &[Member]) -> Vec<WireMember> {
    members.iter().map(Member::to_wire).collect()
}

fn members_from_wire(wire: Vec<WireMember>) -> Vec<Member> {
    wire.into_iter().map(Member::from_wire).collect()
}

#[derive(Serialize, Deserialize)]
pub struct WireView {
    epoch: u64,
    nodes: Vec<WireMember>,
}

impl Compact for View {
    type Wire = WireView;
    fn to_wire(&self) -> WireView {
        WireView { epoch: self.epoch, nodes: members_to_wire(&self.nodes) }
    }
    fn from_wire(w: WireView) -> View {
        View { epoch: w.epoch, nodes: members_from_wire(w.nodes) }
    }
}

#[derive(Serialize, Deserialize)]
pub struct WireChanges {
    since: u64,
    members: Vec<WireMember>,
    removed: Vec<u64>,
}

impl Compact for Changes {
    type Wire = WireChanges;
    fn to_wire(&self) -> WireChanges {
        WireChanges {
            since: self.since,
            members: members_to_wire(&self.members),
            removed: self.removed.iter().map(|id| id.0).collect(),
        }
    }
    fn from_wire(w: WireChanges) -> Changes {
        Changes {
            since: w.since,
            members: members_from_wire(w.members),
            removed: w.removed.into_iter().map(NodeId).collect(),
        }
    }
}

/// A heartbeat answer: its fields as version 2 came out, then those added since, each of which
/// may be absent at the end of the body (see [`tail`]). Postcard writes a nested struct as its
/// fields in line, so the bytes are those of one flat struct.
#[derive(Serialize, Deserialize)]
pub struct WireHeartbeatAnswer {
    head: AnswerHead,
    /// Sent only to a heartbeat that reported its reading of the seed's clock, which an older
    /// node does not: an older node reads the answer it always did.
    clock: Option<(i64, i64, u64)>,
}

#[derive(Serialize, Deserialize)]
pub struct AnswerHead {
    epoch: u64,
    digest: Option<u64>,
    nodes: Option<Vec<WireMember>>,
    changes: Option<WireChanges>,
    now_ms: Option<u64>,
}

impl Compact for HeartbeatAnswer {
    type Wire = WireHeartbeatAnswer;
    fn to_wire(&self) -> WireHeartbeatAnswer {
        WireHeartbeatAnswer {
            head: AnswerHead {
                epoch: self.epoch,
                digest: self.digest.map(|d| d.0),
                nodes: self.nodes.as_deref().map(members_to_wire),
                changes: self.changes.as_ref().map(Changes::to_wire),
                now_ms: self.now_ms,
            },
            clock: self.clock.map(|c| (c.offset_ms, c.error_ms, c.clocks)),
        }
    }
    fn from_wire(WireHeartbeatAnswer { head: w, clock }: WireHeartbeatAnswer) -> HeartbeatAnswer {
        HeartbeatAnswer {
            epoch: w.epoch,
            digest: w.digest.map(Digest),
            nodes: w.nodes.map(members_from_wire),
            changes: w.changes.map(Changes::from_wire),
            now_ms: w.now_ms,
            clock: clock.map(|(offset_ms, error_ms, clocks)| ClusterClock { offset_ms, error_ms, clocks }),
        }
    }
    fn read_wire(body: &[u8]) -> Result<WireHeartbeatAnswer, CompactError> {
        let (head, rest) = postcard::take_from_bytes(body).map_err(malformed)?;
        let (clock, rest) = tail(rest)?;
        end(rest)?;
        Ok(WireHeartbeatAnswer { head, clock })
    }
}

/// A heartbeat: its fields as version 2 came out, then those added since, each of which may be
/// absent at the end of the body (see [`tail`]), so a seed of this release still hears nodes of
/// earlier ones during a rolling upgrade. (Upgrade the seed first: an older seed refuses the
/// extra fields.)
#[derive(Serialize, Deserialize)]
pub struct WireIdRequest {
    head: HeartbeatHead,
    /// Added after the first release of version 2.
    load: Option<crate::load::WireLoad>,
    /// Added after `load`: the node's reading of the seed's clock (offset, error).
    seed_clock: Option<(i64, i64)>,
}

#[derive(Serialize, Deserialize)]
pub struct HeartbeatHead {
    id: u64,
    keys: Option<u64>,
    clock_offset_ms: Option<i64>,
    coordinating_writes: Option<bool>,
    epoch: Option<u64>,
    digest: Option<u64>,
}

impl Compact for IdRequest {
    type Wire = WireIdRequest;
    fn to_wire(&self) -> WireIdRequest {
        WireIdRequest {
            head: HeartbeatHead {
                id: self.id.0,
                keys: self.keys,
                clock_offset_ms: self.clock_offset_ms,
                coordinating_writes: self.coordinating_writes,
                epoch: self.epoch,
                digest: self.digest.map(|d| d.0),
            },
            load: self.load.as_ref().map(crate::load::Load::to_wire),
            seed_clock: self.seed_clock_offset_ms.map(|o| (o, self.seed_clock_error_ms.unwrap_or(0))),
        }
    }
    fn from_wire(WireIdRequest { head: w, load, seed_clock }: WireIdRequest) -> IdRequest {
        IdRequest {
            id: NodeId(w.id),
            keys: w.keys,
            clock_offset_ms: w.clock_offset_ms,
            coordinating_writes: w.coordinating_writes,
            epoch: w.epoch,
            digest: w.digest.map(Digest),
            load: load.map(crate::load::Load::from_wire),
            seed_clock_offset_ms: seed_clock.map(|c| c.0),
            seed_clock_error_ms: seed_clock.map(|c| c.1),
        }
    }
    fn read_wire(body: &[u8]) -> Result<WireIdRequest, CompactError> {
        let (head, rest) = postcard::take_from_bytes(body).map_err(malformed)?;
        let (load, rest) = tail(rest)?;
        let (seed_clock, rest) = tail(rest)?;
        end(rest)?;
        Ok(WireIdRequest { head, load, seed_clock })
    }
}

#[derive(Serialize, Deserialize)]
pub struct WireRegisterRequest {
    addr: String,
    id: Option<u64>,
    tokens: Option<Tokens>,
    state: Option<NodeState>,
    vnodes: Option<u64>,
    view: Option<WireView>,
    cluster: Option<String>,
}

impl Compact for RegisterRequest {
    type Wire = WireRegisterRequest;
    fn to_wire(&self) -> WireRegisterRequest {
        WireRegisterRequest {
            addr: self.addr.clone(),
            id: self.id.map(|id| id.0),
            tokens: self.tokens.clone().map(|t| Tokens(t.into())),
            state: self.state,
            vnodes: self.vnodes.map(|v| v as u64),
            view: self.view.as_ref().map(View::to_wire),
            cluster: self.cluster.clone(),
        }
    }
    fn from_wire(w: WireRegisterRequest) -> RegisterRequest {
        RegisterRequest {
            addr: w.addr,
            id: w.id.map(NodeId),
            tokens: w.tokens.map(|t| t.0.to_vec()),
            state: w.state,
            // Out of range on a 32-bit machine: the registry refuses it like any vnodes too large.
            vnodes: w.vnodes.map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
            view: w.view.map(View::from_wire),
            cluster: w.cluster,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct WireRegisterResponse {
    id: u64,
    epoch: u64,
    nodes: Vec<WireMember>,
    /// Since format 3.
    seed_fresh: bool,
}

impl Compact for RegisterResponse {
    type Wire = WireRegisterResponse;
    fn to_wire(&self) -> WireRegisterResponse {
        WireRegisterResponse {
            id: self.id.0,
            epoch: self.epoch,
            nodes: members_to_wire(&self.nodes),
            seed_fresh: self.seed_fresh,
        }
    }
    fn from_wire(w: WireRegisterResponse) -> RegisterResponse {
        RegisterResponse {
            id: NodeId(w.id),
            epoch: w.epoch,
            nodes: members_from_wire(w.nodes),
            seed_fresh: w.seed_fresh,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct WireLeaveRequest {
    id: u64,
    done: bool,
}

impl Compact for LeaveRequest {
    type Wire = WireLeaveRequest;
    fn to_wire(&self) -> WireLeaveRequest {
        WireLeaveRequest { id: self.id.0, done: self.done }
    }
    fn from_wire(w: WireLeaveRequest) -> LeaveRequest {
        LeaveRequest { id: NodeId(w.id), done: w.done }
    }
}

#[derive(Serialize, Deserialize)]
pub struct WireRemoveRequest {
    id: u64,
    force: bool,
}

impl Compact for RemoveRequest {
    type Wire = WireRemoveRequest;
    fn to_wire(&self) -> WireRemoveRequest {
        WireRemoveRequest { id: self.id.0, force: self.force }
    }
    fn from_wire(w: WireRemoveRequest) -> RemoveRequest {
        RemoveRequest { id: NodeId(w.id), force: w.force }
    }
}

/// `GET` requests have no body; the node's seed client sends `()` and reads no request.
impl Compact for () {
    type Wire = ();
    fn to_wire(&self) {}
    fn from_wire(_: ()) {}
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
