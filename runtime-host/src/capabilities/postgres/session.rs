//! A guest's PostgreSQL connection: one pooled connection held for the
//! handle's life, running statements and queries with the 4.2.0 types.

use super::{MAX_RESULT_BYTES, PgResult, describe, types};
use crate::capabilities::bindings::p3::spin::postgres4_2_0::postgres as v4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_postgres::types::ToSql;

/// A pooled connection as a guest handle holds it. Clones share it (so a
/// statement can run while the handle stays in the instance's table); it
/// goes back to the pool when the last clone is dropped.
#[derive(Clone)]
pub struct PgConnection(pub(super) Arc<Session>);

pub(super) struct Session {
    pub(super) client: Option<deadpool_postgres::Object>,
    /// Whether the guest's last transaction statement was `BEGIN`/`START`,
    /// so dropping the handle rolls back at once rather than holding locks
    /// until the connection is next used.
    pub(super) in_transaction: AtomicBool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if !*self.in_transaction.get_mut() {
            return;
        }
        let (Some(client), Ok(rt)) = (self.client.take(), tokio::runtime::Handle::try_current())
        else {
            return; // reset anyway before its next use
        };
        rt.spawn(async move {
            let _ = client.batch_execute("ROLLBACK").await;
        });
    }
}

/// A placeholder error for a parameter that cannot be sent.
fn bad_parameter(e: anyhow::Error) -> String {
    format!("{e:#}")
}

fn query_failed(e: tokio_postgres::Error) -> v4::Error {
    let text = describe(&e);
    v4::Error::QueryFailed(match e.as_db_error() {
        None => v4::QueryError::Text(text),
        Some(db) => {
            let mut extras = Vec::new();
            let mut extra = |name: &str, value: Option<String>| {
                if let Some(v) = value {
                    extras.push((name.to_string(), v));
                }
            };
            extra("column", db.column().map(Into::into));
            extra("constraint", db.constraint().map(Into::into));
            extra("routine", db.routine().map(Into::into));
            extra("hint", db.hint().map(Into::into));
            extra("table", db.table().map(Into::into));
            extra("datatype", db.datatype().map(Into::into));
            extra("schema", db.schema().map(Into::into));
            extra("file", db.file().map(Into::into));
            extra("line", db.line().map(|l| l.to_string()));
            extra("where_", db.where_().map(Into::into));
            v4::QueryError::DbError(v4::DbError {
                as_text: text,
                severity: db.severity().to_string(),
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(Into::into),
                extras,
            })
        }
    })
}

/// How `statement` changes the transaction state, judged by its first word.
fn transaction_effect(statement: &str) -> Option<bool> {
    let mut words = statement
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty());
    let first = words.next()?.to_ascii_uppercase();
    match first.as_str() {
        "BEGIN" | "START" => Some(true),
        "COMMIT" | "END" | "ABORT" => Some(false),
        "ROLLBACK" => match words.next().map(|w| w.to_ascii_uppercase()) {
            Some(w) if w == "TO" => None, // ROLLBACK TO SAVEPOINT
            Some(w) if w == "PREPARED" => None,
            _ => Some(false),
        },
        "PREPARE" => Some(false), // PREPARE TRANSACTION ends it too
        _ => None,
    }
}

impl PgConnection {
    fn client(&self) -> &deadpool_postgres::Object {
        self.0.client.as_ref().expect("present until drop")
    }

    fn note(&self, statement: &str) {
        if let Some(open) = transaction_effect(statement) {
            self.0.in_transaction.store(open, Ordering::Relaxed);
        }
    }

    /// Runs a statement; how many rows it affected.
    pub async fn execute(&self, statement: &str, params: &[v4::ParameterValue]) -> PgResult<u64> {
        let params = params
            .iter()
            .map(types::parameter)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| v4::Error::ValueConversionFailed(bad_parameter(e)))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.note(statement);
        self.client()
            .execute(statement, &refs)
            .await
            .map_err(query_failed)
    }

    /// Runs a query; its columns (known even when no row comes back) and rows.
    pub async fn query(
        &self,
        statement: &str,
        params: &[v4::ParameterValue],
    ) -> PgResult<v4::RowSet> {
        use futures::TryStreamExt as _;
        let params = params
            .iter()
            .map(types::parameter)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| v4::Error::BadParameter(bad_parameter(e)))?;
        self.note(statement);
        let client = self.client();
        let prepared = client.prepare(statement).await.map_err(query_failed)?;
        let columns = prepared
            .columns()
            .iter()
            .map(|c| v4::Column {
                name: c.name().to_string(),
                data_type: types::data_type(c.type_()),
            })
            .collect();
        let stream = client
            .query_raw(&prepared, params)
            .await
            .map_err(query_failed)?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        let mut size = 0usize;
        while let Some(row) = stream.try_next().await.map_err(query_failed)? {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let v = types::value(&row, i)
                    .map_err(|e| v4::Error::QueryFailed(v4::QueryError::Text(format!("{e:#}"))))?;
                size += types::memory_size(&v);
                values.push(v);
            }
            size += std::mem::size_of::<Vec<v4::DbValue>>();
            if size > MAX_RESULT_BYTES {
                return Err(v4::Error::QueryFailed(v4::QueryError::Text(format!(
                    "query result exceeds the host's limit of {} MiB for one statement; \
                     select fewer rows or smaller values (LIMIT, paging)",
                    MAX_RESULT_BYTES >> 20
                ))));
            }
            rows.push(values);
        }
        Ok(v4::RowSet { columns, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_statements_are_recognised() {
        assert_eq!(transaction_effect("BEGIN"), Some(true));
        assert_eq!(transaction_effect("  begin transaction;"), Some(true));
        assert_eq!(
            transaction_effect("START TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            Some(true)
        );
        assert_eq!(transaction_effect("COMMIT"), Some(false));
        assert_eq!(transaction_effect("rollback"), Some(false));
        assert_eq!(transaction_effect("ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(transaction_effect("SELECT 1"), None);
        assert_eq!(transaction_effect(""), None);
    }
}
