//! The replicas' answers to one client write, gathered in one place.
//!
//! A replicated write asks every node of the key's write set and waits for W of them. The general
//! quorum helper ([`quorum`](super::quorum)) gives each call a future of its own, boxed, with an
//! answer channel per remote call and a task that finishes the calls still running when the
//! quorum is reached. On the hottest path of a replicated store that machinery weighed: the
//! coordinator of a PUT allocated 26–27 times where a single node allocates 11, and with this
//! module 19 (`docs/performance-log.md`, "Figures of 2026-12-04 night").
//!
//! So a write's remote calls are not futures here. The coordinator queues the write for each
//! replica's batch ([`batch`](super::batch)) with a [`Ballot`], applies its own copy, and waits
//! on one shared [`Votes`]: the batch that carries the write casts each replica's answer into it.
//! The batch task runs to the end whether or not the coordinator still waits, so a write
//! acknowledged by W replicas still reaches the others, and a replica that fails leaves a hint
//! (cast here), as it did when every call ran to its end in a task of its own.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use dkv_membership::NodeId;
use dkv_storage::Version;
use smallvec::SmallVec;

use crate::error::PeerError;
use crate::life::state::Node;
use crate::replication::batch::dropped_unsent;
use crate::replication::quorum::QuorumError;
use crate::transport::peer::is_stale_epoch;
use crate::transport::wire::KeyEntry;

/// One replica's answer to a write: `Some` with the newer version it holds instead (it did not
/// apply this one).
pub type Answer = Result<Option<Version>, PeerError>;

/// The answers to one client write, by replica, as they come.
pub struct Votes {
    /// The write, kept for a hint if a replica fails.
    kv: KeyEntry,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    answers: SmallVec<[(NodeId, Answer); 4]>,
    waiting: Option<Waker>,
}

impl Votes {
    pub fn new(kv: KeyEntry) -> Arc<Votes> {
        Arc::new(Votes { kv, tally: Mutex::new(Tally::default()) })
    }

