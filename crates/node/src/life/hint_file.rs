//! The file of a durable node's pending hints (`hints.log` in its data directory): a log that
//! each save either extends by the hints kept since the last one or writes anew with the
//! pending hints alone ([`Save`], decided by the store: `replication/hints/store.rs`).
//!
//! Why a log: a replica that is down while writes go on gets a hint for each of them, up to
//! 100 000 (or 256 MiB) per coordinator. Writing them all at every save, as `hints.bin` was,
//! costs a coordinator the whole set at each save; appending costs what is new.
//!
//! The file is a run of chunks, each `[length: u32 LE][hints as wire::encode writes them]`. A
//! crash in the middle of an append leaves a torn chunk at the end: reading stops there and
//! keeps the chunks before it (the hints of that last save are lost, as a crash loses those kept
//! since the last save anyway, and anti-entropy repairs what they carried). A save of more than
//! [`CHUNK_BYTES`] is cut into several chunks, so that no length outgrows its 32 bits. The file
//! may hold hints delivered or dropped since it was last written whole: restored, they are
//! delivered again, which changes nothing (a hint is a versioned write), and the file is written
//! whole at the first save after a start. `hints.bin`, the whole-set file of the release
//! before, is read too, and removed once the log is written.

use std::io;

use dkv_storage::DataDir;

use crate::replication::hints::{decode_saved, Save, SavedHint};
use crate::transport::wire;

pub const FILE: &str = "hints.log";
/// The release before's file: every pending hint, written whole at each save.
pub const OLD_FILE: &str = "hints.bin";

/// The hints in the directory's files, and the bytes those take on disk. A torn or unreadable
/// chunk ends the log with a warning; an unreadable old file is an error. Of the log, at most
/// `max_bytes` are read (see [`read_bound`]): the rest is left with a warning.
pub fn read(dir: &DataDir, max_bytes: usize) -> Result<(Vec<SavedHint>, u64), String> {
    let mut hints = Vec::new();
    let old = dir.path().join(OLD_FILE);
    // The release before's file, whole (a regular file only): cut, it could not be decoded.
    let read = dir.read_at_most(OLD_FILE, usize::MAX).map_err(|e| format!("reading {}: {e}", old.display()))?;
    if let Some((bytes, _)) = read {
        hints = decode_saved(&bytes).map_err(|e| {
            format!(
                "{} is unreadable ({e}); move it away to start without it (anti-entropy repairs what the hints carried)",
                old.display()
            )
        })?;
    }
    let file = dir.path().join(FILE);
    let read = dir.read_at_most(FILE, max_bytes).map_err(|e| format!("reading {}: {e}", file.display()))?;
    if let Some((bytes, len)) = read {
        let (chunks, end) = chunks(&bytes, &mut hints);
        if (end as u64) < len {
            tracing::warn!(
                "{}: the {} bytes after its first {chunks} saves are torn, damaged, or past the {max_bytes} bytes \
                 read of it (a crash in the middle of a save, a damaged disk, a file dkv did not write): the hints \
                 before them are kept, anti-entropy repairs what the rest carried",
                file.display(),
                len - end as u64
            );
        }
    }
    let on_disk = dir.size(OLD_FILE).unwrap_or(0) + dir.size(FILE).unwrap_or(0);
    Ok((hints, on_disk))
}

/// How much of the log a start reads, for a node that keeps at most `max_hint_bytes` of hints:
/// a log is written anew once it holds twice what is pending, so one that a node wrote is
/// within three times the bound (what was pending, and one save of as much more). (Read whole, one linked to `/dev/zero` grew the node until
/// memory ran out, and one with a gigabyte of zeros after its hints held a gigabyte: found by
/// trying, 2026-12-06.)
pub fn read_bound(max_hint_bytes: usize, max_hints: usize) -> usize {
    // Each hint also carries its target, age and lengths beside its key and value.
    let pending = max_hint_bytes.saturating_add(max_hints.saturating_mul(64));
    pending.saturating_mul(3).saturating_add(2 * CHUNK_BYTES)
}

