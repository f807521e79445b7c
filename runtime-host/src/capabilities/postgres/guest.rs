//! PostgreSQL as guests see it, adapters onto [`super::PgConnection`]:
//!
//! - `fermyon:spin/postgres@2.0.0` (with `rdbms-types`; spin-sdk 2–5 `pg`),
//! - `spin:postgres/postgres@3.0.0` (spin-sdk 5 `pg3`),
//! - `spin:postgres/postgres@4.2.0`, which the linker also gives guests
//!   importing `@4.0.0` (spin-sdk 5 `pg4`) or `@4.1.0`: the versions only
//!   add functions, so wasmtime's semver matching links them to it, as Spin
//!   does. Its `async` functions (spin-sdk 7) take the store's accessor.
//!
//! The older versions convert to and from the 4.2.0 types: values a version
//! cannot express come back as its `unsupported`, column types as `other`,
//! exactly as in Spin.

use super::{v4, PgConnection, PgConnectionBuilder, RootCa};
use crate::capabilities::bindings::p2::fermyon::spin2_0_0::{
    postgres as pg2, rdbms_types as rdbms,
};
use crate::capabilities::bindings::p3::spin::postgres3_0_0::postgres as pg3;
use crate::capabilities::bindings::{Acc, P3Capabilities, WResult};
use crate::state::HostState;
use wasmtime::component::{FutureReader, HasSelf, Linker, Resource, StreamReader};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    rdbms::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    pg2::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    pg3::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    v4::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    Ok(())
}

impl HostState {
    /// Opens `address` for this component and puts the connection in the
    /// instance's table.
    async fn pg_open(
        &mut self,
        address: &str,
        root_ca: Option<&RootCa>,
    ) -> WResult<Result<Resource<PgConnection>, v4::Error>> {
        let (app, component) = (self.app.clone(), self.component.clone());
        match super::open(&app.postgres, &component, address, root_ca).await {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn pg(&self, this: &Resource<PgConnection>) -> WResult<PgConnection> {
        Ok(self.table.get(this)?.clone())
    }
}

/// The text of a 4.x query error, for versions whose error is a string.
fn error_text(e: v4::QueryError) -> String {
    match e {
        v4::QueryError::Text(t) => t,
        v4::QueryError::DbError(e) => e.as_text,
    }
}

// ---- fermyon:spin/postgres@2.0.0 --------------------------------------------------

impl From<v4::Error> for rdbms::Error {
    fn from(e: v4::Error) -> Self {
        match e {
            v4::Error::ConnectionFailed(m) => Self::ConnectionFailed(m),
            v4::Error::BadParameter(m) => Self::BadParameter(m),
            v4::Error::QueryFailed(q) => Self::QueryFailed(error_text(q)),
            v4::Error::ValueConversionFailed(m) => Self::ValueConversionFailed(m),
            v4::Error::Other(m) => Self::Other(m),
        }
    }
}

fn params_v2(params: Vec<rdbms::ParameterValue>) -> Result<Vec<v4::ParameterValue>, rdbms::Error> {
    use rdbms::ParameterValue as P;
    params
        .into_iter()
        .map(|p| {
            Ok(match p {
                P::Boolean(b) => v4::ParameterValue::Boolean(b),
                P::Int8(i) => v4::ParameterValue::Int8(i),
                P::Int16(i) => v4::ParameterValue::Int16(i),
                P::Int32(i) => v4::ParameterValue::Int32(i),
                P::Int64(i) => v4::ParameterValue::Int64(i),
                P::Uint8(_) | P::Uint16(_) | P::Uint32(_) | P::Uint64(_) => {
                    return Err(rdbms::Error::ValueConversionFailed(
                        "Postgres does not support unsigned integers".into(),
                    ))
                }
                P::Floating32(f) => v4::ParameterValue::Floating32(f),
                P::Floating64(f) => v4::ParameterValue::Floating64(f),
                P::Str(s) => v4::ParameterValue::Str(s),
                P::Binary(b) => v4::ParameterValue::Binary(b),
                P::DbNull => v4::ParameterValue::DbNull,
            })
        })
        .collect()
}

fn value_v2(v: v4::DbValue) -> rdbms::DbValue {
    use v4::DbValue as V;
    match v {
        V::Boolean(b) => rdbms::DbValue::Boolean(b),
        V::Int8(i) => rdbms::DbValue::Int8(i),
        V::Int16(i) => rdbms::DbValue::Int16(i),
        V::Int32(i) => rdbms::DbValue::Int32(i),
        V::Int64(i) => rdbms::DbValue::Int64(i),
        V::Floating32(f) => rdbms::DbValue::Floating32(f),
        V::Floating64(f) => rdbms::DbValue::Floating64(f),
        V::Str(s) => rdbms::DbValue::Str(s),
        V::Binary(b) => rdbms::DbValue::Binary(b),
        V::DbNull => rdbms::DbValue::DbNull,
        _ => rdbms::DbValue::Unsupported,
    }
}

fn data_type_v2(t: v4::DbDataType) -> rdbms::DbDataType {
    use v4::DbDataType as T;
    match t {
        T::Boolean => rdbms::DbDataType::Boolean,
        T::Int8 => rdbms::DbDataType::Int8,
        T::Int16 => rdbms::DbDataType::Int16,
        T::Int32 => rdbms::DbDataType::Int32,
        T::Int64 => rdbms::DbDataType::Int64,
        T::Floating32 => rdbms::DbDataType::Floating32,
        T::Floating64 => rdbms::DbDataType::Floating64,
        T::Str => rdbms::DbDataType::Str,
        T::Binary => rdbms::DbDataType::Binary,
        _ => rdbms::DbDataType::Other,
    }
}

fn rows_v2(r: v4::RowSet) -> rdbms::RowSet {
    rdbms::RowSet {
        columns: r
            .columns
            .into_iter()
            .map(|c| rdbms::Column {
                name: c.name,
                data_type: data_type_v2(c.data_type),
            })
            .collect(),
        rows: r
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value_v2).collect())
            .collect(),
    }
}

