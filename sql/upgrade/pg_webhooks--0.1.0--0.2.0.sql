-- pg_webhooks 0.1.0 -> 0.2.0
--
-- One capture engine, and no way up from any role (see SECURITY.md):
-- - webhooks.capture() no longer runs as its owner, nor calls the function
--   its trigger argument names: it finds a table's settings in
--   webhooks.source by the table it fires on (42501 for a table that is not
--   tracked), makes rows into JSON as the writer, runs payload functions as
--   their owners and writes events as the extension's owner. It takes every
--   statement, so the generated per-table functions webhooks.capture_<n>()
--   and webhooks.capture_event_<n>() are gone; business events fire
--   webhooks.capture_event().
-- - capture_commit() and capture_truncate() trust the catalog, not their
--   trigger arguments.
-- - webhooks.capture = off only for superusers and webhooks_admin members.
-- - emit() refuses webhooks.* names; the extension's own events go through
--   emit_own(), for admins and the extension's functions only.
-- - webhooks_admin: no CREATE on the schema, no TRIGGER, REFERENCES or
--   TRUNCATE on its tables; webhooks_reader may read webhooks.delivery_log
--   (EXECUTE on endpoint_matches() and envelope(), which it uses).
-- - webhooks.endpoint checks its own rows (endpoint_checked()), so no row
--   written around create_endpoint() can stop claims for every endpoint;
--   existing rows that fail the checks are paused below, with a warning.
-- - send_test() picks a sample only from events the endpoint matches (its
--   tenant and filter); retry(), resend() and retry_failed() re-check that
--   a delivery's event still matches its endpoint.
-- - claim() leases each delivery for at least its endpoint's connect_timeout
--   + timeout + 2 s, so a slow endpoint's delivery is never sent twice at once.
-- - Events bigger than webhooks.max_event_size (1 MiB by default) are
--   refused with 54000, at capture and in emit().
-- - Readers see endpoint URLs without path and query, and custom header
--   values only where an admin marked them public
--   (webhooks.set_public_headers()); attempts record the others as
--   [redacted]; the endpoint.paused event carries the redacted URL.
-- - Functions and operators in schema webhooks that are not the
--   extension's (0.1.0 let admins create them there) are dropped.
-- - Deferred tables: what SET CONSTRAINTS ... IMMEDIATE leaves staged is
--   turned into events just before commit (commit_staged()); partitions of
--   a tracked partitioned table get its capture triggers, and their rows
--   are captured under its settings.
-- - webhooks.source_changed() also refuses settings for a table the role
--   may not put triggers on, and re-checks the payload function on every
--   write (signature, owner's rights, a search_path ending with pg_temp).
-- - Endpoints can present a TLS client certificate and trust CA
--   certificates of their own (webhooks.set_endpoint_tls()); claim()
--   returns them to the poller.
-- - Fan-out derives each delivery's id from its event and endpoint
--   (webhooks.delivery_id()): a fan-out made again after a failover lost
--   the first (asynchronous replication) sends the same webhook-ids.
-- - webhooks.source and webhooks.source_event name payload functions by
--   OID, signature (text) and owner instead of regprocedure, so that
--   pg_upgrade accepts the cluster: the OID within the database that wrote
--   them (a dropped function stays dropped), the signature and owner after
--   pg_upgrade or a restore; the signature follows ALTER FUNCTION ...
--   RENAME, SET SCHEMA and OWNER TO, and ALTER SCHEMA ... RENAME. Payload
--   functions in temporary schemas are refused.
-- - A new endpoint row whose http URL webhooks.require_https refuses (a
--   restore from a server without it) is paused instead of refused, and
--   no message is raised for a new row, so that COPY's context line never
--   logs its secret.
-- - Custom header values and bearer tokens or auth header values must be
--   printable ASCII (22023), which is all the poller can send; template
--   placeholders are no longer expanded inside the values they insert.
-- - webhooks.endpoint raises its NOT NULL and CHECK violations itself,
--   without the row's values (PostgreSQL's DETAIL would log the secrets).
-- - The functions that read deliveries take the unfinished statuses from
--   webhooks.unfinished_statuses() (no index is rebuilt).
-- Tracked tables keep their settings; their triggers are made again below.
--
-- Why one file of this length: ALTER EXTENSION ... UPDATE runs one script
-- per version step, so everything that changed between 0.1.0 and 0.2.0 is
-- here, in the order its dependencies need — every changed function again
-- in full (CREATE OR REPLACE, then its SECURITY DEFINER and search_path,
-- which a replace resets), and the privileges of new objects in one section,
-- in the order a fresh install grants them. It is written by hand next to
-- sql/0*.sql; upgrade::extension_update fails when an upgraded 0.1.0
-- differs from a fresh install in any object, definition or privilege.

\echo Use "ALTER EXTENSION pg_webhooks UPDATE TO '0.2.0'" to load this file. \quit

-- 0.1.0 let webhooks_admin create objects in schema webhooks, which ALTER
-- EXTENSION puts first on search_path: nothing in this script may resolve
-- a name there by accident (a look-alike format() would run as the
-- superuser running the upgrade). Everything of ours is named with its
-- schema.
SET LOCAL search_path = pg_catalog, pg_temp;

-- Triggers on the extension's tables that it did not make (0.1.0 gave
-- admins TRIGGER on them) would run as every privileged writer of events:
-- dropped, with a warning.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tg.tgname, tg.tgrelid::regclass AS rel, tg.tgfoid::regprocedure AS fn
               FROM pg_catalog.pg_trigger tg
               JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
              WHERE c.relnamespace = 'webhooks'::regnamespace AND NOT tg.tgisinternal LOOP
        RAISE WARNING 'pg_webhooks: dropping trigger % on %, which calls %: the extension did not make it',
                      t.tgname, t.rel, t.fn;
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
    END LOOP;
