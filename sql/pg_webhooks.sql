-- pg_webhooks: schema, capture, endpoints, claim/complete, delivery log.
--
-- Read top to bottom: tables, then how changes are captured, how endpoints are
-- managed, and the functions that are the whole contract with a poller:
-- webhooks.claim(), webhooks.complete_batch() (and complete()),
-- webhooks.release() and webhooks.next_due(). Delivery *policy* (matching,
-- rendering, signing, retry schedule, pausing) lives here, so any poller obeys it.
--
-- The extension is created in schema `webhooks` (see pg_webhooks.control);
-- the Rust helpers (sign_standard, sign_hex, uuid_v7, event_matches,
-- notify_once, ...) are created before this file runs.
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
-- Written against PostgreSQL's jsonb C API (extension/src/capture_json.rs),
-- so declared here rather than generated.
CREATE FUNCTION webhooks.row_jsonb(rec record) RETURNS jsonb
AS 'MODULE_PATHNAME', 'row_jsonb' LANGUAGE c STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.row_jsonb(record) IS
  'to_jsonb(row) for rows whose column types all satisfy webhooks.row_jsonb_type() (raises 0A000 otherwise), '
  'with each column''s conversion looked up once per call site: the capture engine''s typed conversions.';
CREATE FUNCTION webhooks.row_previous(old record, new jsonb) RETURNS jsonb
AS 'MODULE_PATHNAME', 'row_previous' LANGUAGE c STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.row_previous(record, jsonb) IS
  'An UPDATE''s previous: the old row''s columns whose JSON differs (jsonb =) from the same key of the new '
  'document; columns the new document lacks (excluded ones) are left out. NULL if none. Same types as row_jsonb.';
CREATE FUNCTION webhooks.capture() RETURNS trigger
AS 'MODULE_PATHNAME', 'capture' LANGUAGE c;
COMMENT ON FUNCTION webhooks.capture() IS
  'Statement-level capture trigger of tracked tables (see "How capture works" in the extension''s SQL): '
  'settings from webhooks.source by the trigger''s table; raises 42501 on a table that is not tracked.';
COMMENT ON FUNCTION webhooks.row_jsonb_type(oid) IS
  'Can webhooks.row_jsonb() serialise a column of this type exactly as to_jsonb() does?';
CREATE FUNCTION webhooks.jsonb_previous(old jsonb, new jsonb) RETURNS jsonb
AS 'MODULE_PATHNAME', 'jsonb_previous' LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.jsonb_previous(jsonb, jsonb) IS
  'The entries of the old object whose value differs (jsonb =) in the new one or is missing there; NULL if none. '
  'An UPDATE event''s previous.';

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
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || repeat('0', 20))::uuid
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

---------------------------------------------------------------------------
-- Capture
---------------------------------------------------------------------------

-- How capture works: one engine, webhooks.capture() (C, capture_trigger.rs),
-- is every tracked table's statement-level trigger. It reads the table's
-- settings from webhooks.source, keyed by the table the trigger fires on
-- (never by an argument a role could forge: a capture trigger on a table
-- that is not tracked raises 42501), reads the statement's rows from its
-- transition tables and writes the events. Business events (track_event)
-- are row-level triggers of the same engine, webhooks.capture_event(), which
-- finds its settings in webhooks.source_event by the trigger's name and
-- table.
--
-- Rights: the engine runs as the writer. Rows are made into JSON, and casts
-- and output functions of the table's types run, with the writer's rights
-- (as in any trigger of the table); a payload function runs as its owner,
-- with search_path = pg_catalog, pg_temp, in a security-restricted
-- operation; only the write of the event rows (and the read of the
-- settings) switches to the extension's owner, with values passed as
-- parameters of statements that name everything with its schema. So no role
-- reaches the rights of the tracker or of the extension's owner through
-- capture, and the writer needs no rights on schema webhooks.
--
-- Each backend keeps the settings of the tables it wrote to; a change to
-- webhooks.source or webhooks.source_event (track(), untrack(), the ALTER
-- TABLE event trigger, an admin's UPDATE) invalidates the table's relcache
-- entry, on which the engine drops what it kept. Writers pay for the event
-- rows only: deliveries are created later, by webhooks.claim().
CREATE FUNCTION webhooks.capture_event() RETURNS trigger
AS 'MODULE_PATHNAME', 'capture_event' LANGUAGE c;
COMMENT ON FUNCTION webhooks.capture_event() IS
  'Row-level trigger of a business event (track_event): its settings come from webhooks.source_event by the '
  'trigger''s name and table; the trigger''s WHEN clause has already decided.';
CREATE FUNCTION webhooks.checked_event_size(data jsonb) RETURNS jsonb
AS 'MODULE_PATHNAME', 'checked_event_size' LANGUAGE c STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.checked_event_size(jsonb) IS
  'Internal: the event data, or 54000 if it is bigger than webhooks.max_event_size.';
CREATE FUNCTION webhooks.invalidate_capture(source regclass) RETURNS void
AS 'MODULE_PATHNAME', 'invalidate_capture' LANGUAGE c STRICT;
COMMENT ON FUNCTION webhooks.invalidate_capture(regclass) IS
  'Internal: make every backend read a tracked table''s capture settings again (a relcache invalidation).';
CREATE FUNCTION webhooks.apply_payload(source regclass, data jsonb) RETURNS jsonb
AS 'MODULE_PATHNAME', 'apply_payload' LANGUAGE c STRICT;
COMMENT ON FUNCTION webhooks.apply_payload(regclass, jsonb) IS
  'Internal: a deferred table''s payload function (from webhooks.source) applied to a row''s document, run as '
  'the function''s owner.';

-- Internal helpers shared by tracking, fan-out and replay.
CREATE FUNCTION webhooks.primary_key(rel regclass) RETURNS name[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(a.attname ORDER BY k.ord)
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = rel AND i.indisprimary
$$;
COMMENT ON FUNCTION webhooks.primary_key(regclass) IS 'Internal: the primary-key columns of a table, in key order.';

CREATE FUNCTION webhooks.qualified_table(rel regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel
$$;
COMMENT ON FUNCTION webhooks.qualified_table(regclass) IS 'Internal: schema.table, quoted as needed.';

-- Deliveries of one row to an ordered endpoint share this key.
CREATE FUNCTION webhooks.ordering_key(e webhooks.endpoint, ev webhooks.event) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN e.ordered THEN coalesce(ev.source, '') || '/' || coalesce(ev.key, ev.id::text) END
$$;
COMMENT ON FUNCTION webhooks.ordering_key(webhooks.endpoint, webhooks.event) IS
  'Internal: the per-row ordering key of a delivery to an ordered endpoint (NULL for unordered endpoints).';

-- Whoever changes a table's settings (track(), or an admin's own UPDATE of
-- webhooks.source) must have the rights of its payload function's owner:
-- capture runs that function as its owner, so naming one owned by a more
-- privileged role would borrow that role's rights. And every change makes
-- the backends read the settings again.
CREATE FUNCTION webhooks.source_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner       oid;
    fn          regprocedure;
    here        text;
    named       boolean;
    foreign_row boolean;
BEGIN
    -- A table's settings are for those who may track it: writing, moving
    -- or deleting them needs the table's TRIGGER privilege, as track() and
    -- untrack() do (a table being dropped has none left to check).
    IF TG_OP <> 'DELETE' AND NOT pg_catalog.has_table_privilege(current_user, NEW.source, 'TRIGGER') THEN
        RAISE EXCEPTION 'permission denied to track %: it needs the TRIGGER privilege on it', NEW.source
          USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP <> 'INSERT' AND NOT pg_catalog.has_table_privilege(current_user, OLD.source, 'TRIGGER') THEN
        RAISE EXCEPTION 'permission denied to change the tracking of %: it needs the TRIGGER privilege on it',
                        OLD.source
          USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- On every write, not only when payload changes: moving a row's
    -- settings to another table must not carry someone else's payload.
    -- The columns are made to name one function, with its signature, OID,
    -- owner and this database's webhooks.oid_scope():
    -- - a row written by hand (no payload_scope), or an UPDATE of payload
    --   alone, names it by signature (or OID);
    -- - a row of this database, by OID (webhooks.payload_function());
    -- - a row from pg_upgrade or a restore, by signature and owner, or,
    --   its owner renamed (pg_restore --no-owner, ALTER ROLE ... RENAME),
    --   by signature alone: then as for track(), the writer's rights are
    --   what is checked. One that cannot be made this database's is kept
    --   as it is, with a warning: a restore keeps every other table's
    --   settings, and capture refuses this table's writes (42883) until
    --   track() names a function.
    IF TG_OP <> 'DELETE' AND (NEW.payload IS NOT NULL OR NEW.payload_oid IS NOT NULL) THEN
        here := webhooks.oid_scope();
        named := NEW.payload_scope IS NULL
                 OR (TG_OP = 'UPDATE' AND NEW.payload IS DISTINCT FROM OLD.payload AND NEW.payload IS NOT NULL
                     AND NEW.payload_oid IS NOT DISTINCT FROM OLD.payload_oid);
        foreign_row := NOT named AND NEW.payload_scope IS DISTINCT FROM here;
        IF named THEN
            fn := CASE WHEN NEW.payload IS NOT NULL THEN pg_catalog.to_regprocedure(NEW.payload)
                       ELSE (SELECT p.oid::pg_catalog.regprocedure FROM pg_catalog.pg_proc p
                              WHERE p.oid = NEW.payload_oid) END;
        ELSE
            fn := coalesce(webhooks.payload_function(NEW.payload, NEW.payload_oid, NEW.payload_scope,
                                                     NEW.payload_owner),
                           CASE WHEN foreign_row THEN webhooks.signature_function(NEW.payload) END);
        END IF;
        BEGIN
            IF fn IS NULL THEN
                RAISE EXCEPTION 'payload function % does not exist', coalesce(NEW.payload, NEW.payload_oid::text)
                  USING ERRCODE = 'undefined_function';
            END IF;
            PERFORM webhooks.check_payload(fn);
            SELECT p.proowner INTO owner FROM pg_catalog.pg_proc p WHERE p.oid = fn::pg_catalog.oid;
            IF NOT pg_catalog.pg_has_role(current_user, owner, 'USAGE') THEN
                RAISE EXCEPTION 'payload function % is owned by %, whose rights % does not have',
                                fn, pg_catalog.pg_get_userbyid(owner), current_user
                  USING ERRCODE = 'insufficient_privilege',
                        HINT = 'Payload functions run as their owner: use one owned by you or by a role you belong to.';
            END IF;
        EXCEPTION WHEN undefined_function OR invalid_function_definition OR insufficient_privilege THEN
            -- Kept as it was: a row from elsewhere, or one whose function
            -- is gone, written (on_ddl() after an ALTER TABLE, say) without
            -- naming another. A dropped function is never looked for again
            -- by name in the database that tracked it: whoever makes one of
            -- the same signature later is not whom the settings trusted.
            -- (Other refusals stand: a write keeps no one else's payload.)
            IF foreign_row OR (SQLSTATE = '42883' AND TG_OP = 'UPDATE' AND NEW.source = OLD.source
                               AND (NEW.payload, NEW.payload_oid, NEW.payload_scope, NEW.payload_owner)
                                   IS NOT DISTINCT FROM (OLD.payload, OLD.payload_oid, OLD.payload_scope,
                                                         OLD.payload_owner)) THEN
                IF foreign_row THEN
                    RAISE WARNING 'pg_webhooks: % keeps its payload function %, which cannot be used here: %',
                                  NEW.source, NEW.payload, SQLERRM
                      USING HINT = 'Writes to it fail until webhooks.track() names a payload function.';
                END IF;
                PERFORM webhooks.invalidate_capture(NEW.source);
                RETURN NEW;
            END IF;
            RAISE;
        END;
        NEW.payload := fn::pg_catalog.text;
        NEW.payload_oid := fn::pg_catalog.oid;
        NEW.payload_scope := here;
        NEW.payload_owner := pg_catalog.pg_get_userbyid(owner);
    ELSIF TG_OP <> 'DELETE' THEN
        NEW.payload_scope := NULL;
        NEW.payload_owner := NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        PERFORM webhooks.invalidate_capture(OLD.source);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM webhooks.invalidate_capture(NEW.source);
        RETURN NEW;
    END IF;
    RETURN OLD;
END $$;
COMMENT ON FUNCTION webhooks.source_changed() IS
  'Internal trigger of webhooks.source and webhooks.source_event: refuse (42501) settings for a table the role '
  'may not put triggers on, or a payload function whose owner''s rights it lacks or that is unfit to run; make '
  'backends reload the table''s capture settings.';
CREATE TRIGGER source_changed BEFORE INSERT OR UPDATE OR DELETE ON webhooks.source
    FOR EACH ROW EXECUTE FUNCTION webhooks.source_changed();
CREATE TRIGGER source_changed BEFORE INSERT OR UPDATE OR DELETE ON webhooks.source_event
    FOR EACH ROW EXECUTE FUNCTION webhooks.source_changed();

-- Commit time for a deferred table: each row's changes in this transaction
-- become one event, from the row as it was before the transaction to the row
-- as it is at commit — created+updated is created (with the final row),
-- created+deleted is nothing, updated+updated is one updated (previous = the
-- values before the transaction), updated+deleted is deleted, and a row put
-- back as it was is nothing. The payload function runs now, so it sees the
-- whole transaction (an order's lines inserted after the order).
-- A deferred constraint trigger fires once per changed row; the first firing
-- of the transaction finds the staged changes, the others find none.
-- It and capture_truncate() run as the extension's owner (they write
-- events) and trust the catalog, not their arguments: the table is the one
-- the trigger fires on, its settings are its row in webhooks.source. The
-- payload function runs as its owner (webhooks.apply_payload()).
CREATE FUNCTION webhooks.commit_staged(source regclass) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src      webhooks.source;
    src_name text;
    n        bigint;
BEGIN
    SELECT * INTO src FROM webhooks.source s WHERE s.source = commit_staged.source AND s.deferred;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhooks.capture_commit: table % is not tracked with deferred => true', commit_staged.source
          USING ERRCODE = 'insufficient_privilege';
    END IF;
    src_name := webhooks.qualified_table(src.source);
    IF NOT EXISTS (SELECT 1 FROM webhooks.staged_change s
                    WHERE s.xact = pg_current_xact_id() AND s.source = src_name) THEN
        RETURN 0;
    END IF;
    WITH staged AS (
        DELETE FROM webhooks.staged_change s
         WHERE s.xact = pg_current_xact_id() AND s.source = src_name
        RETURNING s.*
    ), per_key AS (
        SELECT key, min(seq) AS first_seq,
               (array_agg(operation ORDER BY seq))[1] AS first_op,
               (array_agg(data ORDER BY seq))[1] AS first_data,
               (array_agg(previous ORDER BY seq))[1] AS first_previous,
               (array_agg(operation ORDER BY seq DESC))[1] AS last_op,
               (array_agg(data ORDER BY seq DESC))[1] AS last_data,
               (array_agg(tenant ORDER BY seq DESC))[1] AS tenant
          FROM staged GROUP BY key
    ), span AS (
        SELECT key, tenant, first_seq, last_data,
               CASE first_op WHEN 'INSERT' THEN NULL
                             WHEN 'UPDATE' THEN first_data || coalesce(first_previous, '{}')
                             ELSE first_data END AS before,
               CASE last_op WHEN 'DELETE' THEN NULL ELSE last_data END AS after
          FROM per_key
    ), change AS (
        SELECT sp.*,
               (SELECT jsonb_object_agg(b.key, b.value) FROM jsonb_each(sp.before) b
                 WHERE sp.after -> b.key IS DISTINCT FROM b.value) AS previous
          FROM span sp
    )
    INSERT INTO webhooks.event (event, source, operation, key, tenant, data, previous)
    SELECT src.resource || CASE WHEN before IS NULL THEN '.created' WHEN after IS NULL THEN '.deleted'
                                ELSE '.updated' END,
           src_name,
           CASE WHEN before IS NULL THEN 'INSERT' WHEN after IS NULL THEN 'DELETE' ELSE 'UPDATE' END,
           key, tenant,
           webhooks.checked_event_size(CASE WHEN src.payload IS NULL THEN coalesce(after, last_data)
                                            ELSE webhooks.apply_payload(src.source, coalesce(after, last_data)) END),
           CASE WHEN before IS NOT NULL AND after IS NOT NULL THEN previous END
      FROM change
     WHERE (before IS NULL AND after IS NOT NULL AND 'created' = ANY (src.events))
        OR (before IS NOT NULL AND after IS NULL AND 'deleted' = ANY (src.events))
        OR (before IS NOT NULL AND after IS NOT NULL AND 'updated' = ANY (src.events)
            AND previous IS NOT NULL AND (src.columns IS NULL OR previous ?| src.columns::text[]))
     ORDER BY first_seq;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM webhooks.notify_once();
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION webhooks.commit_staged(regclass) IS
  'Internal: turn this transaction''s staged changes of a deferred table into events (one per row, coalesced); '
  'returns how many. Run by capture_commit() and, for what a SET CONSTRAINTS ... IMMEDIATE left staged, by '
  'the engine just before commit.';

-- Internal: the tracked table a trigger's table stands for: itself, or
-- for a partition that is not tracked itself its root (row-level triggers
-- of a partitioned table are cloned to its partitions, and its statement
-- triggers are put on them).
CREATE FUNCTION webhooks.tracked_table(rel regclass) RETURNS regclass
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT a.relid FROM pg_partition_ancestors(rel) WITH ORDINALITY a(relid, n)
                      WHERE EXISTS (SELECT 1 FROM webhooks.source s WHERE s.source = a.relid)
                      ORDER BY a.n LIMIT 1), rel)
$$;
COMMENT ON FUNCTION webhooks.tracked_table(regclass) IS
  'Internal: the table whose settings apply to a trigger''s table (itself, or a partition''s nearest tracked '
  'ancestor).';

CREATE FUNCTION webhooks.capture_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks.commit_staged(webhooks.tracked_table(TG_RELID));
    RETURN NULL;
END $$;
COMMENT ON FUNCTION webhooks.capture_commit() IS
  'Internal: commit-time trigger of a deferred tracked table: one event per changed row, coalesced.';

CREATE FUNCTION webhooks.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    res text;
BEGIN
    SELECT s.resource INTO res FROM webhooks.source s WHERE s.source = webhooks.tracked_table(TG_RELID);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhooks.capture_truncate: table % is not tracked', TG_RELID::regclass
          USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT webhooks.capture_enabled() THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhooks.event (event, source, operation, data)
    VALUES (res || '.truncated', webhooks.qualified_table(webhooks.tracked_table(TG_RELID)), 'TRUNCATE', '{}');
    PERFORM webhooks.notify_once();
    RETURN NULL;
END $$;
COMMENT ON FUNCTION webhooks.capture_truncate() IS
  'Internal trigger function: TRUNCATE of a tracked table emits <resource>.truncated.';

CREATE FUNCTION webhooks.drop_capture_triggers(rel regclass, prefix text DEFAULT 'webhooks\_capture\_%')
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t name;
BEGIN
    -- Not the clones a partition has of its parent's row triggers (a
    -- deferred table's commit trigger, business events): they go with the
    -- parent's, and dropping one alone is refused (2BP01).
    FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = rel AND tgname LIKE prefix AND tgparentid = 0 LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, rel);
    END LOOP;
