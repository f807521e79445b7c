//! `spin:postgres/postgres@3.0.0`, converting to 4.2.0.

use super::{convert_rows, error_from_v4, map_cases, older_connection, pg3, pg4};
use crate::capabilities::bindings::WResult;
use crate::capabilities::postgres::PgConnection;
use crate::state::HostState;
use wasmtime::component::Resource;

error_from_v4!(pg3::Error);

fn params(params: Vec<pg3::ParameterValue>) -> Result<Vec<pg4::ParameterValue>, pg3::Error> {
    use pg3::ParameterValue as P;
    use pg4::ParameterValue as Q;
    Ok(params
        .into_iter()
        .map(|p| {
            map_cases!(p, P => Q,
                carry(Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary,
                      Date, Time, Datetime, Timestamp),
                unit(DbNull))
        })
        .collect())
}

fn value(v: pg4::DbValue) -> pg3::DbValue {
    use pg3::DbValue as W;
    use pg4::DbValue as V;
    map_cases!(v, V => W,
        carry(Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary,
              Date, Time, Datetime, Timestamp),
        unit(DbNull),
        else W::Unsupported)
}

fn data_type(t: pg4::DbDataType) -> pg3::DbDataType {
    use pg3::DbDataType as U;
    use pg4::DbDataType as T;
    map_cases!(t, T => U,
        carry(),
        unit(Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary,
             Date, Time, Datetime, Timestamp),
        else U::Other)
}

impl pg3::Host for HostState {}

older_connection!(pg3, pg3);
