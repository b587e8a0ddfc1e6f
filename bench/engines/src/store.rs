//! A tiny common interface over the embedded engines under test.
//!
//! Each engine is opened on a directory and exposes exactly the operations
//! dkv needs: batched writes (relaxed or durable), point reads, a full-sync,
//! and a full ordered scan (used to count keys on restart).

use std::path::Path;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Engine-agnostic store handle. Implementations must be shareable between
/// reader threads.
pub trait Store: Send + Sync {
    fn name(&self) -> &'static str;

    /// Write all `items` as one unit.
    ///
    /// * redb: one write transaction; `durable` selects `Durability::Immediate`
    ///   (fsync on commit) vs `Durability::None`.
    /// * fjall: one `insert` per item; if `durable`, one
    ///   `Database::persist(PersistMode::SyncAll)` after the last insert.
    fn put_batch(&self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()>;

    /// Point read; returns the stored value's length if the key exists.
    fn get(&self, key: &[u8]) -> Result<Option<usize>>;

    /// Point reads of many keys sharing one read snapshot (redb: one read
    /// transaction); returns how many were found.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<usize>;

    /// Make everything written so far durable.
    fn sync(&self) -> Result<()>;

    /// Count all keys by iterating the whole store in key order.
    fn count_all(&self) -> Result<u64>;
}

pub fn open(engine: Engine, dir: &Path, cache_bytes: u64) -> Result<Box<dyn Store>> {
    match engine {
        #[cfg(feature = "redb")]
        Engine::Redb => Ok(Box::new(redb_store::RedbStore::open(dir, cache_bytes)?)),
        #[cfg(feature = "fjall")]
        Engine::Fjall => Ok(Box::new(fjall_store::FjallStore::open(dir, cache_bytes)?)),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (dir, cache_bytes);
            Err(format!("engine {engine:?} not compiled in (see cargo features)").into())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Redb,
    Fjall,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Redb => "redb",
            Engine::Fjall => "fjall",
        }
    }
}

#[cfg(feature = "redb")]
mod redb_store {
    use super::{Result, Store};
    use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
    use std::path::Path;

    /// Single table, raw bytes in and out.
    const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

    pub struct RedbStore {
        db: Database,
    }

    impl RedbStore {
        pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
            std::fs::create_dir_all(dir)?;
            // `create` opens the file if it exists, creates it otherwise.
            let db = Database::builder().set_cache_size(cache_bytes as usize).create(dir.join("dkv.redb"))?;
            // Make sure the table exists so readers can open it.
            let txn = db.begin_write()?;
            txn.open_table(KV)?;
            txn.commit()?;
            Ok(Self { db })
        }
    }

    impl Store for RedbStore {
        fn name(&self) -> &'static str {
            "redb"
        }

        fn put_batch(&self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
            {
                let mut table = txn.open_table(KV)?;
                for (k, v) in items {
                    table.insert(k.as_slice(), v.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        }

        fn get(&self, key: &[u8]) -> Result<Option<usize>> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(KV)?;
            Ok(table.get(key)?.map(|v| v.value().len()))
        }

        fn get_many(&self, keys: &[Vec<u8>]) -> Result<usize> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(KV)?;
            let mut found = 0;
            for k in keys {
                if table.get(k.as_slice())?.is_some() {
                    found += 1;
                }
            }
            Ok(found)
        }

        fn sync(&self) -> Result<()> {
            // An empty Immediate commit persists all earlier Durability::None commits.
            let txn = self.db.begin_write()?;
            txn.commit()?;
            Ok(())
        }

        fn count_all(&self) -> Result<u64> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(KV)?;
            let mut n = 0u64;
            for entry in table.iter()? {
                let (_k, _v) = entry?;
                n += 1;
            }
            Ok(n)
        }
    }
}

#[cfg(feature = "fjall")]
mod fjall_store {
    use super::{Result, Store};
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
    use std::path::Path;

    pub struct FjallStore {
        // Field order = drop order: keyspace handle before the database.
        ks: Keyspace,
        db: Database,
    }

    impl FjallStore {
        pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
            let db = Database::builder(dir).cache_size(cache_bytes).open()?;
            // NB: the second argument is a closure producing the options
            // (only called if the keyspace does not exist yet).
            let ks = db.keyspace("kv", KeyspaceCreateOptions::default)?;
            Ok(Self { ks, db })
        }
    }

    impl Store for FjallStore {
        fn name(&self) -> &'static str {
            "fjall"
        }

        fn put_batch(&self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()> {
            for (k, v) in items {
                // Each insert appends to the journal (write(2) to OS buffers, no fsync).
                self.ks.insert(k.as_slice(), v.as_slice())?;
            }
            if durable {
                self.db.persist(PersistMode::SyncAll)?;
            }
            Ok(())
        }

        fn get(&self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.ks.get(key)?.map(|v| v.len()))
        }

        fn get_many(&self, keys: &[Vec<u8>]) -> Result<usize> {
            let mut found = 0;
            for k in keys {
                if self.ks.get(k)?.is_some() {
                    found += 1;
                }
            }
            Ok(found)
        }

        fn sync(&self) -> Result<()> {
            self.db.persist(PersistMode::SyncAll)?;
            Ok(())
        }

        fn count_all(&self) -> Result<u64> {
            let mut n = 0u64;
            for guard in self.ks.iter() {
                // `into_inner()` yields (key, value) and surfaces I/O errors.
                let (_k, _v) = guard.into_inner()?;
                n += 1;
            }
            Ok(n)
        }
    }
}