END $$;

-- The generators of the per-table functions.
DROP FUNCTION webhooks.install_capture(webhooks.source, boolean);
DROP FUNCTION webhooks.capture_statement_source(webhooks.source, regprocedure, text);
DROP FUNCTION webhooks.capture_source(webhooks.source, text, regprocedure);
DROP FUNCTION webhooks.fill(text, jsonb);
DROP FUNCTION webhooks.capture_security(boolean);
DROP FUNCTION webhooks.column_text_expr(text, name[]);
DROP FUNCTION webhooks.json_text_expr(text, name[]);
DROP FUNCTION webhooks.qualified_function(regprocedure);

ALTER FUNCTION webhooks.capture() SECURITY INVOKER;
COMMENT ON FUNCTION webhooks.capture_enabled() IS
  'The session''s webhooks.capture setting; off counts only for superusers and webhooks_admin members (42501 '
  'otherwise).';
COMMENT ON FUNCTION webhooks.row_jsonb(record) IS
  'to_jsonb(row) for rows whose column types all satisfy webhooks.row_jsonb_type() (raises 0A000 otherwise), '
  'with each column''s conversion looked up once per call site: the capture engine''s typed conversions.';
COMMENT ON FUNCTION webhooks.capture() IS
  'Statement-level capture trigger of tracked tables (see "How capture works" in the extension''s SQL): '
  'settings from webhooks.source by the trigger''s table; raises 42501 on a table that is not tracked.';









