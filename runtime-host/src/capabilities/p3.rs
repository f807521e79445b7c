//! The WASIp3-generation guest bindings (`spin:key-value@3.0.0`,
//! `spin:variables@3.0.0`, `spin:sqlite@3.1.0`, which also serves guests
//! importing `spin:sqlite@3.0.0`): adapters onto the same backends as the
//! p2 bindings.

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: r#"
            package runtime-host:p3;
            world capabilities {
                import spin:key-value/key-value@3.0.0;
                import spin:variables/variables@3.0.0;
                import spin:sqlite/sqlite@3.1.0;
                import spin:redis/redis@3.0.0;
            }
        "#,
        world: "runtime-host:p3/capabilities",
        imports: { default: trappable },
        with: {
            "spin:key-value/key-value.store": crate::capabilities::p2::KvHandle,
            "spin:sqlite/sqlite.connection": crate::capabilities::sqlite::PooledConnection,
            "spin:redis/redis.connection": crate::capabilities::p2::RedisHandle,
        },
    });
}

use super::key_value::{KeyValueStore, KvError};
use super::p2::KvHandle;
use super::p2::RedisHandle;
use super::redis::{Param, RedisConnection, RedisError, Reply};
use super::sqlite::{PooledConnection, QueryResult as SqlRows, SqlError, Value};
use crate::state::HostState;
use crate::variables::LookupError;
use bindings::spin::key_value::key_value as kv3;
use bindings::spin::redis::redis as redis3;
use bindings::spin::sqlite3_1_0::sqlite as sql3;
use bindings::spin::variables::variables as vars3;
use std::sync::Arc;
use wasmtime::component::{Accessor, FutureReader, HasData, Linker, Resource, StreamReader};

/// The `HasData` projection for p3 bindings: async host functions get an
/// [`Accessor`] and reach [`HostState`] through it.
pub struct P3Capabilities;

impl HasData for P3Capabilities {
    type Data<'a> = &'a mut HostState;
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    kv3::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    vars3::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    sql3::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    redis3::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    Ok(())
}

type WResult<T> = wasmtime::Result<T>;
type Acc = Accessor<HostState, P3Capabilities>;

// ---- spin:key-value@3.0.0 ---------------------------------------------------

impl From<KvError> for kv3::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NoSuchStore => Self::NoSuchStore,
            KvError::AccessDenied => Self::AccessDenied,
            KvError::Other(m) => Self::Other(m),
        }
    }
}

fn store_of(acc: &Acc, handle: &Resource<KvHandle>) -> WResult<Arc<dyn KeyValueStore>> {
    acc.with(|mut a| Ok(a.get().table.get(handle)?.0.clone()))
}

impl kv3::HostStoreWithStore<HostState> for P3Capabilities {
    async fn open(acc: &Acc, label: String) -> WResult<Result<Resource<KvHandle>, kv3::Error>> {
        acc.with(|mut a| {
            let state = a.get();
            match state
                .app
                .key_value
                .open(&state.component.key_value_stores, &label)
            {
                Ok(store) => Ok(Ok(state.table.push(KvHandle(store))?)),
                Err(e) => Ok(Err(e.into())),
            }
        })
    }

