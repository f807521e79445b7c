//! What the `orders` component (HTTP) and the `order-events` component
//! (messages) both know about orders and notifications, so neither writes
//! it twice:
//!
//! - [`status`]: the order lifecycle and its allowed transitions (pure);
//! - [`currency`]: ISO 4217 codes and minor units (pure);
//! - [`store`]: the `orders` table of the `default` SQLite database;
//! - [`notifications`]: the `notifications` and `processed_events` tables.
//!
//! Money is always an integer number of minor units (cents) of the order's
//! currency; nothing here uses floating point.

pub mod currency;
pub mod notifications;
pub mod status;
pub mod store;

pub use status::OrderStatus;
