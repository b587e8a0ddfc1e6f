//! Whether opening the store cut written records off its journal.
//!
//! fjall reads its journal at open up to the first record it cannot decode and truncates the
//! file there, without an error: that is how it drops the torn end a crash leaves. But it cannot
//! tell that torn end from damage in the middle (a media error, a block zeroed), and then every
//! record after the damage goes too, acknowledged or not (the durability hunt of 2026-12-07: 4 KiB
//! zeroed in the middle of a journal dropped 998 of 2 000 keys, with no warning).
//!
//! So before the store opens, [`written_ends`] notes where each journal's written bytes end: the
//! byte after its last non-zero one (a journal is made at its full length and filled from the
//! start, so its unwritten tail is zeros). After the open, [`cuts`] compares that with each
//! journal's length: one now shorter than its written end lost records. The node then does not
//! count itself settled at once (`life/local.rs`) and says what was cut.
//!
//! A crash's torn last write is reported too: the bytes alone cannot tell it from damage, and a
//! node that waits for one anti-entropy round after a crash loses nothing but that wait.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A journal that lost written bytes when the store opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalCut {
    pub file: PathBuf,
    /// Its length after the open: the records before this byte were read.
    pub kept: u64,
    /// Where its written bytes ended before the open.
    pub written: u64,
}

impl std::fmt::Display for JournalCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} written bytes dropped after byte {}",
            self.file.display(),
            self.written - self.kept,
            self.kept
        )
    }
}

/// Each journal file in `store` (fjall's `*.jnl`) with where its written bytes end. A journal
/// that cannot be read is left out: the open that follows reports it.
pub fn written_ends(store: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(dir) = std::fs::read_dir(store) else { return Vec::new() };
    let journals = dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "jnl"));
    let end = |path: PathBuf| {
        let end = written_end(&File::open(&path).ok()?).ok()?;
        Some((path, end))
    };
    journals.filter_map(end).collect()
}

/// The journals of `before` whose length is now under their written end. A journal gone since
/// (fjall removes one whose records are all in its tables) lost nothing.
pub fn cuts(before: Vec<(PathBuf, u64)>) -> Vec<JournalCut> {
    let now = |path: &Path| std::fs::metadata(path).ok().map(|m| m.len());
    let cut = |(file, written): (PathBuf, u64)| {
        let kept = now(&file)?;
        (kept < written).then_some(JournalCut { file, kept, written })
    };
    before.into_iter().filter_map(cut).collect()
}

/// The byte after the last non-zero byte of `file` (0 for a file of zeros).
fn written_end(file: &File) -> io::Result<u64> {
    const CHUNK: u64 = 64 << 10;
    let mut end = data_end(file)?;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Where the file's last data ends, holes aside: fjall makes a journal with `set_len`, so most of
/// a young journal is a hole, which `SEEK_DATA` and `SEEK_HOLE` step over without reading it. A
/// file system that does not know holes answers the file's length.
fn data_end(file: &File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    // `Err(true)` when there is no data at or after `from` (ENXIO), `Err(false)` for any other
    // failure, after which the file's length is the safe answer.
    let seek = |from: u64, whence| {
        let from = libc::off_t::try_from(from).map_err(|_| false)?;
        // SAFETY: lseek on a descriptor this `File` owns; it moves only that descriptor's offset,
        // which nothing here uses (every read is positioned).
        let at = unsafe { libc::lseek(file.as_raw_fd(), from, whence) };
        u64::try_from(at).map_err(|_| io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO))
    };
    let (mut from, mut end) = (0, 0);
    while from < len {
        let data = match seek(from, libc::SEEK_DATA) {
            Ok(data) => data,
            Err(true) => break,
            Err(false) => return Ok(len),
        };
        let Ok(hole) = seek(data, libc::SEEK_HOLE) else { return Ok(len) };
        end = hole.min(len);
        from = hole.max(data + 1);
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dkv-journal-cut-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_written_end_is_the_byte_after_the_last_non_zero_one_holes_and_zeros_aside() {
        let dir = temp("end");
        let path = dir.join("0.jnl");
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        file.set_len(8 << 20).unwrap();
        assert_eq!(written_end(&file).unwrap(), 0, "a file of zeros (a hole)");
        file.write_all_at(b"records", 100_000).unwrap();
        file.write_all_at(&[0; 5000], 100_007).unwrap();
        assert_eq!(written_end(&file).unwrap(), 100_007, "written zeros after the data are not data");
        file.write_all_at(b"x", (8 << 20) - 1).unwrap();
        assert_eq!(written_end(&file).unwrap(), 8 << 20);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_journal_shorter_than_its_written_end_is_a_cut_and_one_gone_is_not() {
        let dir = temp("cuts");
        for (name, bytes) in
            [("0.jnl", &b"kept whole"[..]), ("1.jnl", b"cut short"), ("2.jnl", b"gone"), ("x.txt", b"z")]
        {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let mut before = written_ends(&dir);
        before.sort();
        let names: Vec<_> = before.iter().map(|(p, e)| (p.file_name().unwrap().to_str().unwrap(), *e)).collect();
        assert_eq!(names, [("0.jnl", 10), ("1.jnl", 9), ("2.jnl", 4)], "journals only");
        File::options().write(true).open(dir.join("1.jnl")).unwrap().set_len(3).unwrap();
        std::fs::remove_file(dir.join("2.jnl")).unwrap();
        let cut = cuts(before);
        assert_eq!(cut, [JournalCut { file: dir.join("1.jnl"), kept: 3, written: 9 }]);
        assert!(cut[0].to_string().ends_with("1.jnl: 6 written bytes dropped after byte 3"), "{}", cut[0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
