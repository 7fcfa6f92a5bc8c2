-- pg_webhooks, part 2 of 8: capture — how changes of tracked tables become
-- events.
--
-- The engine (C: capture(), capture_event(), the JSON of rows), the
-- settings' triggers, deferred capture at commit and TRUNCATE, the checks
-- and triggers of tracking (track(), track_event(), untrack(), the sources
-- view), and emit(). After 01_schema.sql: these functions read and write
-- its tables (source, source_event, staged_change, event) and take its row
-- types as arguments.

-- How capture works: one engine, webhooks.capture() (C, extension/src/capture/),
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

-- Written against PostgreSQL's jsonb C API (extension/src/row_json.rs),
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

-- emit() runs as the owner, so that granting EXECUTE on it is all an
-- application needs. (capture_commit() and capture_truncate() are declared
-- SECURITY DEFINER where they are defined; webhooks.capture() and
-- capture_event() switch rights themselves, see "How capture works".)
ALTER FUNCTION webhooks.emit(text, jsonb, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
