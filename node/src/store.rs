//! The node's persistent state, in sled on disk: the jobs it submitted and the assignments it
//! accepted as a worker. Records are CBOR; every write is flushed before the message that
//! depends on it is sent, so a crash never loses an accepted job.

use std::path::{Path, PathBuf};

use distributeai_protocol::codec;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Folder of the sled database inside the data directory.
pub const STORE_DIR: &str = "store";
/// How long opening waits for the lock of a store that was just closed in this process.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (unreadable, corrupt, or locked by another node).
    #[error(
        "cannot open the store at {path}: {reason} (if another node uses this data directory, \
         stop it; if the files are damaged, move {path} away to start with an empty store)"
    )]
    Open {
        /// The database folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A record could not be decoded.
    #[error("corrupt record {key} in {tree} of the store at {path}: {reason}")]
    Corrupt {
        /// The database folder.
        path: PathBuf,
        /// The tree.
        tree: &'static str,
        /// The record's key, hex.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("store at {path}: {reason}")]
    Io {
        /// The database folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Named trees of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Jobs this node submitted.
    Jobs,
    /// Assignments this node accepted as a worker.
    Work,
    /// Verdicts: the ledger.
    Ledger,
    /// A second verdict an issuer signed for a job already in the ledger: the evidence of
    /// its equivocation (issue 19).
    Equivocations,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            // Version 4: wire version 3's evidence in verdicts, signed acceptances and compact
            // reveals (issue 19); version 3 was wire version 2's manifests, faults and
            // verdicts (issue 12); version 2 the job-flow machines' first records (issue
            // 11). Records of earlier formats stay on disk untouched under their old names
            // (see `earlier_format_records`), counted at start and never misread.
            Table::Jobs => "jobs.v4",
            Table::Work => "work.v4",
            Table::Ledger => "ledger.v3",
            Table::Equivocations => "equivocations.v3",
        }
    }
}

/// Trees of earlier record formats, kept unread.
const EARLIER_TREES: [&[u8]; 8] = [
    b"jobs",
    b"work",
    b"jobs.v2",
    b"work.v2",
    b"ledger",
    b"jobs.v3",
    b"work.v3",
    b"ledger.v2",
];

