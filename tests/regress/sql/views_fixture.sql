-- The public views on a small fixture: one tracked table, one business
-- event, three endpoints, a few changes and emitted events; what each view
-- shows before and after fan-out, to an admin and to a reader. Times and
-- ids are left out (they differ on every run).

CREATE TABLE public.orders (id int PRIMARY KEY, customer text, total numeric, internal_note text);
SELECT webhooks.track('public.orders', resource => 'order', exclude_columns => '{internal_note}');
SELECT webhooks.track_event('public.orders', 'order.big', 'NEW.total >= 1000');

SELECT id FROM webhooks.create_endpoint('https://erp.example.com/hooks?token=SECRET', events => '{order.*}', name => 'ERP',
                                        secret => 'whsec_MDEyMzQ1Njc4OWFiY2RlZg==',
                                        headers => '{"X-Api-Key": "k3y", "X-Version": "2"}',
                                        auth => '{"type": "bearer", "token": "t0k"}', description => 'orders');
SELECT webhooks.set_public_headers(1, '{x-version}');
-- A credential header is never public.
SELECT webhooks.set_public_headers(1, '{x-version,COOKIE}');
SELECT id FROM webhooks.create_endpoint('https://acme.example.com/', events => '{invoice.*,order.created}', name => 'ACME',
                                        tenant => 'acme', secret => 'whsec_MDEyMzQ1Njc4OWFiY2RlZg==');
SELECT id FROM webhooks.create_endpoint('https://big.example.com/', events => '{*}', name => 'Big orders',
                                        filter => '$.data.total >= 100', secret => 'whsec_MDEyMzQ1Njc4OWFiY2RlZg==',
                                        retry_schedule => '{1s}', max_in_flight => 1, ordered => true, pause_after => 3);

SELECT source, resource, events, key_columns, columns, exclude_columns, tenant_column, payload, deferred, business_events
  FROM webhooks.sources;

-- As an admin (here a superuser), URLs and headers whole.
SELECT id, name, url, events, tenant, filter, headers, auth_type, signature, method, retry_schedule, max_in_flight,
       ordered, pause_after, active, description, consecutive_failures, rotation_grace_until, client_cert_set
  FROM webhooks.endpoints ORDER BY id;

INSERT INTO public.orders VALUES (1, 'ACME', 99.50, 'x'), (2, 'Initech', 1500, 'y');
UPDATE public.orders SET total = 120, internal_note = 'z' WHERE id = 1;
UPDATE public.orders SET internal_note = 'only excluded' WHERE id = 2;
DELETE FROM public.orders WHERE id = 2;
SELECT webhooks.emit('invoice.paid', '{"invoice": 7}', key => '7', tenant => 'acme') IS NOT NULL AS emitted;
SELECT webhooks.emit('invoice.paid', '{"invoice": 8}', key => '8', tenant => 'globex') IS NOT NULL AS emitted;
SELECT webhooks.emit('webhooks.endpoint.paused', '{}');

-- The events, in id order. The UPDATE of an excluded column only made no
-- order.updated, but order.big fired again: its condition is the trigger's
-- WHEN clause, true on every change of a big order. Business events are
-- written by row triggers, during the statement, and the statement's
-- order.created events at its end: within one statement a business event
-- comes first (an ordered endpoint gets order.big before order.created).
SELECT event, source, operation, key, tenant, data, previous, fanned_out FROM webhooks.event ORDER BY id;
SELECT e.event, webhooks.envelope(e) - '{id,timestamp}'::text[] AS envelope FROM webhooks.event e ORDER BY id LIMIT 1;

-- Before fan-out the log shows each matching (event, endpoint) as pending,
-- without a delivery id yet.
SELECT endpoint, event, key, status, status_code, duration, attempts, last_error, completed_at,
       delivery_id IS NULL AS not_created_yet
  FROM webhooks.delivery_log ORDER BY event_id, endpoint_id;
SELECT webhooks.backlog() AS backlog, webhooks.next_due() <= now() AS due;

-- fan_out() creates them (claim() does it first thing).
SELECT webhooks.fan_out() AS events_fanned_out;
SELECT endpoint, event, key, status, attempts, delivery_id IS NULL AS not_created_yet
  FROM webhooks.delivery_log ORDER BY event_id, endpoint_id;
SELECT count(*) AS deliveries,
       count(*) FILTER (WHERE d.id = webhooks.delivery_id(d.event_id, d.endpoint_id)) AS with_derived_id,
       count(*) FILTER (WHERE d.ordering_key IS NOT NULL) AS ordered
  FROM webhooks.delivery d;
SELECT webhooks.backlog() AS backlog, webhooks.fan_out() AS nothing_more;
SELECT endpoint, total, succeeded, failed, pending, success_rate, avg_latency, p95_latency, last_success, last_failure,
       consecutive_failures
  FROM webhooks.stats();

-- A reader: URL paths and queries and custom header values not marked
-- public are [redacted]; no secret or credential anywhere.
SET ROLE webhooks_reader;
SELECT id, name, url, headers, auth_type FROM webhooks.endpoints ORDER BY id;
SELECT count(*) AS log_rows FROM webhooks.delivery_log;
SELECT endpoint, total, pending FROM webhooks.stats();
SELECT secret FROM webhooks.endpoint;
RESET ROLE;

-- A deleted endpoint leaves the endpoints view and stats; its deliveries
-- stay in the log.
SELECT webhooks.delete_endpoint(2) AS cancelled;
SELECT id, name FROM webhooks.endpoints ORDER BY id;
SELECT endpoint FROM webhooks.stats();
SELECT endpoint, status, count(*) FROM webhooks.delivery_log GROUP BY 1, 2 ORDER BY 1, 2;

-- Untracking keeps past events; the table leaves sources.
SELECT webhooks.untrack('public.orders');
SELECT count(*) AS sources FROM webhooks.sources;
SELECT count(*) AS events FROM webhooks.event;
INSERT INTO public.orders VALUES (3, 'Hooli', 1, NULL);
SELECT count(*) AS events FROM webhooks.event;
