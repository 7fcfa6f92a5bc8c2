-- pg_webhooks, part 4 of 8: delivery — the contract with pollers.
--
-- What any poller obeys, all decided here: the envelope and which events
-- go to which endpoint, fan-out, claim() (leases, max_in_flight, ordering,
-- ready-to-send signed requests), the retry schedule, outcomes
-- (complete_batch(), complete(), pausing), release() and next_due(), and
-- backlog() for metrics. The poller's functions run as the extension's
-- owner (SECURITY DEFINER, set after each): webhooks_poller needs no table
-- rights, only the EXECUTE of 07_privileges.sql. After 03_endpoints.sql:
-- claim() renders templates and builds headers with its functions.

-- The default envelope (the body shown in the README's tour); also what endpoint filters see.
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
                                  WHERE d.endpoint_id = e.id AND d.status = ANY (webhooks.unfinished_statuses())
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
    -- every due delivery for each picked one (BENCHMARKS.md, "Where delivery
    -- time goes").
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
             WHERE d.endpoint_id = ep.id AND d.status = ANY (webhooks.unfinished_statuses())
               AND d.next_attempt_at <= now()
               AND (d.ordering_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM webhooks.delivery o
                         WHERE o.endpoint_id = d.endpoint_id AND o.ordering_key = d.ordering_key
                           AND o.status = ANY (webhooks.unfinished_statuses()) AND o.event_id < d.event_id))
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
           AND d.status = ANY (webhooks.unfinished_statuses()) AND d.next_attempt_at <= now()
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
           -- Recorded as [redacted] in attempts: the auth header (bearer and
           -- basic are Authorization, a credential header), and the secret
           -- ones of webhooks.secret_headers().
           CASE WHEN e.auth ->> 'type' = 'header' THEN ARRAY[e.auth ->> 'name'] ELSE '{}'::text[] END
             || webhooks.secret_headers(e.headers, e.public_headers),
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
-- As every poller function here, it runs as the extension's owner: the role
-- needs no table rights.
ALTER FUNCTION webhooks.claim(integer, interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

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

-- One home for the limit: complete_batch() truncates to it, and the
-- poller reads no more of a response than it (when it connects).
CREATE FUNCTION webhooks.response_body_limit() RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(nullif(pg_catalog.current_setting('webhooks.response_body_limit', true), '')::integer,
                    8192)
$$;
COMMENT ON FUNCTION webhooks.response_body_limit() IS
  'Poller API: characters of each response body kept in webhooks.attempt (the webhooks.response_body_limit '
  'setting, 8192 by default).';

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
    body_limit integer := webhooks.response_body_limit();
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
ALTER FUNCTION webhooks.complete_batch(uuid[], integer[], integer[], text[], double precision[], jsonb[], jsonb[],
                                       text[], double precision[], text)
      SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

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
ALTER FUNCTION webhooks.complete(uuid, integer, integer, text, double precision, jsonb, jsonb, text,
                                 double precision, text)
      SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

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
ALTER FUNCTION webhooks.release(uuid[], integer[]) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION webhooks.next_due() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    -- Per endpoint, so that each probe is one step into delivery_endpoint_due.
    SELECT least((SELECT min(n.next_attempt_at)
                    FROM webhooks.endpoint e
                   CROSS JOIN LATERAL (SELECT d.next_attempt_at FROM webhooks.delivery d
                                        WHERE d.endpoint_id = e.id AND d.status = ANY (webhooks.unfinished_statuses())
                                        ORDER BY d.next_attempt_at LIMIT 1) n
                   WHERE e.active),
                 (SELECT e.created_at FROM webhooks.event e WHERE NOT e.fanned_out ORDER BY e.id LIMIT 1))
$$;
COMMENT ON FUNCTION webhooks.next_due() IS
  'Poller API: when the earliest unfinished delivery (or event not fanned out yet) becomes due.';
ALTER FUNCTION webhooks.next_due() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION webhooks.backlog() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM webhooks.delivery
             WHERE status = ANY (webhooks.unfinished_statuses()) AND next_attempt_at <= now())
         + (SELECT count(*) FROM webhooks.event WHERE NOT fanned_out)
$$;
COMMENT ON FUNCTION webhooks.backlog() IS
  'Poller API (metrics): deliveries due now and not claimed, plus events whose deliveries are not created yet.';
ALTER FUNCTION webhooks.backlog() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION webhooks.version() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT extversion FROM pg_extension WHERE extname = 'pg_webhooks'
$$;
COMMENT ON FUNCTION webhooks.version() IS 'The installed version of pg_webhooks.';
