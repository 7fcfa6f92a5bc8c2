-- pg_webhooks, part 1 of 8: the tables, and comments on the Rust helpers.
--
-- The extension's SQL is split by concern into the files below, which
-- extension/src/lib.rs includes one extension_sql_file!() each, every one
-- requiring the one before: the generated install script is the functions
-- written in Rust, then these files in this order. The order matters where
-- PostgreSQL reads the catalog when a statement runs: a LANGUAGE sql body is
-- checked when it is created, so what it names comes before it, and the
-- GRANT/REVOKE ... ON ALL ... IN SCHEMA of 07_privileges.sql reach only the
-- objects that exist by then.
--
--   01_schema.sql      comments on the Rust helpers; the tables, their indexes, UUIDv7 time helpers,
--                      registration for pg_dump
--   02_capture.sql     the capture engine, its settings and their triggers, deferred capture,
--                      track()/track_event()/untrack(), the sources view, emit()
--   03_endpoints.sql   endpoint checks, body templates, create/update/delete_endpoint(), rotate_secret(),
--                      mutual TLS, the redacted endpoints view
--   04_delivery.sql    the contract with pollers: fan-out, claim(), signing, retry policy, complete_batch(),
--                      complete(), pause_endpoint(), release(), next_due(), backlog(), version()
--   05_operations.sql  the delivery log view, stats(), retry/retry_failed/resend/cancel/replay, send_test()
--   06_retention.sql   time partitions: partition_interval(), maintain(), purge()
--   07_privileges.sql  the roles, and the grants (after every object they cover, before 08's)
--   08_ddl_sync.sql    event triggers that keep tracking settings in step with DDL
--
-- This file comes first: everything after it names its tables and their
-- row types. The Rust helpers it comments on exist already.
--
-- Read in order: tables, then how changes are captured, how endpoints are
-- managed, and the functions that are the whole contract with a poller:
-- webhooks.claim(), webhooks.complete_batch() (and complete()),
-- webhooks.release() and webhooks.next_due(). Delivery *policy* (matching,
-- rendering, signing, retry schedule, pausing) lives here, so any poller obeys it.
--
-- The extension is created in schema `webhooks` (see pg_webhooks.control);
-- the Rust helpers (sign_standard, sign_hex, uuid_v7, event_matches,
-- notify_once, ...) are created before these files run.
--
-- Where fan-out happens: the writer's transaction only inserts the event (one
-- row). Deliveries (one per matching endpoint) are created by the first step
-- of webhooks.claim(), outside the writer's transaction. Until then
-- webhooks.delivery_log shows the event as pending for each matching endpoint.

-- The helpers written in Rust (extension/src/lib.rs).
COMMENT ON FUNCTION webhooks.sign_standard(text, text, bigint, text) IS
  'Standard Webhooks signature v1,<base64 HMAC-SHA256(key, msg_id.timestamp.body)>; the key is the base64 part '
  'of a whsec_ secret, else the secret''s UTF-8 bytes.';
COMMENT ON FUNCTION webhooks.sign_hex(text, text) IS
  'Lowercase hex HMAC-SHA256 of the body keyed with the secret''s UTF-8 bytes.';
COMMENT ON FUNCTION webhooks.check_secret(text) IS 'Raise 22023 unless the secret can sign; return it.';
COMMENT ON FUNCTION webhooks.generate_secret() IS 'A new whsec_ secret: base64 of 32 bytes from the OS CSPRNG.';
COMMENT ON FUNCTION webhooks.uuid_v7() IS 'A time-ordered UUID (version 7).';
COMMENT ON FUNCTION webhooks.delivery_id(uuid, bigint) IS
  'The id fan-out gives the delivery of an event to an endpoint: a UUIDv7 with the event''s time, the rest '
  'derived from both ids, so a fan-out made again (after a failover lost the first) sends the same webhook-id.';
COMMENT ON FUNCTION webhooks.url_parts(text) IS
  'Scheme and host of an endpoint URL as the poller parses it; raises 22023 for a URL the poller could not send to.';
