//! One helper for "send to these replicas in parallel and wait for enough answers": reads and
//! scans go through it. Client writes gather their answers with less machinery (`votes.rs`) into
//! the same [`QuorumError`], so every such error reads the same way: how many answered, how many
//! were needed, and what each of the others said.
//!
//! The replicas that have not answered when the quorum is reached still get the request: their
//! calls move to a task of their own (see [`Running`]), so a write acknowledged by W replicas
//! keeps going to the other N − W, and a call that fails can record a hint for later (the call
//! future decides that).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use dkv_membership::NodeId;

use crate::error::PeerError;
use crate::transport::peer::is_stale_epoch;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QuorumError {
    pub needed: usize,
    pub answered: usize,
    pub failures: Vec<(NodeId, PeerError)>,
}

impl std::fmt::Display for QuorumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not "of how many": an error decided early (too many failed) has answers still to
        // come, and "0 of 2 replicas answered" was read as the key's two replicas where it had
        // three (found by a hunt, 2026-12-07).
        let replicas = if self.answered == 1 { "replica" } else { "replicas" };
        write!(f, "{} {replicas} answered, {} needed", self.answered, self.needed)?;
        if !self.failures.is_empty() {
            write!(f, ", {} failed", self.failures.len())?;
        }
        for (id, e) in &self.failures {
            write!(f, "; node {id}: {e}")?;
        }
        Ok(())
    }
}

/// Asking fewer replicas than there are, and more of them only when needed: the first `first`
/// targets are asked at once; another is asked whenever one of those fails or answers
/// indecisively, and whenever `after` passes without enough decisive answers (a hedge: the
/// replicas asked may be stalled). Each hedge is counted in `counter`.
pub struct Hedge<'a> {
    pub first: usize,
    pub after: Duration,
    pub counter: &'a AtomicU64,
}

/// What one answer is worth to a quorum (see [`Enough`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// It counts towards [`Enough::decisive`] (and [`Enough::complete`]).
    Decides,
    /// It counts towards [`Enough::complete`] only: a replica's complete "not found" for a read
    /// whose R alone does not make it strong.
    Complete,
    /// It counts only as an answer.
    Weak,
}

impl From<bool> for Weight {
    fn from(decides: bool) -> Self {
        if decides {
            Weight::Decides
        } else {
            Weight::Weak
        }
    }
}

/// The answers that end a quorum: `decisive` answers that decide, or `complete` answers that
/// decide or are complete, whichever comes first. A read with R = 1 and W = 2 of N = 3 is decided
/// by one live value, or by two complete answers of any kind: any two replicas share one with
/// every write quorum, so the newest of their answers is at least the last acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enough {
    pub decisive: usize,
    pub complete: usize,
}

impl From<usize> for Enough {
    /// Only decisive answers count.
    fn from(decisive: usize) -> Self {
        Enough { decisive, complete: usize::MAX }
    }
}

/// Start `call` for every target and return as soon as `needed` says enough answers have
/// arrived (see [`Enough`]; a count alone is the number of answers for which `decisive` holds) —
/// or, failing that, once every target answered, if at least `needed.decisive` did. Errors as
/// soon as so many failed that `needed.decisive` cannot be reached, or at `deadline`.
///
/// `decisive` lets a read treat "not found" as weak: a replica that missed a write answers "not
/// found", so such answers only decide the read when no replica has the key, or when enough of
/// them are complete ([`Weight::Complete`]).
pub async fn quorum<T, F, Fut, W>(
    targets: &[NodeId],
    needed: impl Into<Enough>,
    deadline: Duration,
    decisive: impl Fn(&T) -> W,
    call: F,
) -> Result<Vec<(NodeId, T)>, QuorumError>
where
    T: Send + 'static,
    F: Fn(NodeId) -> Fut,
    Fut: Future<Output = Result<T, PeerError>> + Send + 'static,
    W: Into<Weight>,
{
    quorum_hedged(targets, needed, deadline, None, decisive, call).await
}

