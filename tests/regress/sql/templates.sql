-- Body templates: webhooks.check_template() (when an endpoint is saved),
-- webhooks.template_paths(), webhooks.render_template() (each attempt),
-- webhooks.template_context(), and the default body, webhooks.envelope() and
-- webhooks.render_body().

-- check_template: NULL and JSON null mean "no template"; otherwise an object
-- or array whose {{path}} placeholders are all known.
SELECT webhooks.check_template(NULL) IS NULL AS sql_null, webhooks.check_template('null') IS NULL AS json_null;
SELECT webhooks.check_template('{}'), webhooks.check_template('[]');
SELECT webhooks.check_template('{"id": "{{event.id}}", "at": "{{ event.timestamp }}", "n": 1, "ok": true}');
SELECT webhooks.check_template('{"text": "{{event.name}} #{{data.id}} by {{metadata.tenant}}", '
                               '"all": ["{{data}}", "{{previous}}", "{{metadata}}", "{{data.items.0.sku}}", '
                               '"{{event.action}}", "{{event.verb}}", "{{event.unix_ms}}", "{{delivery.id}}", '
                               '"{{delivery.attempt}}", "{{endpoint.name}}", "{{data.$x-y_z}}"]}');
SELECT webhooks.check_template('"{{data}}"');
SELECT webhooks.check_template('42');
SELECT webhooks.check_template('{"a": "{{secret}}"}');
SELECT webhooks.check_template('{"a": [{"b": ["{{event.nope}}"]}]}');
SELECT webhooks.check_template('{"a": "{{}}"}');
SELECT webhooks.check_template('{"a": "{{data.}}"}');
SELECT webhooks.check_template('{"a": "{{data..id}}"}');
SELECT webhooks.check_template('{"a": "{{data.a b}}"}');
SELECT webhooks.check_template('{"a": "{{endpoint.secret}}"}');
SELECT webhooks.check_template('{"a": "{{event.id"}');
SELECT webhooks.check_template('{"a": "x }} y"}');
SELECT webhooks.check_template('{"a": "{{data.id}} }}"}');
-- Placeholders in keys are not looked at: they stay literal when rendered.
SELECT webhooks.check_template('{"{{nope}}": 1}');

-- template_paths: every placeholder, trimmed, in values at any depth.
SELECT webhooks.template_paths('{"a": "{{ data.id }}-{{event.id}}", "b": [["{{previous}}"], {"c": "{{x}}"}], "{{k}}": 1}')
 ORDER BY 1;

-- render_template against a fixed context.
\set ctx '{"event": {"id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "order.created", "action": "created", "verb": "create", "timestamp": "2024-06-10T12:00:00.000000Z", "unix_ms": 1718020800000}, "delivery": {"id": "0190a1b2-c3d4-7000-8000-000000000001", "attempt": 2}, "endpoint": {"name": "ERP"}, "data": {"id": 42, "total": 99.5, "paid": false, "note": null, "tags": ["a", "b"], "customer": {"name": "ACME"}}, "previous": null, "metadata": {"source": "public.orders", "operation": "INSERT", "key": "42", "tenant": null}}'

-- A string that is exactly one placeholder becomes the value, with its type
-- (numbers, booleans, arrays, objects, null); a missing path is null.
SELECT webhooks.render_template('{"id": "{{data.id}}", "total": "{{ data.total }}", "paid": "{{data.paid}}", '
                                '"tags": "{{data.tags}}", "customer": "{{data.customer}}", "note": "{{data.note}}", '
                                '"previous": "{{previous}}", "missing": "{{data.nope}}", "first_tag": "{{data.tags.0}}", '
                                '"attempt": "{{delivery.attempt}}"}', :'ctx');
