//! What the dashboard (`dashboard.html`) draws, computed here so the page stays small and fast
//! at a thousand members.
//!
//! The page gets one JSON document a poll: the members with what each reported with its last
//! heartbeat (key copies, clock, requests, p99 latency, hints, data movements — see
//! `dkv_membership::load` for why the figures come with heartbeats rather than from each node's
//! `/stats`), totals by state, and the ring already reduced to a bounded list of arcs. A
//! thousand members have 128 000 tokens: sent as numbers that is megabytes a second, and drawn as
//! one SVG path each it makes the browser crawl. So the seed merges adjacent ranges of one owner,
//! and when that still leaves more than [`MAX_ARCS`], cuts the circle into that many equal bins
//! and gives each bin to the member that owns most of it: at that size one bin is half a degree,
//! finer than the picture shows, and each member's exact share is in its row. The drawing depends
//! only on the view, so it is computed once per view (by epoch and digest) and reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dkv_membership::api::IdRequest;
use dkv_membership::{Digest, Member, NodeId, NodeState, View};
use serde_json::{json, Value};

/// Most arcs the ring is drawn with.
pub const MAX_ARCS: usize = 720;

const SPACE: f64 = 18_446_744_073_709_551_616.0;

/// The ring as the page draws it. Members are numbered in the order of the view sorted by id.
#[derive(Debug, Default, PartialEq)]
pub struct Drawing {
    /// `(from, to, member)`: an arc between two fractions of the hash space (0 to 1, clockwise
    /// from the top) owned by a member.
    pub arcs: Vec<(f64, f64, usize)>,
    /// Each member's share of the hash space as primary owner (exact, whatever the arcs show).
    pub shares: Vec<f64>,
    /// Whether the arcs were binned (each arc is then the majority owner of its part).
    pub binned: bool,
}

/// The members' primary ranges: every token owns the range from the previous token (exclusive)
/// up to itself, the first one wrapping around from the last.
fn ranges(members: &[&Member]) -> Vec<(u64, u64, usize)> {
    let mut tokens: Vec<(u64, usize)> =
        members.iter().enumerate().flat_map(|(i, m)| m.tokens.iter().map(move |&t| (t, i))).collect();
    tokens.sort_unstable();
    let Some(&(last, _)) = tokens.last() else { return Vec::new() };
    let mut out = Vec::with_capacity(tokens.len() + 1);
    let mut prev = 0u64;
    for &(t, owner) in &tokens {
        out.push((prev, t, owner));
        prev = t;
    }
    // The first token's range wraps: [0, first] above, and (last, 2^64) here.
    if last < u64::MAX {
        out.push((last, u64::MAX, tokens[0].1));
    }
    out
}

pub fn draw(members: &[&Member], max_arcs: usize) -> Drawing {
    // Summed as integers: a sum of float fractions can pass 1.
    let mut owned = vec![0u128; members.len()];
    let ranges = ranges(members);
    for &(from, to, owner) in &ranges {
        owned[owner] += u128::from(to - from);
    }
    let shares = owned.iter().map(|&o| (o as f64 / SPACE).min(1.0)).collect();
    // Adjacent ranges of one owner make one arc.
    let mut merged: Vec<(u64, u64, usize)> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if last.2 == r.2 && last.1 == r.0 => last.1 = r.1,
            _ => merged.push(r),
        }
    }
    if merged.len() <= max_arcs {
        let arcs =
            merged.iter().filter(|r| r.1 > r.0).map(|&(f, t, o)| (f as f64 / SPACE, t as f64 / SPACE, o)).collect();
        return Drawing { arcs, shares, binned: false };
    }
    Drawing { arcs: binned(&merged, max_arcs), shares, binned: true }
}

