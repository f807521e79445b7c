//! SQLite as guests see it: `fermyon:spin/sqlite@2.0.0` and
//! `spin:sqlite/sqlite@3.1.0` (which also serves guests importing 3.0.0),
//! adapters onto [`super::Database`] connections.

use super::{PooledConnection, QueryResult as SqlRows, SqlError, Value};
use crate::capabilities::bindings::p2::fermyon::spin2_0_0::sqlite as spin_sql;
use crate::capabilities::bindings::p3::spin::sqlite3_1_0::sqlite as sql3;
use crate::capabilities::bindings::{Acc, P3Capabilities, WResult};
use crate::state::HostState;
use wasmtime::component::{FutureReader, HasSelf, Linker, Resource, StreamReader};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    spin_sql::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    sql3::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    Ok(())
}

/// `From<SqlError>` for a version's error type (they have the same cases).
macro_rules! error_from_sql {
    ($($error:ty),*) => {$(
        impl From<SqlError> for $error {
            fn from(e: SqlError) -> Self {
                match e {
                    SqlError::NoSuchDatabase => Self::NoSuchDatabase,
                    SqlError::AccessDenied => Self::AccessDenied,
                    SqlError::DatabaseFull => Self::DatabaseFull,
                    SqlError::Io(m) => Self::Io(m),
                }
            }
        }
    )*};
}

error_from_sql!(spin_sql::Error, sql3::Error);

/// A value between a version's generated `value` and [`Value`]: the same
/// five cases under other type names.
macro_rules! convert_value {
    ($v:expr, $from:ident => $to:ident) => {
        match $v {
            $from::Integer(i) => $to::Integer(i),
            $from::Real(f) => $to::Real(f),
            $from::Text(s) => $to::Text(s),
            $from::Blob(b) => $to::Blob(b),
            $from::Null => $to::Null,
        }
    };
}

impl HostState {
    fn sql_open<E: From<SqlError>>(
        &mut self,
        database: &str,
    ) -> WResult<Result<Resource<PooledConnection>, E>> {
        match self
            .app
            .databases
            .open(&self.component.sqlite_databases, database)
        {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    fn sql_execute<E: From<SqlError>>(
        &mut self,
        this: &Resource<PooledConnection>,
        statement: &str,
        parameters: Vec<Value>,
    ) -> WResult<Result<SqlRows, E>> {
        let conn = self.table.get(this)?;
        Ok(conn.execute(statement, parameters).map_err(Into::into))
    }
}

// ---- fermyon:spin/sqlite@2.0.0 ---------------------------------------------

fn to_value_p2(v: spin_sql::Value) -> Value {
    use spin_sql::Value as V2;
    convert_value!(v, V2 => Value)
}

fn from_value_p2(v: Value) -> spin_sql::Value {
    use spin_sql::Value as V2;
    convert_value!(v, Value => V2)
}

impl spin_sql::Host for HostState {}

impl spin_sql::HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> WResult<Result<Resource<PooledConnection>, spin_sql::Error>> {
        self.sql_open(&database)
    }

    async fn execute(
        &mut self,
        this: Resource<PooledConnection>,
        statement: String,
        parameters: Vec<spin_sql::Value>,
    ) -> WResult<Result<spin_sql::QueryResult, spin_sql::Error>> {
        let params = parameters.into_iter().map(to_value_p2).collect();
        Ok(self
            .sql_execute(&this, &statement, params)?
            .map(|r| spin_sql::QueryResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|values| spin_sql::RowResult {
                        values: values.into_iter().map(from_value_p2).collect(),
                    })
                    .collect(),
            }))
    }

    async fn drop(&mut self, this: Resource<PooledConnection>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- spin:sqlite@3.1.0 (and 3.0.0 by semver) --------------------------------

fn to_value(v: sql3::Value) -> Value {
    use sql3::Value as V3;
    convert_value!(v, V3 => Value)
}

fn row(values: Vec<Value>) -> sql3::RowResult {
    use sql3::Value as V3;
    sql3::RowResult {
        values: values
            .into_iter()
            .map(|v| convert_value!(v, Value => V3))
            .collect(),
    }
}

/// The connection behind a handle, taken out of the store so that a
/// statement waiting on another connection's lock does not hold it.
fn conn_of(acc: &Acc, this: &Resource<PooledConnection>) -> WResult<PooledConnection> {
    acc.with(|mut a| Ok(a.get().table.get(this)?.clone()))
}

impl sql3::HostConnection for HostState {
    fn open(
        &mut self,
        database: String,
    ) -> WResult<Result<Resource<PooledConnection>, sql3::Error>> {
        self.sql_open(&database)
    }

    fn execute(
        &mut self,
        this: Resource<PooledConnection>,
        statement: String,
        parameters: Vec<sql3::Value>,
    ) -> WResult<Result<sql3::QueryResult, sql3::Error>> {
        let params = parameters.into_iter().map(to_value).collect();
        Ok(self
            .sql_execute(&this, &statement, params)?
            .map(|r| sql3::QueryResult {
                columns: r.columns,
                rows: r.rows.into_iter().map(row).collect(),
            }))
    }

    fn last_insert_rowid(&mut self, this: Resource<PooledConnection>) -> WResult<i64> {
        Ok(self.table.get(&this)?.last_insert_rowid())
    }

    fn changes(&mut self, this: Resource<PooledConnection>) -> WResult<u64> {
        Ok(self.table.get(&this)?.changes())
    }

    fn drop(&mut self, this: Resource<PooledConnection>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl sql3::HostConnectionWithStore<HostState> for P3Capabilities {
    async fn open_async(
        acc: &Acc,
        database: String,
    ) -> WResult<Result<Resource<PooledConnection>, sql3::Error>> {
        acc.with(|mut a| a.get().sql_open(&database))
    }

    async fn execute_async(
        acc: &Acc,
        this: Resource<PooledConnection>,
        statement: String,
        parameters: Vec<sql3::Value>,
    ) -> WResult<
        Result<
            (
                Vec<String>,
                StreamReader<sql3::RowResult>,
                FutureReader<Result<(), sql3::Error>>,
            ),
            sql3::Error,
        >,
    > {
        // Holding the store while the statement runs would stall every
        // other request of this instance.
        let conn = conn_of(acc, &this)?;
        let params = parameters.into_iter().map(to_value).collect();
        let rows = match conn.execute_async(statement, params).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.into())),
        };
        acc.with(|mut a| {
            let stream =
                StreamReader::new(&mut a, rows.rows.into_iter().map(row).collect::<Vec<_>>())?;
            let done = FutureReader::new(
                &mut a,
                std::future::ready(Ok::<_, wasmtime::Error>(Ok::<(), sql3::Error>(()))),
            )?;
            Ok(Ok((rows.columns, stream, done)))
        })
    }

    async fn last_insert_rowid_async(acc: &Acc, this: Resource<PooledConnection>) -> WResult<i64> {
        let conn = conn_of(acc, &this)?;
        Ok(conn.with_conn_async(|c| c.last_insert_rowid()).await)
    }

    async fn changes_async(acc: &Acc, this: Resource<PooledConnection>) -> WResult<u64> {
        let conn = conn_of(acc, &this)?;
        Ok(conn.with_conn_async(|c| c.changes()).await)
    }
}

impl sql3::Host for HostState {}
