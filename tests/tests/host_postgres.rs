//! Outbound PostgreSQL against a real PostgreSQL: the p2 fixture (spin-sdk
//! 5.2) runs statement scripts through `spin:postgres@4.0.0` (served by the
//! host's 4.2.0 by semver), `spin:postgres@3.0.0` and
//! `fermyon:spin/postgres@2.0.0` (see the fixture's `/pg/:version` route);
//! the p3 fixture (spin-sdk 7) uses `spin:postgres@4.2.0`'s async functions.

use app_tests::{Host, PATIENCE, PostgresServer, free_port, request, wasm};
use serde_json::{Value, json};

/// A host with the p2 fixture at `/ok/...` (allowed `allowed`) and at
/// `/denied/...` (allowed only another port), and the p3 fixture at
/// `/p3/...` (allowed `allowed`).
fn start(allowed: &str) -> Host {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "pg"
[[trigger.http]]
route = "/ok/..."
component = "ok"
[[trigger.http]]
route = "/denied/..."
component = "denied"
[[trigger.http]]
route = "/p3/..."
component = "p3"
[component.p3]
source = "{p3}"
allowed_outbound_hosts = ["{allowed}"]
[component.ok]
source = "{p2}"
allowed_outbound_hosts = ["{allowed}"]
[component.denied]
source = "{p2}"
allowed_outbound_hosts = ["postgres://127.0.0.1:1"]
"#,
        p2 = wasm("fixture-p2-app").display(),
        p3 = wasm("fixture-p3-app").display(),
    );
    Host::start(&manifest, &[])
}

/// The shared PostgreSQL server, a fresh database's URL on it, and a host
/// [`start`]ed allowed to reach it.
fn fresh() -> (&'static PostgresServer, String, Host) {
    let pg = PostgresServer::shared();
    let url = pg.fresh_database();
    let host = start(&pg.host_entry());
    (pg, url, host)
}

/// Runs `statements` on `address` through `/{component}/pg/{version}`; one
/// result per statement.
async fn script(
    host: &Host,
    component: &str,
    version: &str,
    address: &str,
    statements: Value,
) -> Vec<Value> {
    let body = json!({ "address": address, "statements": statements });
    let r = request(
        "POST",
        host.url(&format!("/{component}/pg/{version}")),
        body.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().expect("a list of results").clone()
}

fn exec(sql: &str, params: Value) -> Value {
    json!({ "sql": sql, "params": params })
}

fn query(sql: &str, params: Value) -> Value {
    json!({ "sql": sql, "params": params, "query": true })
}

fn on(conn: u64, mut statement: Value) -> Value {
    statement["conn"] = json!(conn);
    statement
}

fn error_of(result: &Value) -> String {
    result["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {result}"))
        .to_string()
}