/// The hints in the whole chunks at the start of a log's `bytes`, and where those end (for
/// tests and tools that read the file of a running node).
pub fn parse(bytes: &[u8]) -> (Vec<SavedHint>, usize) {
    let mut hints = Vec::new();
    let (_, end) = chunks(bytes, &mut hints);
    (hints, end)
}

/// Decode the whole chunks at the start of `bytes` into `hints`: how many, and where they end.
fn chunks(bytes: &[u8], hints: &mut Vec<SavedHint>) -> (usize, usize) {
    let (mut n, mut at) = (0, 0);
    while let Some(len) = bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize) {
        // The length is checked against what is there before anything is read.
        let Some(body) = bytes.get(at + 4..).and_then(|rest| rest.get(..len)) else { break };
        let Ok(chunk) = decode_saved(body) else { break };
        hints.extend(chunk);
        (n, at) = (n + 1, at + 4 + len);
    }
    (n, at)
}

/// Most key and value bytes in one chunk: far under what its 32-bit length can say, whatever
/// `--max-hint-bytes` allows in all.
const CHUNK_BYTES: usize = 64 << 20;

/// `hints` as chunks of the log, each of about `max_bytes` of keys and values at most (or one
/// hint, if larger).
fn chunks_of(hints: &[SavedHint], max_bytes: usize) -> Vec<u8> {
    let size = |h: &SavedHint| h.kv.bytes();
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, h) in hints.iter().enumerate() {
        bytes += size(h);
        if hints.get(i + 1).is_none_or(|next| bytes + size(next) > max_bytes) {
            let body = wire::encode(&&hints[start..=i]);
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&body);
            (start, bytes) = (i + 1, 0);
        }
    }
    out
}