/// The sled database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Bytes of sled's page cache (its default is 1 GiB): records are read at start and
    /// then rarely, so a small cache costs little, and a node whose ledger grew large must
    /// not sit above the 1 GiB of resident memory at which it denies new connections
    /// (`network::ConnectionBudget`; issue 20).
    pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

    /// Opens (or creates) the store in `data_dir`. Errors (`StoreError::Open`, naming the
    /// folder): the files are damaged, or the store is locked by another running node (a
    /// store closed a moment ago in this process is waited for, up to 3 s).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(STORE_DIR);
        // sled may panic on some kinds of damage instead of returning an error; a damaged
        // store must be a clear error naming the files, never a crash.
        let open = || {
            std::panic::catch_unwind(|| {
                sled::Config::new()
                    .path(&path)
                    .cache_capacity(Self::CACHE_BYTES)
                    .open()
            })
        };
        let mut opened = open();
        // The lock of a store closed a moment ago in this process is released by sled's
        // background thread shortly after; a store held by another running node stays
        // locked, and says so.
        let locked = |o: &std::thread::Result<sled::Result<sled::Db>>| matches!(o, Ok(Err(sled::Error::Io(e))) if e.kind() == std::io::ErrorKind::WouldBlock);
        let give_up = std::time::Instant::now() + LOCK_WAIT;
        while locked(&opened) && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(50));
            opened = open();
        }
        if locked(&opened) {
            return Err(StoreError::Open {
                path,
                reason: "it is locked: is another node running on this data directory?".into(),
            });
        }
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => {
                return Err(StoreError::Open {
                    path,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(StoreError::Open {
                    path,
                    reason: "the database files are damaged".into(),
                });
            }
        };
        let store = Self { db, path };
        // Decode everything once now, so damage is reported at start, not mid-job.
        for table in [Table::Jobs, Table::Work] {
            store.all::<serde::de::IgnoredAny>(table)?;
        }
        Ok(store)
    }

    fn io(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn tree(&self, table: Table) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(table.name()).map_err(|e| self.io(e))
    }

    /// Writes `value` under `key` and flushes it to disk.
    pub fn put<T: Serialize>(&self, table: Table, key: &[u8], value: &T) -> Result<(), StoreError> {
        // Local records may hold several messages' worth (a job keeps its announcement and its
        // verdict): no wire limit here; the spec's own bound keeps them in reason.
        let bytes = codec::encode_local(value).map_err(|e| self.io(e))?;
        let tree = self.tree(table)?;
        tree.insert(key, bytes).map_err(|e| self.io(e))?;
        tree.flush().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Writes many records at once and flushes once: one fsync, not one a record (a restore,
    /// an import, a test's ledger of 100,000 entries).
    pub fn put_all<'a, T: Serialize + 'a>(
        &self,
        table: Table,
        records: impl IntoIterator<Item = (&'a [u8], &'a T)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in records {
            batch.insert(key, codec::encode_local(value).map_err(|e| self.io(e))?);
        }
        let tree = self.tree(table)?;
        tree.apply_batch(batch).map_err(|e| self.io(e))?;
        tree.flush().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Deletes one record (nothing if absent) and flushes.
    pub fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let tree = self.tree(table)?;
        tree.remove(key).map_err(|e| self.io(e))?;
        tree.flush().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Reads one record.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        let tree = self.tree(table)?;
        match tree.get(key).map_err(|e| self.io(e))? {
            Some(bytes) => self.decode(table, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every record of a table, in key order.
    pub fn all<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(table, |record| out.push(record))?;
        Ok(out)
    }

    /// Hands every record of a table to `f`, in key order, one at a time: a table too large
    /// to hold decoded all at once (the ledger) is read in constant memory.
    pub fn each<T: DeserializeOwned>(
        &self,
        table: Table,
        mut f: impl FnMut(T),
    ) -> Result<(), StoreError> {
        let tree = self.tree(table)?;
        for entry in tree.iter() {
            let (key, bytes) = entry.map_err(|e| self.io(e))?;
            f(self.decode(table, &key, &bytes)?);
        }
        Ok(())
    }

    /// Records of a table with keys after `after`, at most `limit`.
    pub fn range_after<T: DeserializeOwned>(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<T>, bool), StoreError> {
        let tree = self.tree(table)?;
        let iter = match after {
            Some(key) => {
                tree.range::<&[u8], _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))
            }
            None => tree.iter(),
        };
        let mut out = Vec::new();
        let mut more = false;
        for entry in iter {
            let (key, bytes) = entry.map_err(|e| self.io(e))?;
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(self.decode(table, &key, &bytes)?);
        }
        Ok((out, more))
    }

    /// Whether a key is present.
    pub fn contains(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        self.tree(table)?.contains_key(key).map_err(|e| self.io(e))
    }

    /// Records kept in the trees of earlier record formats (`jobs`, `work`, `ledger` and their
    /// `.v2`/`.v3` versions), which this version no longer reads (issues 11, 12 and 19): they
    /// stay on disk untouched.
    pub fn earlier_format_records(&self) -> usize {
        self.db
            .tree_names()
            .iter()
            .filter(|name| EARLIER_TREES.contains(&name.as_ref()))
            .filter_map(|name| self.db.open_tree(name).ok())
            .map(|tree| tree.len())
            .sum()
    }

    /// Number of records in a table.
    pub fn len(&self, table: Table) -> Result<usize, StoreError> {
        Ok(self.tree(table)?.len())
    }

    fn decode<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        codec::decode_local(bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            tree: table.name(),
            key: hex::encode(key),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.put(Table::Jobs, b"a", &("job", 1u32)).expect("put");
            store.put(Table::Jobs, b"b", &("job", 2u32)).expect("put");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let all: Vec<(String, u32)> = store.all(Table::Jobs).expect("all");
        assert_eq!(all, vec![("job".into(), 1), ("job".into(), 2)]);
        let (after_a, more): (Vec<(String, u32)>, bool) = store
            .range_after(Table::Jobs, Some(b"a"), 10)
            .expect("range");
        assert_eq!((after_a.len(), more), (1, false));
        assert_eq!(
            store.get::<(String, u32)>(Table::Jobs, b"b").expect("get"),
            Some(("job".into(), 2))
        );
    }

    #[test]
    fn a_corrupt_record_is_a_clear_error_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let tree = store.tree(Table::Work).expect("tree");
            tree.insert(b"k", &[0xff, 0x00][..]).expect("insert");
            tree.flush().expect("flush");
        }
        let err = Store::open(dir.path()).expect_err("corrupt");
        let text = err.to_string();
        assert!(
            text.contains("corrupt record 6b in work") && text.contains("store"),
            "{text}"
        );
    }

    #[test]
    fn damaged_database_files_are_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.put(Table::Jobs, b"a", &1u32).expect("put");
        }
        // Overwrite every file of the database with garbage.
        for entry in std::fs::read_dir(dir.path().join(STORE_DIR))
            .expect("read dir")
            .flatten()
        {
            if entry.path().is_file() {
                std::fs::write(entry.path(), vec![0x5a; 4096]).expect("write");
            }
        }
        let err = Store::open(dir.path()).expect_err("damaged");
        assert!(err.to_string().contains("store"), "{err}");
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_store_in_use_is_refused_saying_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = Store::open(dir.path()).expect("open");
        let err = Store::open(dir.path()).expect_err("locked");
        assert!(err.to_string().contains("another node"), "{err}");
    }
}
