-- pg_webhooks, part 7 of 8: roles and privileges.
--
-- Why here, after every object of 01-06: the GRANT/REVOKE ... ON ALL
-- TABLES/SEQUENCES/FUNCTIONS IN SCHEMA webhooks below apply only to what
-- exists when they run — every table, view, sequence and function made so
-- far, the Rust ones included — and must not reach the event trigger
-- functions of 08_ddl_sync.sql, which nobody is granted. The grants to one
-- role come after them: made next to their objects, before the blanket
-- ones, they would give the same rights but list each ACL's entries in
-- another order. SECURITY DEFINER and search_path are set next to each
-- function instead (in its CREATE, or an ALTER FUNCTION right after it).
--
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
-- delivery_log view, redacted_url() and redacted_headers() (with the
-- secret_headers() and credential_headers() it calls) in the endpoints
-- view, whose functions are checked against the reader; all are pure.
-- unfinished_statuses() is for readers' own queries on webhooks.delivery.
GRANT EXECUTE ON FUNCTION webhooks.version(), webhooks.retry_delay(interval[], integer, interval, double precision),
                          webhooks.event_matches(text[], text), webhooks.stats(interval),
                          webhooks.endpoint_matches(webhooks.endpoint, webhooks.event),
                          webhooks.envelope(webhooks.event), webhooks.redacted_url(text),
                          webhooks.redacted_headers(jsonb, text[]), webhooks.secret_headers(jsonb, text[]),
                          webhooks.credential_headers(), webhooks.unfinished_statuses(),
                          webhooks.payload_function(text, oid, text, name), webhooks.oid_scope(),
                          webhooks.temporary_namespace(oid), webhooks.signature_function(text)
   TO webhooks_reader;

-- The poller's functions run as the extension's owner, so the role needs no
-- table rights at all (SECURITY DEFINER, set after each in 04_delivery.sql;
-- maintain() in its CREATE in 06_retention.sql).
GRANT EXECUTE ON FUNCTION webhooks.claim(integer, interval),
      webhooks.complete_batch(uuid[], integer[], integer[], text[], double precision[], jsonb[], jsonb[], text[],
                              double precision[], text),
      webhooks.complete(uuid, integer, integer, text, double precision, jsonb, jsonb, text, double precision, text),
      webhooks.release(uuid[], integer[]), webhooks.next_due(), webhooks.backlog(), webhooks.version(),
      webhooks.maintain(), webhooks.response_body_limit()
   TO webhooks_poller;
