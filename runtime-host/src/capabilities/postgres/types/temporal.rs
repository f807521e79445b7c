//! Dates, times and ranges between the WIT tuples and `chrono` /
//! `postgres_range`.

use super::wire::Decimal;
use super::{decimal, v4::RangeBoundKind};
use anyhow::anyhow;

pub type WitDatetime = (i32, u8, u8, u8, u8, u8, u32);

pub fn datetime_to_wit(v: chrono::NaiveDateTime) -> anyhow::Result<WitDatetime> {
    use chrono::{Datelike, Timelike};
    Ok((
        v.year(),
        v.month().try_into()?,
        v.day().try_into()?,
        v.hour().try_into()?,
        v.minute().try_into()?,
        v.second().try_into()?,
        v.nanosecond(),
    ))
}

pub fn datetime_from_wit(
    (y, mo, d, h, mi, s, ns): WitDatetime,
) -> anyhow::Result<chrono::NaiveDateTime> {
    Ok(chrono::NaiveDateTime::new(
        date_from_wit((y, mo, d))?,
        time_from_wit((h, mi, s, ns))?,
    ))
}

pub fn date_to_wit(v: chrono::NaiveDate) -> anyhow::Result<(i32, u8, u8)> {
    use chrono::Datelike;
    Ok((v.year(), v.month().try_into()?, v.day().try_into()?))
}

pub fn date_from_wit((y, m, d): (i32, u8, u8)) -> anyhow::Result<chrono::NaiveDate> {
    chrono::NaiveDate::from_ymd_opt(y, m.into(), d.into())
        .ok_or_else(|| anyhow!("invalid date y={y}, m={m}, d={d}"))
}

pub fn time_to_wit(v: chrono::NaiveTime) -> anyhow::Result<(u8, u8, u8, u32)> {
    use chrono::Timelike;
    Ok((
        v.hour().try_into()?,
        v.minute().try_into()?,
        v.second().try_into()?,
        v.nanosecond(),
    ))
}

pub fn time_from_wit((h, m, s, ns): (u8, u8, u8, u32)) -> anyhow::Result<chrono::NaiveTime> {
    chrono::NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
        .ok_or_else(|| anyhow!("invalid time {h}:{m}:{s}.{ns}"))
}

/// A `timestamp` parameter: seconds since the Unix epoch (a `timestamptz`).
pub fn timestamp_from_wit(secs: i64) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| anyhow!("invalid epoch timestamp {secs}"))
}

// Ranges.

pub type WitRange<T> = (Option<(T, RangeBoundKind)>, Option<(T, RangeBoundKind)>);

fn bound_kind(t: postgres_range::BoundType) -> RangeBoundKind {
    match t {
        postgres_range::BoundType::Inclusive => RangeBoundKind::Inclusive,
        postgres_range::BoundType::Exclusive => RangeBoundKind::Exclusive,
    }
}

fn bound_type(k: RangeBoundKind) -> postgres_range::BoundType {
    match k {
        RangeBoundKind::Inclusive => postgres_range::BoundType::Inclusive,
        RangeBoundKind::Exclusive => postgres_range::BoundType::Exclusive,
    }
}

fn wit_bound<S: postgres_range::BoundSided, T, U>(
    b: &postgres_range::RangeBound<S, T>,
    f: impl Fn(&T) -> U,
) -> (U, RangeBoundKind) {
    (f(&b.value), bound_kind(b.type_))
}

pub fn range_to_wit<T: Copy + postgres_range::Normalizable + PartialOrd>(
    r: postgres_range::Range<T>,
) -> WitRange<T> {
    (
        r.lower().map(|b| wit_bound(b, |v| *v)),
        r.upper().map(|b| wit_bound(b, |v| *v)),
    )
}

/// Discrete ranges are normalised by PostgreSQL (`[1,3]` reads back as
/// `[1,4)`); an empty range has no bounds.
pub fn range_from_wit<T: postgres_range::Normalizable + PartialOrd>(
    (lo, hi): WitRange<T>,
) -> postgres_range::Range<T> {
    postgres_range::Range::new(
        lo.map(|(v, k)| postgres_range::RangeBound::new(v, bound_type(k))),
        hi.map(|(v, k)| postgres_range::RangeBound::new(v, bound_type(k))),
    )
}

pub fn decimal_range_to_wit(r: postgres_range::Range<Decimal>) -> WitRange<String> {
    (
        r.lower().map(|b| wit_bound(b, |d| d.0.to_string())),
        r.upper().map(|b| wit_bound(b, |d| d.0.to_string())),
    )
}

pub fn decimal_range_from_wit(
    (lo, hi): &WitRange<String>,
) -> anyhow::Result<postgres_range::Range<Decimal>> {
    fn bound<S: postgres_range::BoundSided>(
        (v, k): &(String, RangeBoundKind),
    ) -> anyhow::Result<postgres_range::RangeBound<S, Decimal>> {
        Ok(postgres_range::RangeBound::new(
            Decimal(decimal(v)?),
            bound_type(*k),
        ))
    }
    Ok(postgres_range::Range::new(
        lo.as_ref().map(bound).transpose()?,
        hi.as_ref().map(bound).transpose()?,
    ))
}
