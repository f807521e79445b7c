//! Key-value as guests see it: `fermyon:spin/key-value@2.0.0`,
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` and
//! `spin:key-value/key-value@3.0.0`, each a thin adapter onto
//! [`super::KeyValueStore`].

use super::{KeyValueStore, KvError};
use crate::capabilities::bindings::p2::fermyon::spin2_0_0::key_value as spin_kv;
use crate::capabilities::bindings::p2::wasi::keyvalue::{
    atomics as wasi_atomics, batch as wasi_batch, store as wasi_store,
};
use crate::capabilities::bindings::p3::spin::key_value::key_value as kv3;
use crate::capabilities::bindings::{Acc, P3Capabilities, WResult};
use crate::state::HostState;
use std::sync::Arc;
use wasmtime::component::{FutureReader, HasSelf, Linker, Resource, StreamReader};

/// An open key-value store handle (Spin `store` / wasi `bucket`).
pub struct KvHandle(pub Arc<dyn KeyValueStore>);

/// A compare-and-swap in progress: the value seen when it was read.
pub struct CasHandle {
    store: Arc<dyn KeyValueStore>,
    key: String,
    seen: Option<Vec<u8>>,
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    spin_kv::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    wasi_store::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    wasi_atomics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    wasi_batch::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    kv3::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    Ok(())
}

/// `From<KvError>` for a version's error type (they all have the same cases).
macro_rules! error_from_kv {
    ($($error:ty),*) => {$(
        impl From<KvError> for $error {
            fn from(e: KvError) -> Self {
                match e {
                    KvError::NoSuchStore => Self::NoSuchStore,
                    KvError::AccessDenied => Self::AccessDenied,
                    KvError::Other(m) => Self::Other(m),
                }
            }
        }
    )*};
}

error_from_kv!(spin_kv::Error, wasi_store::Error, kv3::Error);

/// The store methods the synchronous (p2) interfaces share: their generated
/// traits differ only in the error type, so one body serves both.
macro_rules! p2_store_methods {
    ($error:ty) => {
        async fn get(
            &mut self,
            this: Resource<KvHandle>,
            key: String,
        ) -> WResult<Result<Option<Vec<u8>>, $error>> {
            let s = self.kv(&this)?;
            Ok(s.get(&key).await.map_err(Into::into))
        }

        async fn set(
            &mut self,
            this: Resource<KvHandle>,
            key: String,
            value: Vec<u8>,
        ) -> WResult<Result<(), $error>> {
            let s = self.kv(&this)?;
            Ok(s.set(&key, &value).await.map_err(Into::into))
        }

        async fn delete(
            &mut self,
            this: Resource<KvHandle>,
            key: String,
        ) -> WResult<Result<(), $error>> {
            let s = self.kv(&this)?;
            Ok(s.delete(&key).await.map_err(Into::into))
        }

        async fn exists(
            &mut self,
            this: Resource<KvHandle>,
            key: String,
        ) -> WResult<Result<bool, $error>> {
            let s = self.kv(&this)?;
            Ok(s.exists(&key).await.map_err(Into::into))
        }

        async fn drop(&mut self, this: Resource<KvHandle>) -> WResult<()> {
            self.table.delete(this)?;
            Ok(())
        }
    };
}

impl HostState {
    /// Opens `label` for this component and puts the handle in the table.
    fn open_kv<E: From<KvError>>(&mut self, label: &str) -> WResult<Result<Resource<KvHandle>, E>> {
        match self.app.key_value.open_for(&self.component, label) {
            Ok(store) => Ok(Ok(self.table.push(KvHandle(store))?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    fn kv(&self, handle: &Resource<KvHandle>) -> WResult<Arc<dyn KeyValueStore>> {
        Ok(self.table.get(handle)?.0.clone())
    }
}

// ---- fermyon:spin/key-value@2.0.0 -----------------------------------------

impl spin_kv::Host for HostState {}

impl spin_kv::HostStore for HostState {
    async fn open(&mut self, label: String) -> WResult<Result<Resource<KvHandle>, spin_kv::Error>> {
        self.open_kv(&label)
    }

    p2_store_methods!(spin_kv::Error);

    async fn get_keys(
        &mut self,
        this: Resource<KvHandle>,
    ) -> WResult<Result<Vec<String>, spin_kv::Error>> {
        let s = self.kv(&this)?;
        Ok(s.get_keys().await.map_err(Into::into))
    }
}

// ---- wasi:keyvalue@0.2.0-draft2 --------------------------------------------

impl wasi_store::Host for HostState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> WResult<Result<Resource<KvHandle>, wasi_store::Error>> {
        self.open_kv(&identifier)
    }
}

impl wasi_store::HostBucket for HostState {
    p2_store_methods!(wasi_store::Error);

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

// ---- spin:key-value@3.0.0 ---------------------------------------------------

fn store_of(acc: &Acc, handle: &Resource<KvHandle>) -> WResult<Arc<dyn KeyValueStore>> {
    acc.with(|mut a| Ok(a.get().table.get(handle)?.0.clone()))
}

impl kv3::HostStoreWithStore<HostState> for P3Capabilities {
    async fn open(acc: &Acc, label: String) -> WResult<Result<Resource<KvHandle>, kv3::Error>> {
        acc.with(|mut a| {
            let state = a.get();
            match state.app.key_value.open_for(&state.component, &label) {
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
