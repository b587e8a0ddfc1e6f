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
//!
//! An acknowledgement counts towards W only if its replica is complete for the key (see
//! `settled.rs`): a replica that gained the key in a membership change, before its anti-entropy
//! round, may lack an acknowledged write stamped above this one, and so cannot answer
//! "superseded" to it. Two such acknowledgements — the new replica's and one from a replica that
//! missed that write — would otherwise acknowledge a write that the older one then overwrites.
//! The write set's other members (nodes joining) never count towards W; they count towards the
//! acknowledgements the write set needs in all.
//!
//! Too few complete acknowledgements make the write wait for the other replicas, not fail: once
//! every target answered or failed, or at the deadline, a write that enough applied and none
//! answered "superseded" is acknowledged, complete or not, as a read decides on incomplete
//! answers once every replica answered. Only a second fault (a complete replica unreachable
//! while another gained the key) gets it there; without that, after a restart of every replica
//! (none is complete until its round), a write would fail until each finished a round.

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
use crate::replication::quorum::{QuorumError, AFTER_LATE, LATE};
use crate::transport::wire::{Ack, KeyEntry};

/// One replica's answer to a write.
pub type Answer = Result<Ack, PeerError>;

/// How many answers acknowledge a write.
#[derive(Clone, Copy, Debug)]
pub struct Needed {
    /// Applied by this many of the write set (W, plus each node joining into the range).
    pub applied: usize,
    /// Of them, applied by this many replicas complete for the key (W).
    pub complete: usize,
}

