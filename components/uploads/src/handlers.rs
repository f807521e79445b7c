//! The uploads routes. Every route authenticates the caller; an upload is
//! visible to its owner and to admins only, and to anyone else it does not
//! exist (404, so ids cannot be probed).
//!
//! `POST /api/uploads` streams the body: each file goes through a
//! [`FileIntake`] (limit, type, digest, chunks) as it arrives, and a
//! request either stores every file it carries or none: on any failure the
//! chunks written so far are removed ([`Batch::discard`]).

use crate::form::{self, FileSink};
use crate::intake::{FileIntake, IntakeError, ReceivedFile, remove_chunks};
use crate::rules::{
    self, CHUNK_SIZE, DEFAULT_UPLOAD_LIMIT, RangeRequest, chunks_covering, content_disposition,
    etag, if_range_holds, is_form_data, none_match, parse_range, sanitize_name, stored_name,
};
use crate::store::{self, KvChunks, Upload};
use anyhow::{anyhow, bail};
use app_common::config::var_u64;
use app_common::http::error::Detail;
use app_common::http::pagination::{Page, decode_cursor, parse_limit};
use app_common::storage::db::Connection;
use app_common::telemetry::metrics::{add_to_counter, record_business};
use app_common::util::ids;
use app_common::util::time::{now_millis, rfc3339_millis};
use app_common::{ApiError, ApiRequest, ApiResponse, Principal};
use serde::Serialize;

/// The component's settings (variables).
pub struct Settings {
    /// `upload_limit_bytes`: the largest file (default 5 MiB).
    pub limit: u64,
    /// `upload_abandoned_after_seconds` (default 3600): when the chunks of
    /// an upload that never finished may be removed by the sweep.
    pub abandoned_after_millis: u64,
}

impl Settings {
    pub fn load() -> anyhow::Result<Settings> {
        let limit = var_u64("upload_limit_bytes", DEFAULT_UPLOAD_LIMIT)?;
        if limit == 0 {
            bail!("variable `upload_limit_bytes` must be at least 1");
        }
        let abandoned = var_u64("upload_abandoned_after_seconds", 3600)?;
        Ok(Settings {
            limit,
            abandoned_after_millis: abandoned.saturating_mul(1000),
        })
    }
}

/// An upload as responses show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadView {
    pub id: String,
    pub name: String,
    /// The stored media type (decided by the file's first bytes).
    #[serde(rename = "type")]
    pub media_type: &'static str,
    pub size: u64,
    pub sha256: String,
    pub owner_id: String,
    pub created_at: String,
}

impl From<&Upload> for UploadView {
    fn from(u: &Upload) -> UploadView {
        UploadView {
            id: u.id.clone(),
            name: u.name.clone(),
            media_type: u.file_type.media_type(),
            size: u.size,
            sha256: u.sha256.clone(),
            owner_id: u.owner_id.clone(),
            created_at: rfc3339_millis(u.created_at),
        }
    }
}

/// A new upload id: a random (version 4) UUID, so ids reveal nothing.
fn new_upload_id() -> String {
    ids::new_random_id()
}

fn not_found() -> ApiError {
    ApiError::not_found("no upload has this id")
}

/// The route's upload, if the caller may see it (404 otherwise, 400 for a
/// malformed id).
fn visible_upload(
    conn: &Connection,
    caller: &Principal,
    request: &ApiRequest,
) -> Result<Upload, ApiError> {
    let id = request.id_param("an upload")?;
    store::find(conn, id)?
        .filter(|u| caller.is_admin() || u.owner_id == caller.user_id)
        .ok_or_else(not_found)
}

// ---- POST /api/uploads ------------------------------------------------------

/// The files of one request: stored chunks, pending entries, and how to
/// undo them.
struct Batch<'a> {
    conn: &'a Connection,
    chunks: KvChunks,
    limit: u64,
    /// Chunks a file of the limit can need (for the pending entries).
    max_chunks: u64,
    done: Vec<(ReceivedFile, Option<String>)>,
    current: Option<(FileIntake, Option<String>)>,
}

