//! Host capabilities: one module per capability, each a small backend
//! interface plus the guest-facing bindings of every WIT version it serves.
//!
//! | capability | WIT served |
//! |---|---|
//! | key-value | `fermyon:spin/key-value@2.0.0`, `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` |
//! | key-value (p3) | `spin:key-value/key-value@3.0.0` |
//! | variables | `fermyon:spin/variables@2.0.0`, `spin:variables/variables@3.0.0` |
//! | sqlite    | `fermyon:spin/sqlite@2.0.0`, `spin:sqlite/sqlite@3.1.0` (serves 3.0.0 too) |
//! | redis     | `fermyon:spin/redis@2.0.0`, `spin:redis/redis@3.0.0` |
//! | postgres  | `fermyon:spin/postgres@2.0.0`, `spin:postgres/postgres@3.0.0`, `spin:postgres/postgres@4.2.0` (serves 4.0.0 and 4.1.0 too) |
//! | mqtt      | `fermyon:spin/mqtt@2.0.0`, `spin:mqtt/mqtt@3.0.0` (all in [`mqtt`]) |
//! | sockets   | `wasi:sockets` permissions (in [`sockets`]) |

pub mod bindings;
pub mod key_value;
pub mod mqtt;
pub mod postgres;
pub mod redis;
pub mod sockets;
pub mod sqlite;
pub mod variables;

use crate::state::HostState;
use wasmtime::component::Linker;

/// Adds every capability interface to the linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    key_value::guest::add_to_linker(linker)?;
    variables::add_to_linker(linker)?;
    sqlite::guest::add_to_linker(linker)?;
    redis::guest::add_to_linker(linker)?;
    postgres::guest::add_to_linker(linker)?;
    mqtt::add_to_linker(linker)
}

/// A linker with WASI (p2 and p3), WASI HTTP and every capability.
pub fn build_linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::<HostState>::new(engine);
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(map)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(map)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(map)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(map)?;
    add_to_linker(&mut linker)?;
    Ok(linker)
}
