//! What a node reports of its work with each heartbeat, for the seed's dashboard: how many key
//! requests it answered and how fast, the hints it holds, and the data it is moving.
//!
//! The figures ride on the heartbeat rather than being fetched by the page from every node's
//! `/stats`: the heartbeat is sent anyway, one small record per node is all the seed keeps (it
//! replaces the last one), and the page makes one request to the seed whatever the cluster's
//! size — a browser polling a thousand nodes on other ports (and other hosts, behind TLS and
//! container networks the browser cannot reach) would not be bounded, nor always possible. The
//! price is freshness: the figures are as old as the last heartbeat, and the page says so.
//!
//! A report is counts over the node's last heartbeat interval (requests, and a latency histogram
//! reduced to its 99th percentile), never rates computed elsewhere from two reports, so a lost or
//! early heartbeat skews nothing. A data movement says what it moved (keys and bytes), what it
//! planned when that is known before it starts (a leave hands off everything it holds; a join's
//! total is extrapolated from the part of the hash space copied so far), and how far along it is
//! for the bar, in thousandths. A finished movement is still reported for a short while, so one
//! shorter than a heartbeat is seen at all.

use serde::{Deserialize, Serialize};

use crate::json_int;

/// Most movements a report carries: one per [`MoveKind`].
pub const MAX_MOVES: usize = 4;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Load {
    /// Key requests answered (HTTP and RESP, any outcome) during `window_ms`.
    #[serde(default, deserialize_with = "json_int::u64")]
    pub requests: u64,
    /// The interval the counts cover: since the node's previous report.
    #[serde(default, deserialize_with = "json_int::u64")]
    pub window_ms: u64,
    /// The 99th percentile of those requests' durations, in µs (the upper bound of its
    /// histogram bucket, within 25%); absent when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_u64")]
    pub p99_us: Option<u64>,
    /// Writes kept for replicas that missed them.
    #[serde(default, deserialize_with = "json_int::u64")]
    pub hints_pending: u64,
    /// Joins, leaves, rebalances and repairs in progress or just finished.
    #[serde(default)]
    pub moves: Vec<Move>,
}

impl Load {
    /// Requests per second over the window.
    pub fn rate(&self) -> f64 {
        if self.window_ms == 0 {
            0.0
        } else {
            self.requests as f64 * 1000.0 / self.window_ms as f64
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum MoveKind {
    /// This node copying the ranges it will own from their holders.
    Join,
    /// This node handing every key to the remaining members.
    Leave,
    /// This node handing keys it no longer replicates to their new owners.
    Rebalance,
    /// Anti-entropy exchanging the parts of the store that differ from a peer's.
    Repair,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Move {
    pub kind: MoveKind,
    /// `false` once finished (reported for a short while after).
    pub active: bool,
    /// Key copies moved so far (sent for a leave or a rebalance, received for a join, both ways
    /// for a repair).
    #[serde(deserialize_with = "json_int::u64")]
    pub keys: u64,
    /// Key and value bytes of those.
    #[serde(deserialize_with = "json_int::u64")]
    pub bytes: u64,
    /// Keys to move in all: exact for a leave, estimated for a join, unknown (absent) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_u64")]
    pub planned_keys: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_u64")]
    pub planned_bytes: Option<u64>,
    /// How far along, in thousandths: of the planned keys for a leave, of the hash space scanned
    /// for a join or a rebalance, of the differing buckets exchanged for a repair.
    #[serde(deserialize_with = "json_int::u64")]
    pub permille: u64,
}

/// The positional (compact) form of [`Load`]; see `compact.rs`.
#[derive(Serialize, Deserialize)]
pub struct WireLoad {
    requests: u64,
    window_ms: u64,
    p99_us: Option<u64>,
    hints_pending: u64,
    moves: Vec<WireMove>,
}

#[derive(Serialize, Deserialize)]
pub struct WireMove {
    kind: MoveKind,
    active: bool,
    keys: u64,
    bytes: u64,
    planned_keys: Option<u64>,
    planned_bytes: Option<u64>,
    permille: u64,
}

impl Load {
    pub(crate) fn to_wire(&self) -> WireLoad {
        WireLoad {
            requests: self.requests,
            window_ms: self.window_ms,
            p99_us: self.p99_us,
            hints_pending: self.hints_pending,
            moves: self
                .moves
                .iter()
                .map(|m| WireMove {
                    kind: m.kind,
                    active: m.active,
                    keys: m.keys,
                    bytes: m.bytes,
                    planned_keys: m.planned_keys,
                    planned_bytes: m.planned_bytes,
                    permille: m.permille,
                })
                .collect(),
        }
    }

    pub(crate) fn from_wire(w: WireLoad) -> Load {
        Load {
            requests: w.requests,
            window_ms: w.window_ms,
            p99_us: w.p99_us,
            hints_pending: w.hints_pending,
            moves: w
                .moves
                .into_iter()
                .map(|m| Move {
                    kind: m.kind,
                    active: m.active,
                    keys: m.keys,
                    bytes: m.bytes,
                    planned_keys: m.planned_keys,
                    planned_bytes: m.planned_bytes,
                    permille: m.permille,
                })
                .collect(),
        }
    }

    /// What the seed keeps of a report: at most [`MAX_MOVES`] movements, `permille` at most 1000
    /// (a report is a node's word, but the page should not draw a bar past its end).
    pub fn bounded(mut self) -> Load {
        self.moves.truncate(MAX_MOVES);
        for m in &mut self.moves {
            m.permille = m.permille.min(1000);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_from_json() {
        let load = Load {
            requests: 120,
            window_ms: 1000,
            p99_us: Some(850),
            hints_pending: 3,
            moves: vec![Move {
                kind: MoveKind::Join,
                active: true,
                keys: 10,
                bytes: 400,
                planned_keys: Some(40),
                planned_bytes: None,
                permille: 250,
            }],
        };
        let json = serde_json::to_string(&load).unwrap();
        assert!(json.contains(r#""kind":"join""#), "{json}");
        assert_eq!(serde_json::from_str::<Load>(&json).unwrap(), load);
        assert_eq!(load.rate(), 120.0);
        let bounded = Load { moves: vec![load.moves[0].clone(); 9], ..load }.bounded();
        assert_eq!(bounded.moves.len(), MAX_MOVES);
    }
}