/// How a write that was decided ended, short of failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Applied by W complete replicas (and by enough of the write set).
    Acknowledged,
    /// Applied by enough of the write set once every target answered or failed, or at the
    /// deadline, but by fewer than W complete replicas (see the module doc).
    AcknowledgedIncomplete,
    /// Too few applied it, and this is the newest version held instead: stamp above it and send
    /// it again.
    Superseded(Version),
}

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

    /// The first answer cast, once there is one (for tests of what carries the votes).
    #[cfg(test)]
    pub async fn first(&self) -> Answer {
        std::future::poll_fn(|cx| {
            let mut tally = self.lock();
            match tally.answers.first() {
                Some((_, answer)) => Poll::Ready(answer.clone()),
                None => {
                    tally.waiting = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record node `id`'s answer. A failure leaves a hint with `node` for later delivery, unless
    /// the replica refused the version as too far ahead of its clock (it must not come back later
    /// as a hint). A stale epoch leaves one too: the write is planned again only when it fails,
    /// and one acknowledged by the others left that replica, which may still replicate the key
    /// in its newer view, a copy short until anti-entropy (found by reading, 2026-12-06).
    /// Delivery goes by the view of its time: to the replica if it still has the key, else to
    /// the key's replicas.
    pub fn cast(&self, node: &Node, id: NodeId, answer: Answer) {
        if let Err(e) = &answer {
            let clock = e.status() == Some(http::StatusCode::UNPROCESSABLE_ENTITY.as_u16());
            // Failed now: aged by its version (a write in flight across a pause is old already).
            if !clock && node.hints.add_aged(id, self.kv.clone(), Instant::now(), Duration::ZERO) {
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

    /// Wait until the write is acknowledged (`needed`), and say so; or, failing that, until every
    /// target answered or failed, or `deadline`: then the newest version held instead if some
    /// did, else acknowledged if enough applied, complete or not. Errors as soon as so many
    /// failed that `needed` cannot be reached, or at `deadline`: the same answers and errors as
    /// [`quorum`](super::quorum::quorum), with a complete "applied" as the decisive answer.
    /// `here` is this node's own share, which casts its vote itself: polled here, so that the
    /// deadline bounds it too, without a task or a box.
    pub async fn count(
        &self,
        here: Option<impl Future<Output = ()>>,
        targets: &[NodeId],
        needed: Needed,
        deadline: Duration,
    ) -> Result<Counted, QuorumError> {
        let timer = tokio::time::sleep(deadline);
        tokio::pin!(timer);
        // A timer that rang long after it was due gives the answers that came meanwhile a moment
        // (see `quorum::LATE`).
        let mut woke_late = false;
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
                let now = tokio::time::Instant::now();
                if woke_late || now.saturating_duration_since(timer.deadline()) <= LATE {
                    return Poll::Ready(true);
                }
                woke_late = true;
                timer.as_mut().reset(now + AFTER_LATE);
                let _ = timer.as_mut().poll(cx); // registers the waker for the new deadline
            }
            match &mut tally.waiting {
                Some(w) if w.will_wake(cx.waker()) => {}
                waiting => *waiting = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
        let answers = std::mem::take(&mut self.lock().answers);
        if acknowledged(&answers, needed) {
            return Ok(Counted::Acknowledged);
        }
        // Decided short of that (every target answered or failed, too many failed, or the
        // deadline passed): by who applied it and who holds a newer version, complete or not.
        let applied = answers.iter().filter(|(_, a)| matches!(a, Ok(Ack::Applied { .. }))).count();
        let held = || {
            answers.iter().filter_map(|(_, a)| match a {
                Ok(Ack::Superseded(v)) => Some(*v),
                _ => None,
            })
        };
        let answered = applied + held().count();
        match held().max() {
            Some(newest) if answered >= needed.applied => return Ok(Counted::Superseded(newest)),
            None if applied >= needed.applied => return Ok(Counted::AcknowledgedIncomplete),
            _ => {}
        }
        let mut failures: Vec<(NodeId, PeerError)> =
            answers.iter().filter_map(|(id, a)| a.as_ref().err().map(|e| (*id, e.clone()))).collect();
        if timed_out {
            for &id in targets.iter().filter(|&&t| !answers.iter().any(|(id, _)| *id == t)) {
                // "node ID: it did not answer …", as `quorum.rs` says it.
                failures.push((id, PeerError::Timeout { addr: "it".into(), ms: deadline.as_millis() }));
            }
        }
        Err(QuorumError { needed: needed.applied, answered, failures })
    }
}

/// Whether `answers` acknowledge a write before every target answered: enough applied, and
/// enough of them complete (see the module doc).
fn acknowledged(answers: &[(NodeId, Answer)], needed: Needed) -> bool {
    let applied = answers.iter().filter(|(_, a)| matches!(a, Ok(Ack::Applied { .. }))).count();
    let complete = answers.iter().filter(|(_, a)| matches!(a, Ok(Ack::Applied { complete: true }))).count();
    applied >= needed.applied && complete >= needed.complete
}

/// Whether `answers` from `targets` settle a write: acknowledged, too many failed for that,
/// everyone answered, or enough answered "superseded" that the rest cannot make it applied by
/// enough, while enough answered to stamp the write again. Without the last, two replicas of
/// three holding a newer version held the write for the whole deadline when the third was
/// stalled, before it was stamped again (5 s a write: found by a hunt, 2026-12-07).
fn decided(answers: &[(NodeId, Answer)], targets: usize, needed: Needed) -> bool {
    let failed = answers.iter().filter(|(_, a)| a.is_err()).count();
    let held = answers.iter().filter(|(_, a)| matches!(a, Ok(Ack::Superseded(_)))).count();
    let applied = answers.iter().filter(|(_, a)| matches!(a, Ok(Ack::Applied { .. }))).count();
    let superseded = held > 0 && applied + held >= needed.applied && targets - failed - held < needed.applied;
    acknowledged(answers, needed) || targets - failed < needed.applied || answers.len() >= targets || superseded
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

    const W2: Needed = Needed { applied: 2, complete: 2 };
    const NEWER: Version = Version { ts: 9, node: 1 };

    fn applied(id: u64) -> (NodeId, Answer) {
        (NodeId(id), Ok(Ack::Applied { complete: true }))
    }

    fn incomplete(id: u64) -> (NodeId, Answer) {
        (NodeId(id), Ok(Ack::Applied { complete: false }))
    }

    fn superseded(id: u64) -> (NodeId, Answer) {
        (NodeId(id), Ok(Ack::Superseded(NEWER)))
    }

    fn votes_with(answers: Vec<(NodeId, Answer)>) -> Arc<Votes> {
        let kv = KeyEntry { key: "k".into(), entry: dkv_storage::Entry::tombstone(Version { ts: 1, node: 1 }) };
        let votes = Votes::new(kv);
        for (id, answer) in answers {
            votes.record(id, answer);
        }
        votes
    }

    async fn count(votes: &Votes, targets: u64, needed: Needed, deadline_ms: u64) -> Result<Counted, QuorumError> {
        let here = None::<std::future::Pending<()>>;
        votes.count(here, &ids(targets), needed, Duration::from_millis(deadline_ms)).await
    }

    #[test]
    fn a_write_is_decided_by_enough_applied_too_many_failed_or_everyone() {
        assert!(!decided(&[applied(1)], 3, W2));
        assert!(decided(&[applied(1), applied(2)], 3, W2));
        assert!(!decided(&[applied(1), superseded(2)], 3, W2), "the third may still apply it");
        assert!(decided(&[applied(1), superseded(2), superseded(3)], 3, W2), "everyone answered");
        assert!(decided(&[superseded(1), superseded(2)], 3, W2), "the third cannot make two applied");
        assert!(!decided(&[superseded(1), (NodeId(2), failed())], 3, W2), "too few answered to stamp again");
        assert!(!decided(&[(NodeId(1), failed())], 3, W2));
        assert!(decided(&[(NodeId(1), failed()), (NodeId(2), failed())], 3, W2), "two of three failed");
    }

    /// An incomplete replica's "applied" counts towards the write set's acknowledgements, not
    /// towards W: until every target answered, a write needs W complete ones.
    #[test]
    fn only_complete_replicas_make_w_before_everyone_answered() {
        assert!(!acknowledged(&[incomplete(1), applied(2)], W2), "one complete of W = 2");
        assert!(!decided(&[incomplete(1), applied(2)], 3, W2), "the third may still answer");
        assert!(acknowledged(&[incomplete(1), applied(2), applied(3)], W2));
        assert!(decided(&[incomplete(1), applied(2), (NodeId(3), failed())], 3, W2), "everyone answered");
        let joining = Needed { applied: 3, complete: 2 };
        assert!(acknowledged(&[incomplete(4), applied(1), applied(2)], joining), "the joining node and W");
        assert!(!acknowledged(&[applied(1), applied(2)], joining), "W, but too few of the write set");
    }

    /// A process stopped past the write's deadline (the runtime's only thread blocked for 300
    /// ms) wakes with the deadline's timer and an acknowledgement due meanwhile both ready: the
    /// acknowledgement is taken, not named as timed out (as `quorum.rs`'s test for reads).
    #[test]
    fn an_answer_that_came_while_the_process_was_stopped_counts() {
        for round in 0..8 {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let counted = runtime.block_on(async {
                let votes = votes_with(vec![applied(1)]);
                let late = votes.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    std::thread::sleep(Duration::from_millis(300)); // stopped
                });
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    late.record(NodeId(2), Ok(Ack::Applied { complete: true }));
                });
                count(&votes, 3, W2, 50).await.map_err(|e| e.to_string())
            });
            assert_eq!(counted, Ok(Counted::Acknowledged), "round {round}");
        }
    }

    #[tokio::test]
    async fn the_count_returns_at_the_quorum_and_names_the_silent_at_the_deadline() {
        let votes = votes_with(vec![applied(1)]);
        let late = votes.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            late.record(NodeId(3), Ok(Ack::Applied { complete: true }));
        });
        assert_eq!(count(&votes, 3, W2, 1_000).await.expect("two applied"), Counted::Acknowledged);

        let votes = votes_with(vec![applied(2)]);
        let e = count(&votes, 3, W2, 50).await.expect_err("one of two");
        assert_eq!((e.needed, e.answered), (2, 1));
        let silent: Vec<u64> = e.failures.iter().map(|(id, _)| id.0).collect();
        assert_eq!(silent, [1, 3], "{e}");
        assert!(e.to_string().contains("did not answer"), "{e}");
    }

    /// A replica that gained the key, and one that missed the newest write, both apply a write
    /// stamped below it; the third holds it. The write is not acknowledged until the third
    /// answers: then it is stamped again, above the version held. A third that failed, or did
    /// not answer by the deadline, leaves the write to those that applied it, as a read is left
    /// to the answers it got.
    #[tokio::test]
    async fn an_incomplete_acknowledgement_waits_for_the_other_replicas() {
        let votes = votes_with(vec![incomplete(1), applied(2)]);
        let late = votes.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            late.record(NodeId(3), Ok(Ack::Superseded(NEWER)));
        });
        assert_eq!(count(&votes, 3, W2, 60_000).await.expect("decided"), Counted::Superseded(NEWER));

        let votes = votes_with(vec![incomplete(1), applied(2), (NodeId(3), failed())]);
        assert_eq!(count(&votes, 3, W2, 60_000).await.expect("decided"), Counted::AcknowledgedIncomplete);
        let votes = votes_with(vec![incomplete(1), applied(2)]);
        let started = std::time::Instant::now();
        assert_eq!(count(&votes, 3, W2, 50).await.expect("decided"), Counted::AcknowledgedIncomplete);
        assert!(started.elapsed() >= Duration::from_millis(50), "waited for the third until the deadline");
    }

    /// Two replicas of three hold a newer version, the third is silent (stalled): the write is
    /// stamped again at once, not at the deadline.
    #[tokio::test]
    async fn two_superseded_of_three_decide_without_the_silent_one() {
        let votes = votes_with(vec![superseded(1), superseded(2)]);
        let started = std::time::Instant::now();
        assert_eq!(count(&votes, 3, W2, 60_000).await.expect("decided"), Counted::Superseded(NEWER));
        assert!(started.elapsed() < Duration::from_secs(10), "decided before the deadline");
    }

    #[tokio::test]
    async fn a_ballot_dropped_unsent_counts_as_a_failure() {
        let votes = votes_with(vec![applied(1)]);
        drop(Ballot::new(votes.clone(), NodeId(2)));
        let e = count(&votes, 2, W2, 60_000).await.expect_err("one failed");
        assert!(e.to_string().contains("dropped unsent"), "{e}");
    }
}
