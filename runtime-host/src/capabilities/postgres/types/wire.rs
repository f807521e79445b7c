//! PostgreSQL binary forms `tokio-postgres` has no type for (or not the
//! one we need): a range-able `numeric`, `interval`, an untyped NULL and the
//! raw bytes of anything else.

use super::v4;
use bytes::{Buf, BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A `numeric` that can be a range bound (continuous: never normalised).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Decimal(pub rust_decimal::Decimal);

impl postgres_range::Normalizable for Decimal {
    fn normalize<S: postgres_range::BoundSided>(
        bound: postgres_range::RangeBound<S, Self>,
    ) -> postgres_range::RangeBound<S, Self> {
        bound
    }
}

impl ToSql for Decimal {
    tokio_postgres::types::to_sql_checked!();

    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <rust_decimal::Decimal as ToSql>::accepts(ty)
    }
}

impl FromSql<'_> for Decimal {
    fn from_sql(ty: &Type, raw: &[u8]) -> Result<Self, BoxError> {
        rust_decimal::Decimal::from_sql(ty, raw).map(Decimal)
    }

    fn accepts(ty: &Type) -> bool {
        <rust_decimal::Decimal as FromSql>::accepts(ty)
    }
}

/// `interval` in PostgreSQL's binary form: microseconds, days, months.
#[derive(Debug, Clone, Copy)]
pub struct Interval(pub v4::Interval);

impl ToSql for Interval {
    tokio_postgres::types::to_sql_checked!();

    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

impl FromSql<'_> for Interval {
    fn from_sql(_ty: &Type, mut raw: &[u8]) -> Result<Self, BoxError> {
        if raw.len() != 16 {
            return Err("unexpected binary format for PostgreSQL interval".into());
        }
        let micros = raw.get_i64();
        let days = raw.get_i32();
        let months = raw.get_i32();
        Ok(Interval(v4::Interval {
            micros,
            days,
            months,
        }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// SQL NULL for a parameter of any type. (`Option::<T>::None` would still
/// be checked against the column's type.)
#[derive(Debug)]
pub struct Null;

impl ToSql for Null {
    fn to_sql(&self, _ty: &Type, _out: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn to_sql_checked(&self, _ty: &Type, _out: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }
}

/// A value of a type with no WIT mapping: its raw binary form.
pub struct Raw(pub Vec<u8>);

impl FromSql<'_> for Raw {
    fn from_sql(_ty: &Type, raw: &[u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}