/// Each of `bins` equal parts of the circle, given to the member owning most of it; adjacent
/// parts of one member merged.
fn binned(ranges: &[(u64, u64, usize)], bins: usize) -> Vec<(f64, f64, usize)> {
    let width = SPACE / bins as f64;
    let mut arcs: Vec<(f64, f64, usize)> = Vec::with_capacity(bins);
    let mut cover: HashMap<usize, f64> = HashMap::new();
    let mut next = 0; // first range not wholly before the current bin
    for b in 0..bins {
        let (lo, hi) = (b as f64 * width, (b + 1) as f64 * width);
        cover.clear();
        let mut i = next;
        while i < ranges.len() && (ranges[i].0 as f64) < hi {
            let (from, to) = ((ranges[i].0 as f64).max(lo), (ranges[i].1 as f64).min(hi));
            if to > from {
                *cover.entry(ranges[i].2).or_default() += to - from;
            }
            if (ranges[i].1 as f64) <= hi {
                next = i + 1;
            }
            i += 1;
        }
        let owner = cover.iter().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0))).map(|(&o, _)| o);
        let Some(owner) = owner else { continue };
        let (from, to) = (b as f64 / bins as f64, (b + 1) as f64 / bins as f64);
        match arcs.last_mut() {
            Some(last) if last.2 == owner && (last.1 - from).abs() < 1e-12 => last.1 = to,
            _ => arcs.push((from, to, owner)),
        }
    }
    arcs
}

/// The drawing of the last view asked for, by its epoch and digest.
#[derive(Default)]
pub struct Cache(Mutex<Option<(u64, Digest, Arc<Drawing>)>>);

impl Cache {
    /// The drawing of `view` (whose digest is `digest`), computed only if the view changed.
    pub fn get(&self, view: &View, digest: Digest) -> Arc<Drawing> {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((epoch, d, drawing)) if (*epoch, *d) == (view.epoch, digest) => drawing.clone(),
            _ => {
                let drawing = Arc::new(draw(&sorted(view), MAX_ARCS));
                *cached = Some((view.epoch, digest, drawing.clone()));
                drawing
            }
        }
    }
}

/// The members sorted by id: the order the drawing numbers them in.
pub fn sorted(view: &View) -> Vec<&Member> {
    let mut members: Vec<&Member> = view.nodes.iter().collect();
    members.sort_by_key(|m| m.id);
    members
}

/// The document `GET /dashboard.json` answers.
pub fn document(view: &View, reports: &HashMap<NodeId, IdRequest>, drawing: &Drawing, now_ms: u64) -> Value {
    let members = sorted(view);
    let mut states: HashMap<&str, usize> = ["joining", "normal", "leaving"].into_iter().map(|s| (s, 0)).collect();
    let (mut copies, mut tokens, mut requests, mut hints, mut moving) = (0u64, 0usize, 0f64, 0u64, 0usize);
    let rows: Vec<Value> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let state = match m.state {
                NodeState::Joining => "joining",
                NodeState::Normal => "normal",
                NodeState::Leaving => "leaving",
            };
            *states.entry(state).or_default() += 1;
            let report = reports.get(&m.id);
            let load = report.and_then(|r| r.load.as_ref());
            // Reports come from the network: saturate rather than overflow (a panic here closes
            // the connection without an answer).
            copies = copies.saturating_add(report.and_then(|r| r.keys).unwrap_or(0));
            tokens += m.tokens.len();
            if let Some(l) = load {
                requests += l.rate();
                hints = hints.saturating_add(l.hints_pending);
                moving += usize::from(l.moves.iter().any(|m| m.active));
            }
            json!({
                "id": m.id, "addr": m.addr, "state": m.state, "tokens": m.tokens.len(),
                "share": drawing.shares.get(i).copied().unwrap_or(0.0),
                "last_seen_ms": m.last_seen_ms,
                "keys": report.and_then(|r| r.keys),
                "clock_offset_ms": report.and_then(|r| r.clock_offset_ms),
                "coordinating_writes": report.and_then(|r| r.coordinating_writes),
                "requests_per_s": load.map(|l| (l.rate() * 10.0).round() / 10.0),
                "p99_us": load.and_then(|l| l.p99_us),
                "hints_pending": load.map(|l| l.hints_pending),
                "moves": load.map_or(Vec::new(), |l| l.moves.clone()),
            })
        })
        .collect();
    let arcs: Vec<Value> = drawing.arcs.iter().map(|&(f, t, o)| json!([round6(f), round6(t), o])).collect();
    json!({
        "epoch": view.epoch,
        "now_ms": now_ms,
        "totals": {
            "members": members.len(), "states": states, "key_copies": copies, "tokens": tokens,
            "requests_per_s": (requests * 10.0).round() / 10.0, "hints_pending": hints, "moving": moving,
        },
        "ring": { "arcs": arcs, "binned": drawing.binned },
        "members": rows,
    })
}

