-- Small validators of endpoint settings and capture: webhooks.check_positive(),
-- check_choice(), check_endpoint_name(), check_tenant_limit() and
-- search_path_ends_with_pg_temp().

-- check_positive: NULL or at least 1.
SELECT webhooks.check_positive('max_in_flight', 1), webhooks.check_positive('pause_after', NULL) IS NULL AS null_ok;
SELECT webhooks.check_positive('max_in_flight', 0);
SELECT webhooks.check_positive('pause_after', -3);

-- check_choice: one of a fixed list, case-sensitively (create_endpoint
-- upper-cases the method first).
SELECT webhooks.check_choice('method', 'POST', '{POST,PUT,PATCH}');
SELECT webhooks.check_choice('method', 'post', '{POST,PUT,PATCH}');
SELECT webhooks.check_choice('signature', NULL, '{standard,hex,sha256,none}');
SELECT webhooks.check_choice('signature', '', '{standard,hex,sha256,none}');
-- With no list at all, any value passes (value = ANY (NULL) is NULL, not
-- false); the callers always pass a list.
SELECT webhooks.check_choice('x', 'anything', NULL);
SELECT * FROM webhooks.create_endpoint('https://example.com/', method => 'get');
SELECT * FROM webhooks.create_endpoint('https://example.com/', signature => 'md5');
SELECT * FROM webhooks.create_endpoint('https://example.com/', max_in_flight => 0);
SELECT * FROM webhooks.create_endpoint('https://example.com/', retry_schedule => '{1s,-1s}');

-- check_endpoint_name: unique among endpoints not deleted (23505).
SELECT webhooks.check_endpoint_name('ERP');
SELECT id IS NOT NULL AS created
  FROM webhooks.create_endpoint('https://example.com/', name => 'ERP', secret => 'whsec_MDEyMzQ1Njc4OWFiY2RlZg==',
                                method => 'put');
SELECT method FROM webhooks.endpoint;
SELECT webhooks.check_endpoint_name('ERP');
SELECT webhooks.check_endpoint_name('erp'), webhooks.check_endpoint_name(NULL) IS NULL AS unnamed;
SELECT * FROM webhooks.create_endpoint('https://example.com/', name => 'ERP');
SELECT webhooks.delete_endpoint(id) AS cancelled FROM webhooks.endpoint WHERE name = 'ERP';
SELECT webhooks.check_endpoint_name('ERP');

-- check_tenant_limit: webhooks.max_endpoints_per_tenant endpoints per
-- tenant (0, the default, is no limit).
SHOW webhooks.max_endpoints_per_tenant;
SET webhooks.max_endpoints_per_tenant = 1;
SELECT webhooks.check_tenant_limit('acme');
SELECT id IS NOT NULL AS created
  FROM webhooks.create_endpoint('https://example.com/', tenant => 'acme', secret => 'whsec_MDEyMzQ1Njc4OWFiY2RlZg==');
SELECT * FROM webhooks.create_endpoint('https://example.com/', tenant => 'acme');
SELECT webhooks.check_tenant_limit('acme');
SELECT webhooks.check_tenant_limit('other');
RESET webhooks.max_endpoints_per_tenant;
SELECT webhooks.check_tenant_limit('acme');

-- search_path_ends_with_pg_temp: does a function's SET search_path name
-- pg_temp last, as PostgreSQL splits and unquotes it?
SELECT p AS search_path, webhooks.search_path_ends_with_pg_temp(p) AS ends_with_pg_temp
  FROM unnest(ARRAY['pg_catalog, pg_temp', 'pg_catalog,pg_temp', 'pg_temp', 'public, "pg_temp"', ' pg_temp ',
                    'pg_temp, public', '"PG_TEMP"', 'PG_TEMP', '"a, pg_temp"', '', 'pg_catalog',
                    'pg_catalog, pg_temp, ']) p;
