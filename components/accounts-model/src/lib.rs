//! The user records auth (credentials) and users (profiles) share: the
//! `users` table of the SQLite database `default`, its migrations and every
//! query on it. It lives here so both components agree on one schema.
//!
//! Migrations are idempotent (`CREATE ... IF NOT EXISTS`) and recorded in
//! `schema_version`; whichever component touches the database first in an
//! instance applies what is missing. E-mail uniqueness is a UNIQUE index,
//! so parallel registrations of one address cannot both succeed.
//!
//! [`Profile`] is the only outward view of a record: it has no password
//! hash, so none can reach a response, a cache entry or a log.

use anyhow::{Result, anyhow};
use app_common::security::principal::Role;
use app_common::storage::db::{Connection, QueryResult, Value};
use app_common::storage::db::{exec, is_unique_violation, text};
use app_common::util::time::rfc3339_millis;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

pub const DATABASE: &str = app_common::storage::db::DATABASE;

/// Name of this schema in `schema_version`.
pub const SCHEMA: &str = "accounts";

/// Each migration: its version and idempotent statements.
const MIGRATIONS: app_common::storage::db::Migrations = &[
    (
        1,
        &[
            "CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
            password_hash TEXT NOT NULL,
            version INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )",
            "CREATE UNIQUE INDEX IF NOT EXISTS users_email_unique ON users (email)",
            "CREATE INDEX IF NOT EXISTS users_role_id ON users (role, id)",
        ],
    ),
    (
        2,
        &[
            // At most one row ever (`id = 1`): who the `admin_email` bootstrap
            // made admin. Its primary key makes the bootstrap one-time and
            // race-free; a database that already has an admin counts as done.
            "CREATE TABLE IF NOT EXISTS admin_bootstrap (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            user_id TEXT NOT NULL,
            created_at INTEGER NOT NULL
        )",
            "INSERT INTO admin_bootstrap (id, user_id, created_at)
            SELECT 1, id, created_at FROM users WHERE role = 'admin' ORDER BY id LIMIT 1
            ON CONFLICT DO NOTHING",
        ],
    ),
];

const COLUMNS: &str = "id, email, name, role, password_hash, version, created_at, updated_at";

/// Set once this instance has checked the schema (an optimisation only:
/// without it every request would check again, with the same result).
static MIGRATED: AtomicBool = AtomicBool::new(false);

/// A stored user, password hash included. Never serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    /// Starts at 1, +1 per write; the `ETag`.
    pub version: i64,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A user as responses show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Account {
    pub fn profile(&self) -> Profile {
        Profile {
            id: self.id.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role,
            version: self.version,
            created_at: rfc3339_millis(self.created_at),
            updated_at: rfc3339_millis(self.updated_at),
        }
    }
}

/// `"3"`: a record version as an entity tag.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Opens the database, applying missing migrations first.
pub fn connect() -> Result<Connection> {
    let conn = app_common::storage::db::open()?;
    if !MIGRATED.load(Ordering::Relaxed) {
        app_common::storage::db::migrate(&conn, SCHEMA, MIGRATIONS)?;
        MIGRATED.store(true, Ordering::Relaxed);
    }
    Ok(conn)
}

fn accounts(result: &QueryResult) -> Result<Vec<Account>> {
    result
        .rows
        .iter()
        .map(|row| {
            let s = |i: usize| app_common::storage::db::column_text(row, "users", i);
            let n = |i: usize| app_common::storage::db::column_int(row, "users", i);
            let role = s(3)?;
            Ok(Account {
                id: s(0)?,
                email: s(1)?,
                name: s(2)?,
                role: Role::parse(&role).ok_or_else(|| anyhow!("unknown role `{role}`"))?,
                password_hash: s(4)?,
                version: n(5)?,
                created_at: n(6)? as u64,
                updated_at: n(7)? as u64,
            })
        })
        .collect()
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteConflict {
    EmailTaken,
    NotFound,
    /// The record's version is not the expected one.
    VersionMismatch {
        current: i64,
    },
}

/// A new user; the id, version and times are set here.
pub struct NewAccount<'a> {
    /// Chosen by the caller, so what belongs to the account (its first
    /// session) can be written before the account itself.
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
}

