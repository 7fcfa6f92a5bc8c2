-- Event names and subscription patterns: webhooks.check_patterns() (an
-- endpoint's events), webhooks.check_event_name() (a tracked table's
-- resource, an emitted event) and webhooks.event_matches() (fan-out).

-- Valid patterns are returned unchanged.
SELECT webhooks.check_patterns('{*}');
SELECT webhooks.check_patterns('{order.*,invoice.paid,*.created,webhooks.*}');
SELECT webhooks.check_patterns('{Order-2_x.D9}');
-- NULL in, NULL out (STRICT); create_endpoint's NOT NULL column refuses it.
SELECT webhooks.check_patterns(NULL) IS NULL AS is_null;

-- Refused, each with 22023 and the reason.
SELECT webhooks.check_patterns('{}');
SELECT webhooks.check_patterns('{order.*,NULL}');
SELECT webhooks.check_patterns('{""}');
SELECT webhooks.check_patterns('{order..x}');
SELECT webhooks.check_patterns('{.order}');
SELECT webhooks.check_patterns('{order.}');
SELECT webhooks.check_patterns('{order.cre*}');
SELECT webhooks.check_patterns('{**}');
SELECT webhooks.check_patterns('{"order created"}');
SELECT webhooks.check_patterns('{ordér.created}');
-- A two-dimensional list is read element by element.
SELECT webhooks.check_patterns('{{order.*,invoice.*},{a.b,c.d}}');
SELECT webhooks.check_patterns('{{order.*,invoice.*},{a.b,c..d}}');
-- The first bad element is the one reported.
SELECT webhooks.check_patterns('{ok.*,bad..one,bad two}');

-- Event names: the same alphabet, no wildcard.
SELECT webhooks.check_event_name('order.created'), webhooks.check_event_name('loyalty.points_earned');
SELECT webhooks.check_event_name('order.*');
SELECT webhooks.check_event_name('*');
SELECT webhooks.check_event_name('');
SELECT webhooks.check_event_name('order..created');
SELECT webhooks.check_event_name('order/created');

-- Matching: * is exactly one segment, or one or more as the last segment;
-- webhooks.* events match only patterns that start with webhooks.
SELECT p AS pattern, e AS event, webhooks.event_matches(ARRAY[p], e) AS matches
  FROM (VALUES ('order.created', 'order.created'),
               ('order.created', 'order.updated'),
               ('order.created', 'Order.created'),
               ('order', 'order.created'),
               ('order.*', 'order.created'),
               ('order.*', 'order.line.created'),
               ('order.*', 'order'),
               ('order.*', 'orders.created'),
               ('*', 'x'),
               ('*', 'order.line.created'),
               ('*.created', 'invoice.created'),
               ('*.created', 'invoice.line.created'),
               ('a.*.c', 'a.b.c'),
               ('a.*.c', 'a.b.x.c'),
               ('*.*', 'a'),
               ('*.*', 'a.b.c'),
               ('*', 'webhooks.delivery.failed'),
               ('*.failed', 'webhooks.delivery.failed'),
               ('*.*.failed', 'webhooks.delivery.failed'),
               ('webhooks.*', 'webhooks.delivery.failed'),
               ('webhooks.endpoint.paused', 'webhooks.endpoint.paused'),
               ('webhooks.*', 'webhooksx.created')) AS t(p, e)
 ORDER BY 1, 2;

-- Any pattern of the list; none in an empty list; NULL elements are skipped.
SELECT webhooks.event_matches('{a.b,invoice.*}', 'invoice.paid') AS any_of,
       webhooks.event_matches('{}', 'invoice.paid') AS empty_list,
       webhooks.event_matches('{NULL,invoice.*}', 'invoice.paid') AS null_skipped,
       webhooks.event_matches('{*}', NULL) IS NULL AS null_event;

-- An endpoint's events go through check_patterns.
SELECT * FROM webhooks.create_endpoint('https://example.com/hooks', events => '{order..x}');
SELECT * FROM webhooks.create_endpoint('https://example.com/hooks', events => '{}');
SELECT count(*) AS endpoints FROM webhooks.endpoint;
