//! The WASIp2-generation guest bindings (`fermyon:spin@2.0.0` and
//! `wasi:keyvalue@0.2.0-draft2`): thin adapters from WIT calls onto the
//! capability backends in the sibling modules.

use super::key_value::{KeyValueStore, KvError};
use super::redis::{Param, RedisConnection, RedisError, Reply};
use super::sqlite::{PooledConnection, SqlError, Value};
use crate::state::HostState;
use crate::variables::LookupError;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

/// An open key-value store handle (Spin `store` / wasi `bucket`).
pub struct KvHandle(pub Arc<dyn KeyValueStore>);

/// An open outbound Redis connection.
pub struct RedisHandle(pub Arc<dyn RedisConnection>);

/// A compare-and-swap in progress: the value seen when it was read.
pub struct CasHandle {
    store: Arc<dyn KeyValueStore>,
    key: String,
    seen: Option<Vec<u8>>,
}

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: r#"
            package runtime-host:p2;
            world capabilities {
                import fermyon:spin/key-value@2.0.0;
                import fermyon:spin/variables@2.0.0;
                import fermyon:spin/sqlite@2.0.0;
                import fermyon:spin/redis@2.0.0;
                import wasi:keyvalue/store@0.2.0-draft2;
                import wasi:keyvalue/atomics@0.2.0-draft2;
                import wasi:keyvalue/batch@0.2.0-draft2;
            }
        "#,
        world: "runtime-host:p2/capabilities",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": super::KvHandle,
            "fermyon:spin/sqlite.connection": crate::capabilities::sqlite::PooledConnection,
            "fermyon:spin/redis.connection": super::RedisHandle,
            "wasi:keyvalue/store.bucket": super::KvHandle,
            "wasi:keyvalue/atomics.cas": super::CasHandle,
        },
    });
}

use bindings::fermyon::spin2_0_0::{
    key_value as spin_kv, redis as spin_redis, sqlite as spin_sql, variables as spin_vars,
};
use bindings::wasi::keyvalue::{atomics as wasi_atomics, batch as wasi_batch, store as wasi_store};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    spin_kv::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    spin_vars::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    spin_sql::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    spin_redis::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    wasi_store::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    wasi_atomics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    wasi_batch::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    Ok(())
}

type WResult<T> = wasmtime::Result<T>;

// ---- fermyon:spin/key-value@2.0.0 -----------------------------------------

impl From<KvError> for spin_kv::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NoSuchStore => Self::NoSuchStore,
            KvError::AccessDenied => Self::AccessDenied,
            KvError::Other(m) => Self::Other(m),
        }
    }
}

impl HostState {
    fn open_kv(&mut self, label: &str) -> Result<KvHandle, KvError> {
        let store = self
            .app
            .key_value
            .open(&self.component.key_value_stores, label)?;
        Ok(KvHandle(store))
    }

    fn kv(&self, handle: &Resource<KvHandle>) -> WResult<Arc<dyn KeyValueStore>> {
        Ok(self.table.get(handle)?.0.clone())
    }
}

impl spin_kv::Host for HostState {}