/// [`quorum`], asking the targets in order as `hedge` says (all at once without one).
pub async fn quorum_hedged<T, F, Fut, W>(
    targets: &[NodeId],
    needed: impl Into<Enough>,
    deadline: Duration,
    hedge: Option<Hedge<'_>>,
    decisive: impl Fn(&T) -> W,
    call: F,
) -> Result<Vec<(NodeId, T)>, QuorumError>
where
    T: Send + 'static,
    F: Fn(NodeId) -> Fut,
    Fut: Future<Output = Result<T, PeerError>> + Send + 'static,
    W: Into<Weight>,
{
    let enough = needed.into();
    let needed = enough.decisive;
    let mut running = Running(Vec::with_capacity(targets.len()));
    let mut launched = 0;
    let launch = |launched: &mut usize, running: &mut Running<_>| {
        let Some(&id) = targets.get(*launched) else { return false };
        *launched += 1;
        let fut = call(id);
        running.0.push(Box::pin(async move { (id, fut.await) }));
        true
    };
    let first = hedge.as_ref().map_or(targets.len(), |h| h.first.max(needed));
    while launched < first.min(targets.len()) {
        launch(&mut launched, &mut running);
    }
    let mut ok = Vec::with_capacity(needed);
    let mut failures = Vec::new();
    let mut counted = 0;
    let mut complete = 0;
    // One timer for both the deadline and the next hedge, whichever comes first: each timer
    // armed is an insertion into Tokio's wheel and a removal, on every quorum operation.
    let started = tokio::time::Instant::now();
    let mut give_up = started.checked_add(deadline).unwrap_or(started + Duration::from_secs(365 * 24 * 3600));
    // Whether the deadline was moved once for a timer that rang late (see `LATE`).
    let mut woke_late = false;
    let alarm_at = |from: tokio::time::Instant, launched: usize, give_up| match &hedge {
        Some(h) if launched < targets.len() => from.checked_add(h.after).map_or(give_up, |t| t.min(give_up)),
        _ => give_up,
    };
    let alarm = tokio::time::sleep_until(alarm_at(started, launched, give_up));
    tokio::pin!(alarm);
    while counted < needed && complete < enough.complete && ok.len() + failures.len() < launched {
        tokio::select! {
            next = running.next(), if !running.0.is_empty() => match next {
                (id, Ok(v)) => {
                    let weight = decisive(&v).into();
                    counted += usize::from(weight == Weight::Decides);
                    complete += usize::from(weight != Weight::Weak);
                    ok.push((id, v));
                    if weight != Weight::Decides && hedge.is_some() {
                        launch(&mut launched, &mut running); // a weak answer: ask another replica
                    }
                }
                (id, Err(e)) => {
                    // A replica with a newer view than this plan's: the caller refreshes and plans
                    // again if the others do not make the quorum soon. Waiting on, a read that
                    // asked a replica just expired (paused: its call hangs) and one that had taken
                    // the new view already waited the whole deadline, 5 s, for the expired one
                    // (found by trying, 2026-12-06). Not at once: the others, answering as they
                    // usually do, still decide it when this node cannot learn the new view (the
                    // seed out of reach).
                    if is_stale_epoch(&e) {
                        let now = tokio::time::Instant::now();
                        give_up = give_up.min(now + AFTER_STALE);
                        alarm.as_mut().reset(alarm_at(now, launched, give_up));
                    }
                    failures.push((id, e));
                    if targets.len() - failures.len() < needed {
                        break;
                    }
                    launch(&mut launched, &mut running); // ask another in its place
                }
            },
            () = &mut alarm => {
                let now = tokio::time::Instant::now();
                if now < give_up {
                    // A hedge: the replicas asked are taking much longer than they usually do.
                    if let Some(h) = &hedge {
                        if launch(&mut launched, &mut running) {
                            h.counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    alarm.as_mut().reset(alarm_at(now, launched, give_up));
                } else if !woke_late && now.saturating_duration_since(give_up) > LATE {
                    // The deadline's timer rang long after it was due: this process was stopped
                    // (SIGSTOP, a paused VM), and the answers that came meanwhile are still to be
                    // read. They get a moment first: a coordinator paused past its deadline
                    // named a healthy replica that had answered as the one that timed out (found
                    // by a hunt, 2026-12-07).
                    woke_late = true;
                    give_up = now + AFTER_LATE;
                    alarm.as_mut().reset(give_up);
                } else {
                    let answered: Vec<NodeId> =
                        ok.iter().map(|(id, _)| *id).chain(failures.iter().map(|(id, _)| *id)).collect();
                    for &id in targets[..launched].iter().filter(|id| !answered.contains(id)) {
                        let ms = give_up.duration_since(started).as_millis();
                        // Named by the error as `node ID:` already: "node ID: it did not answer …"
                        // (the id twice before, where a call's own timeout gives the address).
                        failures.push((id, PeerError::Timeout { addr: "it".into(), ms }));
                    }
                    break;
                }
            }
        }
    }
    if ok.len() >= needed {
        Ok(ok)
    } else {
        Err(QuorumError { needed, answered: ok.len(), failures })
    }
}

/// A deadline timer that rings this much after it was due says the process was stopped; the
/// answers that came meanwhile then get [`AFTER_LATE`] to be read.
pub(crate) const LATE: Duration = Duration::from_millis(100);
pub(crate) const AFTER_LATE: Duration = Duration::from_millis(20);

/// How long the other replicas still get once one has refused the quorum's view as stale: they
/// answer within milliseconds as a rule, and one that takes longer than this is likely the one
/// the newer view took out.
const AFTER_STALE: Duration = Duration::from_millis(100);

/// The calls of one quorum. They are polled by the caller rather than spawned: most end before
/// the quorum does, and polling them in place saves a task, a channel message and a wake-up per
/// replica on the hottest path. There are a handful (the key's replicas), so each wake-up polls
/// them all: cheaper than `FuturesUnordered`'s shared ready queue and a waker per call. The calls
/// still running when the caller is done with them (the quorum reached, the deadline passed, or
/// the caller itself dropped, as when a client hangs up) go to a task of their own on drop, so a
/// write still reaches every replica, or leaves its hint, as it did when every call was spawned
/// from the start.
pub(crate) struct Running<S: Future + Send + 'static>(Vec<Pin<Box<S>>>)
where
    S::Output: Send;

impl<S: Future + Send + 'static> Running<S>
where
    S::Output: Send,
{
    pub(crate) fn new() -> Self {
        Running(Vec::new())
    }

    pub(crate) fn push(&mut self, call: S) {
        self.0.push(Box::pin(call));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next call to finish (pending forever when none runs: the caller checks first).
    pub(crate) fn next(&mut self) -> impl Future<Output = S::Output> + '_ {
        std::future::poll_fn(move |cx| {
            for i in 0..self.0.len() {
                if let Poll::Ready(out) = self.0[i].as_mut().poll(cx) {
                    drop(self.0.swap_remove(i));
                    return Poll::Ready(out);
                }
            }
            Poll::Pending
        })
    }
}

impl<S: Future + Send + 'static> Drop for Running<S>
where
    S::Output: Send,
{
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        // All polled at each wake-up, not awaited in turn: a call still connecting must not hold
        // up the others.
        let left = self.0.len();
        let mut rest = std::mem::take(&mut self.0);
        let all_done = std::future::poll_fn(move |cx| {
            rest.retain_mut(|call| call.as_mut().poll(cx).is_pending());
            if rest.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(all_done)),
            Err(_) => tracing::warn!("{left} replica calls dropped: no runtime to finish them on"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn error_names_every_failed_replica() {
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let r = quorum(
            &targets,
            2,
            LONG,
            |_| true,
            |id| async move {
                match id {
                    NodeId(1) => Ok(1),
                    NodeId(2) => Err(PeerError::Timeout { addr: "h:2".into(), ms: 5 }),
                    _ => Err(PeerError::Refused { addr: "h:3".into(), status: 500, message: "disk full".into() }),
                }
            },
        )
        .await;
        let e = r.unwrap_err();
        assert_eq!((e.needed, e.failures.len()), (2, 2));
        let text = e.to_string();
        assert!(text.starts_with("1 replica answered, 2 needed, 2 failed; node"), "{text}");
        assert!(text.contains("node 0000000000000002: h:2 did not answer"), "{text}");
        assert!(text.contains("node 0000000000000003: h:3 answered 500: disk full"), "{text}");
    }

    #[tokio::test]
    async fn returns_at_quorum_and_stragglers_still_run() {
        let done = Arc::new(AtomicUsize::new(0));
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let r = quorum(
            &targets,
            2,
            LONG,
            |_| true,
            |id| {
                let done = done.clone();
                let mut release = release_rx.clone();
                async move {
                    if id == NodeId(3) {
                        let _ = release.wait_for(|r| *r).await;
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(id)
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(r.len(), 2);
        release_tx.send_replace(true);
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) == 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the straggling replica call was dropped");
    }

    #[tokio::test]
    async fn indecisive_answers_wait_for_the_others() {
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        // Node 1 answers "nothing" at once; node 2 has the value a little later.
        let r = quorum(
            &targets,
            1,
            LONG,
            |v: &Option<u8>| v.is_some(),
            |id| async move {
                match id {
                    NodeId(1) => Ok(None),
                    NodeId(2) => {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        Ok(Some(7))
                    }
                    _ => Err(PeerError::Unreachable { addr: "h:3".into(), reason: "down".into() }),
                }
            },
        )
        .await
        .unwrap();
        assert!(r.iter().any(|(_, v)| *v == Some(7)), "{r:?}");
        // Nobody has it: every answer is indecisive, and that is the answer.
        let r = quorum(&targets[..2], 1, LONG, |v: &Option<u8>| v.is_some(), |_| async { Ok(None) }).await.unwrap();
        assert_eq!(r.len(), 2);
    }

    #[tokio::test]
    async fn fails_fast_when_quorum_is_impossible_and_at_the_deadline() {
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let r = quorum(
            &targets,
            2,
            LONG,
            |_| true,
            |id| async move {
                if id == NodeId(1) {
                    std::future::pending::<()>().await;
                }
                Err::<(), _>(PeerError::Unreachable { addr: id.to_string(), reason: "down".into() })
            },
        );
        let e = tokio::time::timeout(Duration::from_secs(1), r)
            .await
            .expect("did not wait for the hung replica")
            .unwrap_err();
        assert_eq!(e.failures.len(), 2);

        let r = quorum(
            &targets,
            1,
            Duration::from_millis(50),
            |_| true,
            |_| std::future::pending::<Result<(), PeerError>>(),
        )
        .await;
        let e = r.unwrap_err();
        assert_eq!(e.failures.len(), 3, "every silent replica is named: {e}");
    }

    /// A replica with a newer view ends the quorum soon, while another still hangs: the caller
    /// plans again under that view (it waited for the hung one until the deadline). One that
    /// answers as usual still makes the quorum.
    #[tokio::test]
    async fn a_replica_with_a_newer_view_ends_the_quorum_soon() {
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let r = quorum(
            &targets,
            2,
            LONG,
            |_| true,
            |id| async move {
                match id {
                    NodeId(1) => Ok(1),
                    NodeId(2) => std::future::pending().await,
                    _ => Err(PeerError::Refused { addr: "h:3".into(), status: 409, message: "stale epoch".into() }),
                }
            },
        );
        let e = tokio::time::timeout(Duration::from_secs(1), r).await.expect("did not wait for the hung replica");
        let e = e.unwrap_err();
        assert!(e.failures.iter().any(|(_, f)| is_stale_epoch(f)), "{e}");
        assert!(e.to_string().contains("did not answer within 100 ms"), "{e}");

        let r = quorum(
            &targets,
            2,
            LONG,
            |_| true,
            |id| async move {
                match id {
                    NodeId(3) => Err(PeerError::Refused { addr: "h:3".into(), status: 409, message: "stale".into() }),
                    _ => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok(1)
                    }
                }
            },
        );
        assert_eq!(r.await.expect("the other two answer").len(), 2);
    }

    #[tokio::test]
    async fn a_hedge_asks_the_next_target_when_the_first_is_silent() {
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let counter = AtomicU64::new(0);
        let hedge = Hedge { first: 1, after: Duration::from_millis(20), counter: &counter };
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let started = std::time::Instant::now();
        let r = quorum_hedged(
            &targets,
            1,
            LONG,
            Some(hedge),
            |_| true,
            |id| {
                asked.lock().unwrap().push(id);
                async move {
                    if id == NodeId(1) {
                        std::future::pending::<()>().await; // paused
                    }
                    Ok(id)
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(r[0].1, NodeId(2));
        assert!(started.elapsed() < Duration::from_secs(1), "waited {:?}", started.elapsed());
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        assert_eq!(*asked.lock().unwrap(), vec![NodeId(1), NodeId(2)], "node 3 was never needed");
    }

    #[tokio::test]
    async fn complete_answers_end_a_quorum_that_no_answer_decides() {
        // R = 1 of three, W = 2: two complete "not found"s decide without the silent third.
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let enough = Enough { decisive: 1, complete: 2 };
        let weight = |v: &u8| if *v == 0 { Weight::Complete } else { Weight::Weak };
        let silent_third = |id| async move {
            if id == NodeId(3) {
                std::future::pending::<()>().await;
            }
            Ok(0u8)
        };
        let r = quorum(&targets, enough, LONG, weight, silent_third);
        let r = tokio::time::timeout(Duration::from_secs(1), r).await.expect("waited for the silent one").unwrap();
        assert_eq!(r.len(), 2);
        // Weak answers do not count towards it: every target is waited for (here, the deadline).
        let r = quorum(&targets, enough, Duration::from_millis(50), |_: &u8| Weight::Weak, silent_third).await;
        assert_eq!(r.unwrap().len(), 2, "the two that answered, once the third timed out");
    }

    /// A process stopped past a quorum's deadline (here, the runtime's only thread blocked for
    /// 300 ms, as SIGSTOP stops it) wakes with the deadline's timer and the answers that came
    /// meanwhile both ready: the answers are read first, and the quorum succeeds. Without that,
    /// the timer won about half the time and named the replica that had answered as timed out.
    #[test]
    fn answers_that_came_while_the_process_was_stopped_are_read_before_the_deadline_is_called() {
        for round in 0..8 {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let r = runtime.block_on(async {
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    std::thread::sleep(Duration::from_millis(300)); // stopped
                });
                let targets = [NodeId(1)];
                let answers_at = |_| async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Ok(7u8)
                };
                quorum(&targets, 1, Duration::from_millis(50), |_: &u8| true, answers_at).await
            });
            assert_eq!(r.map(|a| a.len()).map_err(|e| e.to_string()), Ok(1), "round {round}");
        }
    }

    /// A hedged quorum of one over three silent replicas, a hedge due every `after`: the hedges
    /// asked and the error, once the deadline has passed.
    async fn all_silent(after: Duration, deadline: Duration) -> (u64, QuorumError) {
        let counter = AtomicU64::new(0);
        let hedge = Hedge { first: 1, after, counter: &counter };
        let r = quorum_hedged(
            &[NodeId(1), NodeId(2), NodeId(3)],
            1,
            deadline,
            Some(hedge),
            |_| true,
            |_| std::future::pending::<Result<(), PeerError>>(),
        );
        let e = tokio::time::timeout(Duration::from_secs(5), r).await.expect("the deadline was lost").unwrap_err();
        (counter.load(Ordering::Relaxed), e)
    }

    #[tokio::test]
    async fn hedges_and_the_deadline_share_one_timer_without_losing_either() {
        // Every replica silent: a hedge every 20 ms until all three are asked, then the deadline.
        let deadline = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let (hedges, e) = all_silent(Duration::from_millis(20), deadline).await;
        assert!(started.elapsed() >= deadline, "gave up early, after {:?}", started.elapsed());
        assert_eq!(hedges, 2, "one hedge for each replica not asked at first");
        assert_eq!(e.failures.len(), 3, "every silent replica is named: {e}");
        assert!(e.failures.iter().all(|(_, f)| matches!(f, PeerError::Timeout { ms: 200, .. })), "{e}");

        // A hedge due after the deadline never comes.
        let (hedges, e) = all_silent(Duration::from_secs(10), Duration::from_millis(50)).await;
        assert_eq!((hedges, e.failures.len()), (0, 1), "{e}");
    }

    #[tokio::test]
    async fn calls_outlive_a_caller_that_gives_up() {
        // A client that hangs up drops the coordinator's future mid-quorum: the writes it started
        // must still reach their replicas (or leave their hints).
        let done = Arc::new(AtomicUsize::new(0));
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let r = quorum(
            &targets,
            2,
            LONG,
            |_| true,
            |id| {
                let done = done.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(id)
                }
            },
        );
        assert!(tokio::time::timeout(Duration::from_millis(1), r).await.is_err(), "answered too soon");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while done.load(Ordering::SeqCst) < 3 {
            assert!(std::time::Instant::now() < deadline, "calls dropped with their caller");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
