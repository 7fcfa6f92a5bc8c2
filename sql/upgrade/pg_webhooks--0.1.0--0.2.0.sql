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
-- Tracked tables keep their settings; their triggers are made again below.

\echo Use "ALTER EXTENSION pg_webhooks UPDATE TO '0.2.0'" to load this file. \quit

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
COMMENT ON FUNCTION webhooks.capture() IS
  'Statement-level capture trigger of tracked tables (see "How capture works" in the extension''s SQL): '
  'settings from webhooks.source by the trigger''s table; raises 42501 on a table that is not tracked.';

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
    VALUES (emit_own.event, 'EMIT', emit_own.key, emit_own.tenant, emit_own.data)
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

CREATE FUNCTION webhooks.source_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner oid;
BEGIN
    IF TG_OP <> 'DELETE' AND NEW.payload IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.payload IS DISTINCT FROM OLD.payload) THEN
        SELECT p.proowner INTO owner FROM pg_catalog.pg_proc p WHERE p.oid = NEW.payload::pg_catalog.oid;
        IF NOT pg_catalog.pg_has_role(current_user, owner, 'USAGE') THEN
            RAISE EXCEPTION 'payload function % is owned by %, whose rights % does not have',
                            NEW.payload, pg_catalog.pg_get_userbyid(owner), current_user
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Payload functions run as their owner: use one owned by you or by a role you belong to.';
        END IF;
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
  'Internal trigger of webhooks.source and webhooks.source_event: refuse a payload function whose owner''s '
  'rights the role lacks (42501); make backends reload the table''s capture settings.';
CREATE TRIGGER source_changed BEFORE INSERT OR UPDATE OR DELETE ON webhooks.source
    FOR EACH ROW EXECUTE FUNCTION webhooks.source_changed();
CREATE TRIGGER source_changed BEFORE INSERT OR UPDATE OR DELETE ON webhooks.source_event
    FOR EACH ROW EXECUTE FUNCTION webhooks.source_changed();

CREATE FUNCTION webhooks.endpoint_checked() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fresh boolean := TG_OP = 'INSERT';
BEGIN
    -- (Names are kept unique by the index endpoint_name.)
    IF fresh OR NEW.url IS DISTINCT FROM OLD.url THEN
        PERFORM webhooks.check_url(NEW.url);
    END IF;
    IF fresh OR NEW.events IS DISTINCT FROM OLD.events THEN
        PERFORM webhooks.check_patterns(NEW.events);
    END IF;
    IF fresh OR NEW.secret IS DISTINCT FROM OLD.secret THEN
        PERFORM webhooks.check_secret(NEW.secret);
    END IF;
    IF NEW.previous_secret IS NOT NULL AND (fresh OR NEW.previous_secret IS DISTINCT FROM OLD.previous_secret) THEN
        PERFORM webhooks.check_secret(NEW.previous_secret);
    END IF;
    IF fresh OR NEW.template IS DISTINCT FROM OLD.template THEN
        PERFORM webhooks.check_template(NEW.template);
    END IF;
    IF fresh OR NEW.headers IS DISTINCT FROM OLD.headers THEN
        PERFORM webhooks.check_headers(NEW.headers);
    END IF;
    IF fresh OR NEW.auth IS DISTINCT FROM OLD.auth THEN
        PERFORM webhooks.check_auth(NEW.auth);
    END IF;
    IF fresh OR NEW.signature_header IS DISTINCT FROM OLD.signature_header THEN
        PERFORM webhooks.check_header_name(NEW.signature_header);
    END IF;
    IF fresh OR NEW.retry_schedule IS DISTINCT FROM OLD.retry_schedule THEN
        PERFORM webhooks.check_retry_schedule(NEW.retry_schedule);
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION webhooks.endpoint_checked() IS
  'Internal trigger of webhooks.endpoint: the same checks as create_endpoint() on every changed column, '
  'whoever writes (22023 and friends, as there).';
CREATE TRIGGER endpoint_checked BEFORE INSERT OR UPDATE ON webhooks.endpoint
    FOR EACH ROW EXECUTE FUNCTION webhooks.endpoint_checked();
CREATE FUNCTION webhooks.install_capture(src webhooks.source) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Statement-level with transition tables (one trigger per operation, as
    -- transition tables require). A deferred table stages every change,
    -- whatever its events: the row's final state decides at commit.
    PERFORM webhooks.drop_capture_triggers(src.source);
    IF 'created' = ANY (src.events) OR src.deferred THEN
        EXECUTE format('CREATE TRIGGER webhooks_capture_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture()', src.source);
    END IF;
    IF 'updated' = ANY (src.events) OR src.deferred THEN
        EXECUTE format('CREATE TRIGGER webhooks_capture_upd AFTER UPDATE ON %s '
                       'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture()', src.source);
    END IF;
    IF 'deleted' = ANY (src.events) OR src.deferred THEN
        EXECUTE format('CREATE TRIGGER webhooks_capture_del AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture()', src.source);
    END IF;
    IF 'truncated' = ANY (src.events) OR src.events = '{created,updated,deleted}' THEN
        EXECUTE format('CREATE TRIGGER webhooks_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT '
                       'EXECUTE FUNCTION webhooks.capture_truncate()', src.source);
    END IF;
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
DECLARE
    src      webhooks.source;
    src_name text;
    n        bigint;
