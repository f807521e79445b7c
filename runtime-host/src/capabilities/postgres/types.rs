//! Values between the guest's `spin:postgres@4.2.0` types and what
//! `tokio-postgres` reads and writes, with Spin's mapping
//! (`factor-outbound-pg/src/types.rs`):
//!
//! | PostgreSQL | `db-data-type` / `db-value` |
//! |---|---|
//! | `bool` | `boolean` |
//! | `int2`, `int4`, `int8` | `int16`, `int32`, `int64` |
//! | `float4`, `float8` | `floating32`, `floating64` |
//! | `text`, `varchar`, `bpchar` | `str` |
//! | `bytea` | `binary` |
//! | `date`, `time` | `date`, `time` |
//! | `timestamp`, `timestamptz` | `datetime` (UTC, no zone) |
//! | `uuid` | `uuid` (text) |
//! | `jsonb` | `jsonb` (JSON text bytes) |
//! | `numeric` | `decimal` (base-10 text) |
//! | `int4range`, `int8range`, `numrange` | `range-int32`, `range-int64`, `range-decimal` |
//! | `int4[]`, `int8[]`, `numeric[]`, `text[]`/`varchar[]`/`bpchar[]` | `array-*` |
//! | `interval` | `interval` |
//! | anything else (`json` too, as in Spin) | `other(name)` / `unsupported(raw bytes)` |
//!
//! Parameters go the other way; each accepts the column types its Rust
//! type does in `tokio-postgres` (an `int64` fits `int8` only, as in Spin),
//! except `db-null`, which fits any column.

use super::v4::{self, DbDataType, DbValue, ParameterValue};
use anyhow::Context as _;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql, Type};

mod temporal;
mod wire;

pub use temporal::*;
use wire::Raw;
pub use wire::{Decimal, Interval, Null};

/// The WIT type of a column of PostgreSQL type `ty`.
pub fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(ty.name().to_owned()),
    }
}

