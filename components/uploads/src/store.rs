//! Where uploads live: metadata in the SQLite database `default` (table
//! `uploads`), bytes in the key-value store `default` as chunks
//! (`upload:<id>:chunk:<n>`, see [`crate::intake`]).
//!
//! Order of writes: a file's id is first entered in `upload_pending`, then
//! its chunks are written, then its `uploads` row, then the pending entry
//! is removed. A request that fails removes its chunks and pending entries
//! itself; one that cannot (the instance was stopped mid-request) leaves a
//! pending entry, and [`sweep_abandoned`] — run by later uploads — removes
//! the chunks of entries older than `upload_abandoned_after_seconds` that
//! never got a row. Deleting enters the id in `upload_pending` again before
//! removing the row and then the chunks, so an interrupted delete is
//! finished by the sweep too.
//!
//! Migrations are idempotent and recorded in `schema_version` under
//! [`SCHEMA`], like the account records'.

use crate::intake::{ChunkStore, ReceivedFile, chunk_key, remove_chunks};
use crate::rules::FileType;
use anyhow::{Context as _, Result, anyhow};
use app_common::storage::db::{self, exec, text};
use app_common::storage::db::{Connection, QueryResult, Value};
use app_common::util::time::now_millis;
use spin_sdk::key_value::Store;
use std::sync::atomic::{AtomicBool, Ordering};

pub const SCHEMA: &str = "uploads";

const MIGRATIONS: &[(i64, &[&str])] = &[(
    1,
    &[
        "CREATE TABLE IF NOT EXISTS uploads (
            id TEXT PRIMARY KEY,
            owner_id TEXT NOT NULL,
            name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            chunk_size INTEGER NOT NULL,
            chunk_count INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS uploads_owner_created ON uploads (owner_id, created_at, id)",
        "CREATE INDEX IF NOT EXISTS uploads_created ON uploads (created_at, id)",
        "CREATE TABLE IF NOT EXISTS upload_pending (
            id TEXT PRIMARY KEY,
            max_chunks INTEGER NOT NULL,
            started_at INTEGER NOT NULL
        )",
    ],
)];

const COLUMNS: &str =
    "id, owner_id, name, content_type, size, sha256, chunk_size, chunk_count, created_at";

static MIGRATED: AtomicBool = AtomicBool::new(false);

/// A stored upload's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub file_type: FileType,
    pub size: u64,
    pub sha256: String,
    pub chunk_size: u64,
    pub chunk_count: u64,
    /// Unix milliseconds.
    pub created_at: u64,
}

impl Upload {
    pub fn new(file: ReceivedFile, owner_id: &str, name: String, created_at: u64) -> Upload {
        Upload {
            id: file.id,
            owner_id: owner_id.to_string(),
            name,
            file_type: file.file_type,
            size: file.size,
            sha256: file.sha256,
            chunk_size: file.chunk_size,
            chunk_count: file.chunk_count,
            created_at,
        }
    }
}

/// The key-value store as a [`ChunkStore`].
pub struct KvChunks(pub Store);

impl KvChunks {
    pub fn open() -> Result<KvChunks> {
        Ok(KvChunks(app_common::storage::kv::open()?))
    }

    pub fn get(&self, id: &str, n: u64) -> Result<Option<Vec<u8>>> {
        let key = chunk_key(id, n);
        self.0
            .get(&key)
            .with_context(|| format!("key-value get `{key}`"))
    }
}

impl ChunkStore for KvChunks {
    fn put(&mut self, key: &str, bytes: &[u8]) -> Result<()> {
        self.0
            .set(key, bytes)
            .with_context(|| format!("key-value set `{key}`"))
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        app_common::storage::kv::delete(&self.0, key)
    }
}

/// Opens the database, applying missing migrations first.
pub fn connect() -> Result<Connection> {
    let conn = db::open()?;
    if !MIGRATED.load(Ordering::Relaxed) {
        db::migrate(&conn, SCHEMA, MIGRATIONS)?;
        MIGRATED.store(true, Ordering::Relaxed);
    }
    Ok(conn)
}

fn int(n: u64) -> Value {
    db::int(n as i64)
}

fn uploads(result: &QueryResult) -> Result<Vec<Upload>> {
    result
        .rows
        .iter()
        .map(|row| {
            let s = |i: usize| app_common::storage::db::column_text(row, "uploads", i);
            let n =
                |i: usize| app_common::storage::db::column_int(row, "uploads", i).map(|n| n as u64);
            let media_type = s(3)?;
            Ok(Upload {
                id: s(0)?,
                owner_id: s(1)?,
                name: s(2)?,
                file_type: FileType::from_media_type(&media_type)
                    .ok_or_else(|| anyhow!("unknown stored type `{media_type}`"))?,
                size: n(4)?,
                sha256: s(5)?,
                chunk_size: n(6)?,
                chunk_count: n(7)?,
                created_at: n(8)?,
            })
        })
        .collect()
}

