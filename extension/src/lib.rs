//! pg_webhooks: the Postgres side of webhooks. Fan-out, claim, completion
//! and delivery policy are SQL (`sql/`, included below); this crate holds
//! what SQL cannot do well:
//! - `capture`: the capture engine, the C triggers that turn tracked tables'
//!   changes into events;
//! - `row_json`: the JSON of rows, as `to_jsonb` makes it but faster;
//! - `planner`: the planner hook that keeps JIT off capture's INSERTs;
//! - `guc`: the `webhooks.*` settings; `notify`: waking pollers;
//! - pure modules, without Postgres types so their tests are plain unit
//!   tests: `sign` (HMAC signatures, secrets), `pattern` (event names and
//!   patterns), `endpoint_url` (endpoint URLs as the poller parses them),
//!   `ids` (delivery ids).
//!
//! This file starts the extension (`_PG_init`), declares the SQL functions
//! over the pure modules and the uuid crate (and
//! `search_path_ends_with_pg_temp`, capture's rule for payload functions,
//! for the SQL that checks them), which only convert arguments and turn
//! errors into SQLSTATEs, and holds the `#[pg_test]`s, which
//! `cargo pgrx test` runs inside a server.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

pub mod capture;
pub mod endpoint_url;
pub mod guc;
pub mod ids;
pub mod notify;
pub mod pattern;
pub mod planner;
pub mod row_json;
pub mod sign;

::pgrx::pg_module_magic!(name, version);

// The extension's SQL, one file per concern (sql/01_schema.sql says what
// each holds). Each requires the one before, so the install script runs them
// in this order, the first after every function written in Rust (it
// comments on them, and its tables call uuid_v7()).
extension_sql_file!(
    "../../sql/01_schema.sql",
    name = "pg_webhooks_schema",
    requires = [
        guc::capture_enabled,
        check_event_name,
        check_patterns,
        check_secret,
        delivery_id,
        event_matches,
        generate_secret,
        guc::https_required,
        guc::max_endpoints_per_tenant,
        normalized_url,
        notify::notify_once,
        redacted_url,
        refused_address,
        row_json::row_jsonb_type,
        search_path_ends_with_pg_temp,
        sign_hex,
        sign_standard,
        url_parts,
        uuid_v7,
    ]
);
extension_sql_file!(
    "../../sql/02_capture.sql",
    name = "pg_webhooks_capture",
    requires = ["pg_webhooks_schema"]
);
extension_sql_file!(
    "../../sql/03_endpoints.sql",
    name = "pg_webhooks_endpoints",
    requires = ["pg_webhooks_capture"]
);
extension_sql_file!(
    "../../sql/04_delivery.sql",
    name = "pg_webhooks_delivery",
    requires = ["pg_webhooks_endpoints"]
);
extension_sql_file!(
    "../../sql/05_operations.sql",
    name = "pg_webhooks_operations",
    requires = ["pg_webhooks_delivery"]
);
extension_sql_file!(
    "../../sql/06_retention.sql",
    name = "pg_webhooks_retention",
    requires = ["pg_webhooks_operations"]
);
extension_sql_file!(
    "../../sql/07_privileges.sql",
    name = "pg_webhooks_privileges",
    requires = ["pg_webhooks_retention"]
);
// Last (finalize): after the grants of 07, which must not reach its functions.
extension_sql_file!(
    "../../sql/08_ddl_sync.sql",
    name = "pg_webhooks_ddl_sync",
    requires = ["pg_webhooks_privileges"],
    finalize
);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx puts a Rust backtrace in an error's DETAIL when the server's
    // environment asks for backtraces (RUST_BACKTRACE): internals that no
    // client should see. RUST_LIB_BACKTRACE wins over RUST_BACKTRACE for
    // captured backtraces, and this runs before any is captured.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    guc::register();
    planner::install_planner_hook();
    capture::register_callbacks();
}

fn invalid(message: String) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message);
}

