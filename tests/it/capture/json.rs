//! Rows made into JSON: an event's data is exactly what to_jsonb(row) makes
//! of every common type, whether the C trigger's typed conversions
//! (row_jsonb) or to_jsonb itself make it, and an UPDATE's previous holds
//! the old values of exactly the columns that changed (an UPDATE to the
//! same values is no event). Receivers see these bytes, so they must not
//! depend on which path a table takes.

use super::setup;
use serde_json::json;

#[tokio::test]
async fn every_common_type_is_sent_exactly_as_to_jsonb() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE public.kinds (
             id bigint PRIMARY KEY, n numeric, big numeric(30,10), f float8, i int, b boolean,
             ts timestamptz, t timestamp, d date, tm time, iv interval, j jsonb, js json,
             arr int[], tarr text[], e mood, bin bytea, u uuid, txt text, nothing text);
         SELECT webhooks.track('public.kinds');
         SET TIME ZONE 'Europe/Berlin';
         INSERT INTO public.kinds VALUES (1, 0.1, 12345678901234567890.0123456789, 1.5e300, -7, true,
             '2026-03-12 10:00:00.123456+00', '2026-03-12 10:00:00', '2026-03-12', '10:11:12', '1 day 2 hours',
             '{\"a\": [1, 2.50]}', '{\"b\":  1}', '{1,NULL,3}', '{\"x,y\",\"\"}', 'happy', '\\x00ff',
             'caf8e206-49bc-424c-b228-b4e4ac548f61', 'O''Brien \"quoted\" ünïcödé', NULL);",
    )
    .await
    .unwrap();
    let same: bool = db
        .query_one("SELECT e.data = to_jsonb(k) FROM webhooks.event e, public.kinds k", &[])
        .await
        .unwrap()
        .get(0);
    assert!(same, "data is exactly to_jsonb(row)");
    let text: String = db
        .query_one("SELECT data::text FROM webhooks.event", &[])
        .await
        .unwrap()
        .get(0);
    assert!(text.contains("12345678901234567890.0123456789"), "{text}");
    assert!(text.contains("\"nothing\": null"), "{text}");
}

#[tokio::test]
async fn updates_compare_columns_of_every_type() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE public.kinds (id int PRIMARY KEY, js json, arr int[], e mood, j jsonb, pt point, n numeric);
         SELECT webhooks.track('public.kinds');
         INSERT INTO public.kinds VALUES (1, '{\"b\": 1}', '{1,NULL,3}', 'happy', '{\"x\": 1}', '(1,2)', 1.5);
         UPDATE public.kinds SET js = '{\"b\": 2}', arr = '{4}', e = 'sad', pt = '(3,4)';
         UPDATE public.kinds SET js = '{\"b\": 2}', arr = '{4}', e = 'sad', j = '{\"x\": 1}', n = 1.5;  -- nothing changes",
    )
    .await
    .unwrap();
    let rows = db
        .query("SELECT previous FROM webhooks.event WHERE operation = 'UPDATE'", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "an UPDATE to the same values is no event");
    let previous: serde_json::Value = rows[0].get(0);
    assert_eq!(
        previous,
        json!({"js": {"b": 1}, "arr": [1, null, 3], "e": "happy", "pt": "(1,2)"})
    );
    // The same through the many-row statement (these types take to_jsonb).
    db.batch_execute(
        "INSERT INTO public.kinds VALUES (2, '{\"b\": 2}', '{4}', 'sad', '{\"x\": 1}', '(3,4)', 1.5);
         UPDATE public.kinds SET arr = '{4}', n = 1.50;                       -- nothing changes
         UPDATE public.kinds SET arr = arr || 5, j = j || '{\"y\": 2}' WHERE id <= 2;",
    )
    .await
    .unwrap();
    let rows = db
        .query(
            "SELECT key, previous FROM webhooks.event WHERE operation = 'UPDATE' ORDER BY id OFFSET 1",
            &[],
        )
        .await
        .unwrap();
    let mut got: Vec<(String, serde_json::Value)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("1".to_owned(), json!({"arr": [4], "j": {"x": 1}})),
            ("2".to_owned(), json!({"arr": [4], "j": {"x": 1}}))
        ]
    );
}

