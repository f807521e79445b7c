//! Unit tests of the SQLite pool: result caps and writers taking turns.

use super::*;

/// A fresh database file, removed afterwards.
struct TempDb(PathBuf, Arc<Database>);
impl TempDb {
    fn new() -> TempDb {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rh-sql-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let db = Database::new(dir.join("t.db"), Arc::default()).unwrap();
        TempDb(dir, db)
    }
}
impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` rows of `expr`, without a table.
fn rows_of(expr: &str, n: u64) -> String {
    format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {n}) \
         SELECT {expr} FROM c"
    )
}

#[test]
fn a_second_writer_waits_for_the_first_transaction_to_end() {
    let t = TempDb::new();
    let a = t.1.checkout().unwrap();
    a.execute("CREATE TABLE t (x INTEGER)", vec![]).unwrap();
    a.execute("BEGIN", vec![]).unwrap();
    a.execute("INSERT INTO t VALUES (1)", vec![]).unwrap();
    let b = t.1.checkout().unwrap();
    let writer =
        std::thread::spawn(move || b.execute("INSERT INTO t VALUES (2)", vec![]).map(|_| ()));
    // Readers are not held up by the open transaction.
    let c = t.1.checkout().unwrap();
    let seen = c.execute("SELECT count(*) FROM t", vec![]).unwrap();
    assert_eq!(seen.rows, vec![vec![Value::Integer(0)]]);
    a.execute("COMMIT", vec![]).unwrap();
    writer
        .join()
        .unwrap()
        .expect("the second writer gets its turn");
    let seen = c.execute("SELECT x FROM t ORDER BY x", vec![]).unwrap();
    assert_eq!(
        seen.rows,
        vec![vec![Value::Integer(1)], vec![Value::Integer(2)]]
    );
}

#[test]
fn results_past_the_cap_fail_naming_it() {
    let t = TempDb::new();
    let conn = t.1.checkout().unwrap();
    // 100 rows of 1 MiB: more than the 64 MiB the host holds for a guest.
    let err = conn
        .execute(&rows_of("zeroblob(1048576)", 100), vec![])
        .err()
        .expect("a result past the cap fails");
    let SqlError::Io(message) = err else {
        panic!("{err:?}")
    };
    assert!(message.contains("64 MiB"), "{message}");
    // Many tiny rows count too (each value costs memory, not just bytes).
    assert!(conn.execute(&rows_of("NULL", 4_000_000), vec![]).is_err());
    // Below the cap all is well, and the connection is still usable.
    let r = conn.execute(&rows_of("x", 1000), vec![]).unwrap();
    assert_eq!(r.rows.len(), 1000);
    assert_eq!(r.rows[999], vec![Value::Integer(1000)]);
}
