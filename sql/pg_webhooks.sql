-- pg_webhooks: schema, capture, endpoints, claim/complete, delivery log.
--
-- Read top to bottom: tables, then how changes are captured, how endpoints are
-- managed, and the two functions that are the whole contract with a poller:
-- webhooks.claim() and webhooks.complete(). Delivery *policy* (matching,
-- rendering, signing, retry schedule) lives here so that any poller obeys it.
--
-- The extension is created in schema `webhooks` (see pg_webhooks.control);
-- the Rust helpers (sign_standard, uuid_v7, event_matches, notify_once, ...)
-- are created before this file runs.

---------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------

CREATE TABLE webhooks.endpoint (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text,
    url              text NOT NULL,
    events           text[] NOT NULL DEFAULT '{*}',
    secret           text NOT NULL,
    headers          jsonb NOT NULL DEFAULT '{}',
    method           text NOT NULL DEFAULT 'POST',
    retry_schedule   interval[] NOT NULL DEFAULT '{30s,2min,10min,1h,6h,24h}',
    timeout          interval NOT NULL DEFAULT '30s',
    connect_timeout  interval NOT NULL DEFAULT '10s',
    success_codes    int4multirange NOT NULL DEFAULT '{[200,300)}',
    active           boolean NOT NULL DEFAULT true,
    description      text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CONSTRAINT endpoint_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT endpoint_method CHECK (method IN ('POST', 'PUT', 'PATCH')),
    CONSTRAINT endpoint_timeouts CHECK (timeout > '0' AND connect_timeout > '0')
);
COMMENT ON TABLE webhooks.endpoint IS
  'Receivers of webhooks. Holds secrets: query webhooks.endpoints instead.';
-- A deleted endpoint keeps its history and frees its name.
CREATE UNIQUE INDEX endpoint_name ON webhooks.endpoint (name) WHERE deleted_at IS NULL;