/// `row[index]` as a WIT value (`db-null` for SQL NULL).
pub fn value(row: &Row, index: usize) -> anyhow::Result<DbValue> {
    fn get<'a, T: FromSql<'a>>(
        row: &'a Row,
        index: usize,
        wrap: impl FnOnce(T) -> anyhow::Result<DbValue>,
    ) -> anyhow::Result<DbValue> {
        match row.try_get::<_, Option<T>>(index)? {
            Some(v) => wrap(v),
            None => Ok(DbValue::DbNull),
        }
    }
    let ok = |v: DbValue| -> anyhow::Result<DbValue> { Ok(v) };
    match *row.columns()[index].type_() {
        Type::BOOL => get(row, index, |v| ok(DbValue::Boolean(v))),
        Type::BYTEA => get(row, index, |v| ok(DbValue::Binary(v))),
        Type::FLOAT4 => get(row, index, |v| ok(DbValue::Floating32(v))),
        Type::FLOAT8 => get(row, index, |v| ok(DbValue::Floating64(v))),
        Type::INT2 => get(row, index, |v| ok(DbValue::Int16(v))),
        Type::INT4 => get(row, index, |v| ok(DbValue::Int32(v))),
        Type::INT8 => get(row, index, |v| ok(DbValue::Int64(v))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, index, |v| ok(DbValue::Str(v))),
        Type::TIMESTAMP => get(row, index, |v| datetime_to_wit(v).map(DbValue::Datetime)),
        Type::TIMESTAMPTZ => get(row, index, |v: chrono::DateTime<chrono::Utc>| {
            datetime_to_wit(v.naive_utc()).map(DbValue::Datetime)
        }),
        Type::DATE => get(row, index, |v| date_to_wit(v).map(DbValue::Date)),
        Type::TIME => get(row, index, |v| time_to_wit(v).map(DbValue::Time)),
        Type::UUID => get(row, index, |v: uuid::Uuid| ok(DbValue::Uuid(v.to_string()))),
        Type::JSONB => get(row, index, |v: serde_json::Value| {
            Ok(DbValue::Jsonb(serde_json::to_vec(&v)?))
        }),
        Type::NUMERIC => get(row, index, |v: rust_decimal::Decimal| {
            ok(DbValue::Decimal(v.to_string()))
        }),
        Type::INT4_RANGE => get(row, index, |v| ok(DbValue::RangeInt32(range_to_wit(v)))),
        Type::INT8_RANGE => get(row, index, |v| ok(DbValue::RangeInt64(range_to_wit(v)))),
        Type::NUM_RANGE => get(row, index, |v: postgres_range::Range<Decimal>| {
            ok(DbValue::RangeDecimal(decimal_range_to_wit(v)))
        }),
        Type::INT4_ARRAY => get(row, index, |v| ok(DbValue::ArrayInt32(v))),
        Type::INT8_ARRAY => get(row, index, |v| ok(DbValue::ArrayInt64(v))),
        Type::NUMERIC_ARRAY => get(row, index, |v: Vec<Option<rust_decimal::Decimal>>| {
            ok(DbValue::ArrayDecimal(
                v.into_iter().map(|d| d.map(|d| d.to_string())).collect(),
            ))
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            get(row, index, |v| ok(DbValue::ArrayStr(v)))
        }
        Type::INTERVAL => get(row, index, |v: Interval| ok(DbValue::Interval(v.0))),
        _ => get(row, index, |v: Raw| ok(DbValue::Unsupported(v.0))),
    }
}

/// How much host memory `v` takes, for the per-statement result cap.
pub fn memory_size(v: &DbValue) -> usize {
    std::mem::size_of::<DbValue>()
        + match v {
            DbValue::Str(s) | DbValue::Uuid(s) | DbValue::Decimal(s) => s.len(),
            DbValue::Binary(b) | DbValue::Jsonb(b) | DbValue::Unsupported(b) => b.len(),
            DbValue::RangeDecimal((lo, hi)) => {
                lo.as_ref().map_or(0, |b| b.0.len()) + hi.as_ref().map_or(0, |b| b.0.len())
            }
            DbValue::ArrayInt32(a) => a.len() * std::mem::size_of::<Option<i32>>(),
            DbValue::ArrayInt64(a) => a.len() * std::mem::size_of::<Option<i64>>(),
            DbValue::ArrayDecimal(a) | DbValue::ArrayStr(a) => a
                .iter()
                .map(|s| std::mem::size_of::<Option<String>>() + s.as_ref().map_or(0, String::len))
                .sum(),
            _ => 0,
        }
}

/// A parameter as `tokio-postgres` sends it.
pub fn parameter(value: &ParameterValue) -> anyhow::Result<Box<dyn ToSql + Send + Sync>> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(*v),
        ParameterValue::Int8(v) => Box::new(*v),
        ParameterValue::Int16(v) => Box::new(*v),
        ParameterValue::Int32(v) => Box::new(*v),
        ParameterValue::Int64(v) => Box::new(*v),
        ParameterValue::Floating32(v) => Box::new(*v),
        ParameterValue::Floating64(v) => Box::new(*v),
        ParameterValue::Str(v) => Box::new(v.clone()),
        ParameterValue::Binary(v) => Box::new(v.clone()),
        ParameterValue::Date(v) => Box::new(date_from_wit(*v)?),
        ParameterValue::Time(v) => Box::new(time_from_wit(*v)?),
        ParameterValue::Datetime(v) => Box::new(datetime_from_wit(*v)?),
        ParameterValue::Timestamp(v) => Box::new(timestamp_from_wit(*v)?),
        ParameterValue::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(v).with_context(|| format!("invalid UUID {v}"))?)
        }
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(v)
                .with_context(|| format!("invalid JSON {}", String::from_utf8_lossy(v)))?,
        ),
        ParameterValue::Decimal(v) => Box::new(decimal(v)?),
        ParameterValue::RangeInt32(v) => Box::new(range_from_wit(*v)),
        ParameterValue::RangeInt64(v) => Box::new(range_from_wit(*v)),
        ParameterValue::RangeDecimal(v) => Box::new(decimal_range_from_wit(v)?),
        ParameterValue::ArrayInt32(v) => Box::new(v.clone()),
        ParameterValue::ArrayInt64(v) => Box::new(v.clone()),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.iter()
                .map(|d| d.as_deref().map(decimal).transpose())
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        ParameterValue::ArrayStr(v) => Box::new(v.clone()),
        ParameterValue::Interval(v) => Box::new(Interval(*v)),
        ParameterValue::DbNull => Box::new(Null),
    })
}

fn decimal(text: &str) -> anyhow::Result<rust_decimal::Decimal> {
    rust_decimal::Decimal::from_str_exact(text).with_context(|| format!("invalid decimal {text}"))
}

#[cfg(test)]
mod tests {
    use super::v4::RangeBoundKind;
    use super::*;
    use bytes::BytesMut;
    use tokio_postgres::types::IsNull;

