//! `spin:postgres/postgres@4.2.0`, the newest version, which the linker also
//! gives guests importing `@4.0.0` or `@4.1.0` (they only add functions, so
//! wasmtime's semver matching links them here, as in Spin). Its `async`
//! functions (spin-sdk 7) take the store's accessor.

use super::super::{PgConnection, PgConnectionBuilder, RootCa};
use super::pg4 as v4;
use crate::capabilities::bindings::{Acc, P3Capabilities, WResult};
use crate::state::HostState;
use wasmtime::component::{FutureReader, Resource, StreamReader};

impl v4::Host for HostState {}

impl v4::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> WResult<Result<Resource<PgConnection>, v4::Error>> {
        self.pg_open(&address, None).await
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> WResult<Result<v4::RowSet, v4::Error>> {
        let conn = self.pg(&this)?;
        Ok(conn.query(&statement, &params).await)
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> WResult<Result<u64, v4::Error>> {
        let conn = self.pg(&this)?;
        Ok(conn.execute(&statement, &params).await)
    }

    async fn drop(&mut self, this: Resource<PgConnection>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl v4::HostConnectionBuilder for HostState {
    async fn new(&mut self, address: String) -> WResult<Resource<PgConnectionBuilder>> {
        Ok(self.table.push(PgConnectionBuilder {
            address,
            root_ca: None,
        })?)
    }

    async fn set_ca_root(
        &mut self,
        this: Resource<PgConnectionBuilder>,
        certificate: String,
    ) -> WResult<Result<(), v4::Error>> {
        let builder = self.table.get_mut(&this)?;
        Ok(RootCa::from_pem(&certificate).map(|ca| builder.root_ca = Some(ca)))
    }

    async fn build(
        &mut self,
        this: Resource<PgConnectionBuilder>,
    ) -> WResult<Result<Resource<PgConnection>, v4::Error>> {
        let builder = self.table.get(&this)?;
        let (address, root_ca) = (builder.address.clone(), builder.root_ca.clone());
        self.pg_open(&address, root_ca.as_ref()).await
    }

    async fn drop(&mut self, this: Resource<PgConnectionBuilder>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// Opens a connection without holding the store while connecting, then
/// puts it in the instance's table.
async fn open_p3(
    acc: &Acc,
    address: String,
    root_ca: Option<RootCa>,
) -> WResult<Result<Resource<PgConnection>, v4::Error>> {
    let (app, component) = acc.with(|mut a| {
        let s = a.get();
        (s.app.clone(), s.component.clone())
    });
    match super::super::open(&app.postgres, &component, &address, root_ca.as_ref()).await {
        Ok(c) => acc.with(|mut a| Ok(Ok(a.get().table.push(c)?))),
        Err(e) => Ok(Err(e)),
    }
}

impl v4::HostConnectionWithStore<HostState> for P3Capabilities {
    async fn open_async(
        acc: &Acc,
        address: String,
    ) -> WResult<Result<Resource<PgConnection>, v4::Error>> {
        open_p3(acc, address, None).await
    }

    async fn execute_async(
        acc: &Acc,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> WResult<Result<u64, v4::Error>> {
        // Only the handle comes out of the store: the instance's other
        // requests go on while the statement runs.
        let conn = acc.with(|mut a| a.get().pg(&this))?;
        Ok(conn.execute(&statement, &params).await)
    }

    #[allow(clippy::type_complexity)] // the WIT signature
    async fn query_async(
        acc: &Acc,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> WResult<
        Result<
            (
                Vec<v4::Column>,
                StreamReader<v4::Row>,
                FutureReader<Result<(), v4::Error>>,
            ),
            v4::Error,
        >,
    > {
        let conn = acc.with(|mut a| a.get().pg(&this))?;
        // The whole result is read first (bounded by MAX_RESULT_BYTES), as
        // for SQLite; the guest then reads it as a stream.
        let rows = match conn.query(&statement, &params).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        acc.with(|mut a| {
            let stream = StreamReader::new(&mut a, rows.rows)?;
            let done = FutureReader::new(
                &mut a,
                std::future::ready(Ok::<_, wasmtime::Error>(Ok::<(), v4::Error>(()))),
            )?;
            Ok(Ok((rows.columns, stream, done)))
        })
    }
}

impl v4::HostConnectionBuilderWithStore<HostState> for P3Capabilities {
    async fn build_async(
        acc: &Acc,
        this: Resource<PgConnectionBuilder>,
    ) -> WResult<Result<Resource<PgConnection>, v4::Error>> {
        let (address, root_ca) = acc.with(|mut a| {
            let builder = a.get().table.get(&this)?;
            Ok::<_, wasmtime::Error>((builder.address.clone(), builder.root_ca.clone()))
        })?;
        open_p3(acc, address, root_ca).await
    }
}
