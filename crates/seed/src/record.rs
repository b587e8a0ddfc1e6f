//! The seed's record of the membership (`dkv seed --data-dir DIR`), so that a restarted seed
//! knows its members whenever they come back.
//!
//! Why: without it the seed's state is soft. A restarted seed rebuilds the membership from the
//! views its members present when they register again, and only within its first TTL; after
//! that it cannot tell a returning member from one that left long ago. So when members come
//! back late (a whole cluster restarted with the seed up first, nodes cut off from it, a slow
//! disk), a brand-new node that reached the seed first became the only `normal` member, keys it
//! did not hold read "not found" through it, and the members came back `joining` and copied
//! their ranges again. With its record, a restarted seed is where it was when it stopped: the
//! same members at the same epoch, each given a TTL from the restart, and the ordinary rules
//! apply (see [`dkv_membership::Registry::restore`]).
//!
//! ```text
//! DIR/LOCK             held while the seed runs: two seeds never share one directory
//! DIR/dkv.json         {"format":…,"cluster":"…"}: a directory of another cluster is refused
//! DIR/membership.json  the view: {"epoch":…,"nodes":[…]}, replaced atomically
//! DIR/recorded         written with the first record: a membership was recorded here
//! ```
//!
//! A directory without a record starts a new cluster only if no membership was ever recorded
//! in it (no `recorded`). One whose record is gone, removed by a failed write or by hand, holds
//! new nodes back for its first TTL as a seed without `--data-dir` does, so the members can
//! register again first: it made the first brand-new node the cluster's only normal member,
//! which answered "not found" for every key until the members came back (found by a code-reading
//! hunt, 2026-12-07).
//!
//! The view is written after every change and before any answer that carries it leaves, so the
//! record is never older than a view some node holds: answers wait for the write, which happens
//! off the registry's lock, one write for all the changes made meanwhile (`recorder.rs`). A
//! write is an encoding, a write, an fsync and a rename of the file (0.8 ms for a view of 100
//! members, 270 KB, 6.7 ms for 1 000 here); heartbeats that change nothing write nothing. If a
//! write fails, the record is removed, so
//! that a restart cannot bring back an older view, and the seed says so: it then restarts as one
//! without a record would, until a write succeeds again. A record older than the cluster all the
//! same (a backup put back, an old volume the seed was moved to) shows at the first member that
//! holds a newer view: the registry drops it and rebuilds from the members' views, and the seed
//! logs an error (`Registry::restore`).

use std::path::Path;

use dkv_membership::View;
use dkv_storage::DataDir;

const RECORD: &str = dkv_storage::SEED_RECORD;

/// The mark that a membership was recorded in the directory (see the module doc).
const RECORDED: &str = "recorded";

pub(crate) struct Record {
    dir: DataDir,
    /// The last write failed (said once, until one succeeds).
    failing: bool,
    /// The directory bears [`RECORDED`].
    marked: bool,
}

impl Record {
    /// Open the seed's directory for `cluster`, and read the view recorded there, if any.
    pub fn open(path: &Path, cluster: &str) -> Result<(Record, Option<View>), String> {
        let dir = DataDir::open(path, cluster).map_err(|e| e.to_string())?;
        if dir.identity().ok().flatten().is_some() {
            return Err(format!(
                "{} is a node's data directory (its dkv.json names a node): give the seed a directory of its own",
                path.display()
            ));
        }
        let file = path.join(RECORD);
        let view = match dir.read(RECORD) {
            Ok(None) => None,
            Ok(Some(bytes)) => Some(serde_json::from_slice::<View>(&bytes).map_err(|e| {
                format!(
                    "{} is unreadable ({e}); the seed will not overwrite it: restore it, or remove it to rebuild the \
                     membership from the members' views as a seed without --data-dir does",
                    file.display()
                )
            })?),
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        };
        // A mark that cannot be read counts as there: a new cluster here would be the worse mistake.
        let marked = !matches!(dir.read(RECORDED), Ok(None));
        let mut record = Record { dir, failing: false, marked };
        if view.is_some() {
            record.mark(); // a directory recorded by a release before the mark
        }
        Ok((record, view))
    }

    /// Whether a membership was ever recorded in this directory (a record that is gone now
    /// included).
    pub fn recorded_before(&self) -> bool {
        self.marked
    }

    fn mark(&mut self) {
        if self.marked {
            return;
        }
        match self.dir.write(RECORDED, b"a membership was recorded here: without membership.json, this seed waits for its members rather than start a new cluster\n") {
            Ok(()) => self.marked = true,
            Err(e) => tracing::warn!("writing {}: {e}", self.dir.path().join(RECORDED).display()),
        }
    }