impl rdbms::Host for HostState {}
impl pg2::Host for HostState {}

impl pg2::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> WResult<Result<Resource<PgConnection>, rdbms::Error>> {
        Ok(self.pg_open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<rdbms::ParameterValue>,
    ) -> WResult<Result<rdbms::RowSet, rdbms::Error>> {
        let conn = self.pg(&this)?;
        let params = match params_v2(params) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(conn
            .query(&statement, &params)
            .await
            .map(rows_v2)
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<rdbms::ParameterValue>,
    ) -> WResult<Result<u64, rdbms::Error>> {
        let conn = self.pg(&this)?;
        let params = match params_v2(params) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(conn.execute(&statement, &params).await.map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<PgConnection>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- spin:postgres/postgres@3.0.0 --------------------------------------------------

impl From<v4::Error> for pg3::Error {
    fn from(e: v4::Error) -> Self {
        match e {
            v4::Error::ConnectionFailed(m) => Self::ConnectionFailed(m),
            v4::Error::BadParameter(m) => Self::BadParameter(m),
            v4::Error::QueryFailed(q) => Self::QueryFailed(error_text(q)),
            v4::Error::ValueConversionFailed(m) => Self::ValueConversionFailed(m),
            v4::Error::Other(m) => Self::Other(m),
        }
    }
}

fn param_v3(p: pg3::ParameterValue) -> v4::ParameterValue {
    use pg3::ParameterValue as P;
    match p {
        P::Boolean(b) => v4::ParameterValue::Boolean(b),
        P::Int8(i) => v4::ParameterValue::Int8(i),
        P::Int16(i) => v4::ParameterValue::Int16(i),
        P::Int32(i) => v4::ParameterValue::Int32(i),
        P::Int64(i) => v4::ParameterValue::Int64(i),
        P::Floating32(f) => v4::ParameterValue::Floating32(f),
        P::Floating64(f) => v4::ParameterValue::Floating64(f),
        P::Str(s) => v4::ParameterValue::Str(s),
        P::Binary(b) => v4::ParameterValue::Binary(b),
        P::Date(d) => v4::ParameterValue::Date(d),
        P::Time(t) => v4::ParameterValue::Time(t),
        P::Datetime(d) => v4::ParameterValue::Datetime(d),
        P::Timestamp(t) => v4::ParameterValue::Timestamp(t),
        P::DbNull => v4::ParameterValue::DbNull,
    }
}

fn value_v3(v: v4::DbValue) -> pg3::DbValue {
    use v4::DbValue as V;
    match v {
        V::Boolean(b) => pg3::DbValue::Boolean(b),
        V::Int8(i) => pg3::DbValue::Int8(i),
        V::Int16(i) => pg3::DbValue::Int16(i),
        V::Int32(i) => pg3::DbValue::Int32(i),
        V::Int64(i) => pg3::DbValue::Int64(i),
        V::Floating32(f) => pg3::DbValue::Floating32(f),
        V::Floating64(f) => pg3::DbValue::Floating64(f),
        V::Str(s) => pg3::DbValue::Str(s),
        V::Binary(b) => pg3::DbValue::Binary(b),
        V::Date(d) => pg3::DbValue::Date(d),
        V::Time(t) => pg3::DbValue::Time(t),
        V::Datetime(d) => pg3::DbValue::Datetime(d),
        V::Timestamp(t) => pg3::DbValue::Timestamp(t),
        V::DbNull => pg3::DbValue::DbNull,
        _ => pg3::DbValue::Unsupported,
    }
}

fn data_type_v3(t: v4::DbDataType) -> pg3::DbDataType {
    use v4::DbDataType as T;
    match t {
        T::Boolean => pg3::DbDataType::Boolean,
        T::Int8 => pg3::DbDataType::Int8,
        T::Int16 => pg3::DbDataType::Int16,
        T::Int32 => pg3::DbDataType::Int32,
        T::Int64 => pg3::DbDataType::Int64,
        T::Floating32 => pg3::DbDataType::Floating32,
        T::Floating64 => pg3::DbDataType::Floating64,
        T::Str => pg3::DbDataType::Str,
        T::Binary => pg3::DbDataType::Binary,
        T::Date => pg3::DbDataType::Date,
        T::Time => pg3::DbDataType::Time,
        T::Datetime => pg3::DbDataType::Datetime,
        T::Timestamp => pg3::DbDataType::Timestamp,
        _ => pg3::DbDataType::Other,
    }
}

fn rows_v3(r: v4::RowSet) -> pg3::RowSet {
    pg3::RowSet {
        columns: r
            .columns
            .into_iter()
            .map(|c| pg3::Column {
                name: c.name,
                data_type: data_type_v3(c.data_type),
            })
            .collect(),
        rows: r
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value_v3).collect())
            .collect(),
    }
}

impl pg3::Host for HostState {}

impl pg3::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> WResult<Result<Resource<PgConnection>, pg3::Error>> {
        Ok(self.pg_open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<pg3::ParameterValue>,
    ) -> WResult<Result<pg3::RowSet, pg3::Error>> {
        let conn = self.pg(&this)?;
        let params: Vec<_> = params.into_iter().map(param_v3).collect();
        Ok(conn
            .query(&statement, &params)
            .await
            .map(rows_v3)
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<pg3::ParameterValue>,
    ) -> WResult<Result<u64, pg3::Error>> {
        let conn = self.pg(&this)?;
        let params: Vec<_> = params.into_iter().map(param_v3).collect();
        Ok(conn.execute(&statement, &params).await.map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<PgConnection>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- spin:postgres/postgres@4.2.0 (4.0.0 and 4.1.0 by semver) -----------------------------

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
    match super::open(&app.postgres, &component, &address, root_ca.as_ref()).await {
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
