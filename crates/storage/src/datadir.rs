//! A node's data directory: who the node is, which cluster it belongs to, and where the engine
//! keeps its files.
//!
//! ```text
//! DIR/LOCK       held (flock) while a process uses the directory: two nodes never share one
//! DIR/dkv.json   {"format":2,"cluster":"dkv","id":"…","tokens":[…]}, replaced atomically
//! DIR/store/     the durable engine's files
//! DIR/*.json|bin other small state the node keeps (last view, pending hints), replaced atomically
//! ```
//!
//! Opening refuses, with a message that says what to do, a directory of another data format or
//! another cluster, one in use by another process, and one whose `dkv.json` is unreadable or
//! missing beside existing data. It never rewrites a file it could not read: a damaged directory
//! is left exactly as it was found, for an operator to inspect.
//!
//! Formats: 1 had no expiry; 2 adds records with deadlines (`codec.rs`). Format 2 reads format
//! 1's records unchanged, so a directory of format 1 opens, and `dkv.json` then says 2: from
//! that moment the store may hold records a format-1 release cannot read, and such a release
//! refuses the directory with a message, instead of failing on the first such record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The first `max` bytes of the regular file at `path`, and its whole length.
fn read_prefix(path: &Path, max: usize) -> io::Result<(Vec<u8>, u64)> {
    use std::io::Read;
    // Looked at before it is opened: opening a FIFO waits for a writer.
    if !fs::metadata(path)?.is_file() {
        return Err(io::Error::other("it is not a regular file: dkv writes only regular files there"));
    }
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let mut bytes = Vec::with_capacity(meta.len().min(max as u64) as usize);
    file.take(max as u64).read_to_end(&mut bytes)?;
    Ok((bytes, meta.len()))
}

/// A small state file whole, at most [`MAX_STATE_FILE`]: one larger is an error.
fn read_whole(path: &Path) -> io::Result<Vec<u8>> {
    let (bytes, len) = read_prefix(path, MAX_STATE_FILE)?;
    if len > MAX_STATE_FILE as u64 || bytes.len() >= MAX_STATE_FILE {
        return Err(io::Error::other(format!(
            "it holds more than the {MAX_STATE_FILE} bytes such a file may: dkv did not write it"
        )));
    }
    Ok(bytes)
}

/// The most a small state file (`view.json`, `settled.json`, `dkv.json`) may hold: a view of
/// 1 000 members of 128 tokens each is about 4 MB.
pub const MAX_STATE_FILE: usize = 256 << 20;

/// Version of the on-disk layout (this file and the engine's key/value encoding). Bump it on any
/// incompatible change; a node refuses directories of any version it cannot read
/// ([`READS_FORMATS`]) and upgrades those of an older one it can.
pub const FORMAT_VERSION: u32 = 2;

/// The formats this release opens: its own, and format 1 (before expiry), whose records it
/// reads as they are.
pub const READS_FORMATS: [u32; 2] = [1, 2];

const META: &str = "dkv.json";
/// The seed's record of the membership, in a seed's data directory (`dkv seed --data-dir`): a
/// node refuses a directory that holds one, as the seed refuses a node's.
pub const SEED_RECORD: &str = "membership.json";
const LOCK: &str = "LOCK";
const STORE: &str = "store";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// `what` says which step failed: "Operation not permitted" alone did not (found by a hunt,
    /// 2026-12-07).
    #[error("data directory {path}: {what}: {source}")]
    Io { path: PathBuf, what: &'static str, source: io::Error },
    #[error("data directory {0} is in use by another dkv process (its LOCK file is held); stop that process or pick another --data-dir")]
    Locked(PathBuf),
    #[error("{path} is unreadable ({reason}); dkv will not overwrite it: restore it, or move the directory away to start this node afresh")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} holds data format {found}, this dkv reads formats 1 to {FORMAT_VERSION}; run the dkv version that wrote it, or move the directory away")]
    Version { path: PathBuf, found: u32 },
    #[error("{path} belongs to cluster {found:?}, this node was started for cluster {wanted:?}; pass --cluster-name {found} or use another --data-dir")]
    ForeignCluster { path: PathBuf, found: String, wanted: String },
    #[error("{0} holds data but no dkv.json; dkv will not guess whose data it is: restore dkv.json, or move the directory away")]
    MissingMeta(PathBuf),
    #[error("data directory {0} is a file, not a directory: give a directory (it is made if missing)")]
    NotADirectory(PathBuf),
    #[error("data directory {path} is a symbolic link to {target}, which does not exist: make that directory, or give another")]
    DanglingLink { path: PathBuf, target: PathBuf },
}

