//! One helper for "send to these replicas in parallel and wait for enough answers". Every quorum
//! operation goes through it, so every such error reads the same way: how many answered, how many
//! were needed, and what each of the others said.

use std::future::Future;

use dkv_membership::NodeId;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::error::PeerError;

#[derive(Debug)]
pub struct QuorumError {
    pub needed: usize,
    pub answered: usize,
    pub failures: Vec<(NodeId, PeerError)>,
}

impl std::fmt::Display for QuorumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} replicas answered, {} needed",
            self.answered,
            self.answered + self.failures.len(),
            self.needed
        )?;
        for (id, e) in &self.failures {
            write!(f, "; node {id}: {e}")?;
        }
        Ok(())
    }
}

/// Run `call` for every target concurrently; succeed with the first `needed` answers.
/// Targets still running when the quorum is reached are left to finish in the background only
/// as far as their futures are already polled: they are dropped (a dropped write may still land,
/// which versioning makes harmless).
pub async fn quorum<T, F, Fut>(targets: &[NodeId], needed: usize, call: F) -> Result<Vec<(NodeId, T)>, QuorumError>
where
    F: Fn(NodeId) -> Fut,
    Fut: Future<Output = Result<T, PeerError>>,
{
    let mut pending: FuturesUnordered<_> = targets
        .iter()
        .map(|&id| {
            let fut = call(id);
            async move { (id, fut.await) }
        })
        .collect();
    let mut ok = Vec::with_capacity(needed);
    let mut failures = Vec::new();
    while let Some((id, result)) = pending.next().await {
        match result {
            Ok(v) => {
                ok.push((id, v));
                if ok.len() >= needed {
                    return Ok(ok);
                }
            }
            Err(e) => failures.push((id, e)),
        }
    }
    Err(QuorumError { needed, answered: ok.len(), failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_names_every_failed_replica() {
        let targets = [NodeId(1), NodeId(2), NodeId(3)];
        let r = quorum(&targets, 3, |id| async move {
            if id == NodeId(2) {
                Err(PeerError::Timeout { addr: "h:2".into(), ms: 5 })
            } else {
                Ok(id.0)
            }
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!((e.answered, e.needed), (2, 3));
        let text = e.to_string();
        assert!(text.starts_with("2 of 3 replicas answered, 3 needed"), "{text}");
        assert!(text.contains("node 0000000000000002: h:2 did not answer"), "{text}");
    }

    #[tokio::test]
    async fn returns_as_soon_as_enough_answered() {
        let targets = [NodeId(1), NodeId(2)];
        let r = quorum(&targets, 1, |id| async move {
            if id == NodeId(2) {
                std::future::pending::<()>().await;
            }
            Ok(id)
        })
        .await
        .unwrap();
        assert_eq!(r, vec![(NodeId(1), NodeId(1))]);
    }
}