CREATE TABLE webhooks.source (
    source      regclass PRIMARY KEY,
    resource    text NOT NULL,
    events      text[] NOT NULL,
    key_columns name[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhooks.source IS
  'Tables whose committed changes become events; managed by webhooks.track()/untrack().';

CREATE TABLE webhooks.event (
    id          uuid PRIMARY KEY DEFAULT webhooks.uuid_v7(),
    event       text NOT NULL,
    source      text,
    operation   text NOT NULL,
    key         text,
    tenant      text,
    data        jsonb,
    previous    jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE webhooks.event IS
  'One row per captured change or emitted event (the outbox). id is a UUIDv7, so it sorts by creation.';

CREATE TABLE webhooks.delivery (
    id               uuid PRIMARY KEY DEFAULT webhooks.uuid_v7(),
    event_id         uuid NOT NULL,
    endpoint_id      bigint NOT NULL,
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

-- The claim scans only unfinished deliveries, in due order.
CREATE INDEX delivery_due ON webhooks.delivery (next_attempt_at)
  WHERE status IN ('pending', 'delivering');
CREATE INDEX delivery_event ON webhooks.delivery (event_id);
CREATE INDEX delivery_endpoint ON webhooks.delivery (endpoint_id, created_at);

CREATE TABLE webhooks.attempt (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
);
COMMENT ON TABLE webhooks.attempt IS
  'One row per HTTP attempt: what was sent (headers), what came back, how long it took.';
CREATE INDEX attempt_delivery ON webhooks.attempt (delivery_id, attempt);

---------------------------------------------------------------------------
-- Capture
---------------------------------------------------------------------------

-- Fan an event out to every matching active endpoint. Returns the number of
-- deliveries created, and wakes pollers (once per transaction) when there are any.
CREATE FUNCTION webhooks.fan_out(event_id uuid, event_name text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO webhooks.delivery (event_id, endpoint_id)
    SELECT fan_out.event_id, e.id
      FROM webhooks.endpoint e
     WHERE e.active AND e.deleted_at IS NULL
       AND webhooks.event_matches(e.events, event_name);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM webhooks.notify_once();
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION webhooks.fan_out(uuid, text) IS
  'Internal: create one pending delivery per matching active endpoint and NOTIFY pollers.';

-- Row trigger installed by webhooks.track(). TG_ARGV[0] is the resource name,
-- TG_ARGV[1..] the primary-key columns; passing them as arguments keeps a
-- catalog lookup out of every captured row.
CREATE FUNCTION webhooks.capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_data jsonb;
    old_data jsonb;
    changed  jsonb;
    verb     text;
    key      text;
    ev_id    uuid;
    ev_name  text;
BEGIN
    IF NOT webhooks.capture_enabled() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        row_data := to_jsonb(NEW);
        verb := 'created';
    ELSIF TG_OP = 'UPDATE' THEN
        row_data := to_jsonb(NEW);
        old_data := to_jsonb(OLD);
        SELECT jsonb_object_agg(o.key, o.value) INTO changed
          FROM jsonb_each(old_data) o
         WHERE row_data -> o.key IS DISTINCT FROM o.value;
        verb := 'updated';
    ELSE
        row_data := to_jsonb(OLD);
        verb := 'deleted';
    END IF;

    IF TG_NARGS = 2 THEN
        key := row_data ->> TG_ARGV[1];
    ELSE
        SELECT string_agg(row_data ->> TG_ARGV[i], ',' ORDER BY i) INTO key
          FROM generate_series(1, TG_NARGS - 1) i;
    END IF;

    ev_name := TG_ARGV[0] || '.' || verb;
    INSERT INTO webhooks.event (event, source, operation, key, data, previous)
    VALUES (ev_name, quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME),
            TG_OP, key, row_data, changed)
    RETURNING id INTO ev_id;
    PERFORM webhooks.fan_out(ev_id, ev_name);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION webhooks.capture() IS
  'Internal trigger function installed by webhooks.track(); writes the event and its deliveries in the writer''s transaction.';

CREATE FUNCTION webhooks.drop_capture_triggers(rel regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t name;
BEGIN
    FOR t IN SELECT tgname FROM pg_trigger
              WHERE tgrelid = rel AND tgname LIKE 'webhooks\_capture\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, rel);
    END LOOP;
END $$;
COMMENT ON FUNCTION webhooks.drop_capture_triggers(regclass) IS
  'Internal: remove the capture triggers that webhooks.track() installed on a table.';

CREATE FUNCTION webhooks.track(
    source   regclass,
    resource text DEFAULT NULL,
    events   text[] DEFAULT '{created,updated,deleted}'
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    keys     name[];
    res      text;
    args     text;
    bad      text;
    rel      regclass := source;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = rel) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'webhooks.track: % is not a table', rel
          USING ERRCODE = 'wrong_object_type';
    END IF;
    IF (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = rel)
       IN ('pg_catalog', 'information_schema', 'pg_toast', 'webhooks') THEN
        RAISE EXCEPTION 'webhooks.track: % is a system or pg_webhooks table and cannot be tracked', rel
          USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT array_agg(a.attname ORDER BY k.ord) INTO keys
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = rel AND i.indisprimary;
    IF keys IS NULL THEN
        RAISE EXCEPTION 'webhooks.track: table % has no primary key', rel
          USING ERRCODE = 'invalid_table_definition',
                HINT = 'Events carry the row''s primary key as their key; add one with ALTER TABLE ... ADD PRIMARY KEY.';
    END IF;
    res := coalesce(resource, (SELECT relname FROM pg_class WHERE oid = rel));
    PERFORM webhooks.check_event_name(res);
    IF events IS NULL OR cardinality(events) = 0 THEN
        RAISE EXCEPTION 'webhooks.track: events must not be empty'
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT e INTO bad FROM unnest(events) e
     WHERE e IS NULL OR e NOT IN ('created', 'updated', 'deleted') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'webhooks.track: unknown event kind %', coalesce(quote_literal(bad), 'NULL')
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Use created, updated and/or deleted.';
    END IF;

    PERFORM webhooks.drop_capture_triggers(rel);
    args := (SELECT string_agg(quote_literal(a), ', ')
               FROM unnest(ARRAY[res] || keys::text[]) a);
    IF 'created' = ANY (events) OR 'deleted' = ANY (events) THEN
        EXECUTE format(
          'CREATE TRIGGER webhooks_capture_ins_del AFTER %s ON %s '
          'FOR EACH ROW EXECUTE FUNCTION webhooks.capture(%s)',
          concat_ws(' OR ',
                    CASE WHEN 'created' = ANY (events) THEN 'INSERT' END,
                    CASE WHEN 'deleted' = ANY (events) THEN 'DELETE' END),
          rel, args);
    END IF;
    IF 'updated' = ANY (events) THEN
        -- The WHEN clause keeps no-op updates (SET x = x) out without calling the trigger.
        EXECUTE format(
          'CREATE TRIGGER webhooks_capture_upd AFTER UPDATE ON %s '
          'FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) '
          'EXECUTE FUNCTION webhooks.capture(%s)',
          rel, args);
    END IF;

    INSERT INTO webhooks.source AS s (source, resource, events, key_columns)
    VALUES (rel, res, events, keys)
    ON CONFLICT ON CONSTRAINT source_pkey DO UPDATE
       SET resource = excluded.resource, events = excluded.events,
           key_columns = excluded.key_columns, updated_at = now();
END $$;
COMMENT ON FUNCTION webhooks.track(regclass, text, text[]) IS
  'Turn committed INSERT/UPDATE/DELETE on a table into <resource>.created/updated/deleted events. '
  'Calling it again changes the settings.';

CREATE FUNCTION webhooks.untrack(source regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass := source;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks.source s WHERE s.source = rel) THEN
        RAISE EXCEPTION 'webhooks.untrack: table % is not tracked', rel
          USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM webhooks.drop_capture_triggers(rel);
    DELETE FROM webhooks.source s WHERE s.source = rel;
END $$;
COMMENT ON FUNCTION webhooks.untrack(regclass) IS
  'Stop capturing changes of a table (drops its triggers). Past events and deliveries stay.';

CREATE VIEW webhooks.sources AS
SELECT source, resource, events, key_columns, created_at, updated_at
  FROM webhooks.source;
COMMENT ON VIEW webhooks.sources IS 'Tracked tables and their settings.';

CREATE FUNCTION webhooks.emit(event text, data jsonb, key text DEFAULT NULL, tenant text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    ev_id uuid;
BEGIN
    PERFORM webhooks.check_event_name(emit.event);
    INSERT INTO webhooks.event (event, operation, key, tenant, data)
    VALUES (emit.event, 'EMIT', emit.key, emit.tenant, emit.data)
    RETURNING id INTO ev_id;
    PERFORM webhooks.fan_out(ev_id, emit.event);
    RETURN ev_id;
END $$;
COMMENT ON FUNCTION webhooks.emit(text, jsonb, text, text) IS
  'Emit a custom event in the current transaction (delivered only if it commits). Returns the event id.';

---------------------------------------------------------------------------
-- Endpoints
---------------------------------------------------------------------------

-- Raises unless the URL is absolute http(s) with a host; https unless
-- webhooks.require_https is off or the host is loopback.
CREATE FUNCTION webhooks.check_url(url text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    m text[];
BEGIN
    m := regexp_match(url, '^(https?)://(\[[0-9A-Fa-f:.]+\]|[^/:?#@\s\[\]]+)(:[0-9]{1,5})?([/?#]\S*)?$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'invalid endpoint URL: %', coalesce(quote_literal(url), 'NULL')
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Use an absolute URL such as https://example.com/hooks.';
    END IF;
    IF m[1] = 'http' AND webhooks.https_required()
       AND lower(m[2]) NOT IN ('localhost', '127.0.0.1', '[::1]') THEN
        RAISE EXCEPTION 'endpoint URL must use https: %', url
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'webhooks.require_https is on; only loopback URLs may use http.';
    END IF;
    RETURN url;
END $$;
COMMENT ON FUNCTION webhooks.check_url(text) IS
  'Validate an endpoint URL (absolute http/https; https required unless loopback or webhooks.require_https is off).';

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

CREATE FUNCTION webhooks.check_headers(headers jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF headers IS NULL OR jsonb_typeof(headers) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(headers) h
                   WHERE jsonb_typeof(h.value) <> 'string'
                      OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$') THEN
        RAISE EXCEPTION 'headers must be a JSON object of header names to string values'
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'For example: {"X-Api-Version": "2"}';
    END IF;
    RETURN headers;
END $$;
COMMENT ON FUNCTION webhooks.check_headers(jsonb) IS
  'Validate custom request headers: a JSON object of valid header names to string values.';

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

-- LANGUAGE sql on purpose: the IN parameter `secret` and the returned column
-- `secret` share a name, which SQL functions allow and PL/pgSQL would not.
CREATE FUNCTION webhooks.create_endpoint(
    url             text,
    events          text[] DEFAULT '{*}',
    name            text DEFAULT NULL,
    secret          text DEFAULT NULL,
    headers         jsonb DEFAULT '{}',
    method          text DEFAULT 'POST',
    retry_schedule  interval[] DEFAULT '{30s,2min,10min,1h,6h,24h}',
    timeout         interval DEFAULT '30s',
    connect_timeout interval DEFAULT '10s',
    success_codes   int4multirange DEFAULT '{[200,300)}',
    description     text DEFAULT NULL,
    metadata        jsonb DEFAULT '{}'
) RETURNS TABLE (id bigint, secret text)
LANGUAGE sql AS $$
    INSERT INTO webhooks.endpoint AS e
        (name, url, events, secret, headers, method, retry_schedule, timeout,
         connect_timeout, success_codes, description, metadata)
    VALUES (webhooks.check_endpoint_name(create_endpoint.name),
            webhooks.check_url(create_endpoint.url),
            webhooks.check_patterns(create_endpoint.events),
            webhooks.check_secret(coalesce(create_endpoint.secret, webhooks.generate_secret())),
            webhooks.check_headers(create_endpoint.headers),
            upper(create_endpoint.method),
            webhooks.check_retry_schedule(create_endpoint.retry_schedule),
            create_endpoint.timeout, create_endpoint.connect_timeout,
            create_endpoint.success_codes, create_endpoint.description,
            coalesce(create_endpoint.metadata, '{}'))
    RETURNING e.id, e.secret
$$;
COMMENT ON FUNCTION webhooks.create_endpoint(text, text[], text, text, jsonb, text, interval[],
                                             interval, interval, int4multirange, text, jsonb) IS
  'Register a receiver. Returns its id and its secret; the secret is shown here once and never again.';

CREATE VIEW webhooks.endpoints AS
SELECT id, name, url, events, method, headers, retry_schedule, timeout, connect_timeout,
       success_codes, active, description, metadata, consecutive_failures,
       created_at, updated_at
  FROM webhooks.endpoint
 WHERE deleted_at IS NULL;
COMMENT ON VIEW webhooks.endpoints IS 'Endpoints without their secrets.';

---------------------------------------------------------------------------
-- Delivery: the contract with pollers
---------------------------------------------------------------------------

-- The default body (DESIGN §4). jsonb's text form is canonical, so the same
-- event renders to the same bytes on every retry.
CREATE FUNCTION webhooks.render_body(ev webhooks.event) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', ev.id,
        'event', ev.event,
        'timestamp', to_char(ev.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', ev.data,
        'previous', ev.previous,
        'metadata', jsonb_build_object('source', ev.source, 'operation', ev.operation,
                                       'key', ev.key, 'tenant', ev.tenant))::text
$$;
COMMENT ON FUNCTION webhooks.render_body(webhooks.event) IS
  'The default JSON body of an event: {id, event, timestamp, data, previous, metadata}.';

-- Claim up to batch_size due deliveries for one poller. Due means pending and
-- next_attempt_at reached, or delivering with an expired lease (a poller died).
-- Returns ready-to-send requests, signed now so that each attempt carries its
-- own webhook-timestamp; secrets never leave the database.
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
    connect_timeout_ms bigint
)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT d.id
          FROM webhooks.delivery d
          JOIN webhooks.endpoint e ON e.id = d.endpoint_id
         WHERE d.status IN ('pending', 'delivering')
           AND d.next_attempt_at <= now()
           AND e.active AND e.deleted_at IS NULL
         ORDER BY d.next_attempt_at
         LIMIT batch_size
           FOR UPDATE OF d SKIP LOCKED
    ), claimed AS (
        UPDATE webhooks.delivery d
           SET status = 'delivering',
               attempts = d.attempts + 1,
               locked_until = now() + lease,
               next_attempt_at = now() + lease
          FROM due
         WHERE d.id = due.id
        RETURNING d.id, d.attempts, d.endpoint_id, d.event_id
    )
    SELECT c.id, c.attempts, e.id, ev.event, e.url, e.method,
           e.headers || jsonb_build_object(
               'Content-Type', 'application/json',
               'User-Agent', 'pg_webhooks/' || webhooks.version(),
               'X-Webhook-Event', ev.event,
               'X-Webhook-Delivery-Id', c.id::text,
               'X-Webhook-Attempt', c.attempts::text,
               'webhook-id', c.id::text,
               'webhook-timestamp', ts.unix::text,
               'webhook-signature', webhooks.sign_standard(e.secret, c.id::text, ts.unix, r.body)),
           r.body,
           (extract(epoch FROM e.timeout) * 1000)::bigint,
           (extract(epoch FROM e.connect_timeout) * 1000)::bigint
      FROM claimed c
      JOIN webhooks.endpoint e ON e.id = c.endpoint_id
      JOIN webhooks.event ev ON ev.id = c.event_id
     CROSS JOIN LATERAL (SELECT webhooks.render_body(ev) AS body) r
     CROSS JOIN LATERAL (SELECT extract(epoch FROM clock_timestamp())::bigint AS unix) ts
$$;
COMMENT ON FUNCTION webhooks.claim(integer, interval) IS
  'Poller API: lease up to batch_size due deliveries (FOR UPDATE SKIP LOCKED) and return signed, ready-to-send requests.';

-- The delay before retry number `attempt` (1-based: the delay after the first
-- failed attempt is schedule[1]). NULL when the schedule is exhausted.
-- jitter in [0,1) spreads retries by ±10% so a receiver that comes back is not
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

-- Record the outcome of one attempt and decide what happens next. An outcome
-- for a lease that is no longer ours (it expired and another poller re-claimed
-- the delivery) is logged but changes nothing else.
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
LANGUAGE plpgsql AS $$
DECLARE
    d       webhooks.delivery;
    ep      webhooks.endpoint;
    delay   interval;
    outcome text;
BEGIN
    INSERT INTO webhooks.attempt (delivery_id, attempt, started_at, duration, status_code,
                                  error, request_headers, response_headers, response_body, poller)
    VALUES (complete.delivery_id, complete.attempt,
            now() - make_interval(secs => coalesce(duration_ms, 0) / 1000.0),
            make_interval(secs => coalesce(duration_ms, 0) / 1000.0),
            status_code, error, request_headers, response_headers, response_body, poller);

    SELECT * INTO d FROM webhooks.delivery x
     WHERE x.id = complete.delivery_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown delivery %', delivery_id USING ERRCODE = 'no_data_found';
    END IF;
    IF d.status <> 'delivering' OR d.attempts <> complete.attempt THEN
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

    delay := webhooks.retry_delay(
        ep.retry_schedule, d.attempts,
        CASE WHEN status_code IN (429, 503) THEN make_interval(secs => retry_after_s) END,
        random());
    outcome := CASE WHEN delay IS NULL THEN 'failed' ELSE 'pending' END;
    UPDATE webhooks.delivery x
       SET status = outcome,
           next_attempt_at = CASE WHEN delay IS NULL THEN x.next_attempt_at ELSE now() + delay END,
           completed_at = CASE WHEN delay IS NULL THEN now() END,
           locked_until = NULL,
           last_status_code = status_code,
           last_error = coalesce(error, 'HTTP ' || status_code)
     WHERE x.id = d.id;
    UPDATE webhooks.endpoint e SET consecutive_failures = e.consecutive_failures + 1
     WHERE e.id = ep.id;
    RETURN outcome;
END $$;
COMMENT ON FUNCTION webhooks.complete(uuid, integer, integer, text, double precision, jsonb, jsonb,
                                      text, double precision, text) IS
  'Poller API: log one attempt and mark the delivery succeeded, pending (retry later) or failed. '
  'Returns the new status, or ''stale'' if the lease had been lost.';

CREATE FUNCTION webhooks.next_due() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT min(next_attempt_at) FROM webhooks.delivery WHERE status IN ('pending', 'delivering')
$$;
COMMENT ON FUNCTION webhooks.next_due() IS
  'Poller API: when the earliest unfinished delivery becomes due (so a poller can sleep until then).';

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
  LEFT JOIN webhooks.endpoint e ON e.id = d.endpoint_id;
COMMENT ON VIEW webhooks.delivery_log IS
  'Recent deliveries: when, to which endpoint, which event and key, status, last response code, '
  'duration of the last attempt and attempt count.';

-- Give leased deliveries back without an outcome (a poller shutting down
-- before their requests finished). They are due again at once; the attempt
-- number is returned too, since no attempt was recorded.
CREATE FUNCTION webhooks.release(delivery_ids uuid[], attempts integer[]) RETURNS integer
LANGUAGE sql AS $$
    WITH released AS (
        UPDATE webhooks.delivery d
           SET status = 'pending', next_attempt_at = now(), locked_until = NULL,
               attempts = d.attempts - 1
          FROM unnest(delivery_ids, attempts) AS u(id, attempt)
         WHERE d.id = u.id AND d.status = 'delivering' AND d.attempts = u.attempt
        RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;
COMMENT ON FUNCTION webhooks.release(uuid[], integer[]) IS
  'Poller API: return leased deliveries unattempted (graceful shutdown); they are due again at once.';