impl FileSink for Batch<'_> {
    fn begin(&mut self, name: Option<String>) -> Result<(), ApiError> {
        Batch::begin(self, name)
    }
    fn push(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        Batch::push(self, bytes)
    }
    fn finish(&mut self) -> Result<(), ApiError> {
        Batch::finish(self)
    }
}

impl<'a> Batch<'a> {
    fn new(conn: &'a Connection, chunks: KvChunks, limit: u64) -> Batch<'a> {
        Batch {
            conn,
            chunks,
            limit,
            max_chunks: limit.div_ceil(CHUNK_SIZE as u64) + 1,
            done: Vec::new(),
            current: None,
        }
    }

    /// Starts a file the client calls `name`.
    fn begin(&mut self, name: Option<String>) -> Result<(), ApiError> {
        let id = new_upload_id();
        store::mark_pending(self.conn, &id, self.max_chunks)?;
        self.current = Some((FileIntake::new(&id, self.limit), name));
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        let (intake, name) = self
            .current
            .as_mut()
            .ok_or_else(|| anyhow!("bytes before a file began"))?;
        intake
            .push(&mut self.chunks, bytes)
            .map_err(|e| intake_error(e, name.as_deref()))
    }

    fn finish(&mut self) -> Result<(), ApiError> {
        let (intake, name) = self
            .current
            .as_mut()
            .ok_or_else(|| anyhow!("no file to finish"))?;
        let file = intake
            .finish(&mut self.chunks)
            .map_err(|e| intake_error(e, name.as_deref()))?;
        let name = name.take();
        self.current = None;
        self.done.push((file, name));
        Ok(())
    }

    /// Writes the metadata rows (all in one statement) once every file's
    /// chunks are stored.
    fn commit(&mut self, owner_id: &str) -> Result<Vec<Upload>, ApiError> {
        let now = now_millis();
        let rows: Vec<Upload> = self
            .done
            .iter()
            .map(|(file, name)| {
                let name = stored_name(name.as_deref(), file.file_type);
                Upload::new(file.clone(), owner_id, name, now)
            })
            .collect();
        store::insert_all(self.conn, &rows)?;
        self.done.clear();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        if let Err(e) = store::clear_pending(self.conn, &ids) {
            // Harmless: the sweep drops entries whose upload has a row.
            eprintln!("uploads: clearing pending entries failed: {e:#}");
        }
        Ok(rows)
    }

    /// Removes everything this request stored. Failures are logged; the
    /// pending entries they leave let the sweep finish the job.
    fn discard(&mut self) {
        let mut undone: Vec<(String, u64)> = self
            .done
            .drain(..)
            .map(|(f, _)| (f.id, f.chunk_count))
            .collect();
        if let Some((intake, _)) = self.current.take() {
            undone.push((intake.id().to_string(), intake.chunks_written()));
        }
        let mut cleaned = Vec::new();
        for (id, count) in &undone {
            match remove_chunks(&mut self.chunks, id, *count) {
                Ok(()) => cleaned.push(id.as_str()),
                Err(e) => eprintln!("uploads: removing the chunks of {id} failed: {e:#}"),
            }
        }
        if let Err(e) = store::clear_pending(self.conn, &cleaned) {
            eprintln!("uploads: clearing pending entries failed: {e:#}");
        }
    }
}

fn intake_error(e: IntakeError, name: Option<&str>) -> ApiError {
    let file = match name {
        Some(n) => format!("the file `{}`", sanitize_name(n)),
        None => "the file".to_string(),
    };
    match e {
        IntakeError::TooLarge { limit } => ApiError::new(
            413,
            "payload_too_large",
            format!("{file} exceeds the limit of {limit} bytes per file"),
        ),
        IntakeError::Unsupported => ApiError::unsupported_media_type(format!(
            "{file} is not a JPEG, PNG, GIF or PDF file (decided by its first bytes, not by its name or Content-Type)"
        )),
        IntakeError::Empty => ApiError::validation(vec![Detail::field(
            "file",
            "empty_file",
            format!("{file} is empty"),
        )]),
        IntakeError::Store(cause) => ApiError::internal(cause.context("store an upload chunk")),
    }
}

/// `POST /api/uploads` (multipart `file` parts, or a raw body) → 201 with
/// the stored upload (several: `{"items": [...]}`).
pub async fn create(request: &ApiRequest, settings: &Settings) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let conn = store::connect()?;
    let mut chunks = KvChunks::open()?;
    if let Err(e) = store::sweep_abandoned(&conn, &mut chunks, settings.abandoned_after_millis) {
        eprintln!("uploads: sweeping abandoned uploads failed: {e:#}");
    }
    let mut batch = Batch::new(&conn, chunks, settings.limit);
    let stored = match receive(request, &mut batch, settings.limit).await {
        Ok(()) => batch.commit(&caller.user_id),
        Err(e) => Err(e),
    };
    let rows = match stored {
        Ok(rows) => rows,
        Err(e) => {
            batch.discard();
            record_business("upload", "failure");
            return Err(e);
        }
    };
    for row in &rows {
        record_business("upload", "success");
        add_to_counter(
            "upload_bytes_total",
            &[("type", row.file_type.media_type())],
            row.size as i64,
        );
    }
    match rows.as_slice() {
        [one] => Ok(ApiResponse::json(201, &UploadView::from(one))?
            .with_header("location", format!("/api/uploads/{}", one.id))),
        many => {
            let items: Vec<UploadView> = many.iter().map(UploadView::from).collect();
            ApiResponse::json(201, &serde_json::json!({ "items": items }))
        }
    }
}