END $$;
COMMENT ON FUNCTION webhooks.drop_capture_triggers(regclass, text) IS
  'Internal: remove the capture triggers that webhooks.track() (or track_event()) installed on a table.';

-- Internal: refuses tables that cannot be tracked; returns their primary key.
CREATE FUNCTION webhooks.trackable(rel regclass, caller text) RETURNS name[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    keys name[];
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = rel) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '%: % is not a table', caller, rel USING ERRCODE = 'wrong_object_type';
    END IF;
    IF (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = rel)
       IN ('pg_catalog', 'information_schema', 'pg_toast', 'webhooks') THEN
        RAISE EXCEPTION '%: % is a system or pg_webhooks table and cannot be tracked', caller, rel
          USING ERRCODE = 'insufficient_privilege';
    END IF;
    keys := webhooks.primary_key(rel);
    IF keys IS NULL THEN
        RAISE EXCEPTION '%: table % has no primary key', caller, rel
          USING ERRCODE = 'invalid_table_definition',
                HINT = 'Events carry the row''s primary key as their key; add one with ALTER TABLE ... ADD PRIMARY KEY.';
    END IF;
    RETURN keys;
END $$;
COMMENT ON FUNCTION webhooks.trackable(regclass, text) IS
  'Internal: raise unless the table can be tracked (a table with a primary key, not a system table); '
  'return its key columns.';

-- Internal: raises unless every name is a column of the table.
CREATE FUNCTION webhooks.check_columns(rel regclass, what text, columns name[]) RETURNS name[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    bad name;
BEGIN
    SELECT c INTO bad FROM unnest(columns) c
     WHERE c IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a
                                     WHERE a.attrelid = rel AND a.attname = c
                                       AND a.attnum > 0 AND NOT a.attisdropped)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%: % has no column %', what, rel, coalesce(quote_ident(bad), 'NULL')
          USING ERRCODE = 'undefined_column';
    END IF;
    RETURN columns;
END $$;
COMMENT ON FUNCTION webhooks.check_columns(regclass, text, name[]) IS
  'Internal: raise undefined_column unless every name is a column of the table.';

-- Where an OID means the object it was read from: this cluster (pg_upgrade
-- makes a new system identifier), this database and this installation of
-- the extension (a restore makes new ones). Nothing done inside one
-- database changes it.
CREATE FUNCTION webhooks.oid_scope() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.concat_ws('/', (SELECT c.system_identifier FROM pg_catalog.pg_control_system() c),
                                (SELECT d.oid FROM pg_catalog.pg_database d
                                  WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()),
                                (SELECT e.oid FROM pg_catalog.pg_extension e
                                  WHERE e.extname OPERATOR(pg_catalog.=) 'pg_webhooks'))
$$;
COMMENT ON FUNCTION webhooks.oid_scope() IS
  'Internal: system identifier/database OID/extension OID, where an OID kept in the settings (payload_oid) '
  'names what it was read from.';

-- pg_temp_N and pg_toast_temp_N, anyone's.
CREATE FUNCTION webhooks.temporary_namespace(namespace oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT namespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
           OR pg_catalog.pg_is_other_temp_schema(namespace)
$$;
COMMENT ON FUNCTION webhooks.temporary_namespace(oid) IS
  'Internal: whether a schema is a session''s temporary schema (this one''s or another''s).';

-- The function a signature names, if it prints back as itself (never an
-- OID in digits, which is what a 0.1.0 regprocedure whose function was
-- dropped became) and is not in a temporary schema. Only what looks like
-- a payload function's signature is parsed: PostgreSQL 15's
-- to_regprocedure() raises on some other text.
CREATE FUNCTION webhooks.signature_function(signature text) RETURNS regprocedure
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.oid::pg_catalog.regprocedure
      FROM pg_catalog.pg_proc p
     WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(
               CASE WHEN signature OPERATOR(pg_catalog.~) '\(jsonb\)$' THEN signature END)::pg_catalog.oid
       AND p.oid::pg_catalog.regprocedure::pg_catalog.text OPERATOR(pg_catalog.=) signature
       AND NOT webhooks.temporary_namespace(p.pronamespace)
$$;
COMMENT ON FUNCTION webhooks.signature_function(text) IS
  'Internal: the function a payload signature names exactly (as it prints with search_path = pg_catalog), '
  'outside temporary schemas; NULL if none.';

-- Settings name a payload function by OID, by signature and by owner.
-- Within the database that wrote them (the same webhooks.oid_scope()) the
-- OID alone: it follows renames, and a dropped function stays dropped (a
-- function made later with the same signature, by whoever may, is not the
-- one whose owner's rights were checked). After pg_upgrade or a restore,
-- where OIDs change, the signature, if the function is still the same
-- role's (by name: role OIDs change in a restore).
CREATE FUNCTION webhooks.payload_function(signature text, function oid, scope text, owner name)
RETURNS regprocedure
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.oid::pg_catalog.regprocedure
      FROM pg_catalog.pg_proc p
     WHERE p.oid OPERATOR(pg_catalog.=)
               CASE WHEN scope OPERATOR(pg_catalog.=) webhooks.oid_scope() THEN function
                    ELSE (SELECT f::pg_catalog.oid FROM webhooks.signature_function(signature) f
                           JOIN pg_catalog.pg_proc q ON q.oid OPERATOR(pg_catalog.=) f::pg_catalog.oid
                          WHERE pg_catalog.pg_get_userbyid(q.proowner) OPERATOR(pg_catalog.=) owner) END
$$;
COMMENT ON FUNCTION webhooks.payload_function(text, oid, text, name) IS
  'The payload function a settings row (webhooks.source, webhooks.source_event) names: by OID in the database '
  'that wrote it, by signature and owner after pg_upgrade or a restore; NULL if there is none.';


-- Internal: raises unless the function can shape a payload: (jsonb) RETURNS jsonb.
-- A payload function runs as its owner in the writer's session, so a
-- search_path of its own must end with pg_temp: otherwise the writer's
-- temporary tables and views come first for the names it does not qualify.
-- (Without one it runs with pg_catalog, pg_temp.) The capture engine checks
-- the same again before each call.
CREATE FUNCTION webhooks.check_payload(payload regprocedure) RETURNS regprocedure
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF payload IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM pg_proc p
            WHERE p.oid = payload AND p.pronargs = 1 AND p.proargtypes[0] = 'jsonb'::regtype
              AND p.prorettype = 'jsonb'::regtype AND NOT p.proretset AND p.prokind = 'f') THEN
        RAISE EXCEPTION 'payload function % must take one jsonb argument and return jsonb', payload
          USING ERRCODE = 'invalid_function_definition';
    END IF;
    -- A temporary function dies with its session, and whichever session
    -- next holds that temporary schema could make one of the same name.
    IF payload IS NOT NULL AND EXISTS (
           SELECT 1 FROM pg_proc p WHERE p.oid = payload AND webhooks.temporary_namespace(p.pronamespace)) THEN
        RAISE EXCEPTION 'payload function % is temporary', payload
          USING ERRCODE = 'invalid_function_definition',
                HINT = 'Create it in a permanent schema.';
    END IF;
    IF payload IS NOT NULL AND EXISTS (
           SELECT 1 FROM pg_proc p, unnest(p.proconfig) c
            WHERE p.oid = payload AND c LIKE 'search_path=%'
              AND NOT webhooks.search_path_ends_with_pg_temp(substr(c, 13))) THEN
        RAISE EXCEPTION 'payload function % sets a search_path that does not end with pg_temp', payload
          USING ERRCODE = 'invalid_function_definition',
                HINT = 'It runs as its owner in the writer''s session: ALTER FUNCTION ... SET search_path = '
                       'your_schema, pg_temp (or qualify every name and set none).';
    END IF;
    RETURN payload;
END $$;
COMMENT ON FUNCTION webhooks.check_payload(regprocedure) IS
  'Internal: raise unless a payload function has the signature (jsonb) RETURNS jsonb, is not temporary, and any '
  'search_path it sets ends with pg_temp.';

-- Internal: (re)create a tracked table's capture triggers. They take no
-- argument: the engine finds the settings by the table.
CREATE FUNCTION webhooks.add_capture_triggers(src webhooks.source, rel regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    has name[];
BEGIN
    -- Statement-level with transition tables (one trigger per operation, as
    -- transition tables require). A deferred table stages every change,
    -- whatever its events: the row's final state decides at commit.
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) = 'f' THEN
        RAISE EXCEPTION 'pg_webhooks cannot capture writes to foreign table %, a partition of tracked table %',
                        rel, src.source
          USING ERRCODE = 'feature_not_supported',
                HINT = 'Writes to a foreign table happen on another server, unseen here. Keep the partition local, '
                       'or untrack the table first.';
    END IF;
    SELECT coalesce(array_agg(t.tgname), '{}') INTO has
      FROM pg_catalog.pg_trigger t WHERE t.tgrelid = rel AND t.tgparentid = 0;
    IF ('created' = ANY (src.events) OR src.deferred) AND NOT 'webhooks_capture_ins' = ANY (has) THEN
        EXECUTE format('CREATE TRIGGER webhooks_capture_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture()', rel);
    END IF;
    IF ('updated' = ANY (src.events) OR src.deferred) AND NOT 'webhooks_capture_upd' = ANY (has) THEN
        EXECUTE format('CREATE TRIGGER webhooks_capture_upd AFTER UPDATE ON %s '
                       'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture()', rel);
    END IF;
    IF ('deleted' = ANY (src.events) OR src.deferred) AND NOT 'webhooks_capture_del' = ANY (has) THEN
        EXECUTE format('CREATE TRIGGER webhooks_capture_del AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture()', rel);
    END IF;
    IF ('truncated' = ANY (src.events) OR src.events = '{created,updated,deleted}')
       AND NOT 'webhooks_capture_truncate' = ANY (has) THEN
        EXECUTE format('CREATE TRIGGER webhooks_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT '
                       'EXECUTE FUNCTION webhooks.capture_truncate()', rel);
    END IF;
END $$;
COMMENT ON FUNCTION webhooks.add_capture_triggers(webhooks.source, regclass) IS
  'Internal: give one table of a tracked table''s partition tree the statement capture triggers it lacks '
  '(those it has are left alone, enabled or not); 0A000 for a foreign table.';

CREATE FUNCTION webhooks.install_capture(src webhooks.source) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass;
BEGIN
    -- Statement triggers fire only on the table a statement names, so a
    -- partitioned table's partitions get them too (a write straight to a
    -- partition is captured as its root's); partitions made or attached
    -- later get them from the DDL event trigger (on_ddl).
    FOR rel IN SELECT t.relid FROM pg_partition_tree(src.source) t
               UNION SELECT src.source LOOP
        PERFORM webhooks.drop_capture_triggers(rel);
        PERFORM webhooks.add_capture_triggers(src, rel);
    END LOOP;
    IF src.deferred THEN
        EXECUTE format('CREATE CONSTRAINT TRIGGER webhooks_capture_commit AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION webhooks.capture_commit()',
                       src.source);
    END IF;
END $$;
COMMENT ON FUNCTION webhooks.install_capture(webhooks.source) IS
  'Internal: (re)create a tracked table''s capture triggers.';

-- Internal: {name: attnum} of the named columns of a table (NULLs ignored).
CREATE FUNCTION webhooks.column_numbers(rel regclass, names name[]) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(jsonb_object_agg(a.attname, a.attnum), '{}')
      FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY (names)
$$;
COMMENT ON FUNCTION webhooks.column_numbers(regclass, name[]) IS
  'Internal: {column name: attnum} of the named columns of a table, kept with its tracking settings.';

CREATE FUNCTION webhooks.track(
    source          regclass,
    resource        text DEFAULT NULL,
    events          text[] DEFAULT '{created,updated,deleted}',
    columns         name[] DEFAULT NULL,
    exclude_columns name[] DEFAULT NULL,
    tenant_column   name DEFAULT NULL,
    payload         regprocedure DEFAULT NULL,
    deferred        boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rel  regclass := source;
    keys name[] := webhooks.trackable(source, 'webhooks.track');
    res  text := coalesce(resource, (SELECT relname FROM pg_class WHERE oid = source));
    bad  text;
    src  webhooks.source;
BEGIN
    PERFORM webhooks.check_event_name(res);
    IF events IS NULL OR cardinality(events) = 0 THEN
        RAISE EXCEPTION 'webhooks.track: events must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT e INTO bad FROM unnest(events) e
     WHERE e IS NULL OR e NOT IN ('created', 'updated', 'deleted', 'truncated') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'webhooks.track: unknown event kind %', coalesce(quote_literal(bad), 'NULL')
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Use created, updated, deleted and/or truncated.';
    END IF;
    IF columns IS NOT NULL AND cardinality(columns) = 0 THEN
        RAISE EXCEPTION 'webhooks.track: columns must list at least one column (or be NULL for any change)'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM webhooks.check_columns(rel, 'webhooks.track columns', columns),
            webhooks.check_columns(rel, 'webhooks.track exclude_columns', exclude_columns),
            webhooks.check_columns(rel, 'webhooks.track tenant_column', array_remove(ARRAY[tenant_column], NULL)),
            webhooks.check_payload(payload);

    IF deferred IS NULL THEN
        RAISE EXCEPTION 'webhooks.track: deferred must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO webhooks.source AS s (source, resource, events, key_columns, columns, exclude_columns,
                                      tenant_column, payload_oid, payload_scope, deferred, column_numbers)
    VALUES (rel, res, events, keys, columns, coalesce(exclude_columns, '{}'), tenant_column, payload,
            webhooks.oid_scope(), track.deferred, webhooks.column_numbers(rel, coalesce(columns, '{}') || exclude_columns || tenant_column))
    ON CONFLICT ON CONSTRAINT source_pkey DO UPDATE
       SET resource = excluded.resource, events = excluded.events, key_columns = excluded.key_columns,
           columns = excluded.columns, exclude_columns = excluded.exclude_columns,
           tenant_column = excluded.tenant_column, payload = NULL, payload_oid = excluded.payload_oid,
           payload_scope = excluded.payload_scope, payload_owner = NULL, deferred = excluded.deferred,
           column_numbers = excluded.column_numbers, updated_at = now()
    RETURNING * INTO src;

    PERFORM webhooks.install_capture(src);
END $$;
COMMENT ON FUNCTION webhooks.track(regclass, text, text[], name[], name[], name, regprocedure, boolean) IS
  'Turn committed INSERT/UPDATE/DELETE (and TRUNCATE) on a table into <resource>.created/updated/deleted '
  '(/truncated) events. deferred => true captures at commit: one event per changed row, coalesced, with '
  'the payload function seeing the whole transaction. Calling it again changes the settings.';

CREATE FUNCTION webhooks.track_event(source regclass, event text, condition text,
                                     payload regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rel  regclass := source;
    keys name[] := webhooks.trackable(source, 'webhooks.track_event');
    se   webhooks.source_event;
    trg  text;
BEGIN
    PERFORM webhooks.check_event_name(event), webhooks.check_payload(payload);
    IF condition IS NULL OR btrim(condition) = '' THEN
        RAISE EXCEPTION 'webhooks.track_event: condition must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO webhooks.source_event AS x (source, event, condition, payload_oid, payload_scope)
    VALUES (rel, track_event.event, condition, payload, webhooks.oid_scope())
    ON CONFLICT ON CONSTRAINT source_event_unique DO UPDATE
       SET condition = excluded.condition, payload = NULL, payload_oid = excluded.payload_oid,
           payload_scope = excluded.payload_scope, payload_owner = NULL
    RETURNING * INTO se;

    trg := format('webhooks_event_%s', se.id);
    PERFORM webhooks.drop_capture_triggers(rel, replace(trg, '_', '\_'));
    -- Postgres validates the condition as the trigger's WHEN clause. One that
    -- mentions OLD cannot apply to INSERT: then it is an UPDATE-only event.
    BEGIN
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE ON %s FOR EACH ROW WHEN (%s) '
                       'EXECUTE FUNCTION webhooks.capture_event()', trg, rel, condition);
    EXCEPTION WHEN invalid_object_definition THEN
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) '
                       'EXECUTE FUNCTION webhooks.capture_event()', trg, rel, condition);
    END;