ALTER TABLE webhooks.endpoint ADD COLUMN public_headers text[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN webhooks.endpoint.public_headers IS
  'Custom headers whose values readers may see (webhooks.endpoints, attempts); every other custom header''s value '
  'is shown as [redacted]. Set with webhooks.set_public_headers().';
ALTER TABLE webhooks.endpoint ADD COLUMN client_cert text, ADD COLUMN client_key text, ADD COLUMN ca_cert text;

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

-- Payload functions were regprocedure columns, which pg_upgrade refuses
-- (function OIDs change there): now the OID, which names the function in
-- this database, and the signature and owner, which name it after a
-- pg_upgrade or a restore (webhooks.payload_function()). payload_scope says
-- where the OID was read (webhooks.oid_scope(), above). The view on
-- them is made again below.
DROP VIEW webhooks.sources;
ALTER TABLE webhooks.source ADD COLUMN payload_oid oid, ADD COLUMN payload_scope text, ADD COLUMN payload_owner name;
ALTER TABLE webhooks.source_event ADD COLUMN payload_oid oid, ADD COLUMN payload_scope text,
                                  ADD COLUMN payload_owner name;
DO $$
DECLARE
    here text := webhooks.oid_scope();
    gone text;
BEGIN
    UPDATE webhooks.source s
       SET payload_oid = s.payload::pg_catalog.oid, payload_scope = here,
           payload_owner = (SELECT pg_catalog.pg_get_userbyid(p.proowner) FROM pg_catalog.pg_proc p
                             WHERE p.oid OPERATOR(pg_catalog.=) s.payload::pg_catalog.oid)
     WHERE s.payload IS NOT NULL;
    UPDATE webhooks.source_event x
       SET payload_oid = x.payload::pg_catalog.oid, payload_scope = here,
           payload_owner = (SELECT pg_catalog.pg_get_userbyid(p.proowner) FROM pg_catalog.pg_proc p
                             WHERE p.oid OPERATOR(pg_catalog.=) x.payload::pg_catalog.oid)
     WHERE x.payload IS NOT NULL;
    -- A regprocedure outlives its function (it is only an OID): such a
    -- table's writes fail until it is tracked again.
    SELECT pg_catalog.string_agg(t.source::pg_catalog.text, ', ') INTO gone
      FROM (SELECT s.source FROM webhooks.source s WHERE s.payload IS NOT NULL AND s.payload_owner IS NULL
            UNION SELECT x.source FROM webhooks.source_event x WHERE x.payload IS NOT NULL AND x.payload_owner IS NULL) t;
    IF gone IS NOT NULL THEN
        RAISE WARNING 'pg_webhooks: the payload function of % no longer exists; writes to it fail until '
                      'webhooks.track() or track_event() names one that does', gone;
    END IF;
END $$;
ALTER TABLE webhooks.source ALTER COLUMN payload TYPE text USING payload::pg_catalog.text;
ALTER TABLE webhooks.source_event ALTER COLUMN payload TYPE text USING payload::pg_catalog.text;
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
COMMENT ON COLUMN webhooks.source_event.payload IS
  'The payload function''s signature, as in webhooks.source.payload.';
COMMENT ON COLUMN webhooks.source_event.payload_oid IS
  'Internal: the payload function''s OID, as in webhooks.source.payload_oid.';
COMMENT ON COLUMN webhooks.source_event.payload_scope IS
  'Internal: where payload_oid was read, as in webhooks.source.payload_scope.';
COMMENT ON COLUMN webhooks.source_event.payload_owner IS
  'Internal: the payload function''s owner, as in webhooks.source.payload_owner.';
COMMENT ON COLUMN webhooks.endpoint.client_cert IS
  'PEM certificate chain the poller presents to this endpoint''s receiver (mutual TLS); set with '
  'webhooks.set_endpoint_tls().';
COMMENT ON COLUMN webhooks.endpoint.client_key IS
  'PEM private key of client_cert (unencrypted PKCS#8, RSA or EC): a secret, like secret. Never shown to readers; '
  'the poller gets it with each claim.';
COMMENT ON COLUMN webhooks.endpoint.ca_cert IS
  'PEM CA certificates trusted for this endpoint''s receiver, besides the poller''s (Mozilla roots and '
  '--receiver-ca-file).';

-- (Declared by the Rust library, as a fresh install's script does.)
CREATE FUNCTION webhooks.redacted_url(url text) RETURNS text
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'redacted_url_wrapper';
CREATE FUNCTION webhooks.normalized_url(url text) RETURNS text
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'normalized_url_wrapper';
CREATE FUNCTION webhooks.refused_address(url text) RETURNS text
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'refused_address_wrapper';
CREATE FUNCTION webhooks.search_path_ends_with_pg_temp(path text) RETURNS boolean
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'search_path_ends_with_pg_temp_wrapper';
CREATE FUNCTION webhooks.delivery_id(event_id uuid, endpoint_id bigint) RETURNS uuid
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'delivery_id_wrapper';
COMMENT ON FUNCTION webhooks.delivery_id(uuid, bigint) IS
  'The id fan-out gives the delivery of an event to an endpoint: a UUIDv7 with the event''s time, the rest '
  'derived from both ids, so a fan-out made again (after a failover lost the first) sends the same webhook-id.';

COMMENT ON FUNCTION webhooks.uuid_v7_floor(timestamptz) IS
  'The smallest UUIDv7 created at or after a time: event and delivery ids sort by creation (a delivery made '
  'by fan-out by its event''s), so id >= webhooks.uuid_v7_floor(t) selects rows created since t (and bounds the partitions).';

-- Fan-out with derived delivery ids (the rest as in 0.1.0).
CREATE OR REPLACE FUNCTION webhooks.fan_out(max_events integer DEFAULT 1000) RETURNS integer
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

COMMENT ON FUNCTION webhooks.redacted_url(text) IS
  'An endpoint URL as readers see it: scheme, host and port as the poller parses them; any path, query or '
  'fragment shown as /[redacted].';

COMMENT ON FUNCTION webhooks.refused_address(text) IS
  'Why the poller''s SSRF guard will refuse an endpoint URL''s host (an address literal, or localhost, in a '
  'special-purpose block not globally reachable), or NULL; names are judged by the poller when resolved.';

COMMENT ON FUNCTION webhooks.normalized_url(text) IS
  'An endpoint URL as the poller''s parser writes it (https:host/x is https://host/x); 22023 as url_parts.';

COMMENT ON FUNCTION webhooks.search_path_ends_with_pg_temp(text) IS
  'Does a search_path value name pg_temp last, as PostgreSQL splits and unquotes it?';

CREATE FUNCTION webhooks.capture_event() RETURNS trigger
AS 'MODULE_PATHNAME', 'capture_event' LANGUAGE c;
COMMENT ON FUNCTION webhooks.capture_event() IS
  'Row-level trigger of a business event (track_event): its settings come from webhooks.source_event by the '
  'trigger''s name and table; the trigger''s WHEN clause has already decided.';

CREATE FUNCTION webhooks.invalidate_capture(source regclass) RETURNS void
AS 'MODULE_PATHNAME', 'invalidate_capture' LANGUAGE c STRICT;
COMMENT ON FUNCTION webhooks.invalidate_capture(regclass) IS
  'Internal: make every backend read a tracked table''s capture settings again (a relcache invalidation).';

CREATE FUNCTION webhooks.apply_payload(source regclass, data jsonb) RETURNS jsonb
AS 'MODULE_PATHNAME', 'apply_payload' LANGUAGE c STRICT;
COMMENT ON FUNCTION webhooks.apply_payload(regclass, jsonb) IS
  'Internal: a deferred table''s payload function (from webhooks.source) applied to a row''s document, run as '
  'the function''s owner.';

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

CREATE FUNCTION webhooks.checked_event_size(data jsonb) RETURNS jsonb
AS 'MODULE_PATHNAME', 'checked_event_size' LANGUAGE c STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.checked_event_size(jsonb) IS
  'Internal: the event data, or 54000 if it is bigger than webhooks.max_event_size.';

-- The one list of which header values are secret, for readers
-- (redacted_headers() in the endpoints view) and for attempts (claim()
-- gives it to the poller, which records those values as [redacted]).
CREATE FUNCTION webhooks.credential_headers() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{Authorization,Proxy-Authorization,Cookie}'::text[];
COMMENT ON FUNCTION webhooks.credential_headers() IS
  'Headers whose values are credentials: never shown to readers nor recorded in attempts, and never public.';

CREATE FUNCTION webhooks.secret_headers(headers jsonb, public_headers text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT webhooks.credential_headers()
           || ARRAY(SELECT h FROM jsonb_object_keys(coalesce(headers, '{}')) h
                     -- (NOT EXISTS: a NULL element must not make every header public.)
                     WHERE NOT EXISTS (SELECT 1 FROM unnest(public_headers) p WHERE lower(p) = lower(h))
                     ORDER BY h)
$$;
COMMENT ON FUNCTION webhooks.secret_headers(jsonb, text[]) IS
  'The header names whose values are secret: webhooks.credential_headers(), and the custom headers not in '
  'public_headers (names compared case-insensitively).';

CREATE FUNCTION webhooks.redacted_headers(headers jsonb, public_headers text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(h.key, CASE WHEN lower(h.key) IN (SELECT lower(s)
                                                                        FROM unnest(webhooks.secret_headers(headers, public_headers)) s)
                                                 THEN '"[redacted]"'::jsonb ELSE h.value END), '{}')
      FROM jsonb_each(headers) h
$$;
COMMENT ON FUNCTION webhooks.redacted_headers(jsonb, text[]) IS
  'Custom headers as readers see them: the values of webhooks.secret_headers() [redacted].';

CREATE FUNCTION webhooks.set_public_headers(endpoint bigint, public_headers text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    e webhooks.endpoint := webhooks.endpoint_row(endpoint);
BEGIN
    PERFORM webhooks.check_header_name(h) FROM unnest(coalesce(public_headers, '{}')) h;
    IF EXISTS (SELECT 1 FROM unnest(public_headers) h
                WHERE lower(h) IN (SELECT lower(c) FROM unnest(webhooks.credential_headers()) c)) THEN
        RAISE EXCEPTION 'public_headers cannot name a credential header (%)',
                        array_to_string(webhooks.credential_headers(), ', ')
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhooks.endpoint x SET public_headers = coalesce(set_public_headers.public_headers, '{}'),
                                   updated_at = now()
     WHERE x.id = e.id;
END $$;
COMMENT ON FUNCTION webhooks.set_public_headers(bigint, text[]) IS
  'Name the custom headers of an endpoint whose values are not secret: readers see them in webhooks.endpoints '
  'and in attempts; every other custom header''s value is [redacted] there. Credential headers '
  '(webhooks.credential_headers()) cannot be named.';

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

CREATE FUNCTION webhooks.tracked_table(rel regclass) RETURNS regclass
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT a.relid FROM pg_partition_ancestors(rel) WITH ORDINALITY a(relid, n)
                      WHERE EXISTS (SELECT 1 FROM webhooks.source s WHERE s.source = a.relid)
                      ORDER BY a.n LIMIT 1), rel)
$$;
COMMENT ON FUNCTION webhooks.tracked_table(regclass) IS
  'Internal: the table whose settings apply to a trigger''s table (itself, or a partition''s nearest tracked '
  'ancestor).';

CREATE OR REPLACE VIEW webhooks.endpoints AS
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
COMMENT ON VIEW webhooks.endpoints IS
  'Endpoints without their secrets or credentials; for roles that are not webhooks_admin members, URL path and '
  'query, and custom header values not marked public, [redacted] too.';


-- pg_temp_N and pg_toast_temp_N, anyone's.
CREATE FUNCTION webhooks.temporary_namespace(namespace oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT namespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
           OR pg_catalog.pg_is_other_temp_schema(namespace)
$$;
COMMENT ON FUNCTION webhooks.temporary_namespace(oid) IS
  'Internal: whether a schema is a session''s temporary schema (this one''s or another''s).';

-- The function a signature names: the (jsonb) function that prints as it
-- (never an OID in digits, which is what a 0.1.0 regprocedure whose
-- function was dropped became), not in a temporary schema. Matched against
-- the catalog, not parsed: to_regprocedure() raises on some text (another
-- database's name, on every version; more on PostgreSQL 15), and stored
-- text is a writer's.
CREATE FUNCTION webhooks.signature_function(signature text) RETURNS regprocedure
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.oid::pg_catalog.regprocedure
      FROM pg_catalog.pg_proc p
     WHERE p.pronargs OPERATOR(pg_catalog.=) 1
       AND p.proargtypes[0] OPERATOR(pg_catalog.=) 'pg_catalog.jsonb'::pg_catalog.regtype
       AND p.oid::pg_catalog.regprocedure::pg_catalog.text OPERATOR(pg_catalog.=) signature
       AND NOT webhooks.temporary_namespace(p.pronamespace)
$$;
COMMENT ON FUNCTION webhooks.signature_function(text) IS
  'Internal: the function a payload signature names exactly (as it prints with search_path = pg_catalog), '
  'outside temporary schemas; NULL if none.';

-- Settings name payload functions by OID, signature and owner (see above).
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

-- track() writes the OID; webhooks.source_changed() the signature.
CREATE OR REPLACE FUNCTION webhooks.track(
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

CREATE FUNCTION webhooks.source_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner       oid;
    fn          regprocedure;
    here        text;
    named       boolean;
    foreign_row boolean;
    kept        boolean := false;
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
    --   with no function, and a warning: a restore keeps every other
    --   table's settings, and capture refuses this table's writes (42883)
    --   until track() names a function.
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
                -- (The text as JSON: it may be anything a writer typed, line breaks included.)
                RAISE EXCEPTION 'payload function % does not exist',
                                coalesce(pg_catalog.to_json(NEW.payload)::text, NEW.payload_oid::text)
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
                    -- Made this database's with no function: capture refuses
                    -- the table (42883), and nothing binds it later by name
                    -- (payload_scope and payload_owner are a writer's to
                    -- write, so a row kept as it came would let anyone name
                    -- someone else's function). payload stays, to say which.
                    RAISE WARNING 'pg_webhooks: the payload function of % cannot be used here: %', NEW.source, SQLERRM
                      USING HINT = 'Writes to it fail until webhooks.track() names a payload function.';
                    NEW.payload_oid := NULL;
                    NEW.payload_scope := here;
                END IF;
                kept := true;
            ELSE
                RAISE;
            END IF;
        END;
        IF NOT kept THEN
            NEW.payload := fn::pg_catalog.text;
            NEW.payload_oid := fn::pg_catalog.oid;
            NEW.payload_scope := here;
            NEW.payload_owner := pg_catalog.pg_get_userbyid(owner);
        END IF;
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

-- A request timeout the lease can cover: claim() adds the endpoint's
-- timeouts to now(), and an interval of years would overflow it for every
-- endpoint's claim.
CREATE FUNCTION webhooks.check_timeout(what text, value interval) RETURNS interval
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- (More than 0 is the table's CHECK endpoint_timeouts.)
    IF value > interval '1 hour' THEN
        RAISE EXCEPTION '% must be at most 1 hour, not %', what, value
          USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;
COMMENT ON FUNCTION webhooks.check_timeout(text, interval) IS
  'Internal: raise 22023 if a request timeout is over 1 hour.';

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
    IF everything OR e.timeout IS DISTINCT FROM was.timeout THEN
        PERFORM webhooks.check_timeout('timeout', e.timeout);
    END IF;
    IF everything OR e.connect_timeout IS DISTINCT FROM was.connect_timeout THEN
        PERFORM webhooks.check_timeout('connect_timeout', e.connect_timeout);
    END IF;
    -- (NULL would make claim() redact no custom header in attempts.)
    IF (everything OR e.public_headers IS DISTINCT FROM was.public_headers) AND e.public_headers IS NOT NULL THEN
        PERFORM webhooks.check_header_name(h) FROM pg_catalog.unnest(e.public_headers) h;
    END IF;
END $$;
COMMENT ON FUNCTION webhooks.check_endpoint_columns(webhooks.endpoint, webhooks.endpoint, boolean) IS
  'Internal: create_endpoint()''s checks (22023 and friends) of the columns of an endpoint row that differ from '
  'another (all when it is NULL); quietly raises no warning.';

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

CREATE OR REPLACE FUNCTION webhooks.capture_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks.commit_staged(webhooks.tracked_table(TG_RELID));
    RETURN NULL;
END $$;
COMMENT ON FUNCTION webhooks.capture_commit() IS
  'Internal: commit-time trigger of a deferred tracked table: one event per changed row, coalesced.';

CREATE OR REPLACE FUNCTION webhooks.capture_truncate() RETURNS trigger
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

CREATE OR REPLACE FUNCTION webhooks.track_event(source regclass, event text, condition text,
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

CREATE OR REPLACE FUNCTION webhooks.untrack(source regclass) RETURNS void
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

CREATE OR REPLACE FUNCTION webhooks.emit(event text, data jsonb, key text DEFAULT NULL, tenant text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION webhooks.record_outcome(
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

CREATE OR REPLACE FUNCTION webhooks.pause_endpoint(id bigint, reason text) RETURNS void
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

CREATE OR REPLACE FUNCTION webhooks.on_ddl() RETURNS event_trigger
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

CREATE OR REPLACE FUNCTION webhooks.on_drop() RETURNS event_trigger
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

CREATE OR REPLACE FUNCTION webhooks.retry(delivery uuid) RETURNS uuid
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

CREATE OR REPLACE FUNCTION webhooks.retry_failed(endpoint bigint DEFAULT NULL, since interval DEFAULT '7 days')
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

CREATE OR REPLACE FUNCTION webhooks.resend(delivery uuid) RETURNS uuid
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

CREATE OR REPLACE FUNCTION webhooks.send_test(endpoint bigint, event text DEFAULT 'webhooks.test', data jsonb DEFAULT NULL)
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

-- The claim returns each endpoint's TLS client identity too: a new row
-- type, so the function is made again (its grants and settings below).
DROP FUNCTION webhooks.claim(integer, interval);
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

CREATE OR REPLACE FUNCTION webhooks.check_payload(payload regprocedure) RETURNS regprocedure
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

-- Whether webhooks.require_https refuses a URL: http to anything but a
-- loopback address written as one (127.0.0.0/8, [::1]) or localhost.
-- Other names are not exempt, *.localhost included: a resolver may send
-- them to the network, where http can be read.
CREATE FUNCTION webhooks.https_refuses(url text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.scheme OPERATOR(pg_catalog.=) 'http' AND webhooks.https_required()
           AND p.host OPERATOR(pg_catalog.<>) ALL (ARRAY['localhost', 'localhost.', '[::1]'])
           AND p.host OPERATOR(pg_catalog.!~) '^127\.[0-9]+\.[0-9]+\.[0-9]+$'
      FROM webhooks.url_parts(url) p
$$;
COMMENT ON FUNCTION webhooks.https_refuses(text) IS
  'Internal: whether webhooks.require_https refuses an endpoint URL (http, and not to localhost, 127.0.0.0/8 '
  'or [::1]).';

CREATE OR REPLACE FUNCTION webhooks.check_url(url text) RETURNS text
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
                HINT = 'webhooks.require_https is on; only localhost, 127.0.0.0/8 and [::1] may use http.';
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

-- Clones of a parent's row triggers on partitions are left to the parent's
-- (dropping one alone is refused: untrack() of a deferred partitioned table failed).
CREATE OR REPLACE FUNCTION webhooks.drop_capture_triggers(rel regclass, prefix text DEFAULT 'webhooks\_capture\_%')
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

-- release() named its own column where it meant its argument (42P10):
-- every graceful stop and byte-budget give-back failed.
CREATE OR REPLACE FUNCTION webhooks.release(delivery_ids uuid[], attempts integer[]) RETURNS integer
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
ALTER FUNCTION webhooks.release(uuid[], integer[]) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

ALTER FUNCTION webhooks.emit(text, jsonb, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.claim(integer, interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.on_ddl() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.on_drop() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION webhooks.on_ddl(), webhooks.on_drop() FROM PUBLIC;
-- Partitions made or attached after track() get their capture triggers.
DROP EVENT TRIGGER webhooks_ddl;
CREATE EVENT TRIGGER webhooks_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE FOREIGN TABLE', 'CREATE SCHEMA',
                 'ALTER FUNCTION', 'ALTER ROUTINE', 'ALTER SCHEMA')
    EXECUTE FUNCTION webhooks.on_ddl();
-- Keeps each settings row's payload function named as it is now: rows
-- from pg_upgrade or a restore are made this database's (by signature and
-- owner, as capture finds them), and those of this database take a renamed
-- or moved function's signature and a new owner's name, so that they still
-- name it after a later pg_upgrade or restore. Run by the DDL event
-- triggers and by maintain() (an owner renamed with ALTER ROLE or REASSIGN
-- OWNED, which no event trigger sees). One row at a time: a function the
-- checks refuse, or a row someone holds locked, leaves that row as it is
-- (capture reports an unfit function) and never fails nor holds up the
-- DDL that runs this.
CREATE FUNCTION webhooks.sync_payload_functions() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    here   text := webhooks.oid_scope();
    fix    record;
    cur    record;
    fix_count integer;
    synced integer := 0;
BEGIN
    FOR fix IN SELECT 'source' AS settings, s.id FROM webhooks.source s WHERE s.payload IS NOT NULL
               UNION ALL
               SELECT 'source_event', x.id FROM webhooks.source_event x WHERE x.payload IS NOT NULL LOOP
        BEGIN
            EXECUTE pg_catalog.format(
                'SELECT s.payload, s.payload_oid, s.payload_scope, s.payload_owner, f.fn,
                        (SELECT pg_catalog.pg_get_userbyid(p.proowner) FROM pg_catalog.pg_proc p
                          WHERE p.oid OPERATOR(pg_catalog.=) f.fn::pg_catalog.oid) AS fn_owner
                   FROM webhooks.%I s,
                        LATERAL (SELECT webhooks.payload_function(s.payload, s.payload_oid, s.payload_scope,
                                                                  s.payload_owner) AS fn OFFSET 0) f
                  WHERE s.id OPERATOR(pg_catalog.=) $1', fix.settings)
              INTO cur USING fix.id;
            -- Written only if the row is not this database's yet, or if its
            -- signature or owner no longer prints as the function does.
            CONTINUE WHEN cur.fn IS NULL
                       OR (cur.payload_scope IS NOT DISTINCT FROM here
                           AND cur.payload IS NOT DISTINCT FROM cur.fn::pg_catalog.text
                           AND cur.payload_owner IS NOT DISTINCT FROM cur.fn_owner);
            -- A row someone holds is skipped rather than waited for (this
            -- runs inside the DBA's DDL), and one changed since it was read
            -- is left for the next run.
            -- (webhooks.source_changed() writes signature and owner from the OID.)
            EXECUTE pg_catalog.format(
                'UPDATE webhooks.%1$I s SET payload = NULL, payload_oid = $2, payload_scope = $3
                  WHERE s.id OPERATOR(pg_catalog.=)
                            (SELECT l.id FROM webhooks.%1$I l
                              WHERE l.id OPERATOR(pg_catalog.=) $1
                                AND l.payload IS NOT DISTINCT FROM $4
                                AND l.payload_oid IS NOT DISTINCT FROM $5
                                AND l.payload_scope IS NOT DISTINCT FROM $6
                                AND l.payload_owner IS NOT DISTINCT FROM $7
                                FOR UPDATE SKIP LOCKED)', fix.settings)
              USING fix.id, cur.fn::pg_catalog.oid, here,
                    cur.payload, cur.payload_oid, cur.payload_scope, cur.payload_owner;
            GET DIAGNOSTICS fix_count = ROW_COUNT;
            synced := synced + fix_count;
        EXCEPTION WHEN OTHERS THEN
            -- Whatever one row's trouble, the others are synced and the
            -- DDL goes on; capture reports that row's function.
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
ALTER FUNCTION webhooks.on_ddl_start() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION webhooks.on_ddl_start() FROM PUBLIC;
REVOKE ALL ON FUNCTION webhooks.sync_payload_functions() FROM PUBLIC;
CREATE EVENT TRIGGER webhooks_ddl_start ON ddl_command_start
    WHEN TAG IN ('ALTER FUNCTION', 'ALTER ROUTINE', 'ALTER SCHEMA')
    EXECUTE FUNCTION webhooks.on_ddl_start();

-- Custom header values and auth tokens are printable ASCII, what the
-- poller can send (existing endpoints are left as they are); a template's
-- placeholder values are never searched for placeholders themselves.
CREATE OR REPLACE FUNCTION webhooks.check_headers(headers jsonb) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION webhooks.check_auth(auth jsonb) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION webhooks.render_template(template jsonb, context jsonb) RETURNS jsonb
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

-- maintain() also brings the settings' payload functions up to date
-- (sync_payload_functions(), below).
CREATE OR REPLACE FUNCTION webhooks.maintain() RETURNS integer
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

-- create_endpoint() bounds the timeouts (check_timeout()).
CREATE OR REPLACE FUNCTION webhooks.create_endpoint(
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
            webhooks.check_timeout('timeout', create_endpoint.timeout),
            webhooks.check_timeout('connect_timeout', create_endpoint.connect_timeout),
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

-- uuid_v7_floor() of a time before 1970 is the smallest UUIDv7, not one of the far future.
CREATE OR REPLACE FUNCTION webhooks.uuid_v7_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- (Before 1970: the smallest UUIDv7 of all, not a negative count.)
    SELECT (lpad(to_hex(greatest(floor(extract(epoch FROM at) * 1000)::bigint, 0)), 12, '0') || repeat('0', 20))::uuid
$$;
COMMENT ON FUNCTION webhooks.uuid_v7_floor(timestamptz) IS
  'The smallest UUIDv7 created at or after a time: event and delivery ids sort by creation (a delivery made '
  'by fan-out by its event''s), so id >= webhooks.uuid_v7_floor(t) selects rows created since t (and bounds the partitions).';

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

-- complete_batch() takes its limit from webhooks.response_body_limit(), as the poller does.
CREATE OR REPLACE FUNCTION webhooks.complete_batch(
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

-- An HTTP status is status_code everywhere: the log gets the column under
-- that name (at the end, as CREATE OR REPLACE VIEW needs), response_code
-- stays for this release.
CREATE OR REPLACE VIEW webhooks.delivery_log AS
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

-- One list of unfinished statuses (webhooks.unfinished_statuses()) for
-- the functions that read deliveries; the CHECK constraint and the partial
-- indexes keep theirs, so no index is rebuilt.

CREATE FUNCTION webhooks.unfinished_statuses() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{pending,delivering}'::text[];
COMMENT ON FUNCTION webhooks.unfinished_statuses() IS
  'The statuses of deliveries not finished yet (due, or leased to a poller): pending and delivering.';

CREATE OR REPLACE FUNCTION webhooks.delete_endpoint(id bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e webhooks.endpoint := webhooks.endpoint_row(id);
    n integer;
BEGIN
    UPDATE webhooks.endpoint x SET deleted_at = now(), active = false, updated_at = now()
     WHERE x.id = e.id;
    UPDATE webhooks.delivery d SET status = 'cancelled', completed_at = now(), locked_until = NULL,
                                   last_error = 'endpoint deleted'
     WHERE d.endpoint_id = e.id AND d.status = ANY (webhooks.unfinished_statuses());
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION webhooks.delete_endpoint(bigint) IS
  'Delete an endpoint: its unfinished deliveries are cancelled (returns how many); its history stays queryable.';

CREATE OR REPLACE FUNCTION webhooks.cancel(delivery uuid) RETURNS uuid
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

CREATE OR REPLACE FUNCTION webhooks.stats(since interval DEFAULT '30 days')
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

ALTER FUNCTION webhooks.stats(interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION webhooks.next_due() RETURNS timestamptz
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

CREATE OR REPLACE FUNCTION webhooks.backlog() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM webhooks.delivery
             WHERE status = ANY (webhooks.unfinished_statuses()) AND next_attempt_at <= now())
         + (SELECT count(*) FROM webhooks.event WHERE NOT fanned_out)
$$;
COMMENT ON FUNCTION webhooks.backlog() IS
  'Poller API (metrics): deliveries due now and not claimed, plus events whose deliveries are not created yet.';

ALTER FUNCTION webhooks.backlog() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Privileges of the new functions, as a fresh install has them.
REVOKE ALL ON FUNCTION webhooks.capture_event(), webhooks.invalidate_capture(regclass),
                       webhooks.apply_payload(regclass, jsonb), webhooks.source_changed(),
                       webhooks.install_capture(webhooks.source), webhooks.emit_own(text, jsonb, text, text),
                       webhooks.endpoint_checked(), webhooks.check_still_matches(webhooks.delivery),
                       webhooks.checked_event_size(jsonb), webhooks.redacted_url(text),
                       webhooks.redacted_headers(jsonb, text[]), webhooks.set_public_headers(bigint, text[]),
                       webhooks.commit_staged(regclass), webhooks.tracked_table(regclass),
                       webhooks.normalized_url(text), webhooks.search_path_ends_with_pg_temp(text),
                       webhooks.refused_address(text), webhooks.add_capture_triggers(webhooks.source, regclass),
                       webhooks.delivery_id(uuid, bigint), webhooks.claim(integer, interval),
                       webhooks.check_endpoint_tls(text, text, text, text), webhooks.set_endpoint_tls(bigint, text, text, text),
                       webhooks.payload_function(text, oid, text, name), webhooks.oid_scope(),
                       webhooks.temporary_namespace(oid), webhooks.https_refuses(text),
                       webhooks.signature_function(text),
                       webhooks.check_endpoint_columns(webhooks.endpoint, webhooks.endpoint, boolean),
                       webhooks.check_timeout(text, interval), webhooks.response_body_limit(),
                       webhooks.credential_headers(), webhooks.secret_headers(jsonb, text[]),
                       webhooks.unfinished_statuses()
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhooks.capture_event(), webhooks.invalidate_capture(regclass),
                          webhooks.source_changed(), webhooks.install_capture(webhooks.source),
                          webhooks.emit_own(text, jsonb, text, text), webhooks.endpoint_checked(),
                          webhooks.check_still_matches(webhooks.delivery), webhooks.checked_event_size(jsonb),
                          webhooks.redacted_url(text), webhooks.redacted_headers(jsonb, text[]),
                          webhooks.set_public_headers(bigint, text[]), webhooks.tracked_table(regclass),
                          webhooks.normalized_url(text), webhooks.search_path_ends_with_pg_temp(text),
                          webhooks.refused_address(text), webhooks.add_capture_triggers(webhooks.source, regclass),
                          webhooks.delivery_id(uuid, bigint), webhooks.claim(integer, interval),
                          webhooks.check_endpoint_tls(text, text, text, text), webhooks.set_endpoint_tls(bigint, text, text, text),
                          webhooks.payload_function(text, oid, text, name), webhooks.oid_scope(),
                          webhooks.temporary_namespace(oid), webhooks.https_refuses(text),
                          webhooks.signature_function(text),
                          webhooks.check_endpoint_columns(webhooks.endpoint, webhooks.endpoint, boolean),
                          webhooks.check_timeout(text, interval), webhooks.response_body_limit(),
                          webhooks.credential_headers(), webhooks.secret_headers(jsonb, text[]),
                          webhooks.unfinished_statuses()
   TO webhooks_admin;
GRANT EXECUTE ON FUNCTION webhooks.claim(integer, interval), webhooks.response_body_limit() TO webhooks_poller;
REVOKE CREATE ON SCHEMA webhooks FROM webhooks_admin;
-- 0.1.0 granted ALL (on PostgreSQL 17 and later, MAINTAIN too); a fresh
-- install grants these four.
REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM webhooks_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA webhooks TO webhooks_admin;
GRANT EXECUTE ON FUNCTION webhooks.endpoint_matches(webhooks.endpoint, webhooks.event),
                          webhooks.envelope(webhooks.event), webhooks.redacted_url(text),
                          webhooks.redacted_headers(jsonb, text[]), webhooks.secret_headers(jsonb, text[]),
                          webhooks.credential_headers(), webhooks.unfinished_statuses(),
                          webhooks.payload_function(text, oid, text, name), webhooks.oid_scope(),
                          webhooks.temporary_namespace(oid), webhooks.signature_function(text)
   TO webhooks_reader;
GRANT SELECT ON webhooks.sources TO webhooks_reader;

-- Tracked tables: the same triggers without arguments, and business
-- events on the engine; the generated functions go.
-- Only from what the catalog says 0.1.0 made: a table gets the engine's
-- triggers if it had 0.1.0's capture triggers (a settings row an admin wrote
-- for a table it could not put triggers on gets none), and a business
-- event's trigger is made again from the existing trigger's own definition
-- (never from the condition text in webhooks.source_event, which an admin
-- could write).
DO $$
DECLARE
    src webhooks.source;
    se  webhooks.source_event;
    t   record;
    def text;
BEGIN
    FOR src IN SELECT * FROM webhooks.source LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg
                    WHERE tg.tgrelid = src.source::pg_catalog.oid AND tg.tgname LIKE 'webhooks\_capture\_%'
                      AND tg.tgfoid = 'webhooks.capture()'::pg_catalog.regprocedure) THEN
            PERFORM webhooks.install_capture(src);
        ELSE
            RAISE WARNING 'pg_webhooks: % has tracking settings but no capture triggers; left untracked until '
                          'webhooks.track() is called for it', src.source;
        END IF;
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS webhooks.capture_%s()', src.id);
    END LOOP;
    FOR t IN SELECT tg.oid, tg.tgname, tg.tgrelid::regclass AS rel, x.id
               FROM webhooks.source_event x
               JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = x.source::pg_catalog.oid
                                            AND tg.tgname = 'webhooks_event_' || x.id
              WHERE tg.tgfoid = pg_catalog.to_regprocedure('webhooks.capture_event_' || x.id || '()') LOOP
        def := pg_catalog.replace(pg_catalog.pg_get_triggerdef(t.oid),
                                  'EXECUTE FUNCTION webhooks.capture_event_' || t.id || '()',
                                  'EXECUTE FUNCTION webhooks.capture_event()');
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
        EXECUTE def;
    END LOOP;
    FOR se IN SELECT * FROM webhooks.source_event LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg
                        WHERE tg.tgrelid = se.source::pg_catalog.oid AND tg.tgname = 'webhooks_event_' || se.id
                          AND tg.tgfoid = 'webhooks.capture_event()'::pg_catalog.regprocedure) THEN
            RAISE WARNING 'pg_webhooks: business event % of % has no trigger; call webhooks.track_event() again',
                          se.event, se.source;
        END IF;
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS webhooks.capture_event_%s()', se.id);
    END LOOP;
END $$;
-- Endpoints written around create_endpoint()/update_endpoint() in 0.1.0
-- may hold what no claim can sign or send: paused, not deleted, so that an
-- admin can see and mend them (webhooks.update_endpoint(), then resume).
DO $$
DECLARE
    e webhooks.endpoint;
BEGIN
    FOR e IN SELECT * FROM webhooks.endpoint WHERE deleted_at IS NULL LOOP
        BEGIN
            PERFORM webhooks.check_endpoint_columns(e, NULL, false);
        EXCEPTION WHEN OTHERS THEN
            -- (Not SQLERRM: it can quote the URL, and readers see paused_reason.)
            RAISE WARNING 'pg_webhooks: endpoint % (%) fails the checks of 0.2.0 (SQLSTATE %) and is paused',
                          e.id, e.name, SQLSTATE;
            UPDATE webhooks.endpoint x SET active = false, paused_at = now(), updated_at = now(),
                                           paused_reason = 'invalid after upgrade to 0.2.0 (SQLSTATE ' || SQLSTATE || ')'
             WHERE x.id = e.id;
        END;
    END LOOP;
END $$;

-- Payload functions named in 0.1.0 were not checked as 0.2.0 checks them
-- (capture refuses an unfit one when it is called). Functions and operators
-- an admin put in schema webhooks are dropped: a more specific look-alike
-- there (webhooks.=(regclass, regclass)) would be picked by the extension's
-- own functions for whoever calls them with webhooks on its search_path.
-- Other objects stay, named for the DBA to review.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT s.source::text AS what, s.payload_oid::regprocedure AS payload FROM webhooks.source s
              WHERE s.payload IS NOT NULL
             UNION ALL
             SELECT x.source::text || ' ' || x.event, x.payload_oid::regprocedure FROM webhooks.source_event x
              WHERE x.payload IS NOT NULL
    LOOP
        BEGIN
            PERFORM webhooks.check_payload(r.payload);
        EXCEPTION WHEN invalid_function_definition THEN
            RAISE WARNING 'pg_webhooks: payload function % of % is refused by 0.2.0 (%); capture of it fails until '
                          'it is fixed', r.payload, r.what, SQLERRM;
        END;
    END LOOP;
    FOR r IN SELECT 'FUNCTION' AS kind, p.oid::pg_catalog.regprocedure::text AS what
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'webhooks'::pg_catalog.regnamespace
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                                   AND d.deptype = 'e')
             UNION ALL
             SELECT 'OPERATOR', o.oid::pg_catalog.regoperator::text
               FROM pg_catalog.pg_operator o
              WHERE o.oprnamespace = 'webhooks'::pg_catalog.regnamespace
    LOOP
        RAISE WARNING 'pg_webhooks: dropping % %, which is in schema webhooks but not part of the extension',
                      pg_catalog.lower(r.kind), r.what;
        EXECUTE pg_catalog.format('DROP %s %s CASCADE', r.kind, r.what);
    END LOOP;
    FOR r IN SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, k.oid, 0) AS what
               FROM pg_catalog.pg_class k
              WHERE k.relnamespace = 'webhooks'::pg_catalog.regnamespace AND k.relkind IN ('r', 'p', 'v', 'm', 'f')
                AND k.relname NOT IN (SELECT pt.name FROM webhooks.partition pt)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = k.oid
                                   AND d.deptype = 'e')
    LOOP
        RAISE WARNING 'pg_webhooks: % is in schema webhooks but not part of the extension; review it', r.what;
    END LOOP;
END $$;