fn rows(result: &Value) -> Vec<Value> {
    result["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("expected rows, got {result}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_every_mapped_type_round_trip() {
    let (_, url, host) = fresh();
    let create = exec(
        "CREATE TABLE t (id int4 PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4,
           f8 float8, s text, vc varchar(20), by bytea, d date, tm time, ts timestamp, u uuid,
           j jsonb, n numeric, r4 int4range, r8 int8range, a4 int4[], a8 int8[], sa text[],
           na numeric[], iv interval)",
        json!([]),
    );
    let insert = exec(
        "INSERT INTO t VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23)",
        json!([
            {"int32": 1}, {"bool": true}, {"int16": -2}, {"int32": 40000}, {"int64": 9_000_000_000i64},
            {"float32": 1.5}, {"float64": 2.25}, {"str": "héllo"}, {"str": "vc"}, {"binary": [0, 1, 255]},
            {"date": [1901, 1, 2]}, {"time": [14, 15, 16, 17_000_000]},
            {"datetime": [1999, 7, 12, 4, 3, 2, 1_000_000]},
            {"uuid": "fedcba98-fedc-fedc-fedc-fedcba987654"}, {"jsonb": {"k": [1, null]}},
            {"decimal": "123456789.123456789"}, {"range_int32": [[1, "inclusive"], [10, "exclusive"]]},
            {"range_int64": [[123123123123i64, "inclusive"], null]}, {"array_int32": [1, null, 3]},
            {"array_int64": [40000000000i64]}, {"array_str": ["a", null]},
            {"array_decimal": ["1.5", null]}, {"interval": [123456, 10, 200]}
        ]),
    );
    // db-null fits a column of any type.
    let nulls = exec(
        "INSERT INTO t VALUES (2,$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)",
        json!(vec![json!({"null": null}); 22]),
    );
    let select = query("SELECT * FROM t ORDER BY id", json!([]));
    let out = script(
        &host,
        "ok",
        "pg4",
        &url,
        json!([create, insert, nulls, select]),
    )
    .await;
    assert_eq!(out[1], json!({ "affected": 1 }), "{out:?}");
    assert_eq!(out[2], json!({ "affected": 1 }), "{out:?}");
    let result = &out[3];
    let types: Vec<&str> = result["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Int32",
            "Boolean",
            "Int16",
            "Int32",
            "Int64",
            "Floating32",
            "Floating64",
            "Str",
            "Str",
            "Binary",
            "Date",
            "Time",
            "Datetime",
            "Uuid",
            "Jsonb",
            "Decimal",
            "RangeInt32",
            "RangeInt64",
            "ArrayInt32",
            "ArrayInt64",
            "ArrayStr",
            "ArrayDecimal",
            "Interval"
        ]
    );
    let got = rows(result);
    assert_eq!(
        got[0],
        json!([
            "Int32(1)",
            "Boolean(true)",
            "Int16(-2)",
            "Int32(40000)",
            "Int64(9000000000)",
            "Floating32(1.5)",
            "Floating64(2.25)",
            "Str(\"héllo\")",
            "Str(\"vc\")",
            "Binary([0, 1, 255])",
            "Date((1901, 1, 2))",
            "Time((14, 15, 16, 17000000))",
            "Datetime((1999, 7, 12, 4, 3, 2, 1000000))",
            "Uuid(\"fedcba98-fedc-fedc-fedc-fedcba987654\")",
            { "Jsonb": "{\"k\":[1,null]}" },
            "Decimal(\"123456789.123456789\")",
            "RangeInt32((Some((1, RangeBoundKind::Inclusive)), Some((10, RangeBoundKind::Exclusive))))",
            "RangeInt64((Some((123123123123, RangeBoundKind::Inclusive)), None))",
            "ArrayInt32([Some(1), None, Some(3)])",
            "ArrayInt64([Some(40000000000)])",
            "ArrayStr([Some(\"a\"), None])",
            "ArrayDecimal([Some(\"1.5\"), None])",
            "Interval(Interval { micros: 123456, days: 10, months: 200 })"
        ])
    );
    let mut expected_nulls = vec![json!("Int32(2)")];
    expected_nulls.extend(vec![json!("DbNull"); 22]);
    assert_eq!(got[1], json!(expected_nulls));

    // Columns are known even when no row comes back; a type without a
    // mapping comes back as its raw bytes; a timestamptz as UTC.
    let out = script(
        &host,
        "ok",
        "pg4",
        &url,
        json!([
            query("SELECT id, s FROM t WHERE false", json!([])),
            query(
                "SELECT '127.0.0.1'::inet AS addr, '{\"a\":1}'::json AS j, \
                 '2020-01-02 03:04:05+02'::timestamptz AS tz",
                json!([])
            ),
        ]),
    )
    .await;
    assert_eq!(
        out[0],
        json!({ "columns": [["id", "Int32"], ["s", "Str"]], "rows": [] })
    );
    assert_eq!(
        out[1]["columns"],
        json!([
            ["addr", "Other(\"inet\")"],
            ["j", "Other(\"json\")"],
            ["tz", "Datetime"]
        ])
    );
    let row = &rows(&out[1])[0];
    assert!(
        row[0].as_str().unwrap().starts_with("Unsupported(["),
        "{row}"
    );
    assert_eq!(row[2], "Datetime((2020, 1, 2, 1, 4, 5, 0))");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_checked_against_their_columns() {
    let (_, url, host) = fresh();
    let out = script(
        &host,
        "ok",
        "pg4",
        &url,
        json!([
            exec("CREATE TABLE n (big int8, small int2)", json!([])),
            // An int64 fits a BIGINT column.
            exec("INSERT INTO n (big) VALUES ($1)", json!([{"int64": 5}])),
            query("SELECT big FROM n WHERE big = $1", json!([{"int64": 5}])),
            // As in Spin, an int32 does not (no implicit widening).
            exec("INSERT INTO n (big) VALUES ($1)", json!([{"int32": 5}])),
            // A malformed value never reaches the database.
            exec("INSERT INTO n (big) VALUES ($1)", json!([{"uuid": "nope"}])),
            query("SELECT $1::uuid", json!([{"uuid": "nope"}])),
            // The database's own refusal comes back structured.
            exec("INSERT INTO missing VALUES (1)", json!([])),
        ]),
    )
    .await;
    assert_eq!(out[1], json!({ "affected": 1 }));
    assert_eq!(rows(&out[2]), [json!(["Int64(5)"])]);
    assert!(error_of(&out[3]).contains("QueryFailed"), "{}", out[3]);
    assert!(
        error_of(&out[4]).starts_with("ValueConversionFailed"),
        "{}",
        out[4]
    );
    assert!(error_of(&out[5]).starts_with("BadParameter"), "{}", out[5]);
    let e = error_of(&out[6]);
    assert!(
        e.contains("DbError") && e.contains("code: \"42P01\""),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_keeps_its_transaction_across_calls() {
    let (pg, url, host) = fresh();
    let db = url.rsplit('/').next().unwrap().to_string();
    let count = || query("SELECT count(*) FROM t", json!([]));
    let out = script(
        &host,
        "ok",
        "pg4",
        &url,
        json!([
            exec("CREATE TABLE t (x int8)", json!([])),
            on(0, exec("BEGIN", json!([]))),
            on(0, exec("INSERT INTO t VALUES ($1)", json!([{"int64": 1}]))),
            on(1, count()), // another connection does not see it yet
            on(0, count()), // the same one does
            on(0, exec("COMMIT", json!([]))),
            on(1, count()),
            on(0, exec("BEGIN", json!([]))),
            on(0, exec("INSERT INTO t VALUES ($1)", json!([{"int64": 2}]))),
            on(0, exec("ROLLBACK", json!([]))),
            on(1, count()),
        ]),
    )
    .await;
    let counts: Vec<&Value> = [3, 4, 6, 10]
        .iter()
        .map(|&i| &out[i]["rows"][0][0])
        .collect();
    assert_eq!(
        counts,
        ["Int64(0)", "Int64(1)", "Int64(1)", "Int64(1)"],
        "{out:?}"
    );

    // A transaction the guest leaves open ends with its connection: rolled
    // back, its locks released at once.
    let out = script(
        &host,
        "ok",
        "pg4",
        &url,
        json!([
            exec("BEGIN", json!([])),
            exec("INSERT INTO t VALUES (3)", json!([])),
        ]),
    )
    .await;
    assert_eq!(out[1], json!({ "affected": 1 }), "{out:?}");
    let (ok, text) = pg.psql(
        &db,
        "SET lock_timeout = '5s'; ALTER TABLE t ADD COLUMN y int; SELECT count(*) FROM t",
    );
    assert!(ok, "{text}");
    assert_eq!(text, "1");
    // The pooled connection is clean for the next guest.
    let out = script(&host, "ok", "pg4", &url, json!([count()])).await;
    assert_eq!(rows(&out[0]), [json!(["Int64(1)"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_addresses_connect_and_credentials_stay_secret() {
    let (pg, url, host) = fresh();
    let db = url.rsplit('/').next().unwrap().to_string();
    let key_value = format!(
        "host=127.0.0.1 port={} user={} password={} dbname={db}",
        pg.port,
        PostgresServer::USER,
        PostgresServer::PASSWORD
    );
    for address in [&url, &key_value] {
        let out = script(
            &host,
            "ok",
            "pg4",
            address,
            json!([query("SELECT 1", json!([]))]),
        )
        .await;
        assert_eq!(rows(&out[0]), [json!(["Int32(1)"])], "{address}");

        let out = script(
            &host,
            "denied",
            "pg4",
            address,
            json!([query("SELECT 1", json!([]))]),
        )
        .await;
        let e = error_of(&out[0]);
        assert_eq!(
            e,
            format!(
                "ConnectionFailed(\"address postgres://127.0.0.1:{} is not permitted\")",
                pg.port
            )
        );
    }
    // Every version refuses the same way.
    for version in ["pg3", "pg2"] {
        let out = script(
            &host,
            "denied",
            version,
            &url,
            json!([query("SELECT 1", json!([]))]),
        )
        .await;
        assert!(
            error_of(&out[0]).contains("is not permitted"),
            "{version}: {}",
            out[0]
        );
    }
    // A wrong password: connection-failed, naming the server, not the secret.
    let wrong = url.replace(PostgresServer::PASSWORD, "not-the-password-xyz");
    let out = script(
        &host,
        "ok",
        "pg4",
        &wrong,
        json!([query("SELECT 1", json!([]))]),
    )
    .await;
    let e = error_of(&out[0]);
    assert!(e.starts_with("ConnectionFailed"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{}", pg.port)), "{e}");
    assert!(!e.contains("not-the-password-xyz"), "{e}");
    let logs = host.stdout() + &host.stderr();
    assert!(!logs.contains(PostgresServer::PASSWORD), "{logs}");
    assert!(!logs.contains("not-the-password-xyz"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_fails_fast() {
    // Nothing listens: refused at once.
    let refused = free_port();
    // Accepts connections but never answers: the connect timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let host = start("postgres://127.0.0.1:*");
    // What the error says shows why it ended: refused at once, or the
    // host's own connect timeout (5 s, named in the error), not the test's
    // patience; the deadline around the call only catches a hang.
    for (port, cause) in [(refused, "refused"), (silent_port, "no answer within 5s")] {
        let address = format!("postgres://postgres:pw@127.0.0.1:{port}/db?sslmode=disable");
        let out = tokio::time::timeout(
            PATIENCE,
            script(
                &host,
                "ok",
                "pg4",
                &address,
                json!([query("SELECT 1", json!([]))]),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{port}: the call hung"));
        let e = error_of(&out[0]);
        assert!(e.starts_with("ConnectionFailed"), "{e}");
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(e.to_lowercase().contains(cause), "{port}: {e}");
    }
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_interfaces_see_what_their_version_has() {
    let (_, url, host) = fresh();
    let setup = script(
        &host,
        "ok",
        "pg4",
        &url,
        json!([
            exec("CREATE TABLE t (i int8, s text, d date, u uuid)", json!([])),
            exec(
                "INSERT INTO t VALUES (7, 'seven', '2024-02-29', 'fedcba98-fedc-fedc-fedc-fedcba987654')",
                json!([])
            ),
        ]),
    )
    .await;
    assert_eq!(setup[1], json!({ "affected": 1 }));

    let select = query(
        "SELECT i, s, d, u FROM t WHERE i = $1",
        json!([{"int64": 7}]),
    );
    let out = script(&host, "ok", "pg3", &url, json!([select.clone()])).await;
    assert_eq!(
        out[0]["columns"],
        json!([["i", "Int64"], ["s", "Str"], ["d", "Date"], ["u", "Other"]])
    );
    assert_eq!(
        rows(&out[0]),
        [json!([
            "Int64(7)",
            "Str(\"seven\")",
            "Date((2024, 2, 29))",
            "Unsupported"
        ])]
    );

    let out = script(&host, "ok", "pg2", &url, json!([select])).await;
    assert_eq!(
        out[0]["columns"],
        json!([["i", "Int64"], ["s", "Str"], ["d", "Other"], ["u", "Other"]])
    );
    assert_eq!(
        rows(&out[0]),
        [json!([
            "Int64(7)",
            "Str(\"seven\")",
            "Unsupported",
            "Unsupported"
        ])]
    );

    // Transactions and errors work the same through every version.
    for version in ["pg3", "pg2"] {
        let out = script(
            &host,
            "ok",
            version,
            &url,
            json!([
                exec("BEGIN", json!([])),
                exec(
                    "INSERT INTO t (i, s) VALUES ($1, $2)",
                    json!([{"int64": 8}, {"null": null}])
                ),
                on(1, query("SELECT count(*) FROM t", json!([]))),
                exec("ROLLBACK", json!([])),
                exec("INSERT INTO missing VALUES (1)", json!([])),
            ]),
        )
        .await;
        assert_eq!(out[1], json!({ "affected": 1 }), "{version}: {out:?}");
        assert_eq!(rows(&out[2]), [json!(["Int64(1)"])], "{version}");
        let e = error_of(&out[4]);
        assert!(
            e.starts_with("QueryFailed(") && e.contains("missing"),
            "{version}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_interface_serves_spin_sdk_7() {
    let (pg, url, host) = fresh();
    let run = |address: String, statements: Value| {
        let url = host.url("/p3/pg");
        async move {
            let body = json!({ "address": address, "statements": statements });
            let r = request("POST", url, body.to_string()).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json().as_array().expect("a list of results").clone()
        }
    };
    let out = run(
        url.clone(),
        json!([
            exec("CREATE TABLE t (i int8, s text)", json!([])),
            exec("BEGIN", json!([])),
            exec(
                "INSERT INTO t VALUES ($1, $2), ($3, $4)",
                json!([{"int64": 1}, {"str": "one"}, {"int64": 2}, {"null": null}])
            ),
            exec("COMMIT", json!([])),
            query("SELECT i, s FROM t ORDER BY i", json!([])),
            query("SELECT i FROM t WHERE false", json!([])),
            exec("INSERT INTO missing VALUES (1)", json!([])),
        ]),
    )
    .await;
    assert_eq!(out[2], json!({ "affected": 2 }), "{out:?}");
    assert_eq!(
        out[4],
        json!({
            "columns": [["i", "Int64"], ["s", "Str"]],
            "rows": [["Int64(1)", "Str(\"one\")"], ["Int64(2)", "DbNull"]],
        })
    );
    assert_eq!(out[5], json!({ "columns": [["i", "Int64"]], "rows": [] }));
    assert!(error_of(&out[6]).contains("42P01"), "{}", out[6]);

    let elsewhere = url.replace(&pg.port.to_string(), &free_port().to_string());
    let out = run(elsewhere, json!([])).await;
    assert!(error_of(&out[0]).contains("is not permitted"), "{}", out[0]);
}
