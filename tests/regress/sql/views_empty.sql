-- The public views and read functions on a fresh install: their columns,
-- nothing in them, and who may read them.

SELECT webhooks.version() = (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_webhooks')
       AS installed_default_version;

SELECT * FROM webhooks.sources;
SELECT * FROM webhooks.endpoints;
SELECT * FROM webhooks.delivery_log;
SELECT * FROM webhooks.stats();
SELECT webhooks.backlog() AS backlog, webhooks.next_due() AS next_due;

-- Their column types, as readers and tools see them.
SELECT c.relname AS view, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind = 'v' AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY 1, 2;

-- webhooks_reader reads the views and stats, never the endpoint table (it
-- holds secrets).
SET ROLE webhooks_reader;
SELECT count(*) AS sources FROM webhooks.sources;
SELECT count(*) AS endpoints FROM webhooks.endpoints;
SELECT count(*) AS log FROM webhooks.delivery_log;
SELECT count(*) AS stats FROM webhooks.stats();
SELECT webhooks.version() IS NOT NULL AS version;
SELECT count(*) FROM webhooks.endpoint;
SELECT webhooks.backlog();
RESET ROLE;

-- webhooks_poller calls the poller API only.
SET ROLE webhooks_poller;
SELECT webhooks.backlog() AS backlog, webhooks.next_due() AS next_due;
SELECT count(*) FROM webhooks.delivery_log;
SELECT count(*) FROM webhooks.endpoints;
RESET ROLE;

-- PUBLIC gets nothing.
CREATE ROLE regress_nobody;
SET ROLE regress_nobody;
SELECT count(*) FROM webhooks.endpoints;
SELECT webhooks.version();
RESET ROLE;
DROP ROLE regress_nobody;