/// Carry out `save`; `on_disk` is the bytes the files take, before and after.
pub fn write(dir: &DataDir, save: &Save, on_disk: &mut u64) -> io::Result<()> {
    match save {
        Save::Nothing => return Ok(()),
        Save::Remove => {
            dir.remove(FILE)?;
            dir.remove(OLD_FILE)?;
            *on_disk = 0;
        }
        Save::Append(new) => {
            let bytes = chunks_of(new, CHUNK_BYTES);
            dir.append(FILE, &bytes)?;
            *on_disk += bytes.len() as u64;
        }
        Save::Replace(all) => {
            let bytes = chunks_of(all, CHUNK_BYTES);
            dir.write(FILE, &bytes)?;
            dir.remove(OLD_FILE)?;
            *on_disk = bytes.len() as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::hints::{restore, wall_ms, Hints};
    use crate::transport::wire::KeyEntry;
    use dkv_membership::NodeId;
    use dkv_storage::{Entry, Version};
    use std::time::{Duration, Instant};

    fn tmp(name: &str) -> DataDir {
        let p = std::env::temp_dir().join(format!("dkv-hint-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        DataDir::open(&p, "c1").unwrap()
    }

    /// A new directory, a store of hints, now, and a replica to keep hints for.
    fn setup(name: &str) -> (DataDir, Hints, Instant, NodeId) {
        (tmp(name), Hints::new(1_000, Duration::from_secs(600)), Instant::now(), NodeId(1))
    }

    fn kv(key: String) -> KeyEntry {
        // Made now: hints are aged from their version too.
        let version = Version { ts: dkv_storage::Hlc::ts_at_ms(wall_ms()), node: 1 };
        KeyEntry { key: key.into(), entry: Entry::value(version, vec![7u8; 100].into()) }
    }

    fn keys(hints: &[SavedHint]) -> Vec<String> {
        let mut keys: Vec<_> = hints.iter().map(|h| String::from_utf8_lossy(&h.kv.key).into_owned()).collect();
        keys.sort();
        keys
    }

    fn save(dir: &DataDir, hints: &Hints, on_disk: &mut u64) -> &'static str {
        let save = hints.to_save(*on_disk);
        write(dir, &save, on_disk).unwrap();
        match save {
            Save::Nothing => "nothing",
            Save::Remove => "remove",
            Save::Append(_) => "append",
            Save::Replace(_) => "replace",
        }
    }

    /// The first save writes the file whole; later ones append what is new and write nothing
    /// when nothing is, also when hints go out for delivery and come back; a restart reads
    /// every pending hint back.
    #[test]
    fn saves_append_what_is_new_and_a_restart_reads_it_all() {
        let (dir, hints, t0, a) = setup("append");
        let mut on_disk = 0;
        for i in 0..10 {
            hints.add(a, kv(format!("k{i}")), t0);
        }
        assert_eq!(save(&dir, &hints, &mut on_disk), "replace", "the first save of a node writes the file whole");
        let whole = on_disk;
        for i in 10..15 {
            hints.add(a, kv(format!("k{i}")), t0);
        }
        assert_eq!(save(&dir, &hints, &mut on_disk), "append");
        assert!(on_disk < whole * 2, "only the 5 new hints were written: {on_disk} bytes after {whole}");
        assert_eq!(hints.take(a, 100, t0).len(), 15);
        hints.put_back(a);
        assert_eq!(save(&dir, &hints, &mut on_disk), "nothing", "out and back is no change");
        let (read, size) = read(&dir, usize::MAX).unwrap();
        assert_eq!(size, on_disk);
        assert_eq!(keys(&read), keys(&hints.snapshot()));
        assert_eq!(read.len(), 15);

        // Restored, they are written whole at the first save.
        let again = Hints::new(1_000, Duration::from_secs(600));
        restore(&again, read);
        assert_eq!(again.stats().pending, 15);
        assert_eq!(save(&dir, &again, &mut on_disk), "replace");
        assert_eq!(again.take(a, 100, t0).len(), 15);
        assert_eq!(again.delivered(a), 15);
        assert_eq!(save(&dir, &again, &mut on_disk), "remove", "all delivered: the file goes");
        assert!(!dir.path().join(FILE).exists());
        assert_eq!(read_all(&dir).len(), 0);
        assert_eq!(save(&dir, &again, &mut on_disk), "nothing", "no hint, no file");
        again.add(a, kv("later".into()), t0);
        assert_eq!(save(&dir, &again, &mut on_disk), "append", "a new file, from its first hint");
        assert_eq!(keys(&read_all(&dir)), vec!["later".to_string()]);
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    /// A save larger than a chunk's bound is cut into several chunks, read back as one run.
    #[test]
    fn a_large_save_is_cut_into_chunks() {
        let hints: Vec<_> = (0..10).map(|i| SavedHint { target: 1, at_ms: 1, kv: kv(format!("k{i}")) }).collect();
        // 102 or 103 bytes of key and value each: 3 to a chunk of at most 310.
        let bytes = chunks_of(&hints, 310);
        let mut read = Vec::new();
        assert_eq!(chunks(&bytes, &mut read), (4, bytes.len()), "chunks of 3, 3, 3 and 1");
        assert_eq!(keys(&read), keys(&hints));
        let one = chunks_of(&hints, 50);
        assert_eq!(chunks(&one, &mut Vec::new()).0, 10, "a hint over the bound alone in its chunk");
    }

    fn read_all(dir: &DataDir) -> Vec<SavedHint> {
        read(dir, usize::MAX).unwrap().0
    }

    /// Once the file holds more than twice what is pending (and the slack), it is written anew
    /// with the pending hints alone.
    #[test]
    fn a_file_of_mostly_delivered_hints_is_written_anew() {
        let dir = tmp("compact");
        let hints = Hints::new(100_000, Duration::from_secs(600));
        let (t0, a, b) = (Instant::now(), NodeId(1), NodeId(2));
        let mut on_disk = 0;
        hints.add(b, kv("stays".into()), t0);
        assert_eq!(save(&dir, &hints, &mut on_disk), "replace");
        // 60 000 hints of 100 bytes: about 9 MB, past the 4 MiB of slack.
        for i in 0..60_000 {
            hints.add(a, kv(format!("k{i}")), t0);
        }
        assert_eq!(save(&dir, &hints, &mut on_disk), "append");
        while !hints.take(a, 10_000, t0).is_empty() {
            hints.delivered(a);
        }
        assert_eq!(save(&dir, &hints, &mut on_disk), "replace");
        assert!(on_disk < 1_000, "{on_disk} bytes for one hint");
        assert_eq!(keys(&read_all(&dir)), vec!["stays".to_string()]);
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    /// A torn last chunk (a crash in the middle of an append) costs that chunk alone; after a
    /// failed write the next save writes the file whole, and the old whole-set file of the
    /// release before is read and then removed.
    #[test]
    fn a_torn_end_keeps_the_chunks_before_it_and_the_old_file_is_read_then_replaced() {
        let (dir, hints, t0, a) = setup("torn");
        let mut on_disk = 0;
        hints.add(a, kv("first".into()), t0);
        assert_eq!(save(&dir, &hints, &mut on_disk), "replace");
        hints.add(a, kv("second".into()), t0);
        assert_eq!(save(&dir, &hints, &mut on_disk), "append");
        let path = dir.path().join(FILE);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(keys(&read_all(&dir)), vec!["first".to_string()]);
        std::fs::write(&path, [&bytes[..], &[0xff, 0xff, 0xff, 0x7f, 1, 2]].concat()).unwrap();
        assert_eq!(keys(&read_all(&dir)), vec!["first".to_string(), "second".to_string()], "a length past the end");

        hints.save_whole();
        hints.add(a, kv("third".into()), t0);
        assert_eq!(save(&dir, &hints, &mut on_disk), "replace");
        assert_eq!(read_all(&dir).len(), 3);

        std::fs::write(
            dir.path().join(OLD_FILE),
            // Saved a second ago: a hint older than the bound on age is not restored.
            wire::encode(&vec![SavedHint { target: 9, at_ms: wall_ms() - 1000, kv: kv("old".into()) }]),
        )
        .unwrap();
        let (read, _) = read(&dir, usize::MAX).unwrap();
        assert_eq!(keys(&read), vec!["first", "old", "second", "third"]);
        let again = Hints::new(1_000, Duration::from_secs(600));
        restore(&again, read);
        let mut on_disk = dir.size(FILE).unwrap() + dir.size(OLD_FILE).unwrap();
        assert_eq!(save(&dir, &again, &mut on_disk), "replace");
        assert!(!dir.path().join(OLD_FILE).exists(), "the old file goes once the log holds its hints");
        assert_eq!(read_all(&dir).len(), 4);
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    /// Of a log followed by a long run of zeros, at most the bound is read, and its hints are
    /// kept; a log that is no regular file (linked to `/dev/zero`) is refused, not read forever.
    #[test]
    fn a_log_is_read_within_its_bound_and_only_from_a_regular_file() {
        let (dir, hints, t0, a) = setup("bound");
        let mut on_disk = 0;
        hints.add(a, kv("kept".into()), t0);
        assert_eq!(save(&dir, &hints, &mut on_disk), "replace");
        let path = dir.path().join(FILE);
        let file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.set_len(on_disk + (8 << 20)).unwrap(); // 8 MiB of zeros after the hints
        let (kept, size) = read(&dir, 1 << 20).unwrap();
        assert_eq!((keys(&kept), size), (vec!["kept".to_string()], on_disk + (8 << 20)));
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let refused = read(&dir, 1 << 20).err().expect("refused");
        assert!(refused.contains("not a regular file"), "{refused}");
        std::fs::remove_dir_all(dir.path()).unwrap();
    }
}