EXCEPTION
    WHEN syntax_error OR undefined_column OR undefined_function OR datatype_mismatch
         OR undefined_table OR invalid_object_definition OR feature_not_supported THEN
        RAISE EXCEPTION 'webhooks.track_event: invalid condition %: %', quote_literal(condition), SQLERRM
          USING ERRCODE = SQLSTATE;
END $$;
COMMENT ON FUNCTION webhooks.track_event(regclass, text, text, regprocedure) IS
  'Emit a named business event (e.g. invoice.paid) when a row change meets a condition over OLD/NEW, '
  'checked by the trigger''s own WHEN clause. Calling it again replaces the condition.';

CREATE FUNCTION webhooks.untrack(source regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass := source;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks.source s WHERE s.source = rel)
       AND NOT EXISTS (SELECT 1 FROM webhooks.source_event x WHERE x.source = rel) THEN
        RAISE EXCEPTION 'webhooks.untrack: table % is not tracked', rel
          USING ERRCODE = 'undefined_object';
    END IF;
    -- (install_capture() put the statement triggers on every partition too.)
    PERFORM webhooks.drop_capture_triggers(t.relid) FROM pg_partition_tree(rel) t WHERE t.relid <> rel;
    PERFORM webhooks.drop_capture_triggers(rel);
    PERFORM webhooks.drop_capture_triggers(rel, 'webhooks\_event\_%');
    DELETE FROM webhooks.source s WHERE s.source = rel;
    DELETE FROM webhooks.source_event x WHERE x.source = rel;
END $$;
COMMENT ON FUNCTION webhooks.untrack(regclass) IS
  'Stop capturing changes of a table (its triggers, settings and business events go). '
  'Past events and deliveries stay.';

CREATE VIEW webhooks.sources AS
SELECT t.source, s.resource, s.events, s.key_columns, s.columns, s.exclude_columns, s.tenant_column,
       webhooks.payload_function(s.payload, s.payload_oid, s.payload_scope, s.payload_owner) AS payload, s.deferred,
       (SELECT coalesce(jsonb_object_agg(x.event, x.condition), '{}') FROM webhooks.source_event x
         WHERE x.source = t.source) AS business_events,
       s.created_at, s.updated_at
  FROM (SELECT source FROM webhooks.source UNION SELECT source FROM webhooks.source_event) t
  LEFT JOIN webhooks.source s ON s.source = t.source;
COMMENT ON VIEW webhooks.sources IS
  'Tracked tables, their settings and their business events (track_event). A table with business events '
  'only has NULL settings.';

