//! The `orders` table of the `default` SQLite database and every query on
//! it, plus [`connect`], which applies this crate's migrations (and the
//! event outbox's) before anything else.
//!
//! - Idempotency keys are unique per user (a partial UNIQUE index on
//!   `(user_id, idempotency_key)`), so two parallel creations with one key
//!   cannot both insert; the first request's response body is stored with
//!   the order and replayed.
//! - Status changes are conditional on the status and version they were
//!   decided on (`UPDATE … WHERE status = ? AND version = ?`), so of several
//!   concurrent transitions from one reading exactly one wins.
//! - Lines and the shipping address are JSON columns: they are only ever
//!   read and written with their order.
//! - Anonymising (after `user.deleted`) keeps the money and statuses and
//!   drops everything personal: owner, shipping address, idempotency data.

use crate::status::OrderStatus;
use anyhow::{Context as _, Result, anyhow};
use app_common::storage::db::{self, Migrations, exec, int, opt_text, text};
use app_common::storage::db::{Connection, QueryResult, Value};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// Name of this schema in `schema_version`.
pub const SCHEMA: &str = "orders";

const MIGRATIONS: Migrations = &[(
    1,
    &[
        "CREATE TABLE IF NOT EXISTS orders (
            id TEXT PRIMARY KEY,
            user_id TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('created', 'paid', 'shipped', 'delivered', 'cancelled')),
            currency TEXT NOT NULL,
            lines TEXT NOT NULL,
            total INTEGER NOT NULL,
            shipping_address TEXT,
            idempotency_key TEXT,
            request_hash TEXT,
            first_response TEXT,
            version INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            anonymised_at INTEGER
        )",
        "CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency
            ON orders (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS orders_user_id ON orders (user_id, id)",
        "CREATE INDEX IF NOT EXISTS orders_status_id ON orders (status, id)",
        "CREATE TABLE IF NOT EXISTS notifications (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            event_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            order_id TEXT,
            message TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            read_at INTEGER
        )",
        "CREATE INDEX IF NOT EXISTS notifications_user_id ON notifications (user_id, id)",
        "CREATE TABLE IF NOT EXISTS processed_events (
            event_id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            processed_at INTEGER NOT NULL
        )",
    ],
)];

static MIGRATED: AtomicBool = AtomicBool::new(false);

/// Opens the database with this crate's tables and the event outbox.
pub fn connect() -> Result<Connection> {
    let conn = db::open()?;
    if !MIGRATED.load(Ordering::Relaxed) {
        db::migrate(&conn, SCHEMA, MIGRATIONS)?;
        app_common::events::migrate(&conn)?;
        MIGRATED.store(true, Ordering::Relaxed);
    }
    Ok(conn)
}

/// One line of an order: money in minor units of the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: i64,
    /// `quantity * unit_price`.
    pub line_total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippingAddress {
    pub street: String,
    pub city: String,
    pub state: String,
    pub zip_code: String,
    pub country: String,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    /// `None` once the owner's account was deleted (anonymised).
    pub user_id: Option<String>,
    pub status: OrderStatus,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals, minor units.
    pub total: i64,
    /// `None` once anonymised.
    pub shipping_address: Option<ShippingAddress>,
    /// Starts at 1, +1 per status change.
    pub version: i64,
    pub created_at: u64,
    pub updated_at: u64,
}

/// An order as responses show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: String,
    pub user_id: Option<String>,
    pub status: OrderStatus,
    pub currency: String,
    pub items: Vec<OrderLine>,
    pub item_count: i64,
    pub total: i64,
    pub shipping_address: Option<ShippingAddress>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Order {
    pub fn view(&self) -> OrderView {
        OrderView {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            status: self.status,
            currency: self.currency.clone(),
            items: self.lines.clone(),
            item_count: self.lines.iter().map(|l| l.quantity).sum(),
            total: self.total,
            shipping_address: self.shipping_address.clone(),
            version: self.version,
            created_at: app_common::util::time::rfc3339_millis(self.created_at),
            updated_at: app_common::util::time::rfc3339_millis(self.updated_at),
        }
    }

    pub fn is_owned_by(&self, user_id: &str) -> bool {
        self.user_id.as_deref() == Some(user_id)
    }
}

const COLUMNS: &str = "id, user_id, status, currency, lines, total, shipping_address, version, created_at, updated_at";

fn orders(result: &QueryResult) -> Result<Vec<Order>> {
    result
        .rows
        .iter()
        .map(|row| {
            let s = |i: usize| app_common::storage::db::column_text(row, "orders", i);
            let n = |i: usize| app_common::storage::db::column_int(row, "orders", i);
            let status = s(2)?;
            let shipping_address = match row.get::<&str>(6) {
                Some(json) => Some(serde_json::from_str(json).context("orders.shipping_address")?),
                None => None,
            };
            Ok(Order {
                id: s(0)?,
                user_id: row.get::<&str>(1).map(str::to_string),
                status: OrderStatus::parse(&status)
                    .ok_or_else(|| anyhow!("unknown order status `{status}`"))?,
                currency: s(3)?,
                lines: serde_json::from_str(&s(4)?).context("orders.lines")?,
                total: n(5)?,
                shipping_address,
                version: n(7)?,
                created_at: n(8)? as u64,
                updated_at: n(9)? as u64,
            })
        })
        .collect()
}

/// The idempotency data stored with an order created under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    /// Digest of the validated request, to tell a replay from a reuse of
    /// the key for another order.
    pub request_hash: String,
    /// The body of the first response, returned again on replays.
    pub first_response: String,
}

