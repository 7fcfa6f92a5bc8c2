-- pg_webhooks, part 3 of 8: endpoints — the receivers and their settings.
--
-- The check each setting goes through (URL, retry schedule, headers,
-- credentials, name, template, tenant limit), body templates, the
-- functions that manage endpoints, the trigger that keeps webhooks.endpoint
-- valid whoever writes to it, mutual TLS, secret rotation, and what readers
-- may see (redacted URLs and headers, the endpoints view). After
-- 01_schema.sql (the endpoint table and the event row type of templates);
-- before 04_delivery.sql, whose claim() renders and signs with what is
-- checked here.

-- Raises unless the URL is absolute http(s) with a host; https unless
-- webhooks.require_https is off or the host is loopback.
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

-- Body templates (README, "Body templates"): a JSON document whose string values may hold
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
     WHERE d.endpoint_id = e.id AND d.status = ANY (webhooks.unfinished_statuses());
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
