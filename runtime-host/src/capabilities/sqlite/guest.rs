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

// ---- fermyon:spin/sqlite@2.0.0 ---------------------------------------------

impl From<SqlError> for spin_sql::Error {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::NoSuchDatabase => Self::NoSuchDatabase,
            SqlError::AccessDenied => Self::AccessDenied,
            SqlError::DatabaseFull => Self::DatabaseFull,
            SqlError::Io(m) => Self::Io(m),
        }
    }
}

fn to_value_p2(v: spin_sql::Value) -> Value {
    match v {
        spin_sql::Value::Integer(i) => Value::Integer(i),
        spin_sql::Value::Real(f) => Value::Real(f),
        spin_sql::Value::Text(s) => Value::Text(s),
        spin_sql::Value::Blob(b) => Value::Blob(b),
        spin_sql::Value::Null => Value::Null,
    }
}

fn from_value_p2(v: Value) -> spin_sql::Value {
    match v {
        Value::Integer(i) => spin_sql::Value::Integer(i),
        Value::Real(f) => spin_sql::Value::Real(f),
        Value::Text(s) => spin_sql::Value::Text(s),
        Value::Blob(b) => spin_sql::Value::Blob(b),
        Value::Null => spin_sql::Value::Null,
    }
}

impl spin_sql::Host for HostState {}

impl spin_sql::HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> WResult<Result<Resource<PooledConnection>, spin_sql::Error>> {
        match self
            .app
            .databases
            .open(&self.component.sqlite_databases, &database)
        {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn execute(
        &mut self,
        this: Resource<PooledConnection>,
        statement: String,
        parameters: Vec<spin_sql::Value>,
    ) -> WResult<Result<spin_sql::QueryResult, spin_sql::Error>> {
        let conn = self.table.get(&this)?;
        let params = parameters.into_iter().map(to_value_p2).collect();
        Ok(conn
            .execute(&statement, params)
            .map(|r| spin_sql::QueryResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|values| spin_sql::RowResult {
                        values: values.into_iter().map(from_value_p2).collect(),
                    })
                    .collect(),
            })
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<PooledConnection>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- spin:sqlite@3.1.0 (and 3.0.0 by semver) --------------------------------

impl From<SqlError> for sql3::Error {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::NoSuchDatabase => Self::NoSuchDatabase,
            SqlError::AccessDenied => Self::AccessDenied,
            SqlError::DatabaseFull => Self::DatabaseFull,
            SqlError::Io(m) => Self::Io(m),
        }
    }
}

fn to_value(v: sql3::Value) -> Value {
    match v {
        sql3::Value::Integer(i) => Value::Integer(i),
        sql3::Value::Real(f) => Value::Real(f),
        sql3::Value::Text(s) => Value::Text(s),
        sql3::Value::Blob(b) => Value::Blob(b),
        sql3::Value::Null => Value::Null,
    }
}

fn row(values: Vec<Value>) -> sql3::RowResult {
    sql3::RowResult {
        values: values
            .into_iter()
            .map(|v| match v {
                Value::Integer(i) => sql3::Value::Integer(i),
                Value::Real(f) => sql3::Value::Real(f),
                Value::Text(s) => sql3::Value::Text(s),
                Value::Blob(b) => sql3::Value::Blob(b),
                Value::Null => sql3::Value::Null,
            })
            .collect(),
    }
}

impl HostState {
    fn sql_open(
        &mut self,
        database: &str,
    ) -> WResult<Result<Resource<PooledConnection>, sql3::Error>> {
        match self
            .app
            .databases
            .open(&self.component.sqlite_databases, database)
        {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    fn sql_execute(
        &mut self,
        this: &Resource<PooledConnection>,
        statement: &str,
        parameters: Vec<sql3::Value>,
    ) -> WResult<Result<SqlRows, sql3::Error>> {
        let conn = self.table.get(this)?;
        Ok(conn
            .execute(statement, parameters.into_iter().map(to_value).collect())
            .map_err(Into::into))
    }
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
        Ok(self
            .sql_execute(&this, &statement, parameters)?
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
        // Only the handle comes out of the store: the statement may wait on
        // another connection's lock, and holding the store meanwhile would
        // stall every other request of this instance.
        let conn = acc.with(|mut a| Ok::<_, wasmtime::Error>(a.get().table.get(&this)?.clone()))?;
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
        let conn = acc.with(|mut a| Ok::<_, wasmtime::Error>(a.get().table.get(&this)?.clone()))?;
        Ok(conn.with_conn_async(|c| c.last_insert_rowid()).await)
    }

    async fn changes_async(acc: &Acc, this: Resource<PooledConnection>) -> WResult<u64> {
        let conn = acc.with(|mut a| Ok::<_, wasmtime::Error>(a.get().table.get(&this)?.clone()))?;
        Ok(conn.with_conn_async(|c| c.changes()).await)
    }
}

impl sql3::Host for HostState {}
