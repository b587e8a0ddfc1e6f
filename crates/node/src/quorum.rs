//! One helper for "send to these replicas in parallel and wait for enough answers". Every quorum
//! operation goes through it, so every such error reads the same way: how many answered, how many
//! were needed, and what each of the others said.
//!
//! Each call runs as its own task, so the replicas that have not answered when the quorum is
//! reached still get the request: a write acknowledged by W replicas keeps going to the other
//! N − W, and a call that fails can record a hint for later (the call future decides that).

use std::future::Future;
use std::time::Duration;

use dkv_membership::NodeId;
use tokio::sync::mpsc;

use crate::error::PeerError;

#[derive(Debug)]
pub struct QuorumError {
    pub needed: usize,
    pub answered: usize,
    pub failures: Vec<(NodeId, PeerError)>,
}

impl std::fmt::Display for QuorumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let asked = self.answered + self.failures.len();
        write!(f, "{} of {} replicas answered, {} needed", self.answered, asked.max(self.needed), self.needed)?;
        for (id, e) in &self.failures {
            write!(f, "; node {id}: {e}")?;
        }
        Ok(())
    }
}

/// Start `call` for every target and return the first `needed` successes, or an error as soon as
/// so many failed that `needed` cannot be reached (or `deadline` passed).
pub async fn quorum<T, F, Fut>(
    targets: &[NodeId],
    needed: usize,
    deadline: Duration,
    call: F,
) -> Result<Vec<(NodeId, T)>, QuorumError>
where
    T: Send + 'static,
    F: Fn(NodeId) -> Fut,
    Fut: Future<Output = Result<T, PeerError>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(targets.len().max(1));
    for &id in targets {
        let fut = call(id);
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((id, fut.await)).await;
        });
    }
    drop(tx);
    let mut ok = Vec::with_capacity(needed);
    let mut failures = Vec::new();
    let timer = tokio::time::sleep(deadline);
    tokio::pin!(timer);
    while ok.len() < needed {
        tokio::select! {
            next = rx.recv() => match next {
                Some((id, Ok(v))) => ok.push((id, v)),
                Some((id, Err(e))) => {
                    failures.push((id, e));
                    if targets.len() - failures.len() < needed {
                        break;
                    }
                }
                None => break,
            },
            _ = &mut timer => {
                let answered: Vec<NodeId> = ok.iter().map(|(id, _)| *id).chain(failures.iter().map(|(id, _)| *id)).collect();
                for &id in targets.iter().filter(|id| !answered.contains(id)) {
                    failures.push((id, PeerError::Timeout { addr: id.to_string(), ms: deadline.as_millis() }));
                }
                break;
            }
        }
    }
    if ok.len() >= needed {
        Ok(ok)
    } else {
        Err(QuorumError { needed, answered: ok.len(), failures })
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
        let r = quorum(&targets, 2, LONG, |id| async move {
            match id {
                NodeId(1) => Ok(1),
                NodeId(2) => Err(PeerError::Timeout { addr: "h:2".into(), ms: 5 }),
                _ => Err(PeerError::Refused { addr: "h:3".into(), status: 409, message: "stale epoch".into() }),
            }
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!((e.needed, e.failures.len()), (2, 2));
        let text = e.to_string();
        assert!(text.contains("replicas answered, 2 needed"), "{text}");
        assert!(text.contains("node 0000000000000002: h:2 did not answer"), "{text}");
        assert!(text.contains("node 0000000000000003: h:3 answered 409: stale epoch"), "{text}");
    }

    #[tokio::test]
    async fn returns_at_quorum_and_stragglers_still_run() {
        let done = Arc::new(AtomicUsize::new(0));
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let r = quorum(&targets, 2, LONG, |id| {
            let done = done.clone();
            let mut release = release_rx.clone();
            async move {
                if id == NodeId(3) {
                    let _ = release.wait_for(|r| *r).await;
                }
                done.fetch_add(1, Ordering::SeqCst);
                Ok(id)
            }
        })
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
    async fn fails_fast_when_quorum_is_impossible_and_at_the_deadline() {
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let r = quorum(&targets, 2, LONG, |id| async move {
            if id == NodeId(1) {
                std::future::pending::<()>().await;
            }
            Err::<(), _>(PeerError::Unreachable { addr: id.to_string(), reason: "down".into() })
        });
        let e = tokio::time::timeout(Duration::from_secs(1), r)
            .await
            .expect("did not wait for the hung replica")
            .unwrap_err();
        assert_eq!(e.failures.len(), 2);

        let r =
            quorum(&targets, 1, Duration::from_millis(50), |_| std::future::pending::<Result<(), PeerError>>()).await;
        let e = r.unwrap_err();
        assert_eq!(e.failures.len(), 3, "every silent replica is named: {e}");
    }
}