COMMENT ON FUNCTION webhooks.check_patterns(text[]) IS 'Raise 22023 unless every element is a valid event pattern.';
COMMENT ON FUNCTION webhooks.check_event_name(text) IS 'Raise 22023 unless the text is a valid event name.';
COMMENT ON FUNCTION webhooks.refused_address(text) IS
  'Why the poller''s SSRF guard will refuse an endpoint URL''s host (an address literal, or localhost, in a '
  'special-purpose block not globally reachable), or NULL; names are judged by the poller when resolved.';
COMMENT ON FUNCTION webhooks.normalized_url(text) IS
  'An endpoint URL as the poller''s parser writes it (https:host/x is https://host/x); 22023 as url_parts.';
COMMENT ON FUNCTION webhooks.search_path_ends_with_pg_temp(text) IS
  'Does a search_path value name pg_temp last, as PostgreSQL splits and unquotes it?';
COMMENT ON FUNCTION webhooks.event_matches(text[], text) IS
  'Does the event name match any pattern? * is one segment, or one or more as the last; webhooks.* events '
  'match only patterns starting with webhooks.';
COMMENT ON FUNCTION webhooks.notify_once() IS
  'NOTIFY webhooks at most once per (sub)transaction, unless webhooks.notify is off.';
COMMENT ON FUNCTION webhooks.capture_enabled() IS
  'The session''s webhooks.capture setting; off counts only for superusers and webhooks_admin members (42501 '
  'otherwise).';
COMMENT ON FUNCTION webhooks.https_required() IS 'The webhooks.require_https setting.';
COMMENT ON FUNCTION webhooks.max_endpoints_per_tenant() IS 'The webhooks.max_endpoints_per_tenant setting (0: no limit).';

---------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------

CREATE TABLE webhooks.endpoint (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 text,
    url                  text NOT NULL,
    events               text[] NOT NULL DEFAULT '{*}',
    secret               text NOT NULL,
    previous_secret      text,
    previous_secret_until timestamptz,
    tenant               text,
    filter               jsonpath,
    template             jsonb,
    headers              jsonb NOT NULL DEFAULT '{}',
    auth                 jsonb,
    signature            text NOT NULL DEFAULT 'standard',
    signature_header     text NOT NULL DEFAULT 'X-Webhook-Signature',
    method               text NOT NULL DEFAULT 'POST',
    retry_schedule       interval[] NOT NULL DEFAULT '{30s,2min,10min,1h,6h,24h}',
    timeout              interval NOT NULL DEFAULT '30s',
    connect_timeout      interval NOT NULL DEFAULT '10s',
    success_codes        int4multirange NOT NULL DEFAULT '{[200,300)}',
    max_in_flight        integer NOT NULL DEFAULT 16,
    ordered              boolean NOT NULL DEFAULT false,
    pause_after          integer,
    active               boolean NOT NULL DEFAULT true,
    paused_at            timestamptz,
    paused_reason        text,
    description          text,
    metadata             jsonb NOT NULL DEFAULT '{}',
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    public_headers       text[] NOT NULL DEFAULT '{}',
    client_cert          text,
    client_key           text,
    ca_cert              text,
    CONSTRAINT endpoint_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT endpoint_method CHECK (method IN ('POST', 'PUT', 'PATCH')),
    CONSTRAINT endpoint_signature CHECK (signature IN ('standard', 'hex', 'sha256', 'none')),
    CONSTRAINT endpoint_timeouts CHECK (timeout > '0' AND connect_timeout > '0'),
    CONSTRAINT endpoint_max_in_flight CHECK (max_in_flight > 0),
    CONSTRAINT endpoint_pause_after CHECK (pause_after IS NULL OR pause_after > 0)
);
COMMENT ON TABLE webhooks.endpoint IS
  'Receivers of webhooks. Holds secrets and credentials: query webhooks.endpoints instead.';
COMMENT ON COLUMN webhooks.endpoint.public_headers IS
  'Custom headers whose values readers may see (webhooks.endpoints, attempts); every other custom header''s value '
  'is shown as [redacted]. Set with webhooks.set_public_headers().';
