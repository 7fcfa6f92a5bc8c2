-- The JSON of captured rows (extension/src/capture_json.rs):
-- webhooks.jsonb_previous(old, new), webhooks.row_jsonb(record),
-- webhooks.row_previous(old record, new jsonb), webhooks.row_jsonb_type(oid).

-- jsonb_previous: the entries of old whose value differs in new (jsonb =)
-- or that new lacks; NULL when nothing differs.
SELECT o AS old, n AS new, webhooks.jsonb_previous(o::jsonb, n::jsonb) AS previous
  FROM (VALUES ('{"a": 1, "b": 2}', '{"a": 1, "b": 3}'),
               ('{"a": 1, "b": 2}', '{"a": 1, "b": 2}'),
               ('{"a": 1, "b": 2}', '{"b": 2, "a": 1, "c": 3}'),
               ('{"a": 1, "b": 2}', '{"a": 1}'),
               ('{"a": 1.0}', '{"a": 1.00}'),
               ('{"a": 1e2}', '{"a": 100}'),
               ('{"a": 1}', '{"a": "1"}'),
               ('{"a": null}', '{"a": null}'),
               ('{"a": null}', '{}'),
               ('{"a": null}', '{"a": false}'),
               ('{"a": true}', '{"a": false}'),
               ('{"a": "é"}', '{"a": "\u00e9"}'),
               ('{"a": "x"}', '{"a": "x "}'),
               ('{"a": [1, 2]}', '{"a": [1, 2]}'),
               ('{"a": [1, 2]}', '{"a": [2, 1]}'),
               ('{"a": [1]}', '{"a": 1}'),
               ('{"a": {"x": 1, "y": [2]}}', '{"a": {"y": [2], "x": 1}}'),
               ('{"a": {"x": 1}}', '{"a": {"x": 1.0, "y": null}}'),
               ('{"a": {}}', '{"a": []}'),
               ('{}', '{"a": 1}'),
               ('{}', '{}')) AS t(o, n);

-- The same as its definition in plain SQL, on these and a few generated pairs.
WITH pairs(o, n) AS (
    SELECT jsonb_object_agg('k' || i, to_jsonb(i % 3)), jsonb_object_agg('k' || (i + 1), to_jsonb(i % 2))
      FROM generate_series(1, 40) i GROUP BY i % 4
    UNION ALL SELECT '{"a": [1, {"b": 2}], "c": "x"}', '{"a": [1, {"b": 2.0}], "c": "y"}'
)
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE webhooks.jsonb_previous(o, n) IS DISTINCT FROM
                              (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(o) e
                                WHERE NOT (n ? e.key AND n -> e.key = e.value))) AS different
  FROM pairs;

-- Both arguments must be objects (22023); NULL gives NULL (STRICT).
SELECT webhooks.jsonb_previous('[1]', '{}');
SELECT webhooks.jsonb_previous('{}', '"x"');
SELECT webhooks.jsonb_previous('{}', NULL) IS NULL AS is_null;

-- row_jsonb_type: the column types row_jsonb() converts itself.
SELECT t AS type, webhooks.row_jsonb_type(t::regtype) AS handled
  FROM unnest('{int2,int4,int8,numeric,float4,float8,bool,date,timestamp,timestamptz,text,varchar,bpchar,name,uuid,'
              'time,timetz,interval,bytea,inet,cidr,macaddr,char,'
              'jsonb,json,int4[],text[],money,oid,xml,tsvector,point}'::text[]) t;

-- row_jsonb is to_jsonb(row), byte for byte, for rows of those types.
CREATE TABLE typed (
    i2 int2, i4 int4, i8 int8, n numeric, f4 float4, f8 float8, b bool, d date, ts timestamp, tstz timestamptz,
    t text, vc varchar(5), c3 char(3), nm name, u uuid, tm time, tmtz timetz, iv interval, by bytea, ip inet,
    net cidr, mac macaddr, ch "char"
);
INSERT INTO typed VALUES
    (1, -2, 9223372036854775807, 1.50, 1.5, 0.1, true, '2024-02-29', '2024-06-10 12:00:00.5',
     '2024-06-10 12:00:00+02', 'a "quoted" \ text', 'abc', 'x', 'nm', '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
     '23:59:59.999999', '12:00+05:30', '1 day 02:03:04', '\x00ff', '192.168.0.1/24', '10.0.0.0/8',
     '08:00:2b:01:02:03', 'q'),
    (NULL, NULL, NULL, 'NaN', 'Infinity', '-Infinity', false, 'infinity', '-infinity', 'infinity',
     E'line\nbreak\ttab \u00e9 \U0001F600', '', '', '', NULL, NULL, NULL, '-1 mon', '', '::1', '::/0', NULL, ' '),
    (0, 0, 0, -0.0, -0, 'NaN', NULL, '0001-01-01 BC', '1999-12-31 23:59:59', '1970-01-01 00:00:00+00',
     NULL, NULL, NULL, NULL, NULL, '00:00', '00:00+00', '0', NULL, NULL, NULL, NULL, NULL);
SELECT row_number() OVER () AS r, webhooks.row_jsonb(x) FROM typed x;
SELECT count(*) AS rows, count(*) FILTER (WHERE webhooks.row_jsonb(x)::text = to_jsonb(x)::text) AS identical
  FROM typed x;

-- Other column types are left to to_jsonb by capture; row_jsonb refuses them.
CREATE TABLE other (id int, tags text[], doc jsonb);
INSERT INTO other VALUES (1, '{a,b}', '{"x": 1}');
SELECT webhooks.row_jsonb(o) FROM other o;
-- A dropped column leaves no key.
ALTER TABLE typed DROP COLUMN by;
SELECT webhooks.row_jsonb(x) ? 'by' AS has_dropped, webhooks.row_jsonb(x)::text = to_jsonb(x)::text AS identical
  FROM typed x LIMIT 1;
-- Anonymous records too.
SELECT webhooks.row_jsonb(ROW(1, 'a'::text, NULL::numeric));

-- row_previous: an UPDATE's previous straight from the old row: the old
-- columns whose JSON differs from the same key of the new document; keys the
-- new document lacks (excluded columns) are left out; NULL if none.
CREATE TABLE orders (id int PRIMARY KEY, total numeric, note text, paid bool);
INSERT INTO orders VALUES (1, 10.0, 'n', false);
SELECT webhooks.row_previous(o, '{"id": 1, "total": 10, "note": "n", "paid": false}') IS NULL AS unchanged,
       webhooks.row_previous(o, '{"id": 1, "total": 12, "note": "n", "paid": true}') AS changed,
       webhooks.row_previous(o, '{"id": 1, "total": 12}') AS excluded_left_out,
       webhooks.row_previous(o, '{"id": 1, "note": null}') AS to_null,
       webhooks.row_previous(o, '{}') IS NULL AS nothing_sent
  FROM orders o;
SELECT webhooks.row_previous(o, '[1]') FROM orders o;
SELECT webhooks.row_previous(o, NULL) IS NULL AS is_null FROM orders o;