async fn receive(request: &ApiRequest, batch: &mut Batch<'_>, limit: u64) -> Result<(), ApiError> {
    let content_type = request.header("content-type").unwrap_or("").trim();
    if is_form_data(content_type) {
        form::read_form(
            request.body_stream(form::form_limit(limit))?,
            content_type,
            batch,
        )
        .await
    } else if content_type.to_ascii_lowercase().starts_with("multipart/") {
        Err(ApiError::unsupported_media_type(
            "multipart uploads must be multipart/form-data",
        ))
    } else {
        // A raw body: the file itself, named by `Content-Disposition` or
        // `X-File-Name`.
        let name = rules::raw_file_name(
            request.header("content-disposition"),
            request.header("x-file-name"),
        );
        form::read_raw(request.body_stream(limit)?, name, batch).await
    }
}

// ---- reads and deletes ----------------------------------------------------------

/// `GET /api/uploads?limit&cursor` → the caller's uploads (an admin's:
/// everyone's), newest first.
pub fn list(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    request.reject_unknown_query_params(&["limit", "cursor"])?;
    let limit = parse_limit(request.query_param("limit").as_deref())?;
    let after = match request.query_param("cursor") {
        Some(cursor) => Some(parse_position(&decode_cursor(&cursor)?)?),
        None => None,
    };
    let owner = (!caller.is_admin()).then_some(caller.user_id.as_str());
    let conn = store::connect()?;
    let rows = store::list(
        &conn,
        owner,
        after.as_ref().map(|(t, id)| (*t, id.as_str())),
        limit + 1,
    )?;
    let page = Page::from_rows(rows, limit, |u| format!("{}:{}", u.created_at, u.id));
    let page = Page {
        items: page.items.iter().map(UploadView::from).collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    };
    ApiResponse::json(200, &page)
}

/// A cursor position: `<created_at>:<id>`.
fn parse_position(position: &str) -> Result<(u64, String), ApiError> {
    position
        .split_once(':')
        .and_then(|(t, id)| Some((t.parse::<u64>().ok()?, id)))
        .filter(|(_, id)| ids::is_uuid(id))
        .map(|(t, id)| (t, id.to_string()))
        .ok_or_else(|| {
            ApiError::validation(vec![Detail::field(
                "cursor",
                "invalid_cursor",
                "is not a cursor this API returned",
            )])
        })
}

/// `GET /api/uploads/:id` → the metadata.
pub fn get(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let conn = store::connect()?;
    let upload = visible_upload(&conn, &caller, request)?;
    ApiResponse::json(200, &UploadView::from(&upload))
}