impl spin_kv::HostStore for HostState {
    async fn open(&mut self, label: String) -> WResult<Result<Resource<KvHandle>, spin_kv::Error>> {
        match self.open_kv(&label) {
            Ok(h) => Ok(Ok(self.table.push(h)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn get(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<Option<Vec<u8>>, spin_kv::Error>> {
        let s = self.kv(&this)?;
        Ok(s.get(&key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> WResult<Result<(), spin_kv::Error>> {
        let s = self.kv(&this)?;
        Ok(s.set(&key, &value).await.map_err(Into::into))
    }

    async fn delete(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<(), spin_kv::Error>> {
        let s = self.kv(&this)?;
        Ok(s.delete(&key).await.map_err(Into::into))
    }

    async fn exists(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<bool, spin_kv::Error>> {
        let s = self.kv(&this)?;
        Ok(s.exists(&key).await.map_err(Into::into))
    }

    async fn get_keys(
        &mut self,
        this: Resource<KvHandle>,
    ) -> WResult<Result<Vec<String>, spin_kv::Error>> {
        let s = self.kv(&this)?;
        Ok(s.get_keys().await.map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<KvHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- wasi:keyvalue@0.2.0-draft2 --------------------------------------------

impl From<KvError> for wasi_store::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NoSuchStore => Self::NoSuchStore,
            KvError::AccessDenied => Self::AccessDenied,
            KvError::Other(m) => Self::Other(m),
        }
    }
}

impl wasi_store::Host for HostState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> WResult<Result<Resource<KvHandle>, wasi_store::Error>> {
        match self.open_kv(&identifier) {
            Ok(h) => Ok(Ok(self.table.push(h)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl wasi_store::HostBucket for HostState {
    async fn get(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<Option<Vec<u8>>, wasi_store::Error>> {
        let s = self.kv(&this)?;
        Ok(s.get(&key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> WResult<Result<(), wasi_store::Error>> {
        let s = self.kv(&this)?;
        Ok(s.set(&key, &value).await.map_err(Into::into))
    }

    async fn delete(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<(), wasi_store::Error>> {
        let s = self.kv(&this)?;
        Ok(s.delete(&key).await.map_err(Into::into))
    }

    async fn exists(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<bool, wasi_store::Error>> {
        let s = self.kv(&this)?;
        Ok(s.exists(&key).await.map_err(Into::into))
    }

    /// All keys in one page (`cursor` is always `none`), as Spin does.
    async fn list_keys(
        &mut self,
        this: Resource<KvHandle>,
        _cursor: Option<String>,
    ) -> WResult<Result<wasi_store::KeyResponse, wasi_store::Error>> {
        let s = self.kv(&this)?;
        Ok(s.get_keys()
            .await
            .map(|keys| wasi_store::KeyResponse { keys, cursor: None })
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<KvHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wasi_atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
        delta: i64,
    ) -> WResult<Result<i64, wasi_store::Error>> {
        let s = self.kv(&bucket)?;
        Ok(s.increment(&key, delta).await.map_err(Into::into))
    }

    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> WResult<Result<(), wasi_atomics::CasError>> {
        let handle = self.table.delete(cas)?;
        match handle
            .store
            .compare_and_swap(&handle.key, handle.seen.as_deref(), &value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            // Hand the CAS back so the guest can re-read `current` and retry.
            Ok(false) => {
                let again = self.table.push(handle)?;
                Ok(Err(wasi_atomics::CasError::CasFailed(again)))
            }
            Err(e) => Ok(Err(wasi_atomics::CasError::StoreError(e.into()))),
        }
    }
}

impl wasi_atomics::HostCas for HostState {
    async fn new(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> WResult<Result<Resource<CasHandle>, wasi_store::Error>> {
        let store = self.kv(&bucket)?;
        let seen = match store.get(&key).await {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(Ok(self.table.push(CasHandle { store, key, seen })?))
    }

    /// Re-reads the value; the next `swap` compares against what this returns.
    async fn current(
        &mut self,
        this: Resource<CasHandle>,
    ) -> WResult<Result<Option<Vec<u8>>, wasi_store::Error>> {
        let (store, key) = {
            let h = self.table.get(&this)?;
            (h.store.clone(), h.key.clone())
        };
        match store.get(&key).await {
            Ok(v) => {
                self.table.get_mut(&this)?.seen = v.clone();
                Ok(Ok(v))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn drop(&mut self, this: Resource<CasHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wasi_batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<KvHandle>,
        keys: Vec<String>,
    ) -> WResult<Result<Vec<(String, Option<Vec<u8>>)>, wasi_store::Error>> {
        let s = self.kv(&bucket)?;
        Ok(s.get_many(keys).await.map_err(Into::into))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<KvHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> WResult<Result<(), wasi_store::Error>> {
        let s = self.kv(&bucket)?;
        Ok(s.set_many(key_values).await.map_err(Into::into))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<KvHandle>,
        keys: Vec<String>,
    ) -> WResult<Result<(), wasi_store::Error>> {
        let s = self.kv(&bucket)?;
        Ok(s.delete_many(keys).await.map_err(Into::into))
    }
}

// ---- fermyon:spin/variables@2.0.0 ------------------------------------------

impl spin_vars::Host for HostState {
    async fn get(&mut self, name: String) -> WResult<Result<String, spin_vars::Error>> {
        Ok(self
            .app
            .variables
            .get(&self.component.id, &name)
            .map_err(|e| match e {
                LookupError::InvalidName(n) => spin_vars::Error::InvalidName(n),
                LookupError::Undefined(n) => spin_vars::Error::Undefined(format!(
                    "no variable for {n:?}: declare it in [component.{}.variables]",
                    self.component.id
                )),
            }))
    }
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

fn to_value(v: spin_sql::Value) -> Value {
    match v {
        spin_sql::Value::Integer(i) => Value::Integer(i),
        spin_sql::Value::Real(f) => Value::Real(f),
        spin_sql::Value::Text(s) => Value::Text(s),
        spin_sql::Value::Blob(b) => Value::Blob(b),
        spin_sql::Value::Null => Value::Null,
    }
}

fn from_value(v: Value) -> spin_sql::Value {
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
        let params = parameters.into_iter().map(to_value).collect();
        Ok(conn
            .execute(&statement, params)
            .map(|r| spin_sql::QueryResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|values| spin_sql::RowResult {
                        values: values.into_iter().map(from_value).collect(),
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

// ---- fermyon:spin/redis@2.0.0 -----------------------------------------------

impl From<RedisError> for spin_redis::Error {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::InvalidAddress => Self::InvalidAddress,
            RedisError::TypeError => Self::TypeError,
            RedisError::Other(m) => Self::Other(m),
        }
    }
}

impl HostState {
    /// Opens `address` if the component's `allowed_outbound_hosts` allow it.
    pub(crate) async fn open_redis(
        &mut self,
        address: &str,
    ) -> Result<Arc<dyn RedisConnection>, RedisError> {
        super::redis::check_allowed(&self.component, address)?;
        self.app.redis.open(address).await
    }

    fn redis(&self, h: &Resource<RedisHandle>) -> WResult<Arc<dyn RedisConnection>> {
        Ok(self.table.get(h)?.0.clone())
    }
}

impl spin_redis::Host for HostState {}

impl spin_redis::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> WResult<Result<Resource<RedisHandle>, spin_redis::Error>> {
        match self.open_redis(&address).await {
            Ok(c) => Ok(Ok(self.table.push(RedisHandle(c))?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(
        &mut self,
        this: Resource<RedisHandle>,
        channel: String,
        payload: Vec<u8>,
    ) -> WResult<Result<(), spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.publish(&channel, payload).await.map_err(Into::into))
    }

    async fn get(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
    ) -> WResult<Result<Option<Vec<u8>>, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.get(&key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
        value: Vec<u8>,
    ) -> WResult<Result<(), spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.set(&key, value).await.map_err(Into::into))
    }

    async fn incr(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
    ) -> WResult<Result<i64, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.incr(&key).await.map_err(Into::into))
    }

    async fn del(
        &mut self,
        this: Resource<RedisHandle>,
        keys: Vec<String>,
    ) -> WResult<Result<u32, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.del(keys).await.map_err(Into::into))
    }

    async fn sadd(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> WResult<Result<u32, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.sadd(&key, values).await.map_err(Into::into))
    }

    async fn smembers(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
    ) -> WResult<Result<Vec<String>, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.smembers(&key).await.map_err(Into::into))
    }

    async fn srem(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> WResult<Result<u32, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.srem(&key, values).await.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        this: Resource<RedisHandle>,
        command: String,
        arguments: Vec<spin_redis::RedisParameter>,
    ) -> WResult<Result<Vec<spin_redis::RedisResult>, spin_redis::Error>> {
        let c = self.redis(&this)?;
        let args = arguments
            .into_iter()
            .map(|a| match a {
                spin_redis::RedisParameter::Int64(i) => Param::Int64(i),
                spin_redis::RedisParameter::Binary(b) => Param::Binary(b),
            })
            .collect();
        Ok(c.execute(&command, args)
            .await
            .map(|replies| {
                replies
                    .into_iter()
                    .map(|r| match r {
                        Reply::Nil => spin_redis::RedisResult::Nil,
                        Reply::Status(s) => spin_redis::RedisResult::Status(s),
                        Reply::Int64(i) => spin_redis::RedisResult::Int64(i),
                        Reply::Binary(b) => spin_redis::RedisResult::Binary(b),
                    })
                    .collect()
            })
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<RedisHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
