//! The values callers bind to `?` placeholders and read from rows, the
//! same on both engines, with the helpers that build and read them.

use anyhow::{Result, anyhow};

/// A value bound to a `?` or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    pub(super) values: Vec<Value>,
}

impl RowResult {
    /// Column `i` as `T`, if it has that type.
    pub fn get<'a, T: FromValue<'a>>(&'a self, i: usize) -> Option<T> {
        self.values.get(i).and_then(T::from_value)
    }
}

/// What a statement returned (no rows for writes without `RETURNING`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub rows: Vec<RowResult>,
}

/// Reading a column as a Rust type.
pub trait FromValue<'a>: Sized {
    fn from_value(value: &'a Value) -> Option<Self>;
}

impl<'a> FromValue<'a> for &'a str {
    fn from_value(value: &'a Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl FromValue<'_> for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }
}

impl FromValue<'_> for f64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(f) => Some(*f),
            Value::Integer(n) => Some(*n as f64),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a [u8] {
    fn from_value(value: &'a Value) -> Option<Self> {
        match value {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
}

/// Column `i` of a row of `table` as text; an error names both otherwise.
pub fn column_text(row: &RowResult, table: &str, i: usize) -> Result<String> {
    row.get::<&str>(i)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{table} column {i} is not text"))
}

/// Column `i` of a row of `table` as an integer; an error names both otherwise.
pub fn column_int(row: &RowResult, table: &str, i: usize) -> Result<i64> {
    row.get::<i64>(i)
        .ok_or_else(|| anyhow!("{table} column {i} is not an integer"))
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub fn int(n: i64) -> Value {
    Value::Integer(n)
}

/// Text, or `NULL` for `None`.
pub fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}