/// Inserts every row in one statement: all or none.
pub fn insert_all(conn: &Connection, rows: &[Upload]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let placeholders = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", ");
    let mut params = Vec::with_capacity(rows.len() * 9);
    for u in rows {
        params.extend([
            text(&u.id),
            text(&u.owner_id),
            text(&u.name),
            text(u.file_type.media_type()),
            int(u.size),
            text(&u.sha256),
            int(u.chunk_size),
            int(u.chunk_count),
            int(u.created_at),
        ]);
    }
    exec(
        conn,
        &format!("INSERT INTO uploads ({COLUMNS}) VALUES {placeholders}"),
        &params,
    )
    .context("insert uploads")?;
    Ok(())
}

pub fn find(conn: &Connection, id: &str) -> Result<Option<Upload>> {
    let result = exec(
        conn,
        &format!("SELECT {COLUMNS} FROM uploads WHERE id = ?"),
        &[text(id)],
    )?;
    Ok(uploads(&result)?.into_iter().next())
}

/// Up to `limit` uploads, newest first, of `owner` (everyone's when
/// `None`), after the position `(created_at, id)`.
pub fn list(
    conn: &Connection,
    owner: Option<&str>,
    after: Option<(u64, &str)>,
    limit: usize,
) -> Result<Vec<Upload>> {
    let mut sql = format!("SELECT {COLUMNS} FROM uploads WHERE 1 = 1");
    let mut params = Vec::new();
    if let Some(owner) = owner {
        sql.push_str(" AND owner_id = ?");
        params.push(text(owner));
    }
    if let Some((created_at, id)) = after {
        sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
        params.extend([int(created_at), int(created_at), text(id)]);
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    params.push(int(limit as u64));
    uploads(&exec(conn, &sql, &params)?)
}

/// Removes the row; false when there was none (already deleted).
pub fn delete_row(conn: &Connection, id: &str) -> Result<bool> {
    let result = exec(
        conn,
        "DELETE FROM uploads WHERE id = ? RETURNING id",
        &[text(id)],
    )?;
    Ok(!result.rows.is_empty())
}

/// Records that chunks `0..max_chunks` of `id` may exist without a row.
pub fn mark_pending(conn: &Connection, id: &str, max_chunks: u64) -> Result<()> {
    exec(
        conn,
        "INSERT INTO upload_pending (id, max_chunks, started_at) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET max_chunks = CASE WHEN excluded.max_chunks > upload_pending.max_chunks
                                  THEN excluded.max_chunks ELSE upload_pending.max_chunks END,
         started_at = excluded.started_at",
        &[text(id), int(max_chunks), int(now_millis())],
    )?;
    Ok(())
}

pub fn clear_pending(conn: &Connection, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let placeholders = vec!["?"; ids.len()].join(", ");
    let params: Vec<Value> = ids.iter().map(|id| text(id)).collect();
    exec(
        conn,
        &format!("DELETE FROM upload_pending WHERE id IN ({placeholders})"),
        &params,
    )?;
    Ok(())
}

/// Finishes what interrupted requests left: for pending entries older than
/// `older_than_millis` whose upload has no row, removes every chunk they
/// may have written; entries whose upload has a row only lose the entry.
/// Returns how many abandoned uploads were cleaned up.
pub fn sweep_abandoned(
    conn: &Connection,
    chunks: &mut KvChunks,
    older_than_millis: u64,
) -> Result<usize> {
    let cutoff = now_millis().saturating_sub(older_than_millis);
    let stale = exec(
        conn,
        "SELECT p.id, p.max_chunks, EXISTS (SELECT 1 FROM uploads u WHERE u.id = p.id)
         FROM upload_pending p WHERE p.started_at <= ? LIMIT 100",
        &[int(cutoff)],
    )?;
    let mut cleaned = 0;
    for row in &stale.rows {
        let id = row
            .get::<&str>(0)
            .ok_or_else(|| anyhow!("upload_pending.id is not text"))?;
        let max_chunks = row.get::<i64>(1).unwrap_or(0).max(0) as u64;
        let has_row = row.get::<i64>(2).unwrap_or(0) != 0;
        if !has_row {
            remove_chunks(chunks, id, max_chunks)?;
            cleaned += 1;
        }
        clear_pending(conn, &[id])?;
    }
    Ok(cleaned)
}