/// Standard Webhooks signature `v1,<base64>` of `msg_id.timestamp.body`.
#[pg_extern(immutable, strict, parallel_safe)]
fn sign_standard(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> String {
    sign::standard(secret, msg_id, timestamp, body.as_bytes()).unwrap_or_else(|e| invalid(e.to_string()))
}

/// Lowercase hex HMAC-SHA256 of the body, keyed with the secret's UTF-8 bytes.
#[pg_extern(immutable, strict, parallel_safe)]
fn sign_hex(secret: &str, body: &str) -> String {
    sign::hex(secret, body.as_bytes())
}

/// Raises 22023 unless the secret can sign; returns it unchanged.
#[pg_extern(immutable, strict, parallel_safe)]
fn check_secret(secret: &str) -> &str {
    if let Err(e) = sign::standard_key(secret) {
        invalid(e.to_string());
    }
    secret
}

/// A fresh `whsec_` secret from the operating system's CSPRNG.
#[pg_extern(volatile, parallel_safe)]
fn generate_secret() -> String {
    sign::generate_secret().unwrap_or_else(|e| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("could not generate a secret: {e}")
        );
    })
}

/// A time-ordered UUID (version 7): event and delivery ids sort by creation.
#[pg_extern(volatile, parallel_safe)]
fn uuid_v7() -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes())
}

/// The id fan-out gives the delivery of an event to an endpoint (see ids.rs).
#[pg_extern(immutable, strict, parallel_safe)]
fn delivery_id(event_id: pgrx::Uuid, endpoint_id: i64) -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(ids::delivery_id(*event_id.as_bytes(), endpoint_id))
}

/// Raises 22023 unless every element is a valid event pattern; returns the array.
#[pg_extern(immutable, strict, parallel_safe)]
fn check_patterns(patterns: Vec<Option<String>>) -> Vec<Option<String>> {
    if patterns.is_empty() {
        invalid("events must list at least one event name or pattern (use '{*}' for all)".into());
    }
    for p in &patterns {
        let p = p
            .as_deref()
            .unwrap_or_else(|| invalid("events must not contain NULL".into()));
        if let Err(e) = pattern::validate_pattern(p) {
            invalid(format!("invalid event pattern: {e}"));
        }
    }
    patterns
}

/// Scheme and host of an endpoint URL as the poller will parse it; raises
/// 22023 for anything the poller could not send to.
#[pg_extern(immutable, strict, parallel_safe)]
fn url_parts(url: &str) -> pgrx::iter::TableIterator<'static, (name!(scheme, String), name!(host, String))> {
    match endpoint_url::parse(url) {
        Ok(parts) => pgrx::iter::TableIterator::once(parts),
        Err(e) => {
            let shown: String = url.chars().take(200).collect();
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid endpoint URL {shown:?}: {e}"),
                "url_parts",
            )
            .set_hint("Use an absolute http or https URL such as https://example.com/hooks.")
            .report(pgrx::PgLogLevel::ERROR);
            unreachable!("an ERROR report does not return")
        }
    }
}

/// An endpoint URL as the poller's parser writes it; raises 22023 as
/// url_parts does.
#[pg_extern(immutable, strict, parallel_safe)]
fn normalized_url(url: &str) -> String {
    match endpoint_url::normalize(url) {
        Ok(normalized) => normalized,
        Err(e) => invalid(format!("invalid endpoint URL: {e}")),
    }
}

/// Why the poller's SSRF guard will refuse this endpoint URL's host (an
/// address literal or localhost in a special-purpose block), or NULL.
#[pg_extern(immutable, strict, parallel_safe)]
fn refused_address(url: &str) -> Option<String> {
    endpoint_url::address_refusal(url)
}

/// An endpoint URL as readers see it (path, query and fragment redacted).
#[pg_extern(immutable, strict, parallel_safe)]
fn redacted_url(url: &str) -> String {
    endpoint_url::redact(url)
}

/// Does a search_path value (as a function's `SET search_path` stores it)
/// name `pg_temp` last, as PostgreSQL reads it? `"PG_TEMP"` (another
/// schema) or `'a, pg_temp'` (one schema of that name) do not.
#[pg_extern(immutable, strict, parallel_safe)]
fn search_path_ends_with_pg_temp(path: &str) -> bool {
    capture::search_path_ends_with_pg_temp(path)
}