/// `GET /api/uploads/:id/content` → the bytes: 200, 206 for a satisfiable
/// single `Range`, 304 when `If-None-Match` names the `ETag`, 416 for a
/// range outside the file.
pub fn content(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let conn = store::connect()?;
    let upload = visible_upload(&conn, &caller, request)?;
    let tag = etag(&upload.sha256);
    if none_match(request.header("if-none-match"), &tag) {
        let mut not_modified = ApiResponse::no_content().with_header("etag", tag);
        not_modified.status = 304;
        return Ok(not_modified);
    }
    let range = if if_range_holds(request.header("if-range"), &tag) {
        parse_range(request.header("range"), upload.size)
    } else {
        RangeRequest::Full
    };
    let (status, start, end) = match range {
        RangeRequest::Full => (200, 0, upload.size - 1),
        RangeRequest::Partial { start, end } => (206, start, end),
        RangeRequest::Unsatisfiable => {
            let error = ApiError::new(
                416,
                "range_not_satisfiable",
                format!("the range is outside the file's {} bytes", upload.size),
            );
            return Ok(
                ApiResponse::json(416, &error.body(request.correlation_id()))?
                    .with_header("content-range", format!("bytes */{}", upload.size)),
            );
        }
    };
    let bytes = match read_bytes(&upload, start, end)? {
        Some(bytes) => bytes,
        // A chunk is gone: deleted in the meantime, or lost.
        None if store::find(&conn, &upload.id)?.is_none() => return Err(not_found()),
        None => return Err(anyhow!("upload {} is missing a chunk", upload.id).into()),
    };
    let mut response = ApiResponse::bytes(status, upload.file_type.media_type(), bytes)
        .with_header("etag", tag)
        .with_header("accept-ranges", "bytes")
        .with_header("content-disposition", content_disposition(&upload.name));
    if status == 206 {
        response = response.with_header(
            "content-range",
            format!("bytes {start}-{end}/{}", upload.size),
        );
    }
    Ok(response)
}

/// Bytes `start..=end` of `upload`; `None` when a chunk is missing.
fn read_bytes(upload: &Upload, start: u64, end: u64) -> anyhow::Result<Option<Vec<u8>>> {
    let chunks = KvChunks::open()?;
    let mut out = Vec::with_capacity((end - start + 1) as usize);
    for n in chunks_covering(start, end, upload.chunk_size) {
        let Some(chunk) = chunks.get(&upload.id, n)? else {
            return Ok(None);
        };
        let chunk_start = n * upload.chunk_size;
        let from = start.saturating_sub(chunk_start) as usize;
        let to = ((end + 1 - chunk_start) as usize).min(chunk.len());
        if from >= to {
            bail!(
                "chunk {n} of upload {} is shorter than its metadata says",
                upload.id
            );
        }
        out.extend_from_slice(&chunk[from..to]);
    }
    if out.len() as u64 != end - start + 1 {
        bail!(
            "upload {} holds fewer bytes than its metadata says",
            upload.id
        );
    }
    Ok(Some(out))
}

/// `DELETE /api/uploads/:id` → 204; the row and every chunk are removed.
pub fn delete(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let conn = store::connect()?;
    let upload = visible_upload(&conn, &caller, request)?;
    // Entered first, so an interrupted delete is finished by the sweep.
    store::mark_pending(&conn, &upload.id, upload.chunk_count)?;
    if !store::delete_row(&conn, &upload.id)? {
        return Err(not_found());
    }
    let mut chunks = KvChunks::open()?;
    match remove_chunks(&mut chunks, &upload.id, upload.chunk_count) {
        Ok(()) => store::clear_pending(&conn, &[upload.id.as_str()])?,
        Err(e) => eprintln!(
            "uploads: removing the chunks of {} failed (the sweep retries): {e:#}",
            upload.id
        ),
    }
    Ok(ApiResponse::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_random_uuids() {
        let a = new_upload_id();
        assert!(ids::is_uuid(&a), "{a}");
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_upload_id());
    }

    #[test]
    fn cursor_positions_parse() {
        let id = new_upload_id();
        assert_eq!(
            parse_position(&format!("17:{id}")).unwrap(),
            (17, id.clone())
        );
        for bad in ["17", "x:y", &format!("-1:{id}"), "17:../x"] {
            assert_eq!(parse_position(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
