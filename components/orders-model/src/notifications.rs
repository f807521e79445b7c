//! Notifications (one per handled event, for the order's owner) and the
//! record of processed events that makes event handling idempotent.
//!
//! Both writes happen in one transaction in `order-events`: claiming the
//! event id in `processed_events` (`INSERT OR IGNORE`) tells whether this
//! delivery is the first; a redelivery finds the id taken and changes
//! nothing. `notifications.event_id` is UNIQUE as a second guard.
//! Claims are kept for a retention period ([`sweep_processed`]).

use anyhow::{Result, anyhow};
use app_common::storage::db::{Connection, QueryResult};
use app_common::storage::db::{exec, int, opt_text, text};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};

/// Claims `event_id` for processing; `false` when it was processed before.
pub fn claim_event(conn: &Connection, event_id: &str, kind: &str) -> Result<bool> {
    let result = exec(
        conn,
        "INSERT INTO processed_events (event_id, type, processed_at) VALUES (?, ?, ?)
         ON CONFLICT (event_id) DO NOTHING
         RETURNING event_id",
        &[
            text(event_id),
            text(kind),
            int(app_common::util::time::now_millis() as i64),
        ],
    )?;
    Ok(!result.rows.is_empty())
}

/// The index retention walks, a schema of its own so the tables' schema
/// (`store`) stays untouched.
const RETENTION_SCHEMA: &str = "processed_events_retention";
const RETENTION_MIGRATIONS: app_common::storage::db::Migrations = &[(
    1,
    &["CREATE INDEX IF NOT EXISTS processed_events_processed_at
        ON processed_events (processed_at)"],
)];
static RETENTION_MIGRATED: AtomicBool = AtomicBool::new(false);

/// Removes at most `limit` claims of events processed before
/// `before_millis` (oldest first); returns how many. Redeliveries come
/// within minutes (broker retries, outbox re-publishes), and a notification
/// is unique per event id as well, so old claims can go.
pub fn sweep_processed(conn: &Connection, before_millis: u64, limit: i64) -> Result<usize> {
    if !RETENTION_MIGRATED.load(Ordering::Relaxed) {
        app_common::storage::db::migrate(conn, RETENTION_SCHEMA, RETENTION_MIGRATIONS)?;
        RETENTION_MIGRATED.store(true, Ordering::Relaxed);
    }
    let result = exec(
        conn,
        "DELETE FROM processed_events WHERE event_id IN (
             SELECT event_id FROM processed_events WHERE processed_at < ?
             ORDER BY processed_at LIMIT ?)
         RETURNING event_id",
        &[int(before_millis as i64), int(limit)],
    )?;
    Ok(result.rows.len())
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    pub event_id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub message: String,
    pub created_at: u64,
    pub read_at: Option<u64>,
}

/// A notification as responses show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: String,
    pub order_id: Option<String>,
    pub message: String,
    pub read: bool,
    pub created_at: String,
    pub read_at: Option<String>,
}

impl Notification {
    pub fn view(&self) -> NotificationView {
        NotificationView {
            id: self.id.clone(),
            kind: self.kind.clone(),
            event_id: self.event_id.clone(),
            order_id: self.order_id.clone(),
            message: self.message.clone(),
            read: self.read_at.is_some(),
            created_at: app_common::util::time::rfc3339_millis(self.created_at),
            read_at: self.read_at.map(app_common::util::time::rfc3339_millis),
        }
    }
}

const COLUMNS: &str = "id, user_id, event_id, type, order_id, message, created_at, read_at";

fn notifications(result: &QueryResult) -> Result<Vec<Notification>> {
    result
        .rows
        .iter()
        .map(|row| {
            let s = |i: usize| {
                row.get::<&str>(i)
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("notifications column {i} is not text"))
            };
            Ok(Notification {
                id: s(0)?,
                user_id: s(1)?,
                event_id: s(2)?,
                kind: s(3)?,
                order_id: row.get::<&str>(4).map(str::to_string),
                message: s(5)?,
                created_at: row
                    .get::<i64>(6)
                    .ok_or_else(|| anyhow!("notifications.created_at"))?
                    as u64,
                read_at: row.get::<i64>(7).map(|n| n as u64),
            })
        })
        .collect()
}

/// Stores a notification; `false` if one exists for its event already.
pub fn insert(conn: &Connection, n: &Notification) -> Result<bool> {
    let result = exec(
        conn,
        &format!(
            "INSERT INTO notifications ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (event_id) DO NOTHING
             RETURNING id"
        ),
        &[
            text(&n.id),
            text(&n.user_id),
            text(&n.event_id),
            text(&n.kind),
            opt_text(n.order_id.as_deref()),
            text(&n.message),
            int(n.created_at as i64),
            n.read_at
                .map_or(app_common::storage::db::Value::Null, |t| int(t as i64)),
        ],
    )?;
    Ok(!result.rows.is_empty())
}

/// Up to `limit` notifications of `user_id` older than id `before`,
/// newest first; only unread ones when `unread_only`.
pub fn list(
    conn: &Connection,
    user_id: &str,
    unread_only: bool,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<Notification>> {
    let mut sql = format!("SELECT {COLUMNS} FROM notifications WHERE user_id = ?");
    let mut params = vec![text(user_id)];
    if unread_only {
        sql.push_str(" AND read_at IS NULL");
    }
    if let Some(before) = before {
        sql.push_str(" AND id < ?");
        params.push(text(before));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    params.push(int(limit as i64));
    notifications(&exec(conn, &sql, &params)?)
}

/// Marks notification `id` of `user_id` read (keeping the first read time);
/// `None` when the user has no such notification.
pub fn mark_read(conn: &Connection, id: &str, user_id: &str) -> Result<Option<Notification>> {
    let result = exec(
        conn,
        &format!(
            "UPDATE notifications SET read_at = coalesce(read_at, ?)
             WHERE id = ? AND user_id = ?
             RETURNING {COLUMNS}"
        ),
        &[
            int(app_common::util::time::now_millis() as i64),
            text(id),
            text(user_id),
        ],
    )?;
    Ok(notifications(&result)?.into_iter().next())
}

/// Removes every notification of `user_id`; returns how many.
pub fn delete_for_user(conn: &Connection, user_id: &str) -> Result<usize> {
    let result = exec(
        conn,
        "DELETE FROM notifications WHERE user_id = ? RETURNING id",
        &[text(user_id)],
    )?;
    Ok(result.rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_show_read_state_and_times() {
        let n = Notification {
            id: "n".into(),
            user_id: "u".into(),
            event_id: "e".into(),
            kind: "order.created".into(),
            order_id: Some("o".into()),
            message: "m".into(),
            created_at: 0,
            read_at: Some(1000),
        };
        let v = serde_json::to_value(n.view()).unwrap();
        assert_eq!(v["type"], "order.created");
        assert_eq!(v["read"], true);
        assert_eq!(v["readAt"], "1970-01-01T00:00:01.000Z");
        assert!(v.get("userId").is_none());
    }
}
