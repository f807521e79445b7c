//! PostgreSQL as guests see it, adapters onto [`super::PgConnection`], one
//! module per interface version:
//!
//! - [`v2`]: `fermyon:spin/postgres@2.0.0` (with `rdbms-types`; spin-sdk 2–5 `pg`),
//! - [`v3`]: `spin:postgres/postgres@3.0.0` (spin-sdk 5 `pg3`),
//! - [`v4`]: `spin:postgres/postgres@4.2.0`, which also serves `@4.0.0`
//!   (spin-sdk 5 `pg4`) and `@4.1.0`.
//!
//! The older versions convert to and from the 4.2.0 types: values a version
//! cannot express come back as its `unsupported`, column types as `other`,
//! exactly as in Spin.

mod v2;
mod v3;
mod v4;

use super::{PgConnection, RootCa, v4 as pg4};
use crate::capabilities::bindings::p2::fermyon::spin2_0_0::{
    postgres as pg2, rdbms_types as rdbms,
};
use crate::capabilities::bindings::p3::spin::postgres3_0_0::postgres as pg3;
use crate::capabilities::bindings::{P3Capabilities, WResult};
use crate::state::HostState;
use wasmtime::component::{HasSelf, Linker, Resource};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    rdbms::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    pg2::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    pg3::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    pg4::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    Ok(())
}

impl HostState {
    /// Opens `address` for this component and puts the connection in the
    /// instance's table.
    async fn pg_open(
        &mut self,
        address: &str,
        root_ca: Option<&RootCa>,
    ) -> WResult<Result<Resource<PgConnection>, pg4::Error>> {
        let (app, component) = (self.app.clone(), self.component.clone());
        match super::open(&app.postgres, &component, address, root_ca).await {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn pg(&self, this: &Resource<PgConnection>) -> WResult<PgConnection> {
        Ok(self.table.get(this)?.clone())
    }

    /// A query for an older version: its parameters already converted to
    /// 4.2.0 (or the conversion's error), the rows converted back by `rows`.
    async fn pg_query<R, E: From<pg4::Error>>(
        &mut self,
        this: &Resource<PgConnection>,
        statement: &str,
        params: Result<Vec<pg4::ParameterValue>, E>,
        rows: impl FnOnce(pg4::RowSet) -> R,
    ) -> WResult<Result<R, E>> {
        let conn = self.pg(this)?;
        let params = match params {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(conn
            .query(statement, &params)
            .await
            .map(rows)
            .map_err(E::from))
    }

    /// A statement for an older version, as [`HostState::pg_query`].
    async fn pg_execute<E: From<pg4::Error>>(
        &mut self,
        this: &Resource<PgConnection>,
        statement: &str,
        params: Result<Vec<pg4::ParameterValue>, E>,
    ) -> WResult<Result<u64, E>> {
        let conn = self.pg(this)?;
        let params = match params {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(conn.execute(statement, &params).await.map_err(E::from))
    }
}

/// The text of a 4.x query error, for versions whose error is a string.
fn error_text(e: pg4::QueryError) -> String {
    match e {
        pg4::QueryError::Text(t) => t,
        pg4::QueryError::DbError(e) => e.as_text,
    }
}

/// A 4.2.0 row set's columns and rows, each converted for an older version
/// (whose generated `RowSet` and `Column` types differ only in name).
fn convert_rows<C, V>(
    r: pg4::RowSet,
    column: impl Fn(pg4::Column) -> C,
    value: impl Fn(pg4::DbValue) -> V,
) -> (Vec<C>, Vec<Vec<V>>) {
    (
        r.columns.into_iter().map(column).collect(),
        r.rows
            .into_iter()
            .map(|row| row.into_iter().map(&value).collect())
            .collect(),
    )
}

/// `From<4.2.0 error>` for an older version's error, which has the same
/// cases with the query error as text.
macro_rules! error_from_v4 {
    ($error:ty) => {
        impl From<$crate::capabilities::postgres::v4::Error> for $error {
            fn from(e: $crate::capabilities::postgres::v4::Error) -> Self {
                use $crate::capabilities::postgres::v4::Error as E;
                match e {
                    E::ConnectionFailed(m) => Self::ConnectionFailed(m),
                    E::BadParameter(m) => Self::BadParameter(m),
                    E::QueryFailed(q) => Self::QueryFailed(super::error_text(q)),
                    E::ValueConversionFailed(m) => Self::ValueConversionFailed(m),
                    E::Other(m) => Self::Other(m),
                }
            }
        }
    };
}
use error_from_v4;

/// Maps a value between two generated enums with the same case names: the
/// `carry` cases keep their payload, the `unit` cases have none, and
/// anything else becomes the `else` value.
macro_rules! map_cases {
    ($value:expr, $from:ident => $to:ident, carry($($c:ident),*), unit($($u:ident),*) $(, else $fallback:expr)?) => {
        match $value {
            $($from::$c(x) => $to::$c(x),)*
            $($from::$u => $to::$u,)*
            $(_ => $fallback,)?
        }
    };
}
use map_cases;

/// What an older version (`$iface` its interface module, `$types` the
/// module of its types) adds on top of its own conversions `params`,
/// `value` and `data_type`: its row sets, and its `connection` resource
/// onto the 4.2.0 one. The generated traits differ only in these names.
macro_rules! older_connection {
    ($iface:ident, $types:ident) => {
        fn rows(r: pg4::RowSet) -> $types::RowSet {
            let column = |c: pg4::Column| $types::Column {
                name: c.name,
                data_type: data_type(c.data_type),
            };
            let (columns, rows) = convert_rows(r, column, value);
            $types::RowSet { columns, rows }
        }

        impl $iface::HostConnection for HostState {
            async fn open(
                &mut self,
                address: String,
            ) -> WResult<Result<Resource<PgConnection>, $types::Error>> {
                Ok(self.pg_open(&address, None).await?.map_err(Into::into))
            }

            async fn query(
                &mut self,
                this: Resource<PgConnection>,
                statement: String,
                params: Vec<$types::ParameterValue>,
            ) -> WResult<Result<$types::RowSet, $types::Error>> {
                self.pg_query(&this, &statement, self::params(params), rows)
                    .await
            }

            async fn execute(
                &mut self,
                this: Resource<PgConnection>,
                statement: String,
                params: Vec<$types::ParameterValue>,
            ) -> WResult<Result<u64, $types::Error>> {
                self.pg_execute(&this, &statement, self::params(params))
                    .await
            }

            async fn drop(&mut self, this: Resource<PgConnection>) -> WResult<()> {
                self.table.delete(this)?;
                Ok(())
            }
        }
    };
}
use older_connection;