/// The node's identity as kept on disk: its id and ring tokens, once the seed assigned them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: u64,
    pub tokens: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    cluster: String,
    /// Hex, like node ids everywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<Vec<u64>>,
    /// The node left the cluster for good and handed its data off. It does not start again by
    /// itself (the node refuses, see [`DataDir::has_left`]); when told to rejoin, the store is
    /// emptied first ([`DataDir::rejoin_afresh`]), so that old data cannot come back as a new
    /// node's (deleted keys whose tombstones were since purged would otherwise reappear).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    left: bool,
    /// The node began to leave (its leave was accepted): started again, it registers as
    /// `leaving`, whatever the last view it saved says (that view is saved a moment later, and a
    /// crash in between lost the leave).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    leaving: bool,
}

pub struct DataDir {
    path: PathBuf,
    meta: Meta,
    /// Held for the life of this value; the OS releases the lock when the process dies.
    _lock: File,
}

impl DataDir {
    /// Open (creating if needed) the data directory of a node of `cluster`.
    pub fn open(path: &Path, cluster: &str) -> Result<DataDir, DataDirError> {
        let io_err = |what| move |source| DataDirError::Io { path: path.to_path_buf(), what, source };
        if path.exists() && !path.is_dir() {
            return Err(DataDirError::NotADirectory(path.to_path_buf()));
        }
        // A link to nowhere: `create_dir_all` said "File exists (os error 17)" (found by trying).
        if let (false, Ok(target)) = (path.exists(), fs::read_link(path)) {
            return Err(DataDirError::DanglingLink { path: path.to_path_buf(), target });
        }
        fs::create_dir_all(path).map_err(io_err("making it"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK))
            .map_err(io_err("opening its LOCK file for writing"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(DataDirError::Locked(path.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("locking its LOCK file")(e)),
        }
        let meta_path = path.join(META);
        let meta = match read_whole(&meta_path) {
            Ok(bytes) => {
                let meta = parse_meta(&meta_path, &bytes)?;
                if meta.cluster != cluster {
                    return Err(DataDirError::ForeignCluster {
                        path: meta_path,
                        found: meta.cluster,
                        wanted: cluster.to_string(),
                    });
                }
                meta
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if path.join(STORE).exists() {
                    return Err(DataDirError::MissingMeta(path.to_path_buf()));
                }
                let meta = Meta {
                    format: FORMAT_VERSION,
                    cluster: cluster.to_string(),
                    id: None,
                    tokens: None,
                    left: false,
                    leaving: false,
                };
                write_atomic(path, META, &to_json(&meta)).map_err(io_err("writing dkv.json"))?;
                meta
            }
            Err(e) => return Err(io_err("reading dkv.json")(e)),
        };
        let mut dir = DataDir { path: path.to_path_buf(), meta, _lock: lock };
        if dir.meta.format != FORMAT_VERSION {
            // An older format this release reads: say so on disk before writing anything new.
            let meta = Meta { format: FORMAT_VERSION, ..dir.meta.clone() };
            write_atomic(path, META, &to_json(&meta)).map_err(io_err("writing dkv.json"))?;
            dir.meta = meta;
        }
        Ok(dir)
    }

    /// Whether the node that used this directory left the cluster (`dkv leave`, or a stop with
    /// `--leave-on-stop`): its keys were handed off and its place on the ring is gone.
    pub fn has_left(&self) -> bool {
        self.meta.left
    }

    /// Start over after a leave: empty the store and forget the mark, so that the node joins as
    /// a new, empty one.
    pub fn rejoin_afresh(&mut self) -> Result<(), DataDirError> {
        let store = self.store_path();
        match fs::remove_dir_all(&store) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(DataDirError::Io { path: store, what: "removing the store", source: e })
            }
            _ => {}
        }
        let meta = Meta { id: None, tokens: None, left: false, leaving: false, ..self.meta.clone() };
        write_atomic(&self.path, META, &to_json(&meta)).map_err(|source| DataDirError::Io {
            path: self.path.clone(),
            what: "writing dkv.json",
            source,
        })?;
        self.meta = meta;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the durable engine keeps its files.
    pub fn store_path(&self) -> PathBuf {
        self.path.join(STORE)
    }

    pub fn cluster(&self) -> &str {
        &self.meta.cluster
    }

    /// The id and tokens this node had, if it ever registered.
    pub fn identity(&self) -> Result<Option<Identity>, DataDirError> {
        let (Some(id), Some(tokens)) = (&self.meta.id, &self.meta.tokens) else { return Ok(None) };
        let id = u64::from_str_radix(id, 16).map_err(|e| DataDirError::Corrupt {
            path: self.path.join(META),
            reason: format!("node id {id:?} is not hex: {e}"),
        })?;
        Ok(Some(Identity { id, tokens: tokens.clone() }))
    }

    /// Record the identity (atomically: a crash leaves the old file or the new one, never half).
    pub fn set_identity(&mut self, identity: Option<&Identity>) -> io::Result<()> {
        let mut meta = self.meta.clone();
        meta.id = identity.map(|i| format!("{:016x}", i.id));
        meta.tokens = identity.map(|i| i.tokens.clone());
        write_atomic(&self.path, META, &to_json(&meta))?;
        self.meta = meta;
        Ok(())
    }

    /// Record that the node began to leave (see [`Meta`]'s `leaving`), before it tells anyone;
    /// or (`false`) that it took its leave back.
    pub fn set_leaving(&mut self, leaving: bool) -> io::Result<()> {
        if self.meta.leaving == leaving {
            return Ok(());
        }
        let meta = Meta { leaving, ..self.meta.clone() };
        write_atomic(&self.path, META, &to_json(&meta))?;
        self.meta = meta;
        Ok(())
    }

    /// Whether the node began to leave and did not finish.
    pub fn is_leaving(&self) -> bool {
        self.meta.leaving && !self.meta.left
    }

    /// Record that this node left the cluster: its identity is dropped now and its data at the
    /// next open.
    pub fn mark_left(&mut self) -> io::Result<()> {
        let meta = Meta { id: None, tokens: None, left: true, leaving: false, ..self.meta.clone() };
        write_atomic(&self.path, META, &to_json(&meta))?;
        self.meta = meta;
        Ok(())
    }

    /// Contents of a small state file, `None` if it does not exist.
    /// A small state file whole, if there is one. One that is not a regular file, or holds
    /// more than [`MAX_STATE_FILE`], is an error: read whole, a `view.json` linked to
    /// `/dev/zero` grew the node until the machine ran out of memory.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match read_whole(&self.path.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The first `max` bytes of a file, and its whole length, if there is one; a file that is
    /// not a regular file is an error (`/dev/zero` never ends). For `hints.log`, whose good
    /// part comes first (found by trying, 2026-12-06: one linked to `/dev/zero` was read until
    /// memory ran out, and one with a gigabyte of zeros after its hints held a gigabyte).
    pub fn read_at_most(&self, name: &str, max: usize) -> io::Result<Option<(Vec<u8>, u64)>> {
        match read_prefix(&self.path.join(name), max) {
            Ok(read) => Ok(Some(read)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replace a small state file atomically and durably.
    pub fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        write_atomic(&self.path, name, bytes)
    }

    /// Append `bytes` to a state file (made if absent), durably. A failure cuts the file back to
    /// its length before, as far as it can; the caller writes the file whole next
    /// ([`DataDir::write`]) if it has anything to write.
    pub fn append(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path.join(name);
        let new = !path.exists();
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        let before = f.metadata()?.len();
        if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_data()) {
            // Part of `bytes` may be in the file (a disk that filled up midway): cut it off, or
            // the next append would follow a torn record, and a reader would take the records
            // after it for the torn one's rest (found by reading, 2026-12-06).
            let _ = f.set_len(before).and_then(|()| f.sync_data());
            return Err(e);
        }
        if new {
            File::open(&self.path)?.sync_all()?;
        }
        Ok(())
    }

    /// The size of a state file, 0 if it does not exist.
    pub fn size(&self, name: &str) -> io::Result<u64> {
        match fs::metadata(self.path.join(name)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Remove a state file, durably: once this returns, a crash cannot bring it back. A file
    /// that is already gone is not an error. Files are removed to retract what they said (a
    /// settled stop already used, hints delivered, a record that could not be rewritten), so a
    /// removal that a crash undid would say it again.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path.join(name)) {
            Ok(()) => File::open(&self.path)?.sync_all(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn parse_meta(path: &Path, bytes: &[u8]) -> Result<Meta, DataDirError> {
    // Read the format first on its own, so a future layout with other fields still gets the
    // clear "wrong format" answer rather than a parse error.
    #[derive(Deserialize)]
    struct FormatOnly {
        format: u32,
    }
    let corrupt = |e: serde_json::Error| DataDirError::Corrupt { path: path.to_path_buf(), reason: e.to_string() };
    let FormatOnly { format } = serde_json::from_slice(bytes).map_err(corrupt)?;
    if !READS_FORMATS.contains(&format) {
        return Err(DataDirError::Version { path: path.to_path_buf(), found: format });
    }
    serde_json::from_slice(bytes).map_err(corrupt)
}

fn to_json(meta: &Meta) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(meta).expect("plain struct serializes");
    bytes.push(b'\n');
    bytes
}

/// Write `dir/name` via a temporary file, fsync, rename, fsync the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("dkv-datadir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    /// A directory that cannot be made or written says which step failed, not only the OS's
    /// words ("Operation not permitted" alone, found by a hunt, 2026-12-07).
    #[test]
    fn an_io_failure_names_its_step() {
        let file = tmp("step-file");
        fs::write(&file, b"x").unwrap();
        let e = DataDir::open(&file.join("below"), "dkv").err().expect("a file is in the way").to_string();
        assert!(e.contains("below: making it: "), "{e}");
        let _ = fs::remove_file(&file);
    }

    /// A file given as the directory: said plainly, not as "File exists (os error 17)".
    #[test]
    fn a_file_is_refused_as_a_data_directory() {
        let p = tmp("file");
        fs::write(&p, b"x").unwrap();
        let Err(err) = DataDir::open(&p, "c1") else { panic!("a file taken as a directory") };
        assert!(err.to_string().contains("is a file, not a directory"), "{err}");
        fs::remove_file(&p).unwrap();
    }

    /// A state file that is no regular file (linked to `/dev/zero`) is an error, not read until
    /// memory runs out; so is `dkv.json` at open.
    #[test]
    fn state_files_that_never_end_are_refused_unread() {
        let p = tmp("endless");
        let d = DataDir::open(&p, "c").unwrap();
        std::os::unix::fs::symlink("/dev/zero", p.join("view.json")).unwrap();
        let e = d.read("view.json").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        drop(d);
        fs::remove_file(p.join(META)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p.join(META)).unwrap();
        assert!(DataDir::open(&p, "c").is_err());
        fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn a_link_to_nowhere_is_refused_as_a_data_directory() {
        let p = tmp("dangling");
        std::os::unix::fs::symlink(p.with_extension("gone"), &p).unwrap();
        let Err(err) = DataDir::open(&p, "c1") else { panic!("a dangling link taken as a directory") };
        assert!(err.to_string().contains("which does not exist"), "{err}");
        fs::remove_file(&p).unwrap();
    }

    #[test]
    fn identity_survives_reopen_and_the_lock_excludes_a_second_opener() {
        let p = tmp("identity");
        let mut d = DataDir::open(&p, "c1").unwrap();
        assert_eq!(d.identity().unwrap(), None);
        assert!(matches!(DataDir::open(&p, "c1"), Err(DataDirError::Locked(_))));
        let id = Identity { id: 0xabc, tokens: vec![1, 2, 3] };
        d.set_identity(Some(&id)).unwrap();
        drop(d);
        let mut d = DataDir::open(&p, "c1").unwrap();
        assert_eq!(d.identity().unwrap(), Some(id.clone()));

        // A leave begun is remembered, with the identity, until it is done.
        assert!(!d.is_leaving());
        d.set_leaving(true).unwrap();
        drop(d);
        let mut d = DataDir::open(&p, "c1").unwrap();
        assert!(d.is_leaving() && !d.has_left());
        d.set_leaving(false).unwrap();
        drop(d);
        let mut d = DataDir::open(&p, "c1").unwrap();
        assert!(!d.is_leaving(), "a leave taken back");
        d.set_leaving(true).unwrap();
        assert_eq!(d.identity().unwrap(), Some(id));

        fs::create_dir(d.store_path()).unwrap();
        d.mark_left().unwrap();
        assert!(!d.is_leaving(), "done");
        drop(d);
        // The leave is remembered, and nothing is removed until the node is told to rejoin.
        let d = DataDir::open(&p, "c1").unwrap();
        assert!(d.has_left());
        assert_eq!(d.identity().unwrap(), None);
        assert!(d.store_path().exists(), "opening alone removes nothing");
        drop(d);
        let mut d = DataDir::open(&p, "c1").unwrap();
        assert!(d.has_left(), "still marked at the next open");
        d.rejoin_afresh().unwrap();
        assert!(!d.has_left());
        assert!(!d.store_path().exists(), "a node that rejoins starts afresh");
        drop(d);
        let d = DataDir::open(&p, "c1").unwrap();
        assert!(!d.has_left() && d.identity().unwrap().is_none());
        fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn refuses_other_clusters_other_formats_and_damaged_files_without_touching_them() {
        let p = tmp("refuse");
        drop(DataDir::open(&p, "c1").unwrap());
        assert!(matches!(DataDir::open(&p, "c2"), Err(DataDirError::ForeignCluster { .. })));

        let meta = p.join(META);
        fs::write(&meta, br#"{"format":99,"cluster":"c1"}"#).unwrap();
        let err = DataDir::open(&p, "c1").err().unwrap();
        assert!(matches!(err, DataDirError::Version { found: 99, .. }), "{err}");

        fs::write(&meta, br#"{"format":2,"clus"#).unwrap();
        let err = DataDir::open(&p, "c1").err().unwrap();
        assert!(matches!(err, DataDirError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(&meta).unwrap(), br#"{"format":2,"clus"#, "left as found");

        fs::remove_file(&meta).unwrap();
        fs::create_dir(p.join(STORE)).unwrap();
        assert!(matches!(DataDir::open(&p, "c1"), Err(DataDirError::MissingMeta(_))));
        fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn a_directory_of_format_1_opens_as_it_was_and_is_marked_format_2() {
        let p = tmp("format1");
        fs::create_dir_all(&p).unwrap();
        let old = br#"{"format":1,"cluster":"c1","id":"0000000000000abc","tokens":[7,8]}"#;
        fs::write(p.join(META), old).unwrap();
        let d = DataDir::open(&p, "c1").unwrap();
        assert_eq!(d.identity().unwrap(), Some(Identity { id: 0xabc, tokens: vec![7, 8] }));
        drop(d);
        let meta: serde_json::Value = serde_json::from_slice(&fs::read(p.join(META)).unwrap()).unwrap();
        assert_eq!((meta["format"].as_u64(), meta["id"].as_str()), (Some(2), Some("0000000000000abc")));
        fs::remove_dir_all(&p).unwrap();
    }
}
