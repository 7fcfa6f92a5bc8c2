-- pg_webhooks, part 8 of 8: keeping tracking settings in step with the
-- tables.
--
-- Event triggers: on_ddl() brings a tracked table's settings up to date
-- after ALTER TABLE, gives partitions made later their capture triggers and
-- follows renamed or moved payload functions; on_drop() forgets dropped
-- tables; on_ddl_start() makes settings that came through pg_upgrade or a
-- restore this database's before a function or schema is renamed. Last, after 07_privileges.sql, on purpose:
-- its GRANT EXECUTE ON ALL FUNCTIONS to webhooks_admin must not reach these
-- functions (only PostgreSQL calls them; they revoke PUBLIC's EXECUTE
-- themselves).

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