    async fn get(
        acc: &Acc,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<Option<Vec<u8>>, kv3::Error>> {
        let s = store_of(acc, &this)?;
        Ok(s.get(&key).await.map_err(Into::into))
    }

    async fn set(
        acc: &Acc,
        this: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> WResult<Result<(), kv3::Error>> {
        let s = store_of(acc, &this)?;
        Ok(s.set(&key, &value).await.map_err(Into::into))
    }

    async fn delete(
        acc: &Acc,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<(), kv3::Error>> {
        let s = store_of(acc, &this)?;
        Ok(s.delete(&key).await.map_err(Into::into))
    }

    async fn exists(
        acc: &Acc,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<bool, kv3::Error>> {
        let s = store_of(acc, &this)?;
        Ok(s.exists(&key).await.map_err(Into::into))
    }

    /// The keys as a stream, and the outcome as a future (an error ends the
    /// stream early and resolves the future with it).
    async fn get_keys(
        acc: &Acc,
        this: Resource<KvHandle>,
    ) -> WResult<(StreamReader<String>, FutureReader<Result<(), kv3::Error>>)> {
        let s = store_of(acc, &this)?;
        let (keys, outcome) = match s.get_keys().await {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(kv3::Error::from(e))),
        };
        acc.with(|mut a| {
            let stream = StreamReader::new(&mut a, keys)?;
            let done = FutureReader::new(
                &mut a,
                std::future::ready(Ok::<_, wasmtime::Error>(outcome)),
            )?;
            Ok((stream, done))
        })
    }
}

impl kv3::HostStore for HostState {
    fn drop(&mut self, this: Resource<KvHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl kv3::Host for HostState {}

// ---- spin:variables@3.0.0 ---------------------------------------------------

impl vars3::HostWithStore<HostState> for P3Capabilities {
    async fn get(acc: &Acc, name: String) -> WResult<Result<String, vars3::Error>> {
        acc.with(|mut a| {
            let state = a.get();
            Ok(state
                .app
                .variables
                .get(&state.component.id, &name)
                .map_err(|e| match e {
                    LookupError::InvalidName(n) => vars3::Error::InvalidName(n),
                    LookupError::Undefined(n) => vars3::Error::Undefined(n),
                }))
        })
    }
}

impl vars3::Host for HostState {}

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

// ---- spin:redis@3.0.0 ---------------------------------------------------------

impl From<RedisError> for redis3::Error {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::InvalidAddress => Self::InvalidAddress,
            RedisError::TypeError => Self::TypeError,
            RedisError::Other(m) => Self::Other(m),
        }
    }
}

fn redis_of(acc: &Acc, h: &Resource<RedisHandle>) -> WResult<Arc<dyn RedisConnection>> {
    acc.with(|mut a| Ok(a.get().table.get(h)?.0.clone()))
}

type R3<T> = WResult<Result<T, redis3::Error>>;

impl redis3::HostConnectionWithStore<HostState> for P3Capabilities {
    async fn open(acc: &Acc, address: String) -> R3<Resource<RedisHandle>> {
        // The allow-list check needs the state; the connect may wait on the network.
        let (allowed, app) = acc.with(|mut a| {
            let s = a.get();
            (
                super::redis::check_allowed(&s.component, &address),
                s.app.clone(),
            )
        });
        if let Err(e) = allowed {
            return Ok(Err(e.into()));
        }
        match app.redis.open(&address).await {
            Ok(c) => acc.with(|mut a| Ok(Ok(a.get().table.push(RedisHandle(c))?))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(
        acc: &Acc,
        this: Resource<RedisHandle>,
        channel: String,
        payload: Vec<u8>,
    ) -> R3<()> {
        Ok(redis_of(acc, &this)?
            .publish(&channel, payload)
            .await
            .map_err(Into::into))
    }

    async fn get(acc: &Acc, this: Resource<RedisHandle>, key: String) -> R3<Option<Vec<u8>>> {
        Ok(redis_of(acc, &this)?.get(&key).await.map_err(Into::into))
    }

    async fn set(acc: &Acc, this: Resource<RedisHandle>, key: String, value: Vec<u8>) -> R3<()> {
        Ok(redis_of(acc, &this)?
            .set(&key, value)
            .await
            .map_err(Into::into))
    }

    async fn incr(acc: &Acc, this: Resource<RedisHandle>, key: String) -> R3<i64> {
        Ok(redis_of(acc, &this)?.incr(&key).await.map_err(Into::into))
    }

    async fn del(acc: &Acc, this: Resource<RedisHandle>, keys: Vec<String>) -> R3<u32> {
        Ok(redis_of(acc, &this)?.del(keys).await.map_err(Into::into))
    }

    async fn sadd(
        acc: &Acc,
        this: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> R3<u32> {
        Ok(redis_of(acc, &this)?
            .sadd(&key, values)
            .await
            .map_err(Into::into))
    }

    async fn smembers(acc: &Acc, this: Resource<RedisHandle>, key: String) -> R3<Vec<String>> {
        Ok(redis_of(acc, &this)?
            .smembers(&key)
            .await
            .map_err(Into::into))
    }

    async fn srem(
        acc: &Acc,
        this: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> R3<u32> {
        Ok(redis_of(acc, &this)?
            .srem(&key, values)
            .await
            .map_err(Into::into))
    }

    async fn execute(
        acc: &Acc,
        this: Resource<RedisHandle>,
        command: String,
        arguments: Vec<redis3::RedisParameter>,
    ) -> R3<Vec<redis3::RedisResult>> {
        let args = arguments
            .into_iter()
            .map(|a| match a {
                redis3::RedisParameter::Int64(i) => Param::Int64(i),
                redis3::RedisParameter::Binary(b) => Param::Binary(b),
            })
            .collect();
        Ok(redis_of(acc, &this)?
            .execute(&command, args)
            .await
            .map(|replies| {
                replies
                    .into_iter()
                    .map(|r| match r {
                        Reply::Nil => redis3::RedisResult::Nil,
                        Reply::Status(s) => redis3::RedisResult::Status(s),
                        Reply::Int64(i) => redis3::RedisResult::Int64(i),
                        Reply::Binary(b) => redis3::RedisResult::Binary(b),
                    })
                    .collect()
            })
            .map_err(Into::into))
    }
}

impl redis3::HostConnection for HostState {
    fn drop(&mut self, this: Resource<RedisHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl redis3::Host for HostState {}