    /// The write these votes are about.
    pub fn write(&self) -> &KeyEntry {
        &self.kv
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record node `id`'s answer. A failure leaves a hint with `node` for later delivery, unless
    /// the replica left the range (a stale epoch: the write is planned again) or refused the
    /// version as too far ahead of its clock (it must not come back later as a hint).
    pub fn cast(&self, node: &Node, id: NodeId, answer: Answer) {
        if let Err(e) = &answer {
            let clock = e.status() == Some(http::StatusCode::UNPROCESSABLE_ENTITY.as_u16());
            if !is_stale_epoch(e) && !clock && node.hints.add(id, self.kv.clone(), Instant::now()) {
                tracing::debug!("write to node {id} failed, kept as a hint: {e}");
            }
        }
        self.record(id, answer);
    }

    fn record(&self, id: NodeId, answer: Answer) {
        let mut tally = self.lock();
        tally.answers.push((id, answer));
        if let Some(waker) = tally.waiting.take() {
            drop(tally);
            waker.wake();
        }
    }

    /// Wait until `needed` of `targets` applied the write, and return every answer that is not a
    /// failure; or, failing that, until every target answered, if at least `needed` did (some
    /// hold a newer version instead). Errors as soon as so many failed that `needed` cannot be
    /// reached, or at `deadline`: the same answers and errors as [`quorum`](super::quorum::quorum)
    /// with "applied" as the decisive answer. `here` is this node's own share, which casts its
    /// vote itself: polled here, so that the deadline bounds it too, without a task or a box.
    pub async fn count(
        &self,
        here: Option<impl Future<Output = ()>>,
        targets: &[NodeId],
        needed: usize,
        deadline: Duration,
    ) -> Result<Vec<(NodeId, Option<Version>)>, QuorumError> {
        let timer = tokio::time::sleep(deadline);
        tokio::pin!(timer);
        let mut here = std::pin::pin!(here);
        let timed_out = std::future::poll_fn(|cx| {
            if let Some(own) = here.as_mut().as_pin_mut() {
                if own.poll(cx).is_ready() {
                    here.set(None);
                }
            }
            let mut tally = self.lock();
            if decided(&tally.answers, targets.len(), needed) {
                return Poll::Ready(false);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            match &mut tally.waiting {
                Some(w) if w.will_wake(cx.waker()) => {}
                waiting => *waiting = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
        let answers = std::mem::take(&mut self.lock().answers);
        let mut ok = Vec::with_capacity(answers.len());
        let mut failures = Vec::new();
        for (id, answer) in answers {
            match answer {
                Ok(held) => ok.push((id, held)),
                Err(e) => failures.push((id, e)),
            }
        }
        if timed_out {
            for &id in targets.iter().filter(|t| !ok.iter().any(|(id, _)| id == *t)) {
                if !failures.iter().any(|(f, _)| *f == id) {
                    failures.push((id, PeerError::Timeout { addr: id.to_string(), ms: deadline.as_millis() }));
                }
            }
        }
        match ok.len() >= needed {
            true => Ok(ok),
            false => Err(QuorumError { needed, answered: ok.len(), failures }),
        }
    }
}

/// Whether `answers` from `targets` settle a write that needs `needed` applied: enough applied,
/// too many failed for that, or everyone answered.
fn decided(answers: &[(NodeId, Answer)], targets: usize, needed: usize) -> bool {
    let applied = answers.iter().filter(|(_, a)| matches!(a, Ok(None))).count();
    let failed = answers.iter().filter(|(_, a)| a.is_err()).count();
    applied >= needed || targets - failed < needed || answers.len() >= targets
}

/// One replica's place in a write's [`Votes`], carried in the batch that sends the write to it.
/// Dropped without a vote (its batch was never sent: the runtime shut down), it counts as a
/// failure, so the coordinator is not left waiting for its deadline.
pub struct Ballot {
    votes: Option<Arc<Votes>>,
    id: NodeId,
}

impl Ballot {
    pub fn new(votes: Arc<Votes>, id: NodeId) -> Ballot {
        Ballot { votes: Some(votes), id }
    }

    pub fn cast(mut self, node: &Node, answer: Answer) {
        if let Some(votes) = self.votes.take() {
            votes.cast(node, self.id, answer);
        }
    }
}

impl Drop for Ballot {
    fn drop(&mut self) {
        if let Some(votes) = self.votes.take() {
            votes.record(self.id, Err(dropped_unsent(&self.id.to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<NodeId> {
        (1..=n).map(NodeId).collect()
    }

    fn failed() -> Answer {
        Err(PeerError::Unreachable { addr: "h".into(), reason: "down".into() })
    }

    #[test]
    fn a_write_is_decided_by_enough_applied_too_many_failed_or_everyone() {
        let applied = |id| (NodeId(id), Ok(None));
        let superseded = |id| (NodeId(id), Ok(Some(Version { ts: 9, node: 1 })));
        assert!(!decided(&[applied(1)], 3, 2));
        assert!(decided(&[applied(1), applied(2)], 3, 2));
        assert!(!decided(&[applied(1), superseded(2)], 3, 2), "the third may still apply it");
        assert!(decided(&[applied(1), superseded(2), superseded(3)], 3, 2), "everyone answered");
        assert!(!decided(&[(NodeId(1), failed())], 3, 2));
        assert!(decided(&[(NodeId(1), failed()), (NodeId(2), failed())], 3, 2), "two of three failed");
    }

    #[tokio::test]
    async fn the_count_returns_at_the_quorum_and_names_the_silent_at_the_deadline() {
        let kv = KeyEntry { key: "k".into(), entry: dkv_storage::Entry::tombstone(Version { ts: 1, node: 1 }) };
        let votes = Votes::new(kv.clone());
        let targets = ids(3);
        votes.record(NodeId(1), Ok(None));
        let late = votes.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            late.record(NodeId(3), Ok(None));
        });
        let ok = votes
            .count(None::<std::future::Pending<()>>, &targets, 2, Duration::from_secs(1))
            .await
            .expect("two applied");
        assert_eq!(ok.iter().map(|(id, _)| id.0).collect::<Vec<_>>(), [1, 3]);

        let votes = Votes::new(kv);
        votes.record(NodeId(2), Ok(None));
        let e = votes
            .count(None::<std::future::Pending<()>>, &targets, 2, Duration::from_millis(50))
            .await
            .expect_err("one of two");
        assert_eq!((e.needed, e.answered), (2, 1));
        let silent: Vec<u64> = e.failures.iter().map(|(id, _)| id.0).collect();
        assert_eq!(silent, [1, 3], "{e}");
        assert!(e.to_string().contains("did not answer"), "{e}");
    }

    #[tokio::test]
    async fn a_ballot_dropped_unsent_counts_as_a_failure() {
        let kv = KeyEntry { key: "k".into(), entry: dkv_storage::Entry::tombstone(Version { ts: 1, node: 1 }) };
        let votes = Votes::new(kv);
        drop(Ballot::new(votes.clone(), NodeId(2)));
        votes.record(NodeId(1), Ok(None));
        let e = votes
            .count(None::<std::future::Pending<()>>, &ids(2), 2, Duration::from_secs(60))
            .await
            .expect_err("one failed");
        assert!(e.to_string().contains("dropped unsent"), "{e}");
    }
}