/// Tables whose columns are all of common scalar types are serialised by
/// webhooks.row_jsonb() and diffed by webhooks.row_previous(): their events
/// must be exactly what to_jsonb() would have made, edge values included.
#[tokio::test]
async fn scalar_tables_take_the_fast_path_with_to_jsonb_output() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TABLE public.scalars (
             id int8 PRIMARY KEY, a int2, b int4, n numeric, m numeric(12,2), f4 float4, f8 float8, ok bool,
             d date, t timestamp, tz timestamptz, txt text, vc varchar(10), ch char(4), nm name, u uuid,
             tm time, ttz timetz, iv interval, bin bytea, ip inet, net cidr, mac macaddr, c \"char\",
             \"Mixed Case\" text);
         ALTER TABLE public.scalars ADD COLUMN gone int; ALTER TABLE public.scalars DROP COLUMN gone;
         SELECT webhooks.track('public.scalars', exclude_columns => '{bin}');
         SET TIME ZONE 'Asia/Kolkata';
         INSERT INTO public.scalars VALUES
           (1, -32768, -2147483648, 'NaN', 1.10, 'NaN', '-Infinity', true, 'infinity', '-infinity', 'infinity',
            '', '', '', '', '00000000-0000-0000-0000-000000000000', '24:00', '00:00+05:30', '-1 year 2 mons',
            '\\x', '::1', '10/8', '08:00:2b:01:02:03', 'x', 'a\"b\\c'),
           (2, 32767, 2147483647, 123456789012345678901234567890.123456789, -99.99, 1.5e-40, 1.7976931348623157e308,
            false, '0001-01-01 BC', '2024-02-29 23:59:59.999999', '1900-01-01 00:00:00+00:19:32',
            E'\\n\\t\\u00e9 \"q\" \\u0001', 'ab', 'ab', 'xyz', gen_random_uuid(), '12:34:56.789', '23:59:59-12',
            '0', '\\xdeadbeef', '192.168.0.1/24', '::/0', 'ff:ff:ff:ff:ff:ff', '', 'é'),
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
         CREATE TABLE at_insert AS SELECT * FROM public.scalars;
         UPDATE public.scalars SET m = 1.1, n = 'NaN', bin = '\\x01' WHERE id = 1;      -- no sent value changes
         UPDATE public.scalars SET a = 7, f8 = 2.5, \"Mixed Case\" = NULL WHERE id = 2;
         UPDATE public.scalars SET txt = 'now set', tz = '2026-01-01 00:00+00' WHERE id >= 2;
         CREATE TABLE before_delete AS SELECT * FROM public.scalars;
         DELETE FROM public.scalars WHERE id = 3;",
    )
    .await
    .unwrap();
    // Each row's events in order (a statement's rows come in no set order).
    // Every event against what to_jsonb / jsonb_build_object make of the
    // rows as they were (a copy taken right after the INSERT) and are.
    let checks = db
        .query(
            "WITH e AS (SELECT row_number() OVER (ORDER BY key, id) AS n, * FROM webhooks.event)
             SELECT n, key, operation,
                    CASE
                      WHEN operation = 'INSERT'
                        THEN data = (SELECT to_jsonb(s) - 'bin' FROM at_insert s WHERE s.id::text = key)
                      WHEN n = 3
                        THEN data = (SELECT (to_jsonb(s) - 'bin')
                                            || jsonb_build_object('a', 7, 'f8', 2.5::float8, 'Mixed Case', NULL::text)
                                       FROM at_insert s WHERE s.id = 2)
                      ELSE data = (SELECT to_jsonb(s) - 'bin' FROM before_delete s WHERE s.id::text = key)
                    END AND data::text NOT LIKE '%\"bin\"%',
                    CASE n
                      WHEN 3 THEN previous = (SELECT jsonb_build_object('a', s.a, 'f8', s.f8, 'Mixed Case', s.\"Mixed Case\")
                                                FROM at_insert s WHERE s.id = 2)
                      WHEN 4 THEN previous = (SELECT jsonb_build_object('txt', s.txt, 'tz', s.tz) FROM at_insert s WHERE s.id = 2)
                      WHEN 6 THEN previous = '{\"txt\": null, \"tz\": null}'
                      ELSE previous IS NULL
                    END
               FROM e ORDER BY n",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String, String, bool, bool)> = checks
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let ops: Vec<(&str, &str)> = got.iter().map(|(_, k, op, _, _)| (k.as_str(), op.as_str())).collect();
    assert_eq!(
        ops,
        [
            ("1", "INSERT"),
            ("2", "INSERT"),
            ("2", "UPDATE"),
            ("2", "UPDATE"),
            ("3", "INSERT"),
            ("3", "UPDATE"),
            ("3", "DELETE")
        ],
        "the UPDATE of row 1 (1.10 = 1.1, NaN = NaN, only an excluded column changed) sends nothing"
    );
    for (n, key, op, data_ok, previous_ok) in &got {
        assert!(data_ok, "event {n} ({op} of {key}): data is to_jsonb of the row");
        assert!(
            previous_ok,
            "event {n} ({op} of {key}): previous holds the old values of what changed"
        );
    }
}

/// Many-row statements are captured by `webhooks.capture()` in batches of
/// up to 256 events per INSERT, with each column converted by the typed
/// conversions (row_jsonb's) or, for other types, by `to_jsonb` itself.
/// `items_c` has only typed columns; `items_generic` is the same table with
/// its id, name and qty as domains (which only `to_jsonb` converts) plus an
/// excluded jsonb column. Same statements on both, same events expected —
/// with `columns`, `exclude_columns`, a tenant, no-op and unsent changes,
/// NULLs, keys moved between rows (sent without `previous`) and a row count
/// that ends in a partial batch.
#[tokio::test]
async fn typed_and_to_jsonb_conversions_send_the_same_events() {
    let (_c, db) = setup().await;
    let statements = [
        "INSERT INTO public.T (id, name, qty, tenant)
           SELECT g, CASE WHEN g % 7 <> 0 THEN 'n' || g END, g, 't' || g % 3 FROM generate_series(1, 1000) g ORDER BY g",
        "UPDATE public.T SET qty = qty + 1 WHERE id % 3 = 0",
        "UPDATE public.T SET qty = qty WHERE id <= 300",
        "UPDATE public.T SET note = 'not sent'",
        "UPDATE public.T SET tenant = 'moved' WHERE id <= 20",
        "UPDATE public.T SET name = NULL WHERE id BETWEEN 30 AND 40",
        "UPDATE public.T SET id = 11 - id WHERE id <= 10",
        "UPDATE public.T SET id = id + 5000 WHERE id > 995",
        "DELETE FROM public.T WHERE id > 900",
    ];
    db.batch_execute(
        "CREATE DOMAIN public.item_id AS int; CREATE DOMAIN public.label AS text; CREATE DOMAIN public.amount AS int;",
    )
    .await
    .unwrap();
    for (table, types, extra, exclude) in [
        ("items_c", ["int", "text", "int"], "", "{note}"),
        (
            "items_generic",
            ["public.item_id", "public.label", "public.amount"],
            ", extra jsonb",
            "{note,extra}",
        ),
    ] {
        let [id, name, qty] = types;
        db.batch_execute(&format!(
            "CREATE TABLE public.{table} (id {id} PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, name {name}, qty {qty},
                                          tenant text, note text{extra});
             SELECT webhooks.track('public.{table}', resource => 'item', tenant_column => 'tenant',
                                   columns => '{{name,qty}}', exclude_columns => '{exclude}');
             BEGIN;"
        ))
        .await
        .unwrap();
        for statement in statements {
            db.batch_execute(&statement.replace("public.T", &format!("public.{table}")))
                .await
                .unwrap();
        }
        db.batch_execute("COMMIT").await.unwrap();
    }
    let typed: bool = db
        .query_one(
            "SELECT bool_or(webhooks.row_jsonb_type(t)) FROM unnest('{public.item_id,public.label,public.amount}'::regtype[]) t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!typed, "the domains take to_jsonb's conversion");
    let sent = |table: &'static str| {
        let db = &db;
        async move {
            db.query(
                "SELECT event, operation, key, tenant, data::text, previous::text FROM webhooks.event
                  WHERE source = $1 ORDER BY event, key, data::text, previous::text",
                &[&format!("public.{table}")],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let v: (String, String, Option<String>, Option<String>, String, Option<String>) =
                    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
                v
            })
            .collect::<Vec<_>>()
        }
    };
    let (c, sql) = (sent("items_c").await, sent("items_generic").await);
    let count = |event: &str| c.iter().filter(|e| e.0 == event).count();
    // 1,000 created; 333 + 10 (names set to NULL, 30..40 less 35) + 10 + 5 updated; 100 deleted.
    assert_eq!(
        (count("item.created"), count("item.updated"), count("item.deleted")),
        (1000, 358, 100)
    );
    assert_eq!(c, sql, "typed and to_jsonb conversions send the same events");
    // In statement order, and each statement's rows in their order.
    let keys: Vec<String> = db
        .query(
            "SELECT key FROM webhooks.event WHERE source = 'public.items_c' AND event = 'item.created' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, (1..=1000).map(|i| i.to_string()).collect::<Vec<_>>());
}