COMMENT ON COLUMN webhooks.endpoint.client_cert IS
  'PEM certificate chain the poller presents to this endpoint''s receiver (mutual TLS); set with '
  'webhooks.set_endpoint_tls().';
COMMENT ON COLUMN webhooks.endpoint.client_key IS
  'PEM private key of client_cert (unencrypted PKCS#8, RSA or EC): a secret, like secret. Never shown to readers; '
  'the poller gets it with each claim.';
COMMENT ON COLUMN webhooks.endpoint.ca_cert IS
  'PEM CA certificates trusted for this endpoint''s receiver, besides the poller''s (Mozilla roots and '
  '--receiver-ca-file).';
-- A deleted endpoint keeps its history and frees its name.
CREATE UNIQUE INDEX endpoint_name ON webhooks.endpoint (name) WHERE deleted_at IS NULL;

CREATE TABLE webhooks.source (
    id              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    source          regclass PRIMARY KEY,
    resource        text NOT NULL,
    events          text[] NOT NULL,
    key_columns     name[] NOT NULL,
    columns         name[],
    exclude_columns name[] NOT NULL DEFAULT '{}',
    tenant_column   name,
    payload         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deferred        boolean NOT NULL DEFAULT false,
    column_numbers  jsonb NOT NULL DEFAULT '{}',
    payload_oid     oid,
    payload_scope   text,
    payload_owner   name
);
COMMENT ON TABLE webhooks.source IS
  'Tables whose committed changes become events; managed by webhooks.track()/untrack().';
COMMENT ON COLUMN webhooks.source.payload IS
  'The payload function''s signature, schema-qualified (as regprocedure prints it with search_path = pg_catalog): '
  'what names the function after pg_upgrade or a restore, where function OIDs change. '
  'See webhooks.payload_function().';
COMMENT ON COLUMN webhooks.source.payload_oid IS
  'Internal: the payload function''s OID, which names it where payload_scope is this database''s '
  '(webhooks.oid_scope()); it follows ALTER FUNCTION ... RENAME or SET SCHEMA, and a dropped function stays '
  'dropped. Not a regprocedure: pg_upgrade refuses reg* columns.';
COMMENT ON COLUMN webhooks.source.payload_scope IS
  'Internal: webhooks.oid_scope() where payload_oid was read. Another (pg_upgrade, a restore) means that the '
  'signature in payload names the function, if it is still owned by payload_owner.';
COMMENT ON COLUMN webhooks.source.payload_owner IS
  'Internal: the role that owned the payload function when the settings were written.';
COMMENT ON COLUMN webhooks.source.column_numbers IS
  'Internal: attnum of each column named in columns, exclude_columns and tenant_column, so that '
  'the settings follow an ALTER TABLE ... RENAME COLUMN (an excluded column stays excluded).';

CREATE TABLE webhooks.source_event (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     regclass NOT NULL,
    event      text NOT NULL,
    condition  text NOT NULL,
    payload    text,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload_oid oid,
    payload_scope text,
    payload_owner name,
    CONSTRAINT source_event_unique UNIQUE (source, event)
);
COMMENT ON TABLE webhooks.source_event IS
  'Business events fired when a row change meets a condition; managed by webhooks.track_event().';
COMMENT ON COLUMN webhooks.source_event.payload IS
  'The payload function''s signature, as in webhooks.source.payload.';
COMMENT ON COLUMN webhooks.source_event.payload_oid IS
  'Internal: the payload function''s OID, as in webhooks.source.payload_oid.';
COMMENT ON COLUMN webhooks.source_event.payload_scope IS
  'Internal: where payload_oid was read, as in webhooks.source.payload_scope.';
COMMENT ON COLUMN webhooks.source_event.payload_owner IS
  'Internal: the payload function''s owner, as in webhooks.source.payload_owner.';