/// What an earlier request with the same idempotency key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub order_id: String,
    pub request_hash: String,
    pub first_response: String,
}

pub fn find_by_idempotency_key(
    conn: &Connection,
    user_id: &str,
    key: &str,
) -> Result<Option<Replay>> {
    let result = exec(
        conn,
        "SELECT id, request_hash, first_response FROM orders
         WHERE user_id = ? AND idempotency_key = ?",
        &[text(user_id), text(key)],
    )?;
    Ok(result.rows.first().and_then(|row| {
        Some(Replay {
            order_id: row.get::<&str>(0)?.to_string(),
            request_hash: row.get::<&str>(1)?.to_string(),
            first_response: row.get::<&str>(2)?.to_string(),
        })
    }))
}

/// Inserts a new order; `Ok(false)` when its idempotency key is taken.
pub fn insert(conn: &Connection, order: &Order, idempotency: Option<&Idempotency>) -> Result<bool> {
    let result = exec(
        conn,
        &format!(
            "INSERT INTO orders ({COLUMNS}, idempotency_key, request_hash, first_response)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING
             RETURNING id"
        ),
        &[
            text(&order.id),
            opt_text(order.user_id.as_deref()),
            text(order.status.as_str()),
            text(&order.currency),
            text(&serde_json::to_string(&order.lines)?),
            int(order.total),
            match &order.shipping_address {
                Some(a) => text(&serde_json::to_string(a)?),
                None => Value::Null,
            },
            int(order.version),
            int(order.created_at as i64),
            int(order.updated_at as i64),
            opt_text(idempotency.map(|i| i.key.as_str())),
            opt_text(idempotency.map(|i| i.request_hash.as_str())),
            opt_text(idempotency.map(|i| i.first_response.as_str())),
        ],
    );
    // `ON CONFLICT DO NOTHING`, not a caught violation: on PostgreSQL a
    // violation would abort the caller's transaction, which still has to
    // read the earlier order.
    let inserted = result.context("insert order")?;
    Ok(!inserted.rows.is_empty())
}

pub fn find(conn: &Connection, id: &str) -> Result<Option<Order>> {
    let result = exec(
        conn,
        &format!("SELECT {COLUMNS} FROM orders WHERE id = ?"),
        &[text(id)],
    )?;
    Ok(orders(&result)?.into_iter().next())
}

/// Filters of a listing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListFilter {
    pub user_id: Option<String>,
    pub status: Option<OrderStatus>,
}

/// Up to `limit` orders older than id `before`, newest first (ids are
/// time-ordered UUIDs).
pub fn list(
    conn: &Connection,
    filter: &ListFilter,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<Order>> {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(user_id) = &filter.user_id {
        conditions.push("user_id = ?");
        params.push(text(user_id));
    }
    if let Some(status) = filter.status {
        conditions.push("status = ?");
        params.push(text(status.as_str()));
    }
    if let Some(before) = before {
        conditions.push("id < ?");
        params.push(text(before));
    }
    let mut sql = format!("SELECT {COLUMNS} FROM orders");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    params.push(int(limit as i64));
    orders(&exec(conn, &sql, &params)?)
}

/// Moves order `id` to `to` if it is still as the caller read it (status
/// `from` at `version`); `None` when it is not (another change won, or no
/// such order). The caller decided the change on that reading, so any
/// change in between refuses it, even one after which `to` would also be
/// allowed (a cancellation decided on `created` does not apply to `paid`).
pub fn transition(
    conn: &Connection,
    id: &str,
    from: OrderStatus,
    version: i64,
    to: OrderStatus,
) -> Result<Option<Order>> {
    let result = exec(
        conn,
        &format!(
            "UPDATE orders SET status = ?, version = version + 1, updated_at = ?
             WHERE id = ? AND status = ? AND version = ?
             RETURNING {COLUMNS}"
        ),
        &[
            text(to.as_str()),
            int(app_common::util::time::now_millis() as i64),
            text(id),
            text(from.as_str()),
            int(version),
        ],
    )?;
    Ok(orders(&result)?.into_iter().next())
}

/// Anonymises every order of `user_id`; returns how many.
pub fn anonymise_user(conn: &Connection, user_id: &str) -> Result<usize> {
    let result = exec(
        conn,
        "UPDATE orders SET user_id = NULL, shipping_address = NULL, idempotency_key = NULL,
             request_hash = NULL, first_response = NULL, anonymised_at = ?
         WHERE user_id = ?
         RETURNING id",
        &[
            int(app_common::util::time::now_millis() as i64),
            text(user_id),
        ],
    )?;
    Ok(result.rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_use_camel_case_and_count_items() {
        let order = Order {
            id: "o".into(),
            user_id: Some("u".into()),
            status: OrderStatus::Created,
            currency: "USD".into(),
            lines: vec![
                OrderLine {
                    product_id: "a".into(),
                    quantity: 2,
                    unit_price: 10,
                    line_total: 20,
                },
                OrderLine {
                    product_id: "b".into(),
                    quantity: 1,
                    unit_price: 10,
                    line_total: 10,
                },
            ],
            total: 30,
            shipping_address: None,
            version: 1,
            created_at: 0,
            updated_at: 0,
        };
        let v = serde_json::to_value(order.view()).unwrap();
        assert_eq!(v["itemCount"], 3);
        assert_eq!(v["items"][0]["lineTotal"], 20);
        assert_eq!(v["userId"], "u");
        assert_eq!(v["status"], "created");
        assert!(v["shippingAddress"].is_null());
        assert!(order.is_owned_by("u") && !order.is_owned_by("x"));
    }
}
