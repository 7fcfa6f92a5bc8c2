-- pg_webhooks, part 5 of 8: operations — the delivery log, stats and
-- recovery.
--
-- The delivery_log view (deliveries, and events whose deliveries the next
-- claim will create), stats() (SECURITY DEFINER: readers get numbers, not
-- the endpoint table), and what an operator does about failures: retry(),
-- retry_failed(), resend(), cancel(), replay(), send_test(). After
-- 04_delivery.sql: the log and stats show what it records, and the
-- recovery actions re-check endpoint_matches().

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
       d.event_id,
       d.last_status_code                             AS status_code
  FROM webhooks.delivery d
  JOIN webhooks.event ev ON ev.id = d.event_id
  LEFT JOIN webhooks.endpoint e ON e.id = d.endpoint_id
UNION ALL
-- Committed events whose deliveries the next claim will create.
SELECT ev.created_at, e.id, e.name, ev.event, ev.key, 'pending', NULL, NULL, 0, ev.created_at,
       NULL, NULL, NULL, ev.id, NULL
  FROM webhooks.event ev
  JOIN webhooks.endpoint e ON webhooks.endpoint_matches(e, ev)
 WHERE NOT ev.fanned_out;
COMMENT ON VIEW webhooks.delivery_log IS
  'Recent deliveries: when, to which endpoint, which event and key, status, the last attempt''s HTTP status_code '
  'and duration, and the attempt count. delivery_id is NULL for a delivery not created yet. response_code is '
  'status_code''s name in 0.1 (kept for 0.2 only; status_code is the name everywhere else).';

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
           count(d.id) FILTER (WHERE d.status = ANY (webhooks.unfinished_statuses())),
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
-- Readers see stats without access to the endpoint table (no secrets in them).
ALTER FUNCTION webhooks.stats(interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

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
    IF d.status <> ALL (webhooks.unfinished_statuses()) THEN
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