-- Changes of tables tracked with deferred => true wait here until their
-- transaction commits; webhooks.capture_commit() then turns each row's
-- changes into one event. Rows live only inside their own transaction.
CREATE TABLE webhooks.staged_change (
    xact       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    event      text NOT NULL,
    source     text NOT NULL,
    operation  text NOT NULL,
    key        text,
    tenant     text,
    data       jsonb,
    previous   jsonb
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000,
        autovacuum_vacuum_cost_delay = 0);
COMMENT ON TABLE webhooks.staged_change IS
  'Internal: changes of deferred tracked tables, turned into events when their transaction commits.';
CREATE INDEX staged_change_xact ON webhooks.staged_change (xact, source, seq);

-- History is time-partitioned so that retention drops whole partitions
-- instead of deleting rows (no bloat, no vacuum debt, space back at once).
-- The partition key is the UUIDv7 id itself, whose first 48 bits are the
-- creation time in milliseconds: the primary key stays the id, and a time
-- range is an id range. webhooks.maintain() creates partitions ahead of
-- time; rows outside every partition land in the _default ones.
CREATE FUNCTION webhooks.uuid_v7_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- (Before 1970: the smallest UUIDv7 of all, not a negative count.)
    SELECT (lpad(to_hex(greatest(floor(extract(epoch FROM at) * 1000)::bigint, 0)), 12, '0') || repeat('0', 20))::uuid
$$;
COMMENT ON FUNCTION webhooks.uuid_v7_floor(timestamptz) IS
  'The smallest UUIDv7 created at or after a time: event and delivery ids sort by creation (a delivery made '
  'by fan-out by its event''s), so id >= webhooks.uuid_v7_floor(t) selects rows created since t (and bounds the partitions).';

