-- pg_webhooks, part 6 of 8: retention — time partitions.
--
-- webhooks.event and webhooks.attempt are partitioned by their UUIDv7 ids
-- (see 01_schema.sql): maintain() creates the partitions of the coming
-- intervals (pollers call it every minute), purge() drops those wholly
-- older than its cutoff and deletes the rest row by row. Last of the
-- objects before 07_privileges.sql; nothing earlier needs them at creation.

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
-- Dropping a partition takes its owner (maintain() creates them as the
-- extension's owner); purge() is for webhooks_admin, who is not.
ALTER FUNCTION webhooks.purge(interval, boolean) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