fn round6(f: f64) -> f64 {
    (f * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, tokens: Vec<u64>) -> Member {
        Member {
            id: NodeId(id),
            addr: format!("h:{id}"),
            tokens: tokens.into(),
            state: NodeState::Normal,
            last_seen_ms: 0,
        }
    }

    #[test]
    fn few_tokens_draw_exactly_with_neighbours_merged() {
        let q = u64::MAX / 4;
        let ms = [member(1, vec![q, 2 * q]), member(2, vec![3 * q])];
        let d = draw(&ms.iter().collect::<Vec<_>>(), MAX_ARCS);
        assert!(!d.binned);
        // Member 1 owns [0, q] and (q, 2q] (one arc) and, wrapping round to its token q, (3q, end).
        let owners: Vec<usize> = d.arcs.iter().map(|a| a.2).collect();
        assert_eq!(owners, vec![0, 1, 0], "{:?}", d.arcs);
        let total: f64 = d.shares.iter().sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!((d.shares[0] - 0.75).abs() < 1e-6, "{:?}", d.shares);
    }

    #[test]
    fn a_thousand_members_are_drawn_with_a_bounded_number_of_arcs() {
        // splitmix64: tokens spread like the random ones nodes pick.
        let mut x = 7u64;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let ms: Vec<Member> = (0..1000).map(|i| member(i, (0..128).map(|_| next()).collect())).collect();
        let started = std::time::Instant::now();
        let d = draw(&ms.iter().collect::<Vec<_>>(), MAX_ARCS);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(d.binned);
        assert!(d.arcs.len() <= MAX_ARCS && d.arcs.len() > MAX_ARCS / 2, "{} arcs", d.arcs.len());
        assert!((d.shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let covered: f64 = d.arcs.iter().map(|a| a.1 - a.0).sum();
        assert!((covered - 1.0).abs() < 1e-9, "the arcs cover the circle: {covered}");
        assert!(d.arcs.windows(2).all(|w| w[0].1 <= w[1].0 + 1e-12), "in order, not overlapping");
    }

    #[test]
    fn reports_at_the_integer_limits_sum_without_overflow() {
        let ms = [member(1, vec![1]), member(2, vec![2])];
        let view = View { epoch: 1, nodes: ms.to_vec() };
        let mut reports = HashMap::new();
        for m in &ms {
            let mut r = IdRequest::id(m.id);
            r.keys = Some(u64::MAX);
            r.load = Some(dkv_membership::load::Load {
                requests: u64::MAX,
                window_ms: 1,
                hints_pending: u64::MAX,
                ..Default::default()
            });
            reports.insert(m.id, r);
        }
        let drawing = draw(&sorted(&view), MAX_ARCS);
        let d = document(&view, &reports, &drawing, 0);
        assert_eq!(d["totals"]["key_copies"], u64::MAX);
        assert_eq!(d["totals"]["hints_pending"], u64::MAX);
    }

    #[test]
    fn no_members_no_arcs() {
        assert_eq!(draw(&[], MAX_ARCS), Drawing::default());
    }
}