    /// The record's file.
    pub fn file(&self) -> std::path::PathBuf {
        self.dir.path().join(RECORD)
    }

    /// Write `view` over the record. If that fails, remove the record, so that a restart cannot
    /// bring back an older view, and say so once, until a write succeeds again. Whether it was
    /// written.
    pub fn write(&mut self, view: &View) -> bool {
        let bytes = serde_json::to_vec(view).expect("a view encodes");
        let e = match self.dir.write(RECORD, &bytes) {
            Ok(()) => {
                self.mark();
                if std::mem::take(&mut self.failing) {
                    tracing::info!(epoch = view.epoch, "the membership record is written again");
                }
                return true;
            }
            Err(e) => e,
        };
        let removed = self.dir.remove(RECORD);
        if !std::mem::replace(&mut self.failing, true) {
            let path = self.file();
            match removed {
                Ok(()) => tracing::error!(
                    "writing {}: {e}; it was removed, so a restart of this seed now rebuilds the membership from \
                     the members' views, as a seed without --data-dir does; free the disk or fix its permissions",
                    path.display()
                ),
                Err(r) => tracing::error!(
                    "writing {}: {e}, and removing it: {r}; it holds an older view that a restart of this seed \
                     would take: remove it by hand before restarting, and fix the disk",
                    path.display()
                ),
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_membership::api::RegisterRequest;
    use dkv_membership::Registry;

    fn tmp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("dkv-seed-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    fn refusal(path: &Path, cluster: &str) -> String {
        match Record::open(path, cluster) {
            Err(e) => e,
            Ok(_) => panic!("{} opened for {cluster}", path.display()),
        }
    }

    fn reg(addr: &str) -> RegisterRequest {
        RegisterRequest { addr: addr.into(), ..Default::default() }
    }

    #[test]
    fn a_view_written_is_read_back_and_another_clusters_directory_refused() {
        let p = tmp("changes");
        let (mut record, view) = Record::open(&p, "c1").unwrap();
        assert_eq!(view, None, "a new directory holds no view");
        let mut r = Registry::new(0, 1_000).for_cluster("c1");
        r.register(reg("h:1"), 0).unwrap();
        assert!(record.write(&r.view()));
        r.register(reg("h:2"), 0).unwrap();
        let expected = r.view();
        assert!(record.write(&expected));
        drop(record);

        let (_, view) = Record::open(&p, "c1").unwrap();
        let view = view.expect("recorded");
        assert_eq!(view.epoch, expected.epoch);
        assert!(view.same_placement(&expected), "the last view, whole");
        assert!(refusal(&p, "c2").contains("cluster"), "another cluster's directory is refused");
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn a_damaged_record_or_a_nodes_directory_is_refused_and_left_as_it_is() {
        let p = tmp("damaged");
        drop(Record::open(&p, "c1").unwrap());
        std::fs::write(p.join(RECORD), b"{\"epoch\":").unwrap();
        let err = refusal(&p, "c1");
        assert!(err.contains("unreadable") && err.contains("remove it"), "{err}");
        assert_eq!(std::fs::read(p.join(RECORD)).unwrap(), b"{\"epoch\":");

        let node = tmp("node");
        let mut dir = DataDir::open(&node, "c1").unwrap();
        dir.set_identity(Some(&dkv_storage::Identity { id: 7, tokens: vec![1] })).unwrap();
        drop(dir);
        assert!(refusal(&node, "c1").contains("node's data directory"));
        std::fs::remove_dir_all(&p).unwrap();
        std::fs::remove_dir_all(&node).unwrap();
    }

    #[test]
    fn a_failed_write_removes_the_record_so_a_restart_takes_no_older_view() {
        let p = tmp("failing");
        let (mut record, _) = Record::open(&p, "c1").unwrap();
        let mut r = Registry::new(0, 1_000).for_cluster("c1");
        r.register(reg("h:1"), 0).unwrap();
        assert!(record.write(&r.view()));
        assert!(p.join(RECORD).exists());
        // The write's temporary file cannot be created: a directory stands in its way.
        let blocker = p.join(format!(".{RECORD}.tmp"));
        std::fs::create_dir(&blocker).unwrap();
        r.register(reg("h:2"), 1).unwrap();
        assert!(!record.write(&r.view()));
        assert!(!p.join(RECORD).exists(), "the older view is gone");
        std::fs::remove_dir(&blocker).unwrap();
        r.register(reg("h:3"), 2).unwrap();
        assert!(record.write(&r.view()));
        drop(record);
        let (_, view) = Record::open(&p, "c1").unwrap();
        assert_eq!(view.map(|v| v.nodes.len()), Some(3), "written again once it can be");
        std::fs::remove_dir_all(&p).unwrap();
    }
}
