//! Infrastructure the components keep state in: the database ([`db`]:
//! SQLite or PostgreSQL, migrations, transactions), key-value ([`kv`]),
//! atomic counters ([`counters`]: key-value or Redis), the read-through
//! cache ([`cache`]) and the expiry index with its sweeper ([`expiry`]).

pub mod cache;
pub mod counters;
pub mod db;
pub mod expiry;
pub mod kv;