BEGIN
    SELECT * INTO src FROM webhooks.source s WHERE s.source = TG_RELID AND s.deferred;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhooks.capture_commit: table % is not tracked with deferred => true',
                        TG_RELID::regclass
          USING ERRCODE = 'insufficient_privilege';
    END IF;
    src_name := webhooks.qualified_table(TG_RELID);
    IF NOT EXISTS (SELECT 1 FROM webhooks.staged_change s
                    WHERE s.xact = pg_current_xact_id() AND s.source = src_name) THEN
        RETURN NULL;
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
           CASE WHEN src.payload IS NULL THEN coalesce(after, last_data)
                ELSE webhooks.apply_payload(TG_RELID, coalesce(after, last_data)) END,
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
    RETURN NULL;
END $$;
COMMENT ON FUNCTION webhooks.capture_commit() IS
  'Internal: commit-time trigger of a deferred tracked table: one event per changed row, coalesced.';

CREATE OR REPLACE FUNCTION webhooks.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    res text;
BEGIN
    SELECT s.resource INTO res FROM webhooks.source s WHERE s.source = TG_RELID;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhooks.capture_truncate: table % is not tracked', TG_RELID::regclass
          USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT webhooks.capture_enabled() THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhooks.event (event, source, operation, data)
    VALUES (res || '.truncated', webhooks.qualified_table(TG_RELID), 'TRUNCATE', '{}');
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
    INSERT INTO webhooks.source_event AS x (source, event, condition, payload)
    VALUES (rel, track_event.event, condition, payload)
    ON CONFLICT ON CONSTRAINT source_event_unique DO UPDATE
       SET condition = excluded.condition, payload = excluded.payload
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
        PERFORM webhooks.pause_endpoint(ep.id, '410 Gone from ' || ep.url);
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
                              jsonb_build_object('endpoint_id', e.id, 'endpoint', e.name, 'url', e.url,
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
    keys    name[];
    dropped name[];
    renamed jsonb;
BEGIN
    -- (A RENAME COLUMN is reported as a 'table column', with the table as objid.)
    FOR cmd IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands()
                WHERE object_type IN ('table', 'table column') LOOP
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
END $$;
COMMENT ON FUNCTION webhooks.on_ddl() IS
  'Event trigger: after ALTER TABLE on a tracked table, bring its settings up to date (following renamed '
  'columns, dropping vanished ones with a warning); refuse to drop its primary key.';

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

ALTER FUNCTION webhooks.emit(text, jsonb, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.on_ddl() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.on_drop() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION webhooks.on_ddl(), webhooks.on_drop() FROM PUBLIC;

-- Privileges of the new functions, as a fresh install has them.
REVOKE ALL ON FUNCTION webhooks.capture_event(), webhooks.invalidate_capture(regclass),
                       webhooks.apply_payload(regclass, jsonb), webhooks.source_changed(),
                       webhooks.install_capture(webhooks.source), webhooks.emit_own(text, jsonb, text, text),
                       webhooks.endpoint_checked(), webhooks.check_still_matches(webhooks.delivery)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhooks.capture_event(), webhooks.invalidate_capture(regclass),
                          webhooks.source_changed(), webhooks.install_capture(webhooks.source),
                          webhooks.emit_own(text, jsonb, text, text), webhooks.endpoint_checked(),
                          webhooks.check_still_matches(webhooks.delivery)
   TO webhooks_admin;
REVOKE CREATE ON SCHEMA webhooks FROM webhooks_admin;
REVOKE TRIGGER, REFERENCES, TRUNCATE ON ALL TABLES IN SCHEMA webhooks FROM webhooks_admin;
GRANT EXECUTE ON FUNCTION webhooks.endpoint_matches(webhooks.endpoint, webhooks.event),
                          webhooks.envelope(webhooks.event)
   TO webhooks_reader;

-- Tracked tables: the same triggers without arguments, and business
-- events on the engine; the generated functions go.
DO $$
DECLARE
    src webhooks.source;
    se  webhooks.source_event;
BEGIN
    FOR src IN SELECT * FROM webhooks.source LOOP
        PERFORM webhooks.install_capture(src);
        EXECUTE format('DROP FUNCTION IF EXISTS webhooks.capture_%s()', src.id);
    END LOOP;
    FOR se IN SELECT * FROM webhooks.source_event LOOP
        PERFORM webhooks.track_event(se.source, se.event, se.condition, se.payload);
        EXECUTE format('DROP FUNCTION IF EXISTS webhooks.capture_event_%s()', se.id);
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
            PERFORM webhooks.check_url(e.url), webhooks.check_patterns(e.events),
                    webhooks.check_secret(e.secret), webhooks.check_template(e.template),
                    webhooks.check_headers(e.headers), webhooks.check_auth(e.auth),
                    webhooks.check_header_name(e.signature_header), webhooks.check_retry_schedule(e.retry_schedule);
            IF e.previous_secret IS NOT NULL THEN
                PERFORM webhooks.check_secret(e.previous_secret);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pg_webhooks: endpoint % (%) is invalid and is paused: %', e.id, e.name, SQLERRM;
            UPDATE webhooks.endpoint x SET active = false, paused_at = now(), updated_at = now(),
                                           paused_reason = 'invalid after upgrade to 0.2.0: ' || SQLERRM
             WHERE x.id = e.id;
        END;
    END LOOP;
END $$;
