//! `fermyon:spin/postgres@2.0.0` (with `rdbms-types`), converting to 4.2.0.

use super::{convert_rows, error_from_v4, map_cases, older_connection, pg2, pg4, rdbms};
use crate::capabilities::bindings::WResult;
use crate::capabilities::postgres::PgConnection;
use crate::state::HostState;
use wasmtime::component::Resource;

error_from_v4!(rdbms::Error);

fn params(params: Vec<rdbms::ParameterValue>) -> Result<Vec<pg4::ParameterValue>, rdbms::Error> {
    use pg4::ParameterValue as Q;
    use rdbms::ParameterValue as P;
    params
        .into_iter()
        .map(|p| match p {
            P::Uint8(_) | P::Uint16(_) | P::Uint32(_) | P::Uint64(_) => {
                Err(rdbms::Error::ValueConversionFailed(
                    "Postgres does not support unsigned integers".into(),
                ))
            }
            p => Ok(map_cases!(p, P => Q,
                carry(Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary),
                unit(DbNull),
                else unreachable!("unsigned integers are refused above"))),
        })
        .collect()
}

fn value(v: pg4::DbValue) -> rdbms::DbValue {
    use pg4::DbValue as V;
    use rdbms::DbValue as W;
    map_cases!(v, V => W,
        carry(Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary),
        unit(DbNull),
        else W::Unsupported)
}

fn data_type(t: pg4::DbDataType) -> rdbms::DbDataType {
    use pg4::DbDataType as T;
    use rdbms::DbDataType as U;
    map_cases!(t, T => U,
        carry(),
        unit(Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary),
        else U::Other)
}

impl rdbms::Host for HostState {}
impl pg2::Host for HostState {}

older_connection!(pg2, rdbms);