-- Anything else is text: strings unquoted, other values as JSON text, null
-- and missing values as nothing.
SELECT webhooks.render_template('{"text": "Order {{data.id}} for {{data.customer.name}} ({{data.tags}}, {{data.customer}})", '
                                '"empty": "[{{data.note}}][{{data.nope}}]", "twice": "{{data.id}}/{{data.id}}", '
                                '"padded": " {{data.id}}"}', :'ctx');
-- Arrays keep their order, other scalars and keys stay as they are.
SELECT webhooks.render_template('["{{event.name}}", 1, null, true, {"{{k}}": "{{endpoint.name}}"}, []]', :'ctx');
SELECT webhooks.render_template('"{{event.unix_ms}}"', :'ctx'), webhooks.render_template('7', :'ctx');
SELECT webhooks.render_template('{}', :'ctx'), webhooks.render_template('[]', :'ctx');
SELECT webhooks.render_template(NULL, :'ctx') IS NULL AS null_template,
       webhooks.render_template('{"a": "{{data.id}}"}', NULL) AS null_context;
-- A value substituted into a string is never searched for placeholders
-- itself: a customer named "{{data.id}}" renders as "{{data.id}} 42" (data
-- cannot pull other fields into the text).
SELECT webhooks.render_template('"{{data.customer.name}} {{data.id}}"',
                                jsonb_set(:'ctx'::jsonb, '{data,customer,name}', '"{{data.id}}"'));

-- template_context and envelope of one fixed event row.
CREATE TEMP TABLE ev AS
SELECT ROW('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', 'order.updated', 'public.orders', 'UPDATE', '42', 'acme',
           '{"id": 42, "total": 99.5}', '{"total": 10}', '2024-06-10 12:00:00.123456+00', true)::webhooks.event AS e;
SELECT jsonb_pretty(webhooks.template_context(e, '0190a1b2-c3d4-7000-8000-000000000001', 3, 'ERP')) FROM ev;
-- The verb of each action; other actions (business events, truncated) are
-- their own verb.
SELECT n AS event,
       (webhooks.template_context(ROW(gen_random_uuid(), n, NULL, 'EMIT', NULL, NULL, '{}', NULL, now(), true)::webhooks.event,
                                  NULL, 1, NULL) #> '{event}') - '{id,name,timestamp,unix_ms}'::text[] AS action_and_verb
  FROM unnest('{order.created,order.updated,order.deleted,order.truncated,loyalty.points_earned,ping}'::text[]) n;
-- unix_ms is rounded to the nearest millisecond, while timestamp and the
-- event's UUIDv7 id are truncated: .9995 s shows as .999500 but 1000 ms.
SELECT (webhooks.template_context(ROW(gen_random_uuid(), 'x.y', NULL, 'EMIT', NULL, NULL, NULL, NULL,
                                      '2024-06-10 12:00:00.9995+00', false)::webhooks.event, NULL, 1, NULL)
        #> '{event}') - '{id,name,action,verb}'::text[] AS times;
-- A rendered template with that context.
SELECT webhooks.render_template('{"type": "{{event.verb}}", "order": "{{data.id}}", "was": "{{previous.total}}", '
                                '"who": "{{metadata.tenant}}", "try": "{{delivery.attempt}}", "to": "{{endpoint.name}}"}',
                                webhooks.template_context(e, '0190a1b2-c3d4-7000-8000-000000000001', 3, 'ERP'))
  FROM ev;

-- The default body: envelope() is what filters see, render_body() the bytes
-- sent and signed (jsonb's canonical text: the same on every retry).
SELECT jsonb_pretty(webhooks.envelope(e)) FROM ev;
SELECT webhooks.render_body(e) FROM ev;
SELECT webhooks.render_body(e) = webhooks.envelope(e)::text AS same_bytes FROM ev;

-- An endpoint's template goes through check_template.
SELECT * FROM webhooks.create_endpoint('https://example.com/hooks', template => '{"a": "{{data.id"}');
SELECT * FROM webhooks.create_endpoint('https://example.com/hooks', template => '"text"');
SELECT count(*) AS endpoints FROM webhooks.endpoint;