pub fn insert(conn: &Connection, new: &NewAccount<'_>) -> Result<Result<Account, WriteConflict>> {
    let now = app_common::util::time::now_millis();
    let account = Account {
        id: new.id.to_string(),
        email: new.email.to_string(),
        name: new.name.to_string(),
        role: new.role,
        password_hash: new.password_hash.to_string(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let result = exec(
        conn,
        &format!("INSERT INTO users ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
        &[
            text(&account.id),
            text(&account.email),
            text(&account.name),
            text(account.role.as_str()),
            text(&account.password_hash),
            Value::Integer(account.version),
            Value::Integer(now as i64),
            Value::Integer(now as i64),
        ],
    );
    match result {
        Ok(_) => Ok(Ok(account)),
        Err(e) if is_unique_violation(&e) => Ok(Err(WriteConflict::EmailTaken)),
        Err(e) => Err(e.context("insert user")),
    }
}

/// Inserts `new` (whose role should be `user`) and, when `bootstrap` is
/// set (the address is `admin_email`), makes it the admin if the one-time
/// bootstrap has not happened and no admin exists. One transaction: two
/// parallel registrations, or one racing an admin's e-mail change, cannot
/// both become admin, and a later holder of the address never does.
pub fn insert_bootstrapping(
    conn: &Connection,
    new: &NewAccount<'_>,
    bootstrap: bool,
) -> Result<Result<Account, WriteConflict>> {
    if !bootstrap {
        return insert(conn, new);
    }
    app_common::storage::db::transaction(conn, |conn| {
        let mut account = match insert(conn, new)? {
            Ok(account) => account,
            Err(conflict) => return Ok(Err(conflict)),
        };
        let claimed = exec(
            conn,
            "INSERT INTO admin_bootstrap (id, user_id, created_at)
             SELECT 1, CAST(? AS TEXT), CAST(? AS BIGINT)
             WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin')
             ON CONFLICT DO NOTHING
             RETURNING user_id",
            &[text(&account.id), Value::Integer(account.created_at as i64)],
        )?;
        if !claimed.rows.is_empty() {
            exec(
                conn,
                "UPDATE users SET role = 'admin' WHERE id = ?",
                &[text(&account.id)],
            )?;
            account.role = Role::Admin;
        }
        Ok(Ok(account))
    })
}

pub fn find_by_id(conn: &Connection, id: &str) -> Result<Option<Account>> {
    let result = exec(
        conn,
        &format!("SELECT {COLUMNS} FROM users WHERE id = ?"),
        &[text(id)],
    )?;
    Ok(accounts(&result)?.into_iter().next())
}

pub fn find_by_email(conn: &Connection, email: &str) -> Result<Option<Account>> {
    let result = exec(
        conn,
        &format!("SELECT {COLUMNS} FROM users WHERE email = ?"),
        &[text(email)],
    )?;
    Ok(accounts(&result)?.into_iter().next())
}

/// Writes `updated` (name, email, role, password hash) if the stored
/// version is still `updated.version`; the stored version becomes
/// `updated.version + 1`.
pub fn update(conn: &Connection, updated: &Account) -> Result<Result<Account, WriteConflict>> {
    let result = exec(
        conn,
        &format!(
            "UPDATE users SET email = ?, name = ?, role = ?, password_hash = ?,
                 version = version + 1, updated_at = ?
             WHERE id = ? AND version = ?
             RETURNING {COLUMNS}"
        ),
        &[
            text(&updated.email),
            text(&updated.name),
            text(updated.role.as_str()),
            text(&updated.password_hash),
            Value::Integer(app_common::util::time::now_millis() as i64),
            text(&updated.id),
            Value::Integer(updated.version),
        ],
    );
    match result {
        Ok(rows) => match accounts(&rows)?.into_iter().next() {
            Some(account) => Ok(Ok(account)),
            None => Ok(Err(missing_or_moved(conn, &updated.id)?)),
        },
        Err(e) if is_unique_violation(&e) => Ok(Err(WriteConflict::EmailTaken)),
        Err(e) => Err(e.context("update user")),
    }
}

/// Deletes the record if its version is `expected_version` (any version
/// when `None`).
pub fn delete(
    conn: &Connection,
    id: &str,
    expected_version: Option<i64>,
) -> Result<Result<(), WriteConflict>> {
    let rows = match expected_version {
        Some(v) => exec(
            conn,
            "DELETE FROM users WHERE id = ? AND version = ? RETURNING id",
            &[text(id), Value::Integer(v)],
        )?,
        None => exec(
            conn,
            "DELETE FROM users WHERE id = ? RETURNING id",
            &[text(id)],
        )?,
    };
    if rows.rows.is_empty() {
        Ok(Err(missing_or_moved(conn, id)?))
    } else {
        Ok(Ok(()))
    }
}

fn missing_or_moved(conn: &Connection, id: &str) -> Result<WriteConflict> {
    Ok(match find_by_id(conn, id)? {
        Some(current) => WriteConflict::VersionMismatch {
            current: current.version,
        },
        None => WriteConflict::NotFound,
    })
}

/// Filters of the admin listing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListFilter {
    pub role: Option<Role>,
    /// Normalised (lower-case) e-mail prefix.
    pub email_prefix: Option<String>,
}

/// Up to `limit` records after id `after`, in id (= creation) order.
pub fn list(
    conn: &Connection,
    filter: &ListFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Account>> {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(role) = filter.role {
        conditions.push("role = ?");
        params.push(text(role.as_str()));
    }
    if let Some(prefix) = &filter.email_prefix {
        // The length comes from the text itself: PostgreSQL's `substr`
        // takes a 32-bit length, and the app binds 64-bit integers.
        conditions.push("substr(email, 1, length(?)) = ?");
        params.push(text(prefix));
        params.push(text(prefix));
    }
    if let Some(after) = after {
        conditions.push("id > ?");
        params.push(text(after));
    }
    let mut sql = format!("SELECT {COLUMNS} FROM users");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Value::Integer(limit as i64));
    accounts(&exec(conn, &sql, &params)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_have_no_password_hash() {
        let account = Account {
            id: "id".into(),
            email: "a@b.io".into(),
            name: "A".into(),
            role: Role::User,
            password_hash: "$argon2id$secret".into(),
            version: 2,
            created_at: 0,
            updated_at: 1000,
        };
        let json = serde_json::to_string(&account.profile()).unwrap();
        assert!(!json.contains("argon2"), "{json}");
        assert!(
            json.contains(r#""updatedAt":"1970-01-01T00:00:01.000Z""#),
            "{json}"
        );
        assert_eq!(etag(2), "\"2\"");
    }
}
