-- Endpoint URLs, judged by the poller's own URL parser (the url crate):
-- webhooks.url_parts(), normalized_url(), redacted_url(), refused_address()
-- and check_url(), which create_endpoint() and update_endpoint() use.

-- url_parts: scheme and host as the poller will see them (lowercase, IDNA,
-- IPv4 in dotted form, IPv6 in brackets).
SELECT u AS url, p.scheme, p.host
  FROM unnest(ARRAY['https://Hooks.Example.com/x?y=1', 'HTTP://127.0.0.1:8080/', 'http://[::1]:9/',
                    'https:hooks.example.com/x', 'https://bücher.example/', 'http://0x7f000001/',
                    'http://2130706433/', 'http://127.1/', 'https://[::FFFF:7F00:1]/', 'http://example.com.']) u,
       LATERAL webhooks.url_parts(u) p;

-- Refused with 22023, the reason and a hint.
SELECT * FROM webhooks.url_parts('http://300.1.1.1/');
SELECT * FROM webhooks.url_parts('https://example.com:65536/');
SELECT * FROM webhooks.url_parts('ftp://example.com/');
SELECT * FROM webhooks.url_parts('file:///etc/passwd');
SELECT * FROM webhooks.url_parts('javascript:alert(1)');
SELECT * FROM webhooks.url_parts('example.com/hooks');
SELECT * FROM webhooks.url_parts('https://');
SELECT * FROM webhooks.url_parts('');
SELECT * FROM webhooks.url_parts(' https://example.com/');
SELECT * FROM webhooks.url_parts(E'https://exa\tmple.com/');
SELECT * FROM webhooks.url_parts(E'https://example.com/\n');
SELECT * FROM webhooks.url_parts('https://user:pw@example.com/');
SELECT * FROM webhooks.url_parts('https://user@example.com/');
-- The URL in the message is cut at 200 characters.
SELECT * FROM webhooks.url_parts('ftp://' || repeat('a', 300));
SELECT count(*) AS rows FROM webhooks.url_parts(NULL);

-- normalized_url: what is stored, as the poller's parser writes it.
SELECT u AS url, webhooks.normalized_url(u) AS normalized
  FROM unnest(ARRAY['https:hooks.slack.com/services/T0/B0/SECRET1', 'HTTPS://EXAMPLE.COM', 'https://example.com:443/',
                    'http://example.com:80/x', 'https://example.com:8443', 'http://example.com/a/../b/./c',
                    'https://example.com/ä?q=ü#f', 'https://hooks.slack.com\services\x', 'https://example.com/?',
                    'https://bücher.example/']) u;
SELECT webhooks.normalized_url('ftp://example.com/');
SELECT webhooks.normalized_url('https://user:pw@example.com/');

-- redacted_url: what readers see: scheme, host and port; any path, query or
-- fragment (often a secret) as /[redacted]; credentials never.
SELECT u AS url, webhooks.redacted_url(u) AS shown
  FROM unnest(ARRAY['https://example.com', 'https://example.com/', 'https://example.com:8443/',
                    'https://hooks.slack.com/services/T0/B0/SECRET', 'https://example.com/?token=SECRET',
                    'https://example.com/#SECRET', 'https://example.com/?', 'https:hooks.slack.com/SECRET',
                    'https://hooks.slack.com\SECRET', 'https://user:SECRET@example.com/', 'http://[::1]:8080/',
                    'not a url', 'mailto:SECRET@example.com', '']) u;
SELECT webhooks.redacted_url(NULL) IS NULL AS is_null;

-- refused_address: why the poller's SSRF guard will refuse the URL's host,
-- NULL when it will not (names are judged by the poller once resolved).
SELECT u AS url, webhooks.refused_address(u) AS refused
  FROM unnest(ARRAY['http://127.0.0.1:8080/x', 'http://127.1/', 'http://0x7f000001/', 'https://[::1]/',
                    'https://[::ffff:7f00:1]/', 'https://[::]/', 'http://0.0.0.0/', 'https://169.254.169.254/latest',
                    'https://10.0.0.5/', 'https://172.16.0.1/', 'https://172.32.0.1/', 'https://192.168.1.1/',
                    'https://100.64.0.1/', 'https://192.0.2.1/', 'https://224.0.0.1/', 'https://255.255.255.255/',
                    'https://[fd00::1]/', 'https://[fe80::1]/', 'https://[64:ff9b::a9fe:a9fe]/',
                    'https://[2001:db8::1]/', 'https://[2002:7f00:1::1]/', 'https://[ff02::1]/',
                    'http://localhost:3000/', 'http://LOCALHOST/', 'http://api.localhost./',
                    'https://localhost.example.com/', 'https://example.com/', 'https://1.1.1.1/',
                    'https://[2606:4700::1111]/', 'not a url']) u;

-- check_url: valid URLs come back normalized.
SELECT webhooks.check_url('https://Example.com');
SELECT webhooks.check_url('https:example.com/hooks');
-- http only for loopback while webhooks.require_https is on (the default);
-- loopback URLs get a warning: the poller refuses them unless run with
-- --allow-private-networks.
SHOW webhooks.require_https;
SELECT webhooks.check_url('http://example.com/hooks');
SELECT webhooks.check_url('http://localhost:8080/hooks');
SELECT webhooks.check_url('http://127.0.0.1/');
SELECT webhooks.check_url('http://[::1]:9/');
SELECT webhooks.check_url('http://LOCALHOST/');
-- Loopback written as such may use http: any 127.x.y.z and localhost.
-- (with its root dot); other names, *.localhost included, may not (a
-- resolver may send them to the network).
SELECT webhooks.check_url('http://127.0.0.2/');
SELECT webhooks.check_url('http://api.localhost/');
SELECT webhooks.check_url('http://localhost./');
SELECT webhooks.check_url('https://10.1.2.3/hooks?token=SECRET');
SELECT webhooks.check_url(NULL);
SELECT webhooks.check_url('ftp://example.com/');
SET webhooks.require_https = off;
SELECT webhooks.check_url('http://example.com/hooks');
RESET webhooks.require_https;
-- Only superusers may turn it off.
SET ROLE webhooks_admin;
SET webhooks.require_https = off;
RESET ROLE;

-- create_endpoint stores the normalized URL.
SELECT id FROM webhooks.create_endpoint('https:Example.COM:443/a/../hooks', name => 'n', secret => 'whsec_MDEyMzQ1Njc4OWFiY2RlZg==');
SELECT url FROM webhooks.endpoint;
SELECT * FROM webhooks.create_endpoint('http://example.com/', name => 'plain');
