//! Receiving one file as it streams in: the per-file limit, the type from
//! the first bytes, the SHA-256, and the bytes cut into chunks of at most
//! [`CHUNK_SIZE`] written as they fill, so at most one chunk is held in
//! memory. Storage is behind [`ChunkStore`], so this logic is unit-tested
//! natively with a map.
//!
//! Chunk keys: `upload:<id>:chunk:<n>`, `n` from 0. Removing the chunks of
//! a file that did not make it is the caller's job ([`remove_chunks`]):
//! [`FileIntake::chunks_written`] says how far it got.

use crate::rules::{CHUNK_SIZE, FileType, Sniff, sniff};
use app_common::util::ids::hex;

/// Where chunks go.
pub trait ChunkStore {
    fn put(&mut self, key: &str, bytes: &[u8]) -> anyhow::Result<()>;
    fn delete(&mut self, key: &str) -> anyhow::Result<()>;
}

pub fn chunk_key(id: &str, n: u64) -> String {
    format!("upload:{id}:chunk:{n}")
}

/// Deletes chunks `0..count` of upload `id`, trying every one even after a
/// failure; the first failure is returned.
pub fn remove_chunks(store: &mut impl ChunkStore, id: &str, count: u64) -> anyhow::Result<()> {
    let mut first_error = None;
    for n in 0..count {
        if let Err(e) = store.delete(&chunk_key(id, n)) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Why a file was refused.
#[derive(Debug)]
pub enum IntakeError {
    /// The file has more than `limit` bytes.
    TooLarge {
        limit: u64,
    },
    /// Its first bytes are not those of an accepted type.
    Unsupported,
    Empty,
    Store(anyhow::Error),
}

/// A file whose bytes are all stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFile {
    pub id: String,
    pub file_type: FileType,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    pub chunk_size: u64,
    pub chunk_count: u64,
}

/// One file being received.
pub struct FileIntake {
    id: String,
    limit: u64,
    chunk_size: usize,
    buffer: Vec<u8>,
    chunks_written: u64,
    size: u64,
    hasher: hmac_sha256::Hash,
    file_type: Option<FileType>,
}

impl FileIntake {
    pub fn new(id: &str, limit: u64) -> FileIntake {
        FileIntake::with_chunk_size(id, limit, CHUNK_SIZE)
    }

    pub fn with_chunk_size(id: &str, limit: u64, chunk_size: usize) -> FileIntake {
        assert!(chunk_size >= 16, "chunks must hold a file signature");
        FileIntake {
            id: id.to_string(),
            limit,
            chunk_size,
            buffer: Vec::new(),
            chunks_written: 0,
            size: 0,
            hasher: hmac_sha256::Hash::new(),
            file_type: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Chunks stored so far (all of them once [`FileIntake::finish`] ran).
    pub fn chunks_written(&self) -> u64 {
        self.chunks_written
    }

    /// Takes the next bytes of the file. Refuses the file as soon as it
    /// passes the limit (nothing beyond the limit is stored) or its first
    /// bytes rule out every accepted type (nothing is stored at all).
    pub fn push(
        &mut self,
        store: &mut impl ChunkStore,
        mut bytes: &[u8],
    ) -> Result<(), IntakeError> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(IntakeError::TooLarge { limit: self.limit });
        }
        self.hasher.update(bytes);
        while !bytes.is_empty() {
            let room = self.chunk_size - self.buffer.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buffer.extend_from_slice(now);
            bytes = rest;
            if self.file_type.is_none() {
                match sniff(&self.buffer) {
                    Sniff::Known(t) => self.file_type = Some(t),
                    Sniff::Refused => return Err(IntakeError::Unsupported),
                    Sniff::NeedMore => {}
                }
            }
            if self.buffer.len() == self.chunk_size {
                self.flush(store)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, store: &mut impl ChunkStore) -> Result<(), IntakeError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let key = chunk_key(&self.id, self.chunks_written);
        // Counted before the write: a write that fails half-way may still
        // have left something to clean up.
        self.chunks_written += 1;
        store.put(&key, &self.buffer).map_err(IntakeError::Store)?;
        self.buffer.clear();
        Ok(())
    }

    /// Stores the rest and describes the file.
    pub fn finish(&mut self, store: &mut impl ChunkStore) -> Result<ReceivedFile, IntakeError> {
        if self.size == 0 {
            return Err(IntakeError::Empty);
        }
        let Some(file_type) = self.file_type else {
            // Ended while it could still have been a signature.
            return Err(IntakeError::Unsupported);
        };
        self.flush(store)?;
        let digest = std::mem::replace(&mut self.hasher, hmac_sha256::Hash::new()).finalize();
        Ok(ReceivedFile {
            id: self.id.clone(),
            file_type,
            size: self.size,
            sha256: hex(&digest),
            chunk_size: self.chunk_size as u64,
            chunk_count: self.chunks_written,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct MapStore {
        values: BTreeMap<String, Vec<u8>>,
        fail_puts: bool,
    }

    impl ChunkStore for MapStore {
        fn put(&mut self, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
            if self.fail_puts {
                anyhow::bail!("store is down");
            }
            self.values.insert(key.to_string(), bytes.to_vec());
            Ok(())
        }
        fn delete(&mut self, key: &str) -> anyhow::Result<()> {
            self.values.remove(key);
            Ok(())
        }
    }

    fn png(len: usize) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1A\n".to_vec();
        bytes.extend((0..len - 8).map(|i| (i % 251) as u8));
        bytes
    }

    fn feed(
        intake: &mut FileIntake,
        store: &mut MapStore,
        bytes: &[u8],
        piece: usize,
    ) -> Result<(), IntakeError> {
        bytes.chunks(piece).try_for_each(|p| intake.push(store, p))
    }

    #[test]
    fn files_are_stored_in_bounded_chunks_with_their_digest() {
        let bytes = png(100);
        for piece in [1, 7, 32, 100] {
            let mut store = MapStore::default();
            let mut intake = FileIntake::with_chunk_size("f", 1000, 32);
            feed(&mut intake, &mut store, &bytes, piece).unwrap();
            let file = intake.finish(&mut store).unwrap();
            assert_eq!(file.file_type, FileType::Png);
            assert_eq!(file.size, 100);
            assert_eq!(file.chunk_count, 4);
            assert_eq!(file.sha256, app_common::util::ids::sha256_hex(&bytes));
            let keys: Vec<&String> = store.values.keys().collect();
            assert_eq!(
                keys,
                [
                    "upload:f:chunk:0",
                    "upload:f:chunk:1",
                    "upload:f:chunk:2",
                    "upload:f:chunk:3"
                ]
            );
            assert!(store.values.values().all(|v| v.len() <= 32));
            let joined: Vec<u8> = (0..4)
                .flat_map(|n| store.values[&chunk_key("f", n)].clone())
                .collect();
            assert_eq!(joined, bytes);
        }
    }

    #[test]
    fn an_exact_multiple_of_the_chunk_size_has_no_empty_chunk() {
        let mut store = MapStore::default();
        let mut intake = FileIntake::with_chunk_size("f", 1000, 32);
        feed(&mut intake, &mut store, &png(64), 64).unwrap();
        assert_eq!(intake.finish(&mut store).unwrap().chunk_count, 2);
        assert_eq!(store.values.len(), 2);
    }

    #[test]
    fn the_limit_is_enforced_while_reading() {
        let mut store = MapStore::default();
        let mut intake = FileIntake::with_chunk_size("f", 100, 32);
        feed(&mut intake, &mut store, &png(100), 10).unwrap();
        assert!(matches!(
            intake.push(&mut store, b"x"),
            Err(IntakeError::TooLarge { limit: 100 })
        ));
        // What was written is known, so it can be removed.
        assert_eq!(intake.chunks_written(), 3);
        remove_chunks(&mut store, "f", intake.chunks_written()).unwrap();
        assert!(store.values.is_empty());
    }

    #[test]
    fn other_types_are_refused_before_anything_is_stored() {
        let mut store = MapStore::default();
        let mut intake = FileIntake::with_chunk_size("f", 1000, 32);
        let exe = [b"MZ".as_slice(), &[0; 100]].concat();
        assert!(matches!(
            feed(&mut intake, &mut store, &exe, 1),
            Err(IntakeError::Unsupported)
        ));
        assert!(store.values.is_empty());
        assert_eq!(intake.chunks_written(), 0);
        // A file shorter than any signature is refused at its end.
        let mut intake = FileIntake::with_chunk_size("g", 1000, 32);
        intake.push(&mut store, b"GIF8").unwrap();
        assert!(matches!(
            intake.finish(&mut store),
            Err(IntakeError::Unsupported)
        ));
        let mut intake = FileIntake::with_chunk_size("h", 1000, 32);
        assert!(matches!(intake.finish(&mut store), Err(IntakeError::Empty)));
        assert!(store.values.is_empty());
    }

    #[test]
    fn store_failures_surface_and_count_the_attempt() {
        let mut store = MapStore {
            fail_puts: true,
            ..Default::default()
        };
        let mut intake = FileIntake::with_chunk_size("f", 1000, 32);
        assert!(matches!(
            feed(&mut intake, &mut store, &png(40), 40),
            Err(IntakeError::Store(_))
        ));
        assert_eq!(intake.chunks_written(), 1);
    }
}
