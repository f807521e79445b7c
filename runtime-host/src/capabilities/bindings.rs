//! The code `bindgen!` generates for every interface the host serves, one
//! world per generation (WASIp2: `fermyon:spin@2.0.0`, `wasi:keyvalue`;
//! WASIp3: `spin:*@3`, `spin:postgres@3.0.0`/`@4.2.0`), and the types both
//! generations' adapters share. The adapters themselves live with their
//! capability (`key_value::guest`, `sqlite::guest`, `redis::guest`,
//! `postgres::guest`, `variables`).

use crate::state::HostState;
use wasmtime::component::{Accessor, HasData};

pub mod p2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: r#"
            package runtime-host:p2;
            world capabilities {
                import fermyon:spin/key-value@2.0.0;
                import fermyon:spin/variables@2.0.0;
                import fermyon:spin/sqlite@2.0.0;
                import fermyon:spin/redis@2.0.0;
                import fermyon:spin/postgres@2.0.0;
                import wasi:keyvalue/store@0.2.0-draft2;
                import wasi:keyvalue/atomics@0.2.0-draft2;
                import wasi:keyvalue/batch@0.2.0-draft2;
            }
        "#,
        world: "runtime-host:p2/capabilities",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": crate::capabilities::key_value::guest::KvHandle,
            "fermyon:spin/sqlite.connection": crate::capabilities::sqlite::PooledConnection,
            "fermyon:spin/redis.connection": crate::capabilities::redis::guest::RedisHandle,
            "fermyon:spin/postgres.connection": crate::capabilities::postgres::PgConnection,
            "wasi:keyvalue/store.bucket": crate::capabilities::key_value::guest::KvHandle,
            "wasi:keyvalue/atomics.cas": crate::capabilities::key_value::guest::CasHandle,
        },
    });
}

pub mod p3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: r#"
            package runtime-host:p3;
            world capabilities {
                import spin:key-value/key-value@3.0.0;
                import spin:variables/variables@3.0.0;
                import spin:sqlite/sqlite@3.1.0;
                import spin:redis/redis@3.0.0;
                import spin:postgres/postgres@3.0.0;
                import spin:postgres/postgres@4.2.0;
            }
        "#,
        world: "runtime-host:p3/capabilities",
        // PostgreSQL's sync functions still do network I/O: async on the host.
        imports: { "spin:postgres/postgres": async | trappable, default: trappable },
        with: {
            "spin:key-value/key-value.store": crate::capabilities::key_value::guest::KvHandle,
            "spin:sqlite/sqlite.connection": crate::capabilities::sqlite::PooledConnection,
            "spin:redis/redis.connection": crate::capabilities::redis::guest::RedisHandle,
            "spin:postgres/postgres.connection": crate::capabilities::postgres::PgConnection,
            "spin:postgres/postgres.connection-builder": crate::capabilities::postgres::PgConnectionBuilder,
        },
    });
}

/// The `HasData` projection for p3 bindings: async host functions get an
/// [`Accessor`] and reach [`HostState`] through it.
pub struct P3Capabilities;

impl HasData for P3Capabilities {
    type Data<'a> = &'a mut HostState;
}

/// What a host function returns: a trap, or the interface's own result.
pub type WResult<T> = wasmtime::Result<T>;
/// How an async (p3) host function reaches the instance's state.
pub type Acc = Accessor<HostState, P3Capabilities>;