-- The extension's own events (webhooks.endpoint.paused,
-- webhooks.delivery.failed) are written by emit_own(), which only admins and
-- the extension's own functions may run; emit(), which applications may be
-- granted, refuses webhooks.* names.
CREATE FUNCTION webhooks.emit_own(event text, data jsonb, key text DEFAULT NULL, tenant text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    ev_id uuid;
BEGIN
    PERFORM webhooks.check_event_name(emit_own.event);
    INSERT INTO webhooks.event (event, operation, key, tenant, data)
    VALUES (emit_own.event, 'EMIT', emit_own.key, emit_own.tenant, webhooks.checked_event_size(emit_own.data))
    RETURNING id INTO ev_id;
    PERFORM webhooks.notify_once();
    RETURN ev_id;
END $$;
COMMENT ON FUNCTION webhooks.emit_own(text, jsonb, text, text) IS
  'Internal: emit an event of any name, webhooks.* included (for the extension''s own events).';

CREATE FUNCTION webhooks.emit(event text, data jsonb, key text DEFAULT NULL, tenant text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhooks.check_event_name(emit.event);
    IF emit.event LIKE 'webhooks.%' THEN
        RAISE EXCEPTION 'webhooks.emit: event names starting with webhooks. are reserved for pg_webhooks'
          USING ERRCODE = 'reserved_name';
    END IF;
    RETURN webhooks.emit_own(emit.event, emit.data, emit.key, emit.tenant);
END $$;
COMMENT ON FUNCTION webhooks.emit(text, jsonb, text, text) IS
  'Emit a custom event in the current transaction (delivered only if it commits); names starting with '
  'webhooks. are reserved (42939). Returns the event id.';

---------------------------------------------------------------------------
-- Endpoints
---------------------------------------------------------------------------

-- Raises unless the URL is absolute http(s) with a host; https unless
-- webhooks.require_https is off or the host is loopback.
-- Whether webhooks.require_https refuses a URL: http to anything but loopback.
CREATE FUNCTION webhooks.https_refuses(url text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.scheme OPERATOR(pg_catalog.=) 'http' AND webhooks.https_required()
           AND p.host OPERATOR(pg_catalog.<>) ALL (ARRAY['localhost', '127.0.0.1', '[::1]'])
      FROM webhooks.url_parts(url) p
$$;
COMMENT ON FUNCTION webhooks.https_refuses(text) IS
  'Internal: whether webhooks.require_https refuses an endpoint URL (http, and not to a loopback host).';

CREATE FUNCTION webhooks.check_url(url text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    refusal text;
BEGIN
    IF url IS NULL THEN
        RAISE EXCEPTION 'invalid endpoint URL: NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Parsed by the poller's own URL parser (Rust), so that an accepted URL
    -- is one the poller can send to.
    IF webhooks.https_refuses(url) THEN
        RAISE EXCEPTION 'endpoint URL must use https: %', webhooks.redacted_url(url)
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'webhooks.require_https is on; only loopback URLs may use http.';
    END IF;
    -- The poller's SSRF guard judges the same address the same way (one
    -- table, pg_webhooks_address). A warning, not an error: whether the
    -- poller may reach private networks is its own --allow-private-networks,
    -- which the database cannot see.
    refusal := webhooks.refused_address(url);
    IF refusal IS NOT NULL THEN
        RAISE WARNING 'the poller will refuse endpoint URL %: %', webhooks.redacted_url(url), refusal
          USING HINT = 'Run the poller with --allow-private-networks to send to such addresses.';
    END IF;
    -- Stored as the poller will read it, so that what readers are shown
    -- redacted is what is sent to.
    RETURN webhooks.normalized_url(url);
END $$;
COMMENT ON FUNCTION webhooks.check_url(text) IS
  'Validate an endpoint URL (absolute http/https; https required unless loopback or webhooks.require_https is off; '
  'a warning when the poller''s SSRF guard would refuse its address); returns it as the poller parses it.';

CREATE FUNCTION webhooks.check_retry_schedule(schedule interval[]) RETURNS interval[]
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF schedule IS NULL OR EXISTS (SELECT 1 FROM unnest(schedule) s WHERE s IS NULL OR s < '0') THEN
        RAISE EXCEPTION 'retry_schedule must be a list of non-negative intervals (an empty list means no retries)'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN schedule;
END $$;
COMMENT ON FUNCTION webhooks.check_retry_schedule(interval[]) IS
  'Validate a retry schedule: non-negative intervals; ''{}'' means a single attempt.';

CREATE FUNCTION webhooks.check_header_name(name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    -- RFC 9110 token characters.
    IF name IS NULL OR name !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' THEN
        RAISE EXCEPTION 'invalid header name: %', coalesce(quote_literal(name), 'NULL')
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN name;
END $$;
COMMENT ON FUNCTION webhooks.check_header_name(text) IS
  'Validate an HTTP header name.';

CREATE FUNCTION webhooks.check_headers(headers jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF headers IS NULL OR jsonb_typeof(headers) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(headers) h
                   WHERE jsonb_typeof(h.value) <> 'string'
                      OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'
                      OR (h.value #>> '{}') ~ '[^\t\x20-\x7e]') THEN
        RAISE EXCEPTION 'headers must be a JSON object of header names to string values'
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'For example: {"X-Api-Version": "2"}. Values are printable ASCII: the poller cannot send '
                       'control characters or other text in a header.';
    END IF;
    RETURN headers;
END $$;
COMMENT ON FUNCTION webhooks.check_headers(jsonb) IS
  'Validate custom request headers: a JSON object of valid header names to string values of printable ASCII.';

CREATE FUNCTION webhooks.check_auth(auth jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF auth IS NULL THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(auth) <> 'object' OR NOT (
           (auth ->> 'type' = 'bearer' AND auth ?& '{token}' AND auth - '{type,token}'::text[] = '{}')
        OR (auth ->> 'type' = 'basic' AND auth ?& '{username,password}'
            AND auth - '{type,username,password}'::text[] = '{}')
        OR (auth ->> 'type' = 'header' AND auth ?& '{name,value}' AND auth - '{type,name,value}'::text[] = '{}'
            AND auth ->> 'name' ~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'))
       OR EXISTS (SELECT 1 FROM jsonb_each(auth) a WHERE jsonb_typeof(a.value) <> 'string') THEN
        RAISE EXCEPTION 'invalid auth: %', CASE WHEN auth ? 'type' THEN 'type ' || quote_literal(auth ->> 'type')
                                               ELSE 'missing type' END
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Use {"type":"bearer","token":…}, {"type":"basic","username":…,"password":…} '
                       'or {"type":"header","name":…,"value":…}, with string values.';
    END IF;
    -- A token or header value goes into a header as it is (basic
    -- credentials are base64-encoded first): the poller can send only
    -- printable ASCII there, so anything else would fail every attempt.
    IF coalesce(auth ->> 'token', auth ->> 'value') ~ '[^\t\x20-\x7e]' THEN
        RAISE EXCEPTION 'invalid auth: the % holds characters an HTTP header cannot carry',
                        CASE WHEN auth ? 'token' THEN 'token' ELSE 'value' END
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Header values are printable ASCII: no line breaks, control characters or other text.';
    END IF;
    RETURN auth;
END $$;
COMMENT ON FUNCTION webhooks.check_auth(jsonb) IS
  'Validate endpoint credentials: bearer, basic or a custom header.';

CREATE FUNCTION webhooks.check_endpoint_name(name text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhooks.endpoint e
                WHERE e.name = check_endpoint_name.name AND e.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'an endpoint named % already exists', quote_literal(name)
          USING ERRCODE = 'unique_violation';
    END IF;
    RETURN name;
END $$;
COMMENT ON FUNCTION webhooks.check_endpoint_name(text) IS
  'Raise unique_violation if an endpoint (not deleted) already has this name.';

CREATE FUNCTION webhooks.check_positive(what text, value integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF value IS NOT NULL AND value < 1 THEN
        RAISE EXCEPTION '% must be at least 1, not %', what, value
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;
COMMENT ON FUNCTION webhooks.check_positive(text, integer) IS
  'Validate a setting that must be NULL or at least 1.';

CREATE FUNCTION webhooks.check_choice(what text, value text, choices text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF value IS NULL OR NOT value = ANY (choices) THEN
        RAISE EXCEPTION 'invalid %: % (expected one of %)', what, coalesce(quote_literal(value), 'NULL'),
                        array_to_string(choices, ', ')
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;
COMMENT ON FUNCTION webhooks.check_choice(text, text, text[]) IS
  'Validate a setting that must be one of a fixed list.';

-- Body templates (DESIGN §4): a JSON document whose string values may hold
-- {{path}} placeholders. A string that is exactly one placeholder becomes the
-- value itself (numbers stay numbers); anything else is interpolated as text.

-- Internal: every placeholder path in a template.
CREATE FUNCTION webhooks.template_paths(template jsonb) RETURNS SETOF text
LANGUAGE sql IMMUTABLE AS $$
    WITH RECURSIVE walk(v) AS (
        SELECT template
        UNION ALL
        SELECT c.v FROM walk
         CROSS JOIN LATERAL (
            SELECT e.value FROM jsonb_each(CASE WHEN jsonb_typeof(walk.v) = 'object' THEN walk.v END) e
            UNION ALL
            SELECT a.value FROM jsonb_array_elements(CASE WHEN jsonb_typeof(walk.v) = 'array' THEN walk.v END) a
         ) AS c(v)
    )
    SELECT btrim(m[1])
      FROM walk CROSS JOIN LATERAL regexp_matches(walk.v #>> '{}', '\{\{([^{}]*)\}\}', 'g') AS m
     WHERE jsonb_typeof(walk.v) = 'string'
$$;
COMMENT ON FUNCTION webhooks.template_paths(jsonb) IS 'Internal: the {{path}} placeholders used in a template.';

CREATE FUNCTION webhooks.check_template(template jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    path text;
BEGIN
    IF template IS NULL OR template = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(template) NOT IN ('object', 'array') THEN
        RAISE EXCEPTION 'a template must be a JSON object or array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR path IN SELECT webhooks.template_paths(template) LOOP
        IF NOT (path IN ('event.id', 'event.name', 'event.action', 'event.verb', 'event.timestamp',
                         'event.unix_ms', 'delivery.id', 'delivery.attempt', 'endpoint.name',
                         'data', 'previous', 'metadata')
                OR path ~ '^(data|previous|metadata)(\.[A-Za-z0-9_$-]+)+$') THEN
            RAISE EXCEPTION 'unknown template path {{%}}', path
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Use event.id, event.name, event.action, event.verb, event.timestamp, event.unix_ms, '
                           'delivery.id, delivery.attempt, endpoint.name, data.<field…>, previous.<field…> '
                           'or metadata.<field…>.';
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM jsonb_path_query(template, 'strict $.**') v
                WHERE jsonb_typeof(v) = 'string'
                  AND regexp_replace(v #>> '{}', '\{\{[^{}]*\}\}', '', 'g') ~ '\{\{|\}\}') THEN
        RAISE EXCEPTION 'a template string has an unclosed {{ or a stray }}' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN template;
END $$;
COMMENT ON FUNCTION webhooks.check_template(jsonb) IS
  'Validate a body template: a JSON object or array whose {{path}} placeholders are all known.';

-- What a template can refer to, for one attempt of one delivery.
CREATE FUNCTION webhooks.template_context(ev webhooks.event, delivery_id uuid, attempt integer, endpoint_name text)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'event', jsonb_build_object(
            'id', ev.id,
            'name', ev.event,
            'action', a.action,
            'verb', CASE a.action WHEN 'created' THEN 'create' WHEN 'updated' THEN 'update'
                                  WHEN 'deleted' THEN 'delete' ELSE a.action END,
            'timestamp', to_char(ev.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'unix_ms', (extract(epoch FROM ev.created_at) * 1000)::bigint),
        'delivery', jsonb_build_object('id', delivery_id, 'attempt', attempt),
        'endpoint', jsonb_build_object('name', endpoint_name),
        'data', ev.data,
        'previous', ev.previous,
        'metadata', jsonb_build_object('source', ev.source, 'operation', ev.operation,
                                       'key', ev.key, 'tenant', ev.tenant))
      FROM (SELECT regexp_replace(ev.event, '^.*\.', '') AS action) a
$$;
COMMENT ON FUNCTION webhooks.template_context(webhooks.event, uuid, integer, text) IS
  'The values a body template can use for one attempt (event.*, delivery.*, endpoint.name, data, previous, metadata).';

CREATE FUNCTION webhooks.render_template(template jsonb, context jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    s      text;
    whole  text[];
    m      record;
    v      jsonb;
    pieces text[];
    out    text;
BEGIN
    CASE jsonb_typeof(template)
    WHEN 'object' THEN
        RETURN (SELECT coalesce(jsonb_object_agg(x.k, webhooks.render_template(x.v, context)), '{}')
                  FROM jsonb_each(template) AS x(k, v));
    WHEN 'array' THEN
        RETURN (SELECT coalesce(jsonb_agg(webhooks.render_template(x.v, context) ORDER BY x.o), '[]')
                  FROM jsonb_array_elements(template) WITH ORDINALITY AS x(v, o));
    WHEN 'string' THEN
        s := template #>> '{}';
        IF position('{{' IN s) = 0 THEN
            RETURN template;
        END IF;
        whole := regexp_match(s, '^\{\{\s*([^{}]*?)\s*\}\}$');
        IF whole IS NOT NULL THEN
            RETURN coalesce(context #> string_to_array(whole[1], '.'), 'null');
        END IF;
        -- The text between placeholders, then each placeholder's value in
        -- turn: a value is never searched for placeholders itself (data
        -- must not pull other fields into the text).
        pieces := regexp_split_to_array(s, '\{\{\s*[^{}]*?\s*\}\}');
        out := pieces[1];
        FOR m IN SELECT r.m, r.n FROM regexp_matches(s, '\{\{\s*([^{}]*?)\s*\}\}', 'g') WITH ORDINALITY r(m, n)
                  ORDER BY r.n LOOP
            v := context #> string_to_array(m.m[1], '.');
            out := out || CASE WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN ''
                               WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}'
                               ELSE v::text END
                       || pieces[m.n + 1];
        END LOOP;
        RETURN to_jsonb(out);
    ELSE
        RETURN template;
    END CASE;
END $$;
COMMENT ON FUNCTION webhooks.render_template(jsonb, jsonb) IS
  'Render a body template against a context (see webhooks.template_context).';

-- Serialised per tenant (advisory lock) so two concurrent creations cannot
-- both take the last place.
CREATE FUNCTION webhooks.check_tenant_limit(tenant text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    max_n integer := webhooks.max_endpoints_per_tenant();
    n     integer;
BEGIN
    IF max_n > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtext('pg_webhooks.tenant'), hashtext(coalesce(tenant, '')));
        SELECT count(*) INTO n FROM webhooks.endpoint e
         WHERE e.tenant IS NOT DISTINCT FROM check_tenant_limit.tenant AND e.deleted_at IS NULL;
        IF n >= max_n THEN
            RAISE EXCEPTION 'tenant % already has % endpoints (webhooks.max_endpoints_per_tenant = %)',
                            coalesce(quote_literal(tenant), '(none)'), n, max_n
              USING ERRCODE = 'configuration_limit_exceeded';
        END IF;
    END IF;
    RETURN tenant;
END $$;
COMMENT ON FUNCTION webhooks.check_tenant_limit(text) IS
  'Raise configuration_limit_exceeded if the tenant already has webhooks.max_endpoints_per_tenant endpoints.';

-- LANGUAGE sql on purpose: the IN parameter `secret` and the returned column
-- `secret` share a name, which SQL functions allow and PL/pgSQL would not.
CREATE FUNCTION webhooks.create_endpoint(
    url              text,
    events           text[] DEFAULT '{*}',
    name             text DEFAULT NULL,
    secret           text DEFAULT NULL,
    tenant           text DEFAULT NULL,
    filter           jsonpath DEFAULT NULL,
    template         jsonb DEFAULT NULL,
    headers          jsonb DEFAULT '{}',
    auth             jsonb DEFAULT NULL,
    signature        text DEFAULT 'standard',
    signature_header text DEFAULT 'X-Webhook-Signature',
    method           text DEFAULT 'POST',
    retry_schedule   interval[] DEFAULT '{30s,2min,10min,1h,6h,24h}',
    timeout          interval DEFAULT '30s',
    connect_timeout  interval DEFAULT '10s',
    success_codes    int4multirange DEFAULT '{[200,300)}',
    max_in_flight    integer DEFAULT 16,
    ordered          boolean DEFAULT false,
    pause_after      integer DEFAULT NULL,
    description      text DEFAULT NULL,
    metadata         jsonb DEFAULT '{}'
) RETURNS TABLE (id bigint, secret text)
LANGUAGE sql AS $$
    INSERT INTO webhooks.endpoint AS e
        (name, url, events, secret, tenant, filter, template, headers, auth, signature, signature_header,
         method, retry_schedule, timeout, connect_timeout, success_codes, max_in_flight, ordered,
         pause_after, description, metadata)
    VALUES (webhooks.check_endpoint_name(create_endpoint.name),
            webhooks.check_url(create_endpoint.url),
            webhooks.check_patterns(create_endpoint.events),
            webhooks.check_secret(coalesce(create_endpoint.secret, webhooks.generate_secret())),
            webhooks.check_tenant_limit(create_endpoint.tenant),
            create_endpoint.filter,
            webhooks.check_template(create_endpoint.template),
            webhooks.check_headers(create_endpoint.headers),
            webhooks.check_auth(create_endpoint.auth),
            webhooks.check_choice('signature', create_endpoint.signature, '{standard,hex,sha256,none}'),
            webhooks.check_header_name(create_endpoint.signature_header),
            webhooks.check_choice('method', upper(create_endpoint.method), '{POST,PUT,PATCH}'),
            webhooks.check_retry_schedule(create_endpoint.retry_schedule),
            create_endpoint.timeout, create_endpoint.connect_timeout,
            create_endpoint.success_codes,
            webhooks.check_positive('max_in_flight', coalesce(create_endpoint.max_in_flight, 16)),
            coalesce(create_endpoint.ordered, false),
            webhooks.check_positive('pause_after', create_endpoint.pause_after),
            create_endpoint.description,
            coalesce(create_endpoint.metadata, '{}'))
    RETURNING e.id, e.secret
$$;
COMMENT ON FUNCTION webhooks.create_endpoint(text, text[], text, text, text, jsonpath, jsonb, jsonb, jsonb, text, text,
                                             text, interval[], interval, interval, int4multirange, integer,
                                             boolean, integer, text, jsonb) IS
  'Register a receiver. Returns its id and its secret; the secret is shown here once and never again.';

-- create_endpoint()'s checks of an endpoint row: of the columns that
-- differ from was, or of all when was is NULL (a new row, or one being
-- resumed). quietly: no warning either (see endpoint_checked()).
CREATE FUNCTION webhooks.check_endpoint_columns(e webhooks.endpoint, was webhooks.endpoint, quietly boolean)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    everything boolean := was.id IS NULL;
BEGIN
    IF everything OR e.url IS DISTINCT FROM was.url THEN
        IF NOT quietly THEN
            PERFORM webhooks.check_url(e.url);
        ELSIF webhooks.https_refuses(e.url) THEN
            RAISE EXCEPTION 'endpoint URL must use https' USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF everything OR e.events IS DISTINCT FROM was.events THEN
        PERFORM webhooks.check_patterns(e.events);
    END IF;
    IF everything OR e.secret IS DISTINCT FROM was.secret THEN
        PERFORM webhooks.check_secret(e.secret);
    END IF;
    IF e.previous_secret IS NOT NULL AND (everything OR e.previous_secret IS DISTINCT FROM was.previous_secret) THEN
        PERFORM webhooks.check_secret(e.previous_secret);
    END IF;
    IF everything OR e.template IS DISTINCT FROM was.template THEN
        PERFORM webhooks.check_template(e.template);
    END IF;
    IF everything OR e.headers IS DISTINCT FROM was.headers THEN
        PERFORM webhooks.check_headers(e.headers);
    END IF;
    IF everything OR e.auth IS DISTINCT FROM was.auth THEN
        PERFORM webhooks.check_auth(e.auth);
    END IF;
    IF everything OR e.signature_header IS DISTINCT FROM was.signature_header THEN
        PERFORM webhooks.check_header_name(e.signature_header);
    END IF;
    IF everything OR e.retry_schedule IS DISTINCT FROM was.retry_schedule THEN
        PERFORM webhooks.check_retry_schedule(e.retry_schedule);
    END IF;
    IF everything OR (e.url, e.client_cert, e.client_key, e.ca_cert)
                     IS DISTINCT FROM (was.url, was.client_cert, was.client_key, was.ca_cert) THEN
        PERFORM webhooks.check_endpoint_tls(e.url, e.client_cert, e.client_key, e.ca_cert);
    END IF;
END $$;
COMMENT ON FUNCTION webhooks.check_endpoint_columns(webhooks.endpoint, webhooks.endpoint, boolean) IS
  'Internal: create_endpoint()''s checks (22023 and friends) of the columns of an endpoint row that differ from '
  'another (all when it is NULL); quietly raises no warning.';

-- The endpoint table keeps itself valid, whoever writes to it (an admin's
-- own UPDATE bypasses create_endpoint()/update_endpoint()): one row that
-- cannot be signed or sent would otherwise make every claim fail, for every
-- endpoint. Only the columns a statement changes are checked, so the
-- poller's updates of counters cost little.
CREATE FUNCTION webhooks.endpoint_checked() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fresh      boolean := TG_OP = 'INSERT';
    missing    text;
    violated   text;
    problem    text;
    plain_http boolean;
BEGIN
    -- (Names are kept unique by the index endpoint_name.)
    -- The table's own NOT NULL and CHECK constraints are checked here too
    -- (NOT NULL first, CHECKs last): PostgreSQL's message for a violated one
    -- carries DETAIL "Failing row contains (…)", secret and client_key
    -- included, into the server log. Raised here before it with the same
    -- SQLSTATE and column or constraint name, and no values; the constraints
    -- themselves stay, for a row written with this trigger disabled.
    missing := CASE
        WHEN NEW.id IS NULL THEN 'id'
        WHEN NEW.url IS NULL THEN 'url'
        WHEN NEW.events IS NULL THEN 'events'
        WHEN NEW.secret IS NULL THEN 'secret'
        WHEN NEW.headers IS NULL THEN 'headers'
        WHEN NEW.signature IS NULL THEN 'signature'
        WHEN NEW.signature_header IS NULL THEN 'signature_header'
        WHEN NEW.method IS NULL THEN 'method'
        WHEN NEW.retry_schedule IS NULL THEN 'retry_schedule'
        WHEN NEW.timeout IS NULL THEN 'timeout'
        WHEN NEW.connect_timeout IS NULL THEN 'connect_timeout'
        WHEN NEW.success_codes IS NULL THEN 'success_codes'
        WHEN NEW.max_in_flight IS NULL THEN 'max_in_flight'
        WHEN NEW.ordered IS NULL THEN 'ordered'
        WHEN NEW.active IS NULL THEN 'active'
        WHEN NEW.metadata IS NULL THEN 'metadata'
        WHEN NEW.consecutive_failures IS NULL THEN 'consecutive_failures'
        WHEN NEW.created_at IS NULL THEN 'created_at'
        WHEN NEW.updated_at IS NULL THEN 'updated_at'
        WHEN NEW.public_headers IS NULL THEN 'public_headers'
    END;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'null value in column "%" of relation "endpoint" violates not-null constraint', missing
            USING ERRCODE = 'not_null_violation', SCHEMA = 'webhooks', TABLE = 'endpoint', COLUMN = missing;
    END IF;
    IF fresh THEN
        -- A new row is never refused nor warned about for its values
        -- (create_endpoint() has checked them and warned already):
        -- pg_restore's COPY writes rows straight into the table, and any
        -- message raised for one carries COPY's context line, the start of
        -- the row with its secret, into the log; one row refused would
        -- also lose every endpoint of the restore. A row that fails the
        -- checks (kept paused by the upgrade to 0.2.0, or an http URL from
        -- a server where webhooks.require_https was off) is kept paused;
        -- resuming it runs every check. paused_reason names no value.
        BEGIN
            PERFORM webhooks.check_endpoint_columns(NEW, NULL, true);
        EXCEPTION WHEN OTHERS THEN
            problem := SQLSTATE;
        END;
        IF problem IS NOT NULL AND NEW.active THEN
            BEGIN
                plain_http := webhooks.https_refuses(NEW.url);
            EXCEPTION WHEN OTHERS THEN
                plain_http := false;
            END;
            NEW.active := false;
            NEW.paused_at := now();
            NEW.paused_reason := CASE WHEN plain_http THEN 'its URL is not https, and webhooks.require_https is on'
                                      ELSE format('invalid when written (SQLSTATE %s): mend it with '
                                                  'webhooks.update_endpoint(), then resume it', problem) END;
        END IF;
    ELSE
        PERFORM webhooks.check_endpoint_columns(NEW, CASE WHEN NEW.active AND NOT OLD.active THEN NULL ELSE OLD END,
                                                false);
    END IF;
    violated := CASE
        WHEN jsonb_typeof(NEW.headers) <> 'object' THEN 'endpoint_headers_object'
        WHEN NEW.method NOT IN ('POST', 'PUT', 'PATCH') THEN 'endpoint_method'
        WHEN NEW.signature NOT IN ('standard', 'hex', 'sha256', 'none') THEN 'endpoint_signature'
        WHEN NOT (NEW.timeout > '0' AND NEW.connect_timeout > '0') THEN 'endpoint_timeouts'
        WHEN NEW.max_in_flight <= 0 THEN 'endpoint_max_in_flight'
        WHEN NEW.pause_after <= 0 THEN 'endpoint_pause_after'
    END;
    IF violated IS NOT NULL THEN
        RAISE EXCEPTION 'new row for relation "endpoint" violates check constraint "%"', violated
            USING ERRCODE = 'check_violation', SCHEMA = 'webhooks', TABLE = 'endpoint', CONSTRAINT = violated;
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION webhooks.endpoint_checked() IS
  'Internal trigger of webhooks.endpoint: the same checks as create_endpoint() on every changed column, '
  'whoever writes (22023 and friends, as there), then the table''s NOT NULL and CHECK constraints, raised without '
  'the row''s values (PostgreSQL''s own DETAIL would log the secrets). A new row that fails the checks (a '
  'restore) is kept paused, with no message; resuming an endpoint runs every check.';
CREATE TRIGGER endpoint_checked BEFORE INSERT OR UPDATE ON webhooks.endpoint
    FOR EACH ROW EXECUTE FUNCTION webhooks.endpoint_checked();

-- Mutual TLS for one endpoint. The shapes are checked here (both parts or
-- neither, PEM of the right kind, an unencrypted key); the poller parses
-- them when it builds the endpoint's client, and a bad one is that
-- endpoint's attempt error, never another's. No message shows a value.
CREATE FUNCTION webhooks.check_endpoint_tls(url text, client_cert text, client_key text, ca_cert text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (client_cert IS NOT NULL OR ca_cert IS NOT NULL) AND url !~* '^https:' THEN
        RAISE EXCEPTION 'client_cert and ca_cert are for https endpoints: this endpoint''s URL is not https'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (client_cert IS NULL) <> (client_key IS NULL) THEN
        RAISE EXCEPTION 'client_cert and client_key go together: give both or neither'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF client_cert IS NOT NULL AND client_cert !~ '-----BEGIN CERTIFICATE-----' THEN
        RAISE EXCEPTION 'client_cert is not a PEM certificate (-----BEGIN CERTIFICATE-----)'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF client_key IS NOT NULL AND client_key ~ '-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: *4, *ENCRYPTED' THEN
        RAISE EXCEPTION 'client_key is encrypted: the poller needs it unencrypted (it is stored like a secret)'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF client_key IS NOT NULL AND client_key !~ '-----BEGIN (RSA |EC )?PRIVATE KEY-----' THEN
        RAISE EXCEPTION 'client_key is not a PEM private key (-----BEGIN PRIVATE KEY-----)'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ca_cert IS NOT NULL AND ca_cert !~ '-----BEGIN CERTIFICATE-----' THEN
        RAISE EXCEPTION 'ca_cert is not a PEM certificate (-----BEGIN CERTIFICATE-----)'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION webhooks.check_endpoint_tls(text, text, text, text) IS
  'Internal: raise 22023 unless client_cert and client_key are both PEM (the key unencrypted) or both NULL, '
  'ca_cert is PEM certificates or NULL, and the URL is https if either is set; never shows a value.';

CREATE FUNCTION webhooks.set_endpoint_tls(id bigint, client_cert text, client_key text, ca_cert text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Checked again by the endpoint's trigger; first here for the order of
    -- the messages.
    PERFORM webhooks.check_endpoint_tls((webhooks.endpoint_row(set_endpoint_tls.id)).url,
                                        set_endpoint_tls.client_cert, set_endpoint_tls.client_key,
                                        set_endpoint_tls.ca_cert);
    UPDATE webhooks.endpoint e
       SET client_cert = set_endpoint_tls.client_cert, client_key = set_endpoint_tls.client_key,
           ca_cert = set_endpoint_tls.ca_cert, updated_at = now()
     WHERE e.id = set_endpoint_tls.id;
END $$;
COMMENT ON FUNCTION webhooks.set_endpoint_tls(bigint, text, text, text) IS
  'Set (or, with NULLs, remove) the client certificate and key the poller presents to this endpoint, and CA '
  'certificates trusted for it. Rotation: call it with the new pair; claims from then on use it.';

CREATE FUNCTION webhooks.endpoint_row(id bigint) RETURNS webhooks.endpoint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    e webhooks.endpoint;
BEGIN
    SELECT * INTO e FROM webhooks.endpoint x WHERE x.id = endpoint_row.id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % does not exist', coalesce(id::text, 'NULL')
          USING ERRCODE = 'undefined_object';
    END IF;
    RETURN e;
END $$;
COMMENT ON FUNCTION webhooks.endpoint_row(bigint) IS
  'Internal: the endpoint with this id, or an undefined_object error if there is none (or it was deleted).';

-- NULL means "leave as is" for every setting.
CREATE FUNCTION webhooks.update_endpoint(
    id               bigint,
    url              text DEFAULT NULL,
    events           text[] DEFAULT NULL,
    name             text DEFAULT NULL,
    active           boolean DEFAULT NULL,
    tenant           text DEFAULT NULL,
    filter           jsonpath DEFAULT NULL,
    template         jsonb DEFAULT NULL,
    headers          jsonb DEFAULT NULL,
    auth             jsonb DEFAULT NULL,
    signature        text DEFAULT NULL,
    signature_header text DEFAULT NULL,
    method           text DEFAULT NULL,
    retry_schedule   interval[] DEFAULT NULL,
    timeout          interval DEFAULT NULL,
    connect_timeout  interval DEFAULT NULL,
    success_codes    int4multirange DEFAULT NULL,
    max_in_flight    integer DEFAULT NULL,
    ordered          boolean DEFAULT NULL,
    pause_after      integer DEFAULT NULL,
    description      text DEFAULT NULL,
    metadata         jsonb DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    e webhooks.endpoint := webhooks.endpoint_row(id);
BEGIN
    IF name IS NOT NULL AND name IS DISTINCT FROM e.name THEN
        PERFORM webhooks.check_endpoint_name(name);
    END IF;
    IF tenant IS NOT NULL AND tenant IS DISTINCT FROM e.tenant THEN
        PERFORM webhooks.check_tenant_limit(tenant);
    END IF;
    UPDATE webhooks.endpoint x SET
        url              = coalesce(CASE WHEN update_endpoint.url IS NOT NULL
                                         THEN webhooks.check_url(update_endpoint.url) END, x.url),
        events           = coalesce(CASE WHEN update_endpoint.events IS NOT NULL
                                         THEN webhooks.check_patterns(update_endpoint.events) END, x.events),
        name             = coalesce(update_endpoint.name, x.name),
        active           = coalesce(update_endpoint.active, x.active),
        -- Re-activating clears a pause and its failure count.
        paused_at        = CASE WHEN update_endpoint.active THEN NULL ELSE x.paused_at END,
        paused_reason    = CASE WHEN update_endpoint.active THEN NULL ELSE x.paused_reason END,
        consecutive_failures = CASE WHEN update_endpoint.active THEN 0 ELSE x.consecutive_failures END,
        tenant           = coalesce(update_endpoint.tenant, x.tenant),
        filter           = coalesce(update_endpoint.filter, x.filter),
        -- 'null'::jsonb removes a template.
        template         = CASE WHEN update_endpoint.template IS NULL THEN x.template
                                ELSE webhooks.check_template(update_endpoint.template) END,
        headers          = coalesce(CASE WHEN update_endpoint.headers IS NOT NULL
                                         THEN webhooks.check_headers(update_endpoint.headers) END, x.headers),
        auth             = coalesce(webhooks.check_auth(update_endpoint.auth), x.auth),
        signature        = coalesce(CASE WHEN update_endpoint.signature IS NOT NULL
                                         THEN webhooks.check_choice('signature', update_endpoint.signature,
                                                                    '{standard,hex,sha256,none}') END, x.signature),
        signature_header = coalesce(CASE WHEN update_endpoint.signature_header IS NOT NULL
                                         THEN webhooks.check_header_name(update_endpoint.signature_header) END,
                                    x.signature_header),
        method           = coalesce(CASE WHEN update_endpoint.method IS NOT NULL
                                         THEN webhooks.check_choice('method', upper(update_endpoint.method),
                                                                    '{POST,PUT,PATCH}') END, x.method),
        retry_schedule   = coalesce(CASE WHEN update_endpoint.retry_schedule IS NOT NULL
                                         THEN webhooks.check_retry_schedule(update_endpoint.retry_schedule) END,
                                    x.retry_schedule),
        timeout          = coalesce(update_endpoint.timeout, x.timeout),
        connect_timeout  = coalesce(update_endpoint.connect_timeout, x.connect_timeout),
        success_codes    = coalesce(update_endpoint.success_codes, x.success_codes),
        max_in_flight    = coalesce(webhooks.check_positive('max_in_flight', update_endpoint.max_in_flight),
                                    x.max_in_flight),
        ordered          = coalesce(update_endpoint.ordered, x.ordered),
        pause_after      = coalesce(webhooks.check_positive('pause_after', update_endpoint.pause_after),
                                    x.pause_after),
        description      = coalesce(update_endpoint.description, x.description),
        metadata         = coalesce(update_endpoint.metadata, x.metadata),
        updated_at       = now()
     WHERE x.id = e.id;
END $$;
COMMENT ON FUNCTION webhooks.update_endpoint(bigint, text, text[], text, boolean, text, jsonpath, jsonb, jsonb, jsonb,
                                             text, text, text, interval[], interval, interval, int4multirange,
                                             integer, boolean, integer, text, jsonb) IS
  'Change an endpoint; NULL leaves a setting as it is (template => ''null'' removes the template). '
  'active => true also resumes a paused endpoint.';

CREATE FUNCTION webhooks.delete_endpoint(id bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e webhooks.endpoint := webhooks.endpoint_row(id);
    n integer;
BEGIN
    UPDATE webhooks.endpoint x SET deleted_at = now(), active = false, updated_at = now()
     WHERE x.id = e.id;
    UPDATE webhooks.delivery d SET status = 'cancelled', completed_at = now(), locked_until = NULL,
                                   last_error = 'endpoint deleted'
     WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'delivering');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION webhooks.delete_endpoint(bigint) IS
  'Delete an endpoint: its unfinished deliveries are cancelled (returns how many); its history stays queryable.';

CREATE FUNCTION webhooks.rotate_secret(id bigint, grace interval DEFAULT '24 hours', secret text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    e          webhooks.endpoint := webhooks.endpoint_row(id);
    new_secret text := webhooks.check_secret(coalesce(rotate_secret.secret, webhooks.generate_secret()));
BEGIN
    IF grace IS NULL OR grace < '0' THEN
        RAISE EXCEPTION 'grace must be a non-negative interval' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhooks.endpoint x
       SET previous_secret = x.secret, previous_secret_until = now() + grace,
           secret = new_secret, updated_at = now()
     WHERE x.id = e.id;
    RETURN new_secret;
END $$;
COMMENT ON FUNCTION webhooks.rotate_secret(bigint, interval, text) IS
  'Replace an endpoint''s secret and return the new one; during the grace period requests carry signatures '
  'with both the old and the new secret.';

-- What readers may see of an endpoint's URL and headers: a URL's path and
-- query often carry a secret (Slack's and Discord's webhook URLs do), and a
-- custom header is often a credential; an admin marks the headers that are
-- not (set_public_headers()).
COMMENT ON FUNCTION webhooks.redacted_url(text) IS
  'An endpoint URL as readers see it: scheme, host and port as the poller parses them; any path, query or '
  'fragment shown as /[redacted].';

CREATE FUNCTION webhooks.redacted_headers(headers jsonb, public_headers text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(h.key, CASE WHEN lower(h.key) IN (SELECT lower(p) FROM unnest(public_headers) p)
                                                 THEN h.value ELSE '"[redacted]"'::jsonb END), '{}')
      FROM jsonb_each(headers) h
$$;
COMMENT ON FUNCTION webhooks.redacted_headers(jsonb, text[]) IS
  'Custom headers as readers see them: values [redacted] except those of public_headers (names compared '
  'case-insensitively).';

CREATE FUNCTION webhooks.set_public_headers(endpoint bigint, public_headers text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    e webhooks.endpoint := webhooks.endpoint_row(endpoint);
BEGIN
    PERFORM webhooks.check_header_name(h) FROM unnest(coalesce(public_headers, '{}')) h;
    UPDATE webhooks.endpoint x SET public_headers = coalesce(set_public_headers.public_headers, '{}'),
                                   updated_at = now()
     WHERE x.id = e.id;
END $$;
COMMENT ON FUNCTION webhooks.set_public_headers(bigint, text[]) IS
  'Name the custom headers of an endpoint whose values are not secret: readers see them in webhooks.endpoints '
  'and in attempts; every other custom header''s value is [redacted] there.';

-- Admins (and superusers) see URLs and headers whole: they manage them.
CREATE VIEW webhooks.endpoints AS
SELECT id, name,
       CASE WHEN pg_has_role('webhooks_admin', 'USAGE') THEN url ELSE webhooks.redacted_url(url) END AS url,
       events, tenant, filter, template,
       CASE WHEN pg_has_role('webhooks_admin', 'USAGE') THEN headers
            ELSE webhooks.redacted_headers(headers, public_headers) END AS headers,
       auth ->> 'type' AS auth_type, signature,
       signature_header, method, retry_schedule, timeout, connect_timeout, success_codes,
       max_in_flight, ordered, pause_after, active, paused_at, paused_reason, description, metadata,
       consecutive_failures, previous_secret_until AS rotation_grace_until, created_at, updated_at,
       client_cert IS NOT NULL AS client_cert_set, ca_cert IS NOT NULL AS ca_cert_set
  FROM webhooks.endpoint
 WHERE deleted_at IS NULL;
COMMENT ON VIEW webhooks.endpoints IS
  'Endpoints without their secrets or credentials; for roles that are not webhooks_admin members, URL path and '
  'query, and custom header values not marked public, [redacted] too.';

---------------------------------------------------------------------------
-- Delivery: the contract with pollers
---------------------------------------------------------------------------

-- The default envelope (DESIGN §4); also what endpoint filters see.
CREATE FUNCTION webhooks.envelope(ev webhooks.event) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', ev.id,
        'event', ev.event,
        'timestamp', to_char(ev.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', ev.data,
        'previous', ev.previous,
        'metadata', jsonb_build_object('source', ev.source, 'operation', ev.operation,
                                       'key', ev.key, 'tenant', ev.tenant))
$$;
COMMENT ON FUNCTION webhooks.envelope(webhooks.event) IS
  'The default JSON body of an event: {id, event, timestamp, data, previous, metadata}.';

-- jsonb's text form is canonical, so the same event renders to the same bytes
-- on every retry.
CREATE FUNCTION webhooks.render_body(ev webhooks.event) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT webhooks.envelope(ev)::text
$$;
COMMENT ON FUNCTION webhooks.render_body(webhooks.event) IS
  'The exact bytes sent (and signed) for an event.';

-- One definition of "this event goes to this endpoint", used by fan-out and
-- by the log's view of events not fanned out yet.
CREATE FUNCTION webhooks.endpoint_matches(e webhooks.endpoint, ev webhooks.event) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT e.deleted_at IS NULL
       AND webhooks.event_matches(e.events, ev.event)
       AND (e.tenant IS NULL OR e.tenant = ev.tenant)
       AND (e.filter IS NULL OR coalesce(jsonb_path_match(webhooks.envelope(ev), e.filter, silent => true), false))
$$;
COMMENT ON FUNCTION webhooks.endpoint_matches(webhooks.endpoint, webhooks.event) IS
  'Does the event go to the endpoint (event pattern, tenant, jsonpath filter)? An endpoint with a tenant '
  'gets only that tenant''s events; one without gets all. Inactive endpoints still match: their deliveries '
  'wait until they are resumed.';

-- Create the deliveries of events not fanned out yet, oldest first. One
-- fan-out at a time (others skip, they have nothing to add): deliveries of
-- one row's changes are then created in commit order, which the ordered
-- claim relies on.
CREATE FUNCTION webhooks.fan_out(max_events integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('pg_webhooks.fan_out')) THEN
        RETURN 0;
    END IF;
    -- A range, not a join with the ids: the partial index answers it in each
    -- partition, and partitions past the bound are pruned.
    WITH marked AS (
        UPDATE webhooks.event ev SET fanned_out = true
         WHERE NOT ev.fanned_out
           AND ev.id <= coalesce((SELECT t.id FROM webhooks.event t WHERE NOT t.fanned_out
                                   ORDER BY t.id OFFSET greatest(max_events, 1) - 1 LIMIT 1),
                                 'ffffffff-ffff-ffff-ffff-ffffffffffff')
        RETURNING ev AS r
    ), created AS (
        -- Derived ids: a fan-out made again (after a failover lost the first)
        -- makes the same ones, hence the same webhook-ids.
        INSERT INTO webhooks.delivery (id, event_id, endpoint_id, ordering_key, created_at, next_attempt_at)
        SELECT webhooks.delivery_id((m.r).id, e.id), (m.r).id, e.id, webhooks.ordering_key(e, m.r),
               (m.r).created_at, now()
          FROM marked m
          JOIN webhooks.endpoint e ON webhooks.endpoint_matches(e, m.r)
         ORDER BY (m.r).id
        -- An event fanned out again while its deliveries exist (fanned_out
        -- reset by hand, a partial restore) adds nothing rather than
        -- failing every claim.
            ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO n FROM created;
    RETURN n;
END $$;
COMMENT ON FUNCTION webhooks.fan_out(integer) IS
  'Create one pending delivery per (new event, matching endpoint). Called by webhooks.claim(); returns deliveries created.';

-- Claim up to batch_size due deliveries for one poller. Due means pending and
-- next_attempt_at reached, or delivering with an expired lease (a poller died).
-- Per endpoint, at most max_in_flight deliveries are delivering at once across
-- all pollers (claims for one endpoint are serialised by an advisory lock,
-- skipped rather than waited for); on an ordered endpoint only the oldest
-- unfinished delivery of each key is eligible. Returns ready-to-send requests,
-- signed now so that each attempt carries its own webhook-timestamp; secrets
-- never leave the database.
CREATE FUNCTION webhooks.claim(batch_size integer DEFAULT 100, lease interval DEFAULT '60s')
RETURNS TABLE (
    delivery_id        uuid,
    attempt            integer,
    endpoint_id        bigint,
    event              text,
    url                text,
    method             text,
    headers            jsonb,
    body               text,
    timeout_ms         bigint,
    connect_timeout_ms bigint,
    redact             text[],
    event_created_at   double precision,
    client_cert        text,
    client_key         text,
    ca_cert            text
)
LANGUAGE plpgsql AS $$
DECLARE
    locked     bigint[];
    picked     uuid[];
    user_agent text := 'pg_webhooks/' || webhooks.version();
BEGIN
    PERFORM webhooks.fan_out(greatest(batch_size * 10, 1000));
    -- Lock the endpoints with due work that no other claim is working on. This
    -- is its own statement so that the next one, with a fresh snapshot, sees
    -- every claim committed before we got a lock when it counts in-flight.
    SELECT coalesce(array_agg(b.id), '{}') INTO locked
      FROM (SELECT e.id
              FROM webhooks.endpoint e
             -- LATERAL ... LIMIT 1: one index probe per endpoint. As EXISTS, the
             -- planner may hash every unfinished delivery instead.
             -- (ORDER BY keeps it on the due index: a sequential scan "finds
             -- one quickly" only while finished deliveries are few.)
             CROSS JOIN LATERAL (SELECT 1 FROM webhooks.delivery d
                                  WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'delivering')
                                    AND d.next_attempt_at <= now()
                                  ORDER BY d.next_attempt_at
                                  LIMIT 1) due
             WHERE e.active AND e.deleted_at IS NULL
            OFFSET 0) b  -- a fence: lock only endpoints that passed the filter
     WHERE pg_try_advisory_xact_lock(hashtext('pg_webhooks.endpoint'), b.id::integer);
    IF cardinality(locked) = 0 THEN
        RETURN;
    END IF;
    -- Pick, then lock by id in a statement of its own: as one statement, the
    -- planner, misled by statistics of a queue that just grew, could walk
    -- every due delivery for each picked one (seen: 300 ms for 64 rows).
    WITH ep AS (
        SELECT e.id,
               e.max_in_flight - (SELECT count(*) FROM webhooks.delivery f
                                   WHERE f.endpoint_id = e.id AND f.status = 'delivering'
                                     AND f.next_attempt_at > now()) AS room
          FROM webhooks.endpoint e
         WHERE e.id = ANY (locked)
    ), candidate AS (
        SELECT c.id, c.next_attempt_at
          FROM ep
         CROSS JOIN LATERAL (
            SELECT d.id, d.next_attempt_at
              FROM webhooks.delivery d
             WHERE d.endpoint_id = ep.id AND d.status IN ('pending', 'delivering')
               AND d.next_attempt_at <= now()
               AND (d.ordering_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM webhooks.delivery o
                         WHERE o.endpoint_id = d.endpoint_id AND o.ordering_key = d.ordering_key
                           AND o.status IN ('pending', 'delivering') AND o.event_id < d.event_id))
             ORDER BY d.next_attempt_at
             LIMIT greatest(ep.room, 0)) c
    )
    SELECT array_agg(c.id) INTO picked
      FROM (SELECT c.id FROM candidate c ORDER BY c.next_attempt_at LIMIT batch_size) c;
    IF picked IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT d.id
          FROM webhooks.delivery d
         WHERE d.id = ANY (picked)
           AND d.status IN ('pending', 'delivering') AND d.next_attempt_at <= now()
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
        -- The lease covers the endpoint's timeouts (and a margin to record
        -- the outcome): a shorter one would let another claim send the
        -- delivery again while the first request is still waiting for its
        -- answer, and exceed the endpoint's max_in_flight.
        UPDATE webhooks.delivery d
           SET status = 'delivering',
               attempts = d.attempts + 1,
               locked_until = now() + greatest(lease, e.connect_timeout + e.timeout + interval '2 seconds'),
               next_attempt_at = now() + greatest(lease, e.connect_timeout + e.timeout + interval '2 seconds')
          FROM due, webhooks.endpoint e
         WHERE d.id = due.id AND e.id = d.endpoint_id
        RETURNING d.id, d.attempts, d.endpoint_id, d.event_id
    )
    SELECT c.id, c.attempts, e.id, ev.event, e.url, e.method,
           e.headers
             || webhooks.auth_headers(e.auth)
             || jsonb_build_object(
                    'Content-Type', 'application/json',
                    'User-Agent', user_agent,
                    'X-Webhook-Event', ev.event,
                    'X-Webhook-Delivery-Id', c.id::text,
                    'X-Webhook-Attempt', c.attempts::text)
             || webhooks.signature_headers(e, c.id, r.body),
           r.body,
           (extract(epoch FROM e.timeout) * 1000)::bigint,
           (extract(epoch FROM e.connect_timeout) * 1000)::bigint,
           -- Recorded as [redacted] in attempts: credentials, and custom
           -- headers not marked public.
           CASE e.auth ->> 'type' WHEN 'header' THEN ARRAY[e.auth ->> 'name']
                                  WHEN 'bearer' THEN '{Authorization}'::text[]
                                  WHEN 'basic' THEN '{Authorization}'::text[]
                                  ELSE '{}'::text[] END
             || ARRAY(SELECT h FROM jsonb_object_keys(e.headers) h
                       WHERE lower(h) NOT IN (SELECT lower(p) FROM unnest(e.public_headers) p)),
           extract(epoch FROM ev.created_at)::double precision,
           e.client_cert, e.client_key, e.ca_cert
      FROM claimed c
      JOIN webhooks.endpoint e ON e.id = c.endpoint_id
      JOIN webhooks.event ev ON ev.id = c.event_id
     CROSS JOIN LATERAL (
        SELECT CASE WHEN e.template IS NULL THEN webhooks.render_body(ev)
                    ELSE webhooks.render_template(e.template,
                             webhooks.template_context(ev, c.id, c.attempts, e.name))::text
               END AS body) r;
END $$;
COMMENT ON FUNCTION webhooks.claim(integer, interval) IS
  'Poller API: fan out new events, then lease up to batch_size due deliveries (FOR UPDATE SKIP LOCKED, '
  'max_in_flight and ordered honoured; each lease at least the endpoint''s connect_timeout + timeout + 2 s) '
  'and return signed, ready-to-send requests.';

CREATE FUNCTION webhooks.auth_headers(auth jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE auth ->> 'type'
        WHEN 'bearer' THEN jsonb_build_object('Authorization', 'Bearer ' || (auth ->> 'token'))
        WHEN 'basic' THEN jsonb_build_object('Authorization', 'Basic ' ||
             translate(encode(convert_to((auth ->> 'username') || ':' || (auth ->> 'password'), 'UTF8'),
                              'base64'), E'\n', ''))
        WHEN 'header' THEN jsonb_build_object(auth ->> 'name', auth ->> 'value')
        ELSE '{}'::jsonb
    END
$$;
COMMENT ON FUNCTION webhooks.auth_headers(jsonb) IS
  'Internal: the request headers that carry an endpoint''s credentials.';

-- Standard Webhooks headers (unless signature = 'none'), plus the endpoint's
-- own signature header for the 'hex' and 'sha256' styles. During a secret
-- rotation's grace period both secrets sign. The timestamp is the claiming
-- transaction's start, so every attempt carries its own. One expression, no
-- subqueries: Postgres inlines it into the claim instead of calling it per row.
CREATE FUNCTION webhooks.signature_headers(e webhooks.endpoint, delivery_id uuid, body text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN e.signature = 'none' THEN '{}'::jsonb ELSE
        jsonb_build_object(
            'webhook-id', delivery_id::text,
            'webhook-timestamp', extract(epoch FROM now())::bigint::text,
            'webhook-signature',
                webhooks.sign_standard(e.secret, delivery_id::text, extract(epoch FROM now())::bigint, body)
                || CASE WHEN e.previous_secret IS NOT NULL AND e.previous_secret_until > now()
                        THEN ' ' || webhooks.sign_standard(e.previous_secret, delivery_id::text,
                                                           extract(epoch FROM now())::bigint, body)
                        ELSE '' END)
        || CASE e.signature
             WHEN 'hex' THEN jsonb_build_object(e.signature_header, webhooks.sign_hex(e.secret, body))
             WHEN 'sha256' THEN jsonb_build_object(e.signature_header, 'sha256=' || webhooks.sign_hex(e.secret, body))
             ELSE '{}'::jsonb
           END
    END
$$;
COMMENT ON FUNCTION webhooks.signature_headers(webhooks.endpoint, uuid, text) IS
  'Internal: signature headers of one attempt (fresh webhook-timestamp, both secrets during rotation).';

-- The delay before retry number `attempt` (1-based: the delay after the first
-- failed attempt is schedule[1]). NULL when the schedule is exhausted.
-- jitter in [0,1] spreads retries by ±10% so a receiver that comes back is not
-- hit by every queued retry at once; Retry-After replaces the scheduled delay
-- but is capped at the schedule's longest step.
CREATE FUNCTION webhooks.retry_delay(schedule interval[], attempt integer,
                                     retry_after interval DEFAULT NULL,
                                     jitter double precision DEFAULT 0.5)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN attempt < 1 OR attempt > coalesce(cardinality(schedule), 0) THEN NULL
        WHEN retry_after IS NOT NULL AND retry_after >= '0' THEN
            least(retry_after, (SELECT max(s) FROM unnest(schedule) s))
        ELSE schedule[attempt] * (0.9 + 0.2 * least(greatest(jitter, 0), 1))
    END
$$;
COMMENT ON FUNCTION webhooks.retry_delay(interval[], integer, interval, double precision) IS
  'Pure retry policy: delay before the next attempt after `attempt` failures, or NULL when exhausted.';

-- What happens after an attempt that did not succeed (or whose lease is no
-- longer ours): retry on schedule, or fail, count it, emit system events and
-- pause the endpoint when its policy says so.
CREATE FUNCTION webhooks.record_outcome(
    delivery_id   uuid,
    attempt       integer,
    status_code   integer,
    error         text,
    retry_after_s double precision
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    d     webhooks.delivery;
    ep    webhooks.endpoint;
    delay interval;
    why   text := coalesce(error, 'HTTP ' || status_code);
BEGIN
    SELECT * INTO d FROM webhooks.delivery x WHERE x.id = record_outcome.delivery_id FOR UPDATE;
    -- Not ours any more: the lease expired and the delivery was claimed again,
    -- or finished, or deleted. The attempt is logged; nothing else changes.
    IF NOT FOUND OR d.status <> 'delivering' OR d.attempts <> record_outcome.attempt THEN
        RETURN 'stale';
    END IF;
    SELECT * INTO ep FROM webhooks.endpoint e WHERE e.id = d.endpoint_id;

    IF status_code IS NOT NULL AND ep.success_codes @> status_code THEN
        UPDATE webhooks.delivery x
           SET status = 'succeeded', completed_at = now(), locked_until = NULL,
               last_status_code = status_code, last_error = NULL
         WHERE x.id = d.id;
        UPDATE webhooks.endpoint e SET consecutive_failures = 0
         WHERE e.id = ep.id AND e.consecutive_failures <> 0;
        RETURN 'succeeded';
    END IF;

    IF status_code = 410 THEN
        -- The receiver says it is gone: stop now instead of retrying for a day.
        PERFORM webhooks.pause_endpoint(ep.id, '410 Gone from ' || webhooks.redacted_url(ep.url));
        delay := NULL;
    ELSE
        delay := webhooks.retry_delay(
            ep.retry_schedule, d.attempts,
            -- (Bounded: a receiver's Retry-After of 1e19 s must not overflow.)
            CASE WHEN status_code IN (429, 503) THEN make_interval(secs => least(retry_after_s, 31622400)) END,
            random());
    END IF;
    UPDATE webhooks.delivery x
       SET status = CASE WHEN delay IS NULL THEN 'failed' ELSE 'pending' END,
           next_attempt_at = CASE WHEN delay IS NULL THEN x.next_attempt_at ELSE now() + delay END,
           completed_at = CASE WHEN delay IS NULL THEN now() END,
           locked_until = NULL,
           last_status_code = status_code,
           last_error = why
     WHERE x.id = d.id;
    IF delay IS NOT NULL THEN
        RETURN 'pending';
    END IF;

    UPDATE webhooks.endpoint e SET consecutive_failures = e.consecutive_failures + 1
     WHERE e.id = ep.id
    RETURNING * INTO ep;
    -- System events, unless this delivery carried one (a failing admin
    -- endpoint must not feed itself).
    IF (SELECT ev.event NOT LIKE 'webhooks.%' FROM webhooks.event ev WHERE ev.id = d.event_id) THEN
        PERFORM webhooks.emit_own('webhooks.delivery.failed', jsonb_build_object(
            'delivery_id', d.id, 'event_id', d.event_id, 'endpoint_id', ep.id, 'endpoint', ep.name,
            'attempts', d.attempts, 'last_status_code', status_code, 'last_error', why), key => ep.id::text);
        IF ep.active AND ep.pause_after IS NOT NULL AND ep.consecutive_failures >= ep.pause_after THEN
            PERFORM webhooks.pause_endpoint(ep.id, ep.consecutive_failures || ' consecutive failed deliveries');
        END IF;
    END IF;
    RETURN 'failed';
END $$;
COMMENT ON FUNCTION webhooks.record_outcome(uuid, integer, integer, text, double precision) IS
  'Internal: decide and apply the next state of one delivery after an attempt (used by complete_batch).';

-- Record many attempts in one transaction and decide what happens next. The
-- common case — a success for a lease we still hold — is one set-based
-- UPDATE; everything else goes through record_outcome() one by one. Arrays
-- are parallel. An outcome for a lease that is no longer ours (it expired and
-- another poller re-claimed the delivery) is logged but changes nothing else.
CREATE FUNCTION webhooks.complete_batch(
    delivery_ids     uuid[],
    attempts         integer[],
    status_codes     integer[],
    errors           text[],
    durations_ms     double precision[],
    request_headers  jsonb[],
    response_headers jsonb[],
    response_bodies  text[],
    retry_after_s    double precision[],
    poller           text DEFAULT NULL
) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    body_limit integer :=
        coalesce(nullif(current_setting('webhooks.response_body_limit', true), '')::integer, 8192);
    succeeded  uuid[];
    statuses   text[];
BEGIN
    INSERT INTO webhooks.attempt (delivery_id, attempt, started_at, duration, status_code, error,
                                  request_headers, response_headers, response_body, poller)
    SELECT u.id, u.attempt, clock_timestamp() - make_interval(secs => coalesce(u.ms, 0) / 1000.0),
           make_interval(secs => coalesce(u.ms, 0) / 1000.0), u.code, u.err, u.req, u.resp,
           left(u.body, body_limit), poller
      FROM unnest(delivery_ids, attempts, status_codes, errors, durations_ms, request_headers,
                  response_headers, response_bodies) AS u(id, attempt, code, err, ms, req, resp, body);

    WITH done AS (
        UPDATE webhooks.delivery d
           SET status = 'succeeded', completed_at = now(), locked_until = NULL,
               last_status_code = u.code, last_error = NULL
          FROM unnest(complete_batch.delivery_ids, complete_batch.attempts, complete_batch.status_codes)
               AS u(id, attempt, code)
         WHERE d.id = u.id AND d.status = 'delivering' AND d.attempts = u.attempt
           -- A subquery, not a join: joined, the planner may reach deliveries
           -- through the endpoint's index and scan all its unfinished ones.
           AND (SELECT e.success_codes FROM webhooks.endpoint e WHERE e.id = d.endpoint_id) @> u.code
        RETURNING d.id, d.endpoint_id
    ), reset AS (
        UPDATE webhooks.endpoint e SET consecutive_failures = 0
         WHERE e.id IN (SELECT endpoint_id FROM done) AND e.consecutive_failures <> 0
    )
    SELECT coalesce(array_agg(done.id), '{}') INTO succeeded FROM done;

    SELECT array_agg(CASE WHEN u.id = ANY (succeeded) THEN 'succeeded'
                          ELSE webhooks.record_outcome(u.id, u.attempt, u.code, u.err, u.retry) END
                     ORDER BY u.ord)
      INTO statuses
      FROM unnest(delivery_ids, attempts, status_codes, errors, retry_after_s)
           WITH ORDINALITY AS u(id, attempt, code, err, retry, ord);
    RETURN coalesce(statuses, '{}');
END $$;
COMMENT ON FUNCTION webhooks.complete_batch(uuid[], integer[], integer[], text[], double precision[], jsonb[],
                                            jsonb[], text[], double precision[], text) IS
  'Poller API: log many attempts and mark each delivery succeeded, pending (retry later) or failed. '
  'Returns the new statuses in input order (''stale'' where the lease had been lost).';

CREATE FUNCTION webhooks.complete(
    delivery_id      uuid,
    attempt          integer,
    status_code      integer,
    error            text DEFAULT NULL,
    duration_ms      double precision DEFAULT NULL,
    request_headers  jsonb DEFAULT NULL,
    response_headers jsonb DEFAULT NULL,
    response_body    text DEFAULT NULL,
    retry_after_s    double precision DEFAULT NULL,
    poller           text DEFAULT NULL
) RETURNS text
LANGUAGE sql AS $$
    SELECT (webhooks.complete_batch(ARRAY[delivery_id], ARRAY[attempt], ARRAY[status_code], ARRAY[error],
                                    ARRAY[duration_ms], ARRAY[request_headers], ARRAY[response_headers],
                                    ARRAY[response_body], ARRAY[retry_after_s], poller))[1]
$$;
COMMENT ON FUNCTION webhooks.complete(uuid, integer, integer, text, double precision, jsonb, jsonb,
                                      text, double precision, text) IS
  'Poller API: webhooks.complete_batch() for one attempt. Returns the new status, or ''stale'' if the lease '
  'had been lost.';

CREATE FUNCTION webhooks.pause_endpoint(id bigint, reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    e webhooks.endpoint;
BEGIN
    UPDATE webhooks.endpoint x SET active = false, paused_at = now(), paused_reason = reason, updated_at = now()
     WHERE x.id = pause_endpoint.id AND x.active
    RETURNING * INTO e;
    IF FOUND THEN
        PERFORM webhooks.emit_own('webhooks.endpoint.paused',
                              jsonb_build_object('endpoint_id', e.id, 'endpoint', e.name,
                                                 'url', webhooks.redacted_url(e.url),
                                                 'reason', reason),
                              key => e.id::text);
    END IF;
END $$;
COMMENT ON FUNCTION webhooks.pause_endpoint(bigint, text) IS
  'Stop delivering to an endpoint (its deliveries wait) and emit webhooks.endpoint.paused. '
  'Resume with update_endpoint(id, active => true).';

-- Give leased deliveries back without an outcome (a poller shutting down
-- before their requests finished). They are due again at once; the attempt
-- number is returned too, since no attempt was recorded.
CREATE FUNCTION webhooks.release(delivery_ids uuid[], attempts integer[]) RETURNS integer
LANGUAGE sql AS $$
    WITH released AS (
        UPDATE webhooks.delivery d
           SET status = 'pending', next_attempt_at = now(), locked_until = NULL,
               attempts = d.attempts - 1
          -- Qualified: a bare "attempts" is the column of d, which a FROM item
          -- may not name (42P10: every release() failed before 0.2.0).
          FROM unnest(release.delivery_ids, release.attempts) AS u(id, attempt)
         WHERE d.id = u.id AND d.status = 'delivering' AND d.attempts = u.attempt
        RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;
COMMENT ON FUNCTION webhooks.release(uuid[], integer[]) IS
  'Poller API: return leased deliveries unattempted (graceful shutdown); they are due again at once.';

CREATE FUNCTION webhooks.next_due() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    -- Per endpoint, so that each probe is one step into delivery_endpoint_due.
    SELECT least((SELECT min(n.next_attempt_at)
                    FROM webhooks.endpoint e
                   CROSS JOIN LATERAL (SELECT d.next_attempt_at FROM webhooks.delivery d
                                        WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'delivering')
                                        ORDER BY d.next_attempt_at LIMIT 1) n
                   WHERE e.active),
                 (SELECT e.created_at FROM webhooks.event e WHERE NOT e.fanned_out ORDER BY e.id LIMIT 1))
$$;
COMMENT ON FUNCTION webhooks.next_due() IS
  'Poller API: when the earliest unfinished delivery (or event not fanned out yet) becomes due.';

CREATE FUNCTION webhooks.version() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT extversion FROM pg_extension WHERE extname = 'pg_webhooks'
$$;
COMMENT ON FUNCTION webhooks.version() IS 'The installed version of pg_webhooks.';

---------------------------------------------------------------------------
-- Delivery log
---------------------------------------------------------------------------

CREATE VIEW webhooks.delivery_log AS
SELECT d.created_at                                   AS time,
       d.endpoint_id,
       e.name                                         AS endpoint,
       ev.event,
       ev.key,
       d.status,
       d.last_status_code                             AS response_code,
       (SELECT a.duration FROM webhooks.attempt a
         WHERE a.delivery_id = d.id ORDER BY a.attempt DESC LIMIT 1) AS duration,
       d.attempts,
       d.next_attempt_at,
       d.last_error,
       d.completed_at,
       d.id                                           AS delivery_id,
       d.event_id
  FROM webhooks.delivery d
  JOIN webhooks.event ev ON ev.id = d.event_id
  LEFT JOIN webhooks.endpoint e ON e.id = d.endpoint_id
UNION ALL
-- Committed events whose deliveries the next claim will create.
SELECT ev.created_at, e.id, e.name, ev.event, ev.key, 'pending', NULL, NULL, 0, ev.created_at,
       NULL, NULL, NULL, ev.id
  FROM webhooks.event ev
  JOIN webhooks.endpoint e ON webhooks.endpoint_matches(e, ev)
 WHERE NOT ev.fanned_out;
COMMENT ON VIEW webhooks.delivery_log IS
  'Recent deliveries: when, to which endpoint, which event and key, status, last response code, '
  'duration of the last attempt and attempt count. delivery_id is NULL for a delivery not created yet.';

CREATE FUNCTION webhooks.backlog() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM webhooks.delivery
             WHERE status IN ('pending', 'delivering') AND next_attempt_at <= now())
         + (SELECT count(*) FROM webhooks.event WHERE NOT fanned_out)
$$;
COMMENT ON FUNCTION webhooks.backlog() IS
  'Poller API (metrics): deliveries due now and not claimed, plus events whose deliveries are not created yet.';

---------------------------------------------------------------------------
-- Operations: stats, recovery actions, tests, retention
---------------------------------------------------------------------------

-- Internal: the delivery with this id, or undefined_object.
CREATE FUNCTION webhooks.delivery_row(id uuid) RETURNS webhooks.delivery
LANGUAGE plpgsql STABLE AS $$
DECLARE
    d webhooks.delivery;
BEGIN
    SELECT * INTO d FROM webhooks.delivery x WHERE x.id = delivery_row.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % does not exist', coalesce(id::text, 'NULL') USING ERRCODE = 'undefined_object';
    END IF;
    RETURN d;
END $$;
COMMENT ON FUNCTION webhooks.delivery_row(uuid) IS
  'Internal: the delivery with this id, or an undefined_object error.';

CREATE FUNCTION webhooks.stats(since interval DEFAULT '30 days')
RETURNS TABLE (
    endpoint_id          bigint,
    endpoint             text,
    total                bigint,
    succeeded            bigint,
    failed               bigint,
    pending              bigint,
    success_rate         numeric,
    avg_latency          interval,
    p95_latency          interval,
    last_success         timestamptz,
    last_failure         timestamptz,
    consecutive_failures integer
)
LANGUAGE sql STABLE AS $$
    SELECT e.id, e.name,
           count(d.id),
           count(d.id) FILTER (WHERE d.status = 'succeeded'),
           count(d.id) FILTER (WHERE d.status = 'failed'),
           count(d.id) FILTER (WHERE d.status IN ('pending', 'delivering')),
           round(100.0 * count(d.id) FILTER (WHERE d.status = 'succeeded')
                 / nullif(count(d.id) FILTER (WHERE d.status IN ('succeeded', 'failed')), 0), 2),
           a.avg_latency, a.p95_latency,
           max(d.completed_at) FILTER (WHERE d.status = 'succeeded'),
           max(d.completed_at) FILTER (WHERE d.status = 'failed'),
           e.consecutive_failures
      FROM webhooks.endpoint e
      LEFT JOIN webhooks.delivery d ON d.endpoint_id = e.id AND d.created_at >= now() - since
      LEFT JOIN LATERAL (
          SELECT avg(x.duration) AS avg_latency,
                 percentile_cont(0.95) WITHIN GROUP (ORDER BY x.duration) AS p95_latency
            FROM webhooks.attempt x JOIN webhooks.delivery y ON y.id = x.delivery_id
           WHERE y.endpoint_id = e.id AND x.started_at >= now() - since) a ON true
     WHERE e.deleted_at IS NULL
     GROUP BY e.id, e.name, a.avg_latency, a.p95_latency, e.consecutive_failures
     ORDER BY e.id
$$;
COMMENT ON FUNCTION webhooks.stats(interval) IS
  'Per endpoint over the period: deliveries total/succeeded/failed/pending, success rate (%), average and p95 '
  'attempt latency, last success and failure, consecutive failed deliveries.';

-- Sending a delivery again (retry, resend) re-checks that its event still
-- matches the endpoint: an endpoint whose tenant or filter changed since
-- must not get another tenant's rows.
CREATE FUNCTION webhooks.check_still_matches(d webhooks.delivery) RETURNS webhooks.delivery
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks.endpoint e JOIN webhooks.event ev ON ev.id = d.event_id
                    WHERE e.id = d.endpoint_id AND (ev.operation = 'TEST' OR webhooks.endpoint_matches(e, ev))) THEN
        RAISE EXCEPTION 'the event of delivery % no longer matches endpoint % (its events, tenant or filter changed)',
                        d.id, d.endpoint_id
          USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = 'webhooks.replay() sends an endpoint what matches it now.';
    END IF;
    RETURN d;
END $$;
COMMENT ON FUNCTION webhooks.check_still_matches(webhooks.delivery) IS
  'Internal: raise 55000 unless the delivery''s event still matches its endpoint (events, tenant, filter).';

CREATE FUNCTION webhooks.retry(delivery uuid) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    d webhooks.delivery := webhooks.delivery_row(delivery);
BEGIN
    IF d.status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'delivery % is %; only failed or cancelled deliveries can be retried', d.id, d.status
          USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = CASE WHEN d.status = 'succeeded' THEN 'webhooks.resend() sends it again as a new delivery.' END;
    END IF;
    PERFORM webhooks.endpoint_row(d.endpoint_id), webhooks.check_still_matches(d);
    UPDATE webhooks.delivery x SET status = 'pending', next_attempt_at = now(), completed_at = NULL
     WHERE x.id = d.id;
    PERFORM webhooks.notify_once();
    RETURN d.id;
END $$;
COMMENT ON FUNCTION webhooks.retry(uuid) IS
  'Try a failed or cancelled delivery once more (same delivery id, so receivers can deduplicate). Returns its id.';

CREATE FUNCTION webhooks.retry_failed(endpoint bigint DEFAULT NULL, since interval DEFAULT '7 days')
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF endpoint IS NOT NULL THEN
        PERFORM webhooks.endpoint_row(endpoint);
    END IF;
    UPDATE webhooks.delivery d SET status = 'pending', next_attempt_at = now(), completed_at = NULL
      FROM webhooks.endpoint e, webhooks.event ev
     WHERE e.id = d.endpoint_id AND e.deleted_at IS NULL AND ev.id = d.event_id
       AND (ev.operation = 'TEST' OR webhooks.endpoint_matches(e, ev))
       AND d.status = 'failed' AND d.completed_at >= now() - since
       AND (retry_failed.endpoint IS NULL OR d.endpoint_id = retry_failed.endpoint);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM webhooks.notify_once();
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION webhooks.retry_failed(bigint, interval) IS
  'Retry every delivery that failed within the period (of one endpoint, or all) and whose event still matches '
  'its endpoint. Returns how many.';

CREATE FUNCTION webhooks.resend(delivery uuid) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    d      webhooks.delivery := webhooks.delivery_row(delivery);
    new_id uuid;
BEGIN
    PERFORM webhooks.endpoint_row(d.endpoint_id), webhooks.check_still_matches(d);
    INSERT INTO webhooks.delivery (event_id, endpoint_id, ordering_key)
    VALUES (d.event_id, d.endpoint_id, d.ordering_key)
    RETURNING id INTO new_id;
    PERFORM webhooks.notify_once();
    RETURN new_id;
END $$;
COMMENT ON FUNCTION webhooks.resend(uuid) IS
  'Send a delivery''s event to its endpoint again, as a new delivery (new webhook-id). Returns the new id.';

CREATE FUNCTION webhooks.cancel(delivery uuid) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    d webhooks.delivery := webhooks.delivery_row(delivery);
BEGIN
    IF d.status NOT IN ('pending', 'delivering') THEN
        RAISE EXCEPTION 'delivery % is already %', d.id, d.status
          USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- A request in flight may still arrive; its outcome is then stale.
    UPDATE webhooks.delivery x SET status = 'cancelled', completed_at = now(), locked_until = NULL,
                                   last_error = 'cancelled'
     WHERE x.id = d.id;
    RETURN d.id;
END $$;
COMMENT ON FUNCTION webhooks.cancel(uuid) IS
  'Stop a pending delivery (one in flight may still arrive). Returns its id.';

CREATE FUNCTION webhooks.replay(endpoint bigint, since timestamptz, until timestamptz DEFAULT now(),
                                events text[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e webhooks.endpoint := webhooks.endpoint_row(endpoint);
    n integer;
BEGIN
    IF since IS NULL OR until IS NULL OR since > until THEN
        RAISE EXCEPTION 'replay needs since <= until' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF events IS NOT NULL THEN
        PERFORM webhooks.check_patterns(events);
    END IF;
    INSERT INTO webhooks.delivery (event_id, endpoint_id, ordering_key)
    SELECT ev.id, e.id, webhooks.ordering_key(e, ev)
      FROM webhooks.event ev
     WHERE ev.created_at >= since AND ev.created_at < until AND ev.fanned_out
       AND webhooks.endpoint_matches(e, ev)
       AND (replay.events IS NULL OR webhooks.event_matches(replay.events, ev.event))
     ORDER BY ev.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM webhooks.notify_once();
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION webhooks.replay(bigint, timestamptz, timestamptz, text[]) IS
  'Deliver past events again to an endpoint (e.g. a new one): those it matches, captured in [since, until), '
  'optionally only these event patterns. Returns how many deliveries were created.';

CREATE FUNCTION webhooks.send_test(endpoint bigint, event text DEFAULT 'webhooks.test', data jsonb DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    e       webhooks.endpoint := webhooks.endpoint_row(endpoint);
    payload jsonb := data;
    ev_id   uuid;
    d_id    uuid;
BEGIN
    PERFORM webhooks.check_event_name(event);
    IF payload IS NULL THEN
        -- The latest such event this endpoint would have been sent: never
        -- another tenant's, nor one its filter leaves out.
        SELECT x.data INTO payload FROM webhooks.event x
         WHERE x.event = send_test.event AND x.operation <> 'TEST' AND webhooks.endpoint_matches(e, x)
         ORDER BY x.id DESC LIMIT 1;
        payload := coalesce(payload, jsonb_build_object('message', 'Test event from pg_webhooks',
                                                        'endpoint', e.name));
    END IF;
    -- Sent to this endpoint only: the event is created already fanned out.
    INSERT INTO webhooks.event (event, operation, data, fanned_out)
    VALUES (send_test.event, 'TEST', payload, true)
    RETURNING id INTO ev_id;
    INSERT INTO webhooks.delivery (event_id, endpoint_id) VALUES (ev_id, e.id) RETURNING id INTO d_id;
    PERFORM webhooks.notify_once();
    RETURN d_id;
END $$;
COMMENT ON FUNCTION webhooks.send_test(bigint, text, jsonb) IS
  'Send a test event to one endpoint: the given data, else the latest real event of that name that the endpoint '
  'matches (its tenant and filter), else a sample. '
  'Returns the delivery id (follow it in webhooks.delivery_log).';

CREATE FUNCTION webhooks.partition_interval() RETURNS interval
LANGUAGE plpgsql STABLE AS $$
DECLARE
    setting text := coalesce(nullif(current_setting('webhooks.partition_interval', true), ''), '1 day');
    step    interval;
BEGIN
    BEGIN
        step := setting::interval;
    EXCEPTION WHEN data_exception THEN
        step := NULL;
    END;
    IF step IS NULL OR step < interval '1 second' OR step > interval '31 days'
       OR extract(month FROM step) <> 0 OR extract(year FROM step) <> 0 THEN
        RAISE EXCEPTION 'webhooks.partition_interval must be an interval from 1 second to 31 days without months, not %',
                        quote_literal(setting)
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN step;
END $$;
COMMENT ON FUNCTION webhooks.partition_interval() IS
  'The span of each new partition of webhooks.event and webhooks.attempt (setting webhooks.partition_interval, '
  'default 1 day).';

-- Create the partitions of the next three intervals (at least the next
-- minute). Called by every poller at start and once a minute, and by purge().
-- It never waits long for a lock (500 ms): a busy table is tried again next
-- time, and rows meanwhile go to the _default partitions.
CREATE FUNCTION webhooks.maintain() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    step    interval := webhooks.partition_interval();
    horizon timestamptz := now() + greatest(step * 3, interval '1 minute');
    tbl     name;
    key     name;
    lo      timestamptz;
    hi      timestamptz;
    newest  uuid;
    part    name;
    created integer := 0;
BEGIN
    -- Never hold writers up for long, and if a lock cycle forms, be the one
    -- that gives up (the deadlock check runs in whoever waits past its own
    -- deadlock_timeout first).
    PERFORM set_config('lock_timeout', '500ms', true);
    PERFORM set_config('deadlock_timeout', '50ms', true);
    -- Settings from pg_upgrade or a restore become this database's soon,
    -- and payload functions' owners renamed since are caught up with
    -- (webhooks.sync_payload_functions()).
    PERFORM webhooks.sync_payload_functions();
    FOREACH tbl IN ARRAY ARRAY['event', 'attempt']::name[] LOOP
        key := CASE tbl WHEN 'event' THEN 'id' ELSE 'delivery_id' END;
        lo := coalesce((SELECT max(p.upper) FROM webhooks.partition p WHERE p.parent = tbl),
                       date_bin(step, now(), timestamptz '2000-01-01 00:00:00+00'));
        WHILE lo < horizon LOOP
            hi := date_bin(step, lo, timestamptz '2000-01-01 00:00:00+00') + step;
            -- Rows already in the default partition for this range stay
            -- there; the new partition starts just after the newest of them.
            EXECUTE format('SELECT %I FROM webhooks.%I WHERE %I >= $1 AND %I < $2 ORDER BY 1 DESC LIMIT 1',
                           key, tbl || '_default', key, key)
               INTO newest USING webhooks.uuid_v7_floor(lo), webhooks.uuid_v7_floor(hi);
            IF newest IS NOT NULL THEN
                lo := greatest(lo, webhooks.uuid_v7_time(newest) + interval '1 millisecond');
            END IF;
            -- Never attach a range a writer may be inserting into right now:
            -- a row routed to the default partition just before the attach
            -- would then fail its partition check. Ids are creation times,
            -- so a range starting 2 s ahead is safe (an attach gives up
            -- after 500 ms).
            lo := greatest(lo, clock_timestamp() + interval '2 seconds');
            IF lo < hi THEN
                part := tbl || '_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISSMS');
                BEGIN
                    -- Built apart, then attached: ATTACH PARTITION takes a lock
                    -- on the parent that writers' inserts do not conflict
                    -- with (CREATE TABLE ... PARTITION OF would block them,
                    -- and deadlock with a transaction already holding one
                    -- history table and wanting the other).
                    EXECUTE format('CREATE TABLE webhooks.%I (LIKE webhooks.%I INCLUDING DEFAULTS) %s',
                        part, tbl,
                        CASE tbl WHEN 'event' THEN
                            'WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000, '
                            'autovacuum_vacuum_insert_scale_factor = 0, '
                            'autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_cost_delay = 0)'
                        ELSE '' END);
                    IF tbl = 'event' THEN
                        EXECUTE format('ALTER TABLE webhooks.%I ADD PRIMARY KEY (id)', part);
                        EXECUTE format('CREATE INDEX %I ON webhooks.%I (id) WHERE NOT fanned_out',
                                       part || '_fan_out', part);
                    ELSE
                        EXECUTE format('ALTER TABLE webhooks.%I ADD PRIMARY KEY (delivery_id, attempt, id)', part);
                    END IF;
                    EXECUTE format('ALTER TABLE webhooks.%I ATTACH PARTITION webhooks.%I FOR VALUES FROM (%L) TO (%L)',
                                   tbl, part, webhooks.uuid_v7_floor(lo), webhooks.uuid_v7_floor(hi));
                    EXECUTE format('COMMENT ON TABLE webhooks.%I IS %L', part,
                                   format('%s rows created from %s to %s (managed by webhooks.maintain/purge).',
                                          tbl, lo, hi));
                    INSERT INTO webhooks.partition (name, parent, lower, upper) VALUES (part, tbl, lo, hi);
                    created := created + 1;
                EXCEPTION WHEN lock_not_available OR check_violation OR deadlock_detected THEN
                    -- Busy, or a row for this range reached the default
                    -- partition meanwhile: next time.
                    RETURN created;
                END;
            END IF;
            lo := hi;
        END LOOP;
    END LOOP;
    RETURN created;
END $$;
COMMENT ON FUNCTION webhooks.maintain() IS
  'Create the partitions of webhooks.event and webhooks.attempt for the coming intervals; returns how many. '
  'Also brings tracking settings'' payload functions up to date (webhooks.sync_payload_functions()). '
  'Pollers call it at start and every minute; safe to call any time.';

CREATE FUNCTION webhooks.purge(older_than interval DEFAULT '30 days', include_failed boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cutoff timestamptz := now() - older_than;
    n      bigint;
    p      webhooks.partition;
BEGIN
    IF older_than IS NULL OR older_than < '0' THEN
        RAISE EXCEPTION 'older_than must be a non-negative interval' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('lock_timeout', '5s', true);
    -- Whole attempt partitions first: those of a period none of whose
    -- deliveries is kept (unfinished, failed and kept, or finished since the
    -- cutoff). Dropped, not deleted: no dead rows, no vacuum, space back now.
    FOR p IN SELECT * FROM webhooks.partition x
              WHERE x.parent = 'attempt' AND x.upper <= cutoff ORDER BY x.lower LOOP
        IF NOT EXISTS (
            SELECT 1 FROM webhooks.delivery d
             WHERE d.id >= webhooks.uuid_v7_floor(p.lower) AND d.id < webhooks.uuid_v7_floor(p.upper)
               AND NOT ((d.status IN ('succeeded', 'cancelled') OR (include_failed AND d.status = 'failed'))
                        AND d.completed_at < cutoff)) THEN
            EXECUTE format('DROP TABLE webhooks.%I', p.name);
            DELETE FROM webhooks.partition x WHERE x.name = p.name;
        END IF;
    END LOOP;
    -- Finished history only; failed deliveries stay (they may be retried)
    -- unless asked for. (The delivery table is the queue: its rows change in
    -- place and autovacuum reuses the space of deleted ones.)
    WITH gone AS (
        DELETE FROM webhooks.delivery d
         WHERE (d.status IN ('succeeded', 'cancelled') OR (include_failed AND d.status = 'failed'))
           AND d.completed_at < cutoff
        RETURNING d.id
    ), attempts AS (
        DELETE FROM webhooks.attempt a USING gone WHERE a.delivery_id = gone.id
    )
    SELECT count(*) INTO n FROM gone;
    -- Whole event partitions no delivery refers to any more.
    FOR p IN SELECT * FROM webhooks.partition x
              WHERE x.parent = 'event' AND x.upper <= cutoff ORDER BY x.lower LOOP
        IF NOT EXISTS (SELECT 1 FROM webhooks.delivery d
                        WHERE d.event_id >= webhooks.uuid_v7_floor(p.lower)
                          AND d.event_id < webhooks.uuid_v7_floor(p.upper))
           AND NOT EXISTS (SELECT 1 FROM webhooks.event ev
                            WHERE NOT ev.fanned_out
                              AND ev.id >= webhooks.uuid_v7_floor(p.lower)
                              AND ev.id < webhooks.uuid_v7_floor(p.upper)) THEN
            EXECUTE format('DROP TABLE webhooks.%I', p.name);
            DELETE FROM webhooks.partition x WHERE x.name = p.name;
        END IF;
    END LOOP;
    -- What remains older than the cutoff (in the default partitions, or in a
    -- partition a kept delivery still refers to) goes row by row.
    DELETE FROM webhooks.event ev
     WHERE ev.id < webhooks.uuid_v7_floor(cutoff) AND ev.created_at < cutoff AND ev.fanned_out
       AND NOT EXISTS (SELECT 1 FROM webhooks.delivery d WHERE d.event_id = ev.id);
    PERFORM webhooks.maintain();
    RETURN n;
END $$;
COMMENT ON FUNCTION webhooks.purge(interval, boolean) IS
  'Remove succeeded and cancelled deliveries (and their attempts) finished longer ago than older_than, and '
  'events left without deliveries: whole partitions are dropped where possible, the rest deleted. Failed '
  'deliveries are kept unless include_failed. Returns the number of deliveries removed.';

---------------------------------------------------------------------------
-- Roles and privileges
---------------------------------------------------------------------------
-- webhooks_admin manages everything; webhooks_reader reads logs and stats
-- but never a secret or credential (the endpoint table stays closed to it;
-- views show the rest); webhooks_poller may only call the poller API.
-- Roles are cluster-wide, so they are created once and shared by databases.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'webhooks_admin') THEN
        CREATE ROLE webhooks_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'webhooks_reader') THEN
        CREATE ROLE webhooks_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'webhooks_poller') THEN
        CREATE ROLE webhooks_poller NOLOGIN;
    END IF;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;
GRANT USAGE ON SCHEMA webhooks TO webhooks_admin, webhooks_reader, webhooks_poller;

-- Admins read and change rows, but get no TRIGGER, REFERENCES or TRUNCATE:
-- a trigger of theirs on webhooks.event would run as every privileged
-- writer of events (capture, claim(), emit()). Nor CREATE on the schema:
-- nothing is generated there any more. (Tracking a table needs its TRIGGER
-- privilege or ownership, as any trigger does.)
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA webhooks TO webhooks_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA webhooks TO webhooks_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks TO webhooks_admin;
-- Runs a payload function as its owner, and writes staged changes as
-- events: for capture_commit() and the engine alone.
REVOKE EXECUTE ON FUNCTION webhooks.apply_payload(regclass, jsonb), webhooks.commit_staged(regclass)
  FROM webhooks_admin;

GRANT SELECT ON webhooks.endpoints, webhooks.sources, webhooks.delivery_log,
                webhooks.event, webhooks.delivery, webhooks.attempt
   TO webhooks_reader;
-- endpoint_matches() and the envelope() it filters on are in the
-- delivery_log view, redacted_url() and redacted_headers() in the endpoints
-- view, whose functions are checked against the reader; all are pure.
GRANT EXECUTE ON FUNCTION webhooks.version(), webhooks.retry_delay(interval[], integer, interval, double precision),
                          webhooks.event_matches(text[], text), webhooks.stats(interval),
                          webhooks.endpoint_matches(webhooks.endpoint, webhooks.event),
                          webhooks.envelope(webhooks.event), webhooks.redacted_url(text),
                          webhooks.redacted_headers(jsonb, text[]),
                          webhooks.payload_function(text, oid, text, name), webhooks.oid_scope(),
                          webhooks.temporary_namespace(oid), webhooks.signature_function(text)
   TO webhooks_reader;

-- The poller's functions run as the extension's owner, so the role needs no
-- table rights at all.
ALTER FUNCTION webhooks.claim(integer, interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.complete_batch(uuid[], integer[], integer[], text[], double precision[], jsonb[], jsonb[],
                                       text[], double precision[], text)
      SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.complete(uuid, integer, integer, text, double precision, jsonb, jsonb, text,
                                 double precision, text)
      SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.release(uuid[], integer[]) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.next_due() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.backlog() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- Readers see stats without access to the endpoint table (no secrets in them).
ALTER FUNCTION webhooks.stats(interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- Dropping a partition takes its owner (maintain() creates them as the
-- extension's owner); purge() is for webhooks_admin, who is not.
ALTER FUNCTION webhooks.purge(interval, boolean) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
GRANT EXECUTE ON FUNCTION webhooks.claim(integer, interval),
      webhooks.complete_batch(uuid[], integer[], integer[], text[], double precision[], jsonb[], jsonb[], text[],
                              double precision[], text),
      webhooks.complete(uuid, integer, integer, text, double precision, jsonb, jsonb, text, double precision, text),
      webhooks.release(uuid[], integer[]), webhooks.next_due(), webhooks.backlog(), webhooks.version(),
      webhooks.maintain()
   TO webhooks_poller;

-- emit() runs as the owner, so that granting EXECUTE on it is all an
-- application needs. (capture_commit() and capture_truncate() are declared
-- SECURITY DEFINER where they are defined; webhooks.capture() and
-- capture_event() switch rights themselves, see "How capture works".)
ALTER FUNCTION webhooks.emit(text, jsonb, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

---------------------------------------------------------------------------
-- Keeping tracking settings in step with the tables
---------------------------------------------------------------------------
-- Settings name columns, and Postgres does not know: without this, renaming
-- an excluded column would send it, and dropping a listed one would leave a
-- name that no longer exists.

CREATE FUNCTION webhooks.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    cmd     record;
    src     webhooks.source;
    tree    webhooks.source;
    keys    name[];
    dropped name[];
    renamed jsonb;
BEGIN
    -- (A RENAME COLUMN is reported as a 'table column', with the table as objid.)
    FOR cmd IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands()
                WHERE object_type IN ('table', 'table column', 'foreign table') LOOP
        -- Partitions made or attached after track() (CREATE TABLE ...
        -- PARTITION OF, ATTACH PARTITION, at any depth) get the capture
        -- triggers they lack, so a write straight to them is not missed;
        -- tables that have them keep them as they are (no lock, and one
        -- disabled by its owner stays disabled).
        SELECT s.* INTO tree
          FROM pg_catalog.pg_partition_ancestors(cmd.objid) WITH ORDINALITY a(relid, depth)
          JOIN webhooks.source s ON s.source = a.relid
         ORDER BY a.depth
         LIMIT 1;
        IF FOUND THEN
            PERFORM webhooks.add_capture_triggers(tree, t.relid) FROM pg_catalog.pg_partition_tree(cmd.objid) t;
            -- A partition detached from a tracked tree is not tracked any
            -- more: left, its capture triggers would refuse every write.
            PERFORM webhooks.drop_capture_triggers(c.tgrelid)
               FROM (SELECT DISTINCT t.tgrelid FROM pg_catalog.pg_trigger t
                      WHERE t.tgname IN ('webhooks_capture_ins', 'webhooks_capture_upd',
                                         'webhooks_capture_del', 'webhooks_capture_truncate')
                        AND t.tgparentid = 0) c
              WHERE NOT EXISTS (SELECT 1 FROM webhooks.source s
                                 WHERE s.source = webhooks.tracked_table(c.tgrelid));
        END IF;
        SELECT * INTO src FROM webhooks.source s WHERE s.source = cmd.objid;
        CONTINUE WHEN NOT FOUND;
        keys := webhooks.primary_key(src.source);
        IF keys IS NULL THEN
            RAISE EXCEPTION 'table % is tracked by pg_webhooks and needs its primary key', src.source
              USING ERRCODE = 'dependent_objects_still_exist',
                    HINT = format('SELECT webhooks.untrack(%L) first.', src.source::text);
        END IF;
        -- A column named in the settings that is gone by name but whose
        -- attnum is still there was renamed: the settings follow it (an
        -- excluded column must stay excluded under its new name).
        SELECT jsonb_object_agg(c, a.attname) INTO renamed
          FROM unnest(array_remove(coalesce(src.columns, '{}') || src.exclude_columns || src.tenant_column, NULL)) c
          JOIN pg_attribute a ON a.attrelid = src.source AND a.attnum = (src.column_numbers ->> c)::int2
                              AND a.attnum > 0 AND NOT a.attisdropped
         WHERE NOT EXISTS (SELECT 1 FROM pg_attribute b
                            WHERE b.attrelid = src.source AND b.attname = c AND b.attnum > 0
                              AND NOT b.attisdropped);
        IF renamed IS NOT NULL THEN
            RAISE NOTICE 'pg_webhooks: renamed column(s) of % followed in its tracking settings: %',
                          src.source, renamed;
            src.columns := (SELECT array_agg(coalesce(renamed ->> c, c)::name ORDER BY o)
                              FROM unnest(src.columns) WITH ORDINALITY u(c, o));
            src.exclude_columns := coalesce((SELECT array_agg(coalesce(renamed ->> c, c)::name ORDER BY o)
                                               FROM unnest(src.exclude_columns) WITH ORDINALITY u(c, o)), '{}');
            src.tenant_column := coalesce(renamed ->> src.tenant_column, src.tenant_column);
        END IF;
        SELECT array_agg(c) FILTER (WHERE a.attname IS NULL) INTO dropped
          FROM unnest(array_remove(coalesce(src.columns, '{}') || src.exclude_columns || src.tenant_column, NULL)) c
          LEFT JOIN pg_attribute a ON a.attrelid = src.source AND a.attname = c AND a.attnum > 0
                                  AND NOT a.attisdropped;
        IF dropped IS NOT NULL THEN
            RAISE WARNING 'pg_webhooks: % no longer has column(s) %; removed from its tracking settings',
                          src.source, dropped;
        END IF;
        UPDATE webhooks.source s
           SET key_columns = keys,
               columns = CASE WHEN src.columns IS NULL THEN NULL
                              ELSE coalesce((SELECT array_agg(c) FROM unnest(src.columns) c
                                              WHERE dropped IS NULL OR NOT c = ANY (dropped)), '{}') END,
               exclude_columns = coalesce((SELECT array_agg(c) FROM unnest(src.exclude_columns) c
                                            WHERE dropped IS NULL OR NOT c = ANY (dropped)), '{}'),
               tenant_column = CASE WHEN src.tenant_column = ANY (coalesce(dropped, '{}')) THEN NULL
                                    ELSE src.tenant_column END,
               updated_at = now()
         WHERE s.source = src.source
        RETURNING * INTO src;
        UPDATE webhooks.source s
           SET column_numbers = webhooks.column_numbers(src.source,
                                    coalesce(src.columns, '{}') || src.exclude_columns || src.tenant_column)
         WHERE s.source = src.source
        RETURNING * INTO src;
    END LOOP;
    -- A payload function renamed, moved or given to another owner, or its
    -- schema renamed: its settings take its new signature and owner.
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c
                WHERE c.classid IN ('pg_catalog.pg_proc'::pg_catalog.regclass,
                                    'pg_catalog.pg_namespace'::pg_catalog.regclass)) THEN
        PERFORM webhooks.sync_payload_functions();
    END IF;
END $$;
COMMENT ON FUNCTION webhooks.on_ddl() IS
  'Event trigger: after ALTER TABLE on a tracked table, bring its settings up to date (following renamed '
  'columns, dropping vanished ones with a warning); refuse to drop its primary key. Partitions made or '
  'attached later get the capture triggers they lack; detached ones lose theirs. After ALTER FUNCTION or '
  'ALTER SCHEMA, the signature and owner of a renamed, moved or given payload function follow it.';

CREATE FUNCTION webhooks.on_drop() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone record;
BEGIN
    FOR gone IN SELECT s.id, s.source FROM webhooks.source s
                  JOIN pg_event_trigger_dropped_objects() d ON d.objid = s.source::oid
                 WHERE d.object_type = 'table' LOOP
        DELETE FROM webhooks.source s WHERE s.id = gone.id;
    END LOOP;
    FOR gone IN SELECT x.id FROM webhooks.source_event x
                  JOIN pg_event_trigger_dropped_objects() d ON d.objid = x.source::oid
                 WHERE d.object_type = 'table' LOOP
        DELETE FROM webhooks.source_event x WHERE x.id = gone.id;
    END LOOP;
END $$;
COMMENT ON FUNCTION webhooks.on_drop() IS
  'Event trigger: forget a tracked table (its settings and business events) when it is dropped.';

-- Keeps each settings row's payload function named as it is now: rows
-- from pg_upgrade or a restore are made this database's (by signature and
-- owner, as capture finds them), and those of this database take a renamed
-- or moved function's signature and a new owner's name, so that they still
-- name it after a later pg_upgrade or restore. Run by the DDL event
-- triggers and by maintain() (an owner renamed with ALTER ROLE or REASSIGN
-- OWNED, which no event trigger sees). One row at a time: a function the
-- checks refuse, or a row lock not had within lock_timeout, leaves that
-- row as it is (capture reports an unfit function) and never fails the
-- DDL that runs this.
CREATE FUNCTION webhooks.sync_payload_functions() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    here    text := webhooks.oid_scope();
    fix     record;
    synced  integer := 0;
BEGIN
    FOR fix IN SELECT * FROM (
                   SELECT 'source' AS kind, s.id, s.payload, s.payload_scope, s.payload_owner,
                          webhooks.payload_function(s.payload, s.payload_oid, s.payload_scope, s.payload_owner) AS fn
                     FROM webhooks.source s WHERE s.payload IS NOT NULL
                   UNION ALL
                   SELECT 'source_event', x.id, x.payload, x.payload_scope, x.payload_owner,
                          webhooks.payload_function(x.payload, x.payload_oid, x.payload_scope, x.payload_owner)
                     FROM webhooks.source_event x WHERE x.payload IS NOT NULL) r
                WHERE r.fn IS NOT NULL
                  AND (r.payload_scope IS DISTINCT FROM here OR r.payload IS DISTINCT FROM r.fn::text
                       OR r.payload_owner IS DISTINCT FROM
                          (SELECT pg_catalog.pg_get_userbyid(p.proowner) FROM pg_catalog.pg_proc p
                            WHERE p.oid = r.fn::pg_catalog.oid)) LOOP
        BEGIN
            -- (webhooks.source_changed() writes signature and owner from the OID.)
            IF fix.kind = 'source' THEN
                UPDATE webhooks.source s SET payload = NULL, payload_oid = fix.fn::pg_catalog.oid, payload_scope = here
                 WHERE s.id = fix.id;
            ELSE
                UPDATE webhooks.source_event x SET payload = NULL, payload_oid = fix.fn::pg_catalog.oid,
                                                   payload_scope = here
                 WHERE x.id = fix.id;
            END IF;
            synced := synced + 1;
        EXCEPTION WHEN invalid_function_definition OR insufficient_privilege OR undefined_function
                       OR lock_not_available THEN
            NULL;
        END;
    END LOOP;
    RETURN synced;
END $$;
COMMENT ON FUNCTION webhooks.sync_payload_functions() IS
  'Internal: make the settings'' payload functions this database''s (after pg_upgrade or a restore) and bring their '
  'signatures and owners up to date; returns how many rows changed.';

-- Before a function or schema is renamed, rows from pg_upgrade or a
-- restore are made this database's, so that on_ddl() can follow the
-- rename (after it, the old signature names nothing).
CREATE FUNCTION webhooks.on_ddl_start() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhooks.sync_payload_functions();
END $$;
COMMENT ON FUNCTION webhooks.on_ddl_start() IS
  'Event trigger: before ALTER FUNCTION or ALTER SCHEMA, make the payload functions of settings that came '
  'through pg_upgrade or a restore this database''s (webhooks.sync_payload_functions()), so that on_ddl() '
  'follows them.';

-- Event triggers run as whoever issues the DDL: as the owner instead, or an
-- ALTER TABLE by a role without rights on schema webhooks would fail.
ALTER FUNCTION webhooks.on_ddl() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.on_drop() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.on_ddl_start() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- Only Postgres calls event trigger functions; nobody needs EXECUTE.
REVOKE ALL ON FUNCTION webhooks.on_ddl(), webhooks.on_drop(), webhooks.on_ddl_start() FROM PUBLIC;
-- For those three and maintain(), which run it as the extension's owner.
REVOKE ALL ON FUNCTION webhooks.sync_payload_functions() FROM PUBLIC;

CREATE EVENT TRIGGER webhooks_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE FOREIGN TABLE', 'CREATE SCHEMA',
                 'ALTER FUNCTION', 'ALTER ROUTINE', 'ALTER SCHEMA')
    EXECUTE FUNCTION webhooks.on_ddl();
CREATE EVENT TRIGGER webhooks_drop ON sql_drop WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION webhooks.on_drop();
CREATE EVENT TRIGGER webhooks_ddl_start ON ddl_command_start
    WHEN TAG IN ('ALTER FUNCTION', 'ALTER ROUTINE', 'ALTER SCHEMA')
    EXECUTE FUNCTION webhooks.on_ddl_start();