/// Raises 22023 unless the text is a valid event name; returns it.
#[pg_extern(immutable, strict, parallel_safe)]
fn check_event_name(name: &str) -> &str {
    if let Err(e) = pattern::validate_event_name(name) {
        invalid(format!("invalid event name: {e}"));
    }
    name
}

/// Does the event name match any of the patterns?
#[pg_extern(immutable, strict, parallel_safe)]
fn event_matches(patterns: Array<'_, &str>, event: &str) -> bool {
    pattern::matches_any(patterns.iter().flatten(), event)
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn sign_standard_matches_spec_vector_in_sql() {
        let sig = Spi::get_one::<String>(
            "SELECT webhooks.sign_standard('whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD', \
             'msg_27UH4WbU6Z5A5EzD8u03UvzRbpk', 1649367553, \
             '{\"email\":\"test@example.com\",\"username\":\"test_user\"}')",
        );
        assert_eq!(
            sig,
            Ok(Some("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".to_string()))
        );
    }

    #[pg_test(error = "invalid event pattern: \"order..x\" has an empty segment")]
    fn bad_pattern_is_an_error() {
        let _ = Spi::run("SELECT webhooks.check_patterns('{order..x}')");
    }

    #[pg_test]
    fn jsonb_previous_keeps_what_differs_or_is_missing() {
        let previous = Spi::get_one::<String>(
            r#"SELECT webhooks.jsonb_previous(
                 '{"a": 1, "b": "x", "c": [1, 2], "d": null, "e": 1.0, "f": {"g": 1}, "h": "", "i": true, "j": 5}',
                 '{"a": 2, "b": "x", "c": [1, 2], "d": null, "e": 1.00, "f": {"g": 2}, "h": "", "i": false}')::text"#,
        );
        assert_eq!(
            previous,
            Ok(Some(r#"{"a": 1, "f": {"g": 1}, "i": true, "j": 5}"#.to_string()))
        );
        let nothing = Spi::get_one::<bool>(
            r#"SELECT webhooks.jsonb_previous('{"a": [1, {"b": null}], "n": 10}', '{"n": 1e1, "a": [1, {"b": null}]}') IS NULL"#,
        );
        assert_eq!(nothing, Ok(Some(true)));
    }

    #[pg_test(error = "webhooks.jsonb_previous: both arguments must be JSON objects")]
    fn jsonb_previous_refuses_non_objects() {
        let _ = Spi::run("SELECT webhooks.jsonb_previous('[1]', '{}')");
    }

    #[pg_test]
    fn row_jsonb_is_to_jsonb_for_generated_rows() {
        // 2,000 rows of random values (NULLs, extremes, special floats) of
        // every type row_jsonb handles, in two time zones.
        for zone in ["UTC", "America/St_Johns"] {
            Spi::run(&format!("SET LOCAL TimeZone = '{zone}'")).expect("time zone");
            let differing = Spi::get_one::<i64>(
                "WITH r AS (
                   SELECT g AS id,
                          (CASE WHEN random() < 0.1 THEN NULL ELSE (random() * 65535 - 32768)::int END)::int2 AS a,
                          (random() * 4e9 - 2e9)::int8::int4 AS b,
                          (random() * 1e18)::int8 * (CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END) AS c,
                          CASE g % 5 WHEN 0 THEN 'NaN'::numeric WHEN 1 THEN 'Infinity' ELSE round((random() * 1e6)::numeric, g % 9) END AS n,
                          CASE g % 7 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN '-Infinity' WHEN 2 THEN 1e-300 ELSE random() * 1e10 END AS f8,
                          (random() * 1000)::float4 AS f4,
                          random() < 0.5 AS ok,
                          date '2000-01-01' + (random() * 20000)::int AS d,
                          timestamp '1990-01-01' + random() * interval '60 years' AS t,
                          timestamptz '1890-01-01 00:00+00' + random() * interval '200 years' AS tz,
                          md5(g::text) || E'\\ \" \t' || chr(1 + g % 1000) AS txt,
                          left(md5(g::text), 8)::varchar(8) AS vc, 'ab'::char(4) AS ch, md5(g::text)::name AS nm,
                          md5(g::text)::uuid AS u, time '00:00' + random() * interval '24 hours' AS tm,
                          random() * interval '1000 days' AS iv, decode(md5(g::text), 'hex') AS bin,
                          '10.0.0.1'::inet + g AS ip
                     FROM generate_series(1, 1000) g)
                 SELECT count(*) FROM r WHERE webhooks.row_jsonb(r)::text IS DISTINCT FROM to_jsonb(r)::text",
            );
            assert_eq!(differing, Ok(Some(0)), "time zone {zone}");
        }
    }

    #[pg_test]
    fn row_jsonb_follows_a_column_type_change_at_the_same_call_site() {
        let same = Spi::get_one::<bool>(
            "CREATE TABLE kinds (a int, b text);
             INSERT INTO kinds VALUES (42, 'x');
             CREATE FUNCTION each_time() RETURNS boolean LANGUAGE plpgsql AS $$
             DECLARE r kinds; ok boolean := true;
             BEGIN
                 FOR i IN 1..3 LOOP
                     SELECT * INTO r FROM kinds;
                     ok := ok AND webhooks.row_jsonb(r) = to_jsonb(r);
                     IF i = 1 THEN ALTER TABLE kinds ALTER COLUMN a TYPE text USING 'forty-two'; END IF;
                     IF i = 2 THEN ALTER TABLE kinds RENAME COLUMN b TO renamed; END IF;
                 END LOOP;
                 RETURN ok;
             END $$;
             SELECT each_time()",
        );
        assert_eq!(same, Ok(Some(true)));
    }

    #[pg_test(error = "webhooks.row_jsonb: column type not handled; use to_jsonb")]
    fn row_jsonb_refuses_types_it_does_not_handle() {
        let _ = Spi::run("SELECT webhooks.row_jsonb(r) FROM (SELECT 1 AS a, ARRAY[1] AS b) r");
    }

    /// The capture statements' INSERTs never get JIT, however costly their
    /// plan (a session keeps them, so JIT would recur on every statement).
    #[pg_test]
    fn inserts_into_webhooks_tables_are_planned_without_jit() {
        fn explain(sql: &str) -> String {
            Spi::connect(|client| {
                let rows = client.select(sql, None, &[]).expect("EXPLAIN runs");
                rows.map(|row| row.get::<String>(1).ok().flatten().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Spi::run("SET LOCAL jit_above_cost = 0").expect("settable");
        Spi::run("CREATE TABLE public.plain_copy (LIKE webhooks.staged_change)").expect("a table");
        let insert = |table: &str| {
            format!(
                "EXPLAIN INSERT INTO {table} (xact, event, source, operation) \
                 SELECT pg_current_xact_id(), 'x.created', 'x', 'INSERT' FROM generate_series(1, 10)"
            )
        };
        let ours = explain(&insert("webhooks.staged_change"));
        assert!(!ours.contains("JIT"), "{ours}");
        // Control: the same INSERT elsewhere is JIT-compiled (where this
        // server has JIT at all), so the check above can fail.
        if Spi::get_one::<bool>("SELECT pg_jit_available()") == Ok(Some(true)) {
            let theirs = explain(&insert("public.plain_copy"));
            assert!(theirs.contains("JIT"), "{theirs}");
        }
    }

    #[pg_test]
    fn uuid_v7_is_strictly_increasing_within_a_backend() {
        let ordered = Spi::get_one::<bool>(
            "SELECT bool_and(prev < u) FROM ( \
                SELECT u, lag(u) OVER (ORDER BY n) AS prev \
                  FROM (SELECT n, webhooks.uuid_v7() AS u FROM generate_series(1, 10000) n) s) t \
             WHERE prev IS NOT NULL",
        );
        assert_eq!(ordered, Ok(Some(true)));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