    #[test]
    fn column_types_map_as_in_spin() {
        let name = |ty: &Type| format!("{:?}", data_type(ty));
        assert_eq!(name(&Type::INT8), "DbDataType::Int64");
        assert_eq!(name(&Type::BPCHAR), "DbDataType::Str");
        assert_eq!(name(&Type::TIMESTAMPTZ), "DbDataType::Datetime");
        assert_eq!(name(&Type::NUM_RANGE), "DbDataType::RangeDecimal");
        assert_eq!(name(&Type::VARCHAR_ARRAY), "DbDataType::ArrayStr");
        // `json` (unlike `jsonb`) has no mapping in Spin either.
        assert_eq!(name(&Type::JSON), "DbDataType::Other(\"json\")");
        assert_eq!(name(&Type::INET), "DbDataType::Other(\"inet\")");
    }

    #[test]
    fn dates_and_times_round_trip() {
        let dt = (1999, 7, 12, 4, 3, 2, 1_000_000);
        assert_eq!(datetime_to_wit(datetime_from_wit(dt).unwrap()).unwrap(), dt);
        assert_eq!(
            date_to_wit(date_from_wit((1901, 1, 2)).unwrap()).unwrap(),
            (1901, 1, 2)
        );
        let t = (14, 15, 16, 17_000_000);
        assert_eq!(time_to_wit(time_from_wit(t).unwrap()).unwrap(), t);
        assert!(date_from_wit((2023, 2, 30)).is_err());
        assert!(time_from_wit((24, 0, 0, 0)).is_err());
    }

    #[test]
    fn timestamps_are_seconds_since_the_epoch() {
        let ts = timestamp_from_wit(3723).unwrap();
        assert_eq!(
            ts.naive_utc(),
            chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .unwrap()
                .and_hms_opt(1, 2, 3)
                .unwrap()
        );
        assert_eq!(
            timestamp_from_wit(-86400).unwrap().date_naive(),
            chrono::NaiveDate::from_ymd_opt(1969, 12, 31).unwrap()
        );
    }

    #[test]
    fn decimal_ranges_convert_both_ways() {
        let wit = (
            Some(("123.45".to_string(), RangeBoundKind::Inclusive)),
            Some(("456.789789".to_string(), RangeBoundKind::Exclusive)),
        );
        let pg = decimal_range_from_wit(&wit).unwrap();
        let lower = pg.lower().unwrap();
        assert_eq!(lower.value.0, rust_decimal::Decimal::new(12345, 2));
        assert_eq!(lower.type_, postgres_range::BoundType::Inclusive);
        assert_eq!(decimal_range_to_wit(pg), wit);
        assert!(
            decimal_range_from_wit(&(Some(("x".into(), RangeBoundKind::Inclusive)), None)).is_err()
        );
    }

    #[test]
    fn int_ranges_keep_open_ends() {
        let wit: WitRange<i64> = (Some((123123123123, RangeBoundKind::Inclusive)), None);
        assert_eq!(range_to_wit(range_from_wit(wit)), wit);
    }

    #[test]
    fn parameters_are_checked_before_they_are_sent() {
        for bad in [
            ParameterValue::Uuid("not-a-uuid".into()),
            ParameterValue::Jsonb(b"{".to_vec()),
            ParameterValue::Decimal("1.2.3".into()),
            ParameterValue::ArrayDecimal(vec![Some("1".into()), Some("x".into())]),
            ParameterValue::Date((2023, 13, 1)),
            ParameterValue::Timestamp(i64::MAX),
        ] {
            assert!(parameter(&bad).is_err(), "{bad:?}");
        }
        assert!(
            parameter(&ParameterValue::ArrayDecimal(vec![
                Some("1.5".into()),
                None
            ]))
            .is_ok()
        );
    }

    #[test]
    fn null_fits_every_column_and_other_types_check_theirs() {
        let mut out = BytesMut::new();
        for ty in [Type::TEXT, Type::INT8, Type::JSONB, Type::INET] {
            let null = parameter(&ParameterValue::DbNull).unwrap();
            assert!(matches!(
                null.to_sql_checked(&ty, &mut out),
                Ok(IsNull::Yes)
            ));
        }
        let int64 = parameter(&ParameterValue::Int64(5)).unwrap();
        assert!(int64.to_sql_checked(&Type::INT8, &mut out).is_ok());
        assert!(int64.to_sql_checked(&Type::TEXT, &mut out).is_err());
    }

    #[test]
    fn intervals_use_the_binary_layout() {
        let iv = v4::Interval {
            micros: 123456,
            days: 10,
            months: 200,
        };
        let mut out = BytesMut::new();
        Interval(iv).to_sql(&Type::INTERVAL, &mut out).unwrap();
        assert_eq!(out.len(), 16);
        let back = Interval::from_sql(&Type::INTERVAL, &out).unwrap().0;
        assert_eq!((back.micros, back.days, back.months), (123456, 10, 200));
        assert!(Interval::from_sql(&Type::INTERVAL, &out[..8]).is_err());
    }
}