CREATE FUNCTION webhooks.uuid_v7_time(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_timestamp(('x' || lpad(left(replace(id::text, '-', ''), 12), 16, '0'))::bit(64)::bigint / 1000.0)
$$;
COMMENT ON FUNCTION webhooks.uuid_v7_time(uuid) IS 'When a UUIDv7 (an event or delivery id) was created, to the millisecond.';

CREATE TABLE webhooks.event (
    id          uuid NOT NULL DEFAULT webhooks.uuid_v7(),
    event       text NOT NULL,
    source      text,
    operation   text NOT NULL,
    key         text,
    tenant      text,
    data        jsonb,
    previous    jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    fanned_out  boolean NOT NULL DEFAULT false
) PARTITION BY RANGE (id);
COMMENT ON TABLE webhooks.event IS
  'One row per captured change or emitted event (the outbox). id is a UUIDv7, so it sorts by creation. '
  'fanned_out turns true once its deliveries exist.';
-- Indexes are made per partition (here for the default one, in maintain()
-- for the dated ones), not on the partitioned table: the parent belongs to
-- the extension and pg_dump leaves it out, so a partition index attached to
-- it would be dumped as a duplicate and break a restore. The id ranges of the
-- partitions are disjoint, so a primary key per partition is a global one.

CREATE TABLE webhooks.delivery (
    id               uuid PRIMARY KEY DEFAULT webhooks.uuid_v7(),
    event_id         uuid NOT NULL,
    endpoint_id      bigint NOT NULL,
    ordering_key     text,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    CONSTRAINT delivery_status CHECK
      (status IN ('pending', 'delivering', 'succeeded', 'failed', 'cancelled'))
);
COMMENT ON TABLE webhooks.delivery IS
  'One row per (event, matching endpoint). While delivering, next_attempt_at equals locked_until, '
  'so an expired lease is simply due again.';
COMMENT ON COLUMN webhooks.delivery.id IS
  'Sent as webhook-id and X-Webhook-Delivery-Id; stable across retries so receivers can deduplicate.';
COMMENT ON COLUMN webhooks.delivery.ordering_key IS
  'For ordered endpoints: source table and row key. Deliveries of one key go one at a time, in commit order. '
  'NULL for unordered endpoints (set when the delivery is created).';

-- Every index here is paid for by every state change of every delivery (a
-- claim or an outcome moves the row), so there are few: the primary key, one
-- per endpoint in time order (logs, stats), and two small partial indexes
-- holding only unfinished deliveries — due order per endpoint, and per-key
-- order for ordered endpoints.
CREATE INDEX delivery_endpoint ON webhooks.delivery (endpoint_id, created_at);
CREATE INDEX delivery_endpoint_due ON webhooks.delivery (endpoint_id, next_attempt_at)
  WHERE status IN ('pending', 'delivering');
CREATE INDEX delivery_ordering ON webhooks.delivery (endpoint_id, ordering_key, event_id)
  WHERE status IN ('pending', 'delivering') AND ordering_key IS NOT NULL;

-- The one list of unfinished statuses for the code that reads deliveries.
-- The planner inlines it into a constant, so `status = ANY
-- (webhooks.unfinished_statuses())` still proves the predicates of the two
-- partial indexes above, which spell the list out (an index is not rebuilt
-- when a function changes; regress views checks that they agree).
CREATE FUNCTION webhooks.unfinished_statuses() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{pending,delivering}'::text[];
COMMENT ON FUNCTION webhooks.unfinished_statuses() IS
  'The statuses of deliveries not finished yet (due, or leased to a poller): pending and delivering.';

-- Every claim and outcome leaves a dead row version behind, and the claim's
-- scans walk over their index entries until vacuum removes them. Vacuum these
-- queue tables after a fixed number of changes, not a fraction of their size,
-- and without cost-based throttling. (The server's autovacuum_naptime, 1 min
-- by default, bounds how soon; 10s suits busy installations.)
ALTER TABLE webhooks.delivery SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
-- (The same for each partition of webhooks.event, set where it is created:
-- a partitioned table has no storage parameters of its own.)
CREATE TABLE webhooks.event_default PARTITION OF webhooks.event DEFAULT WITH (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0);
COMMENT ON TABLE webhooks.event_default IS
  'Events outside every dated partition (before the first webhooks.maintain()); purged row by row.';
ALTER TABLE webhooks.event_default ADD PRIMARY KEY (id);
-- Small: only events whose deliveries are not created yet.
CREATE INDEX event_default_fan_out ON webhooks.event_default (id) WHERE NOT fanned_out;

-- Partitioned by delivery id (so by the delivery's creation time): a
-- delivery's attempts live in one partition, dropped once no delivery of
-- that period is kept.
CREATE TABLE webhooks.attempt (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    delivery_id      uuid NOT NULL,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration         interval,
    status_code      integer,
    error            text,
    request_headers  jsonb,
    response_headers jsonb,
    response_body    text,
    poller           text,
    created_at       timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (delivery_id);
COMMENT ON TABLE webhooks.attempt IS
  'One row per HTTP attempt: what was sent (headers, credentials redacted), what came back, how long it took.';
CREATE TABLE webhooks.attempt_default PARTITION OF webhooks.attempt DEFAULT;
COMMENT ON TABLE webhooks.attempt_default IS
  'Attempts of deliveries outside every dated partition; purged row by row.';
ALTER TABLE webhooks.attempt_default ADD PRIMARY KEY (delivery_id, attempt, id);

CREATE TABLE webhooks.partition (
    name   name PRIMARY KEY,
    parent name NOT NULL CHECK (parent IN ('event', 'attempt')),
    lower  timestamptz NOT NULL,
    upper  timestamptz NOT NULL
);
COMMENT ON TABLE webhooks.partition IS
  'The dated partitions of webhooks.event and webhooks.attempt that webhooks.maintain() created: '
  'rows created in [lower, upper). webhooks.purge() drops those wholly older than its cutoff.';

-- Extension tables are left out of pg_dump unless registered: without this a
-- dump and restore would lose every endpoint, tracked table and log row.
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoint', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoint_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.source', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.source_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.source_event', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.source_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.event_default', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.delivery', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.attempt_default', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.attempt_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.partition', '');
-- The dated partitions are created at run time, not by this script: they are
-- ordinary tables, which pg_dump dumps (schema and rows) by itself.
