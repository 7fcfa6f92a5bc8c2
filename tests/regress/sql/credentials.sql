-- What an endpoint sends besides the body: webhooks.check_auth() and
-- auth_headers() (credentials), check_headers() and check_header_name()
-- (custom headers), redacted_headers() (what readers see), and
-- check_secret() / generate_secret() (the signing secret).

-- check_auth: bearer, basic or a custom header, with string values only;
-- NULL is no credentials.
SELECT webhooks.check_auth(NULL) IS NULL AS none;
SELECT webhooks.check_auth('{"type": "bearer", "token": "t0k"}');
SELECT webhooks.check_auth('{"type": "basic", "username": "u", "password": "p"}');
SELECT webhooks.check_auth('{"type": "header", "name": "X-Api-Key", "value": "k"}');
SELECT webhooks.check_auth('{}');
SELECT webhooks.check_auth('{"type": "bearer"}');
SELECT webhooks.check_auth('{"type": "bearer", "token": 1}');
SELECT webhooks.check_auth('{"type": "bearer", "token": "t", "extra": "x"}');
SELECT webhooks.check_auth('{"type": "basic", "username": "u"}');
SELECT webhooks.check_auth('{"type": "digest", "username": "u", "password": "p"}');
SELECT webhooks.check_auth('{"type": "header", "name": "X Api Key", "value": "k"}');
SELECT webhooks.check_auth('{"type": "header", "name": "X-Api-Key", "value": null}');
SELECT webhooks.check_auth('{"type": "BEARER", "token": "t"}');
SELECT webhooks.check_auth('"bearer"');
-- An array has no "type" key, but ? finds the string element: the message
-- then names a NULL type.
SELECT webhooks.check_auth('["type"]');
-- A token or header value goes into a header as it is: only printable ASCII,
-- what the poller can send (CR/LF, control characters and other text would
-- fail every attempt). Basic credentials are base64-encoded, so any text.
SELECT webhooks.check_auth(E'{"type": "bearer", "token": "t\\r\\nX-Injected: 1"}') IS NOT NULL AS accepted;
SELECT webhooks.check_auth('{"type": "header", "name": "X-Api-Key", "value": "clé"}') IS NOT NULL AS accepted;
SELECT webhooks.check_auth('{"type": "basic", "username": "zoë", "password": "clé"}') IS NOT NULL AS accepted;

-- auth_headers: the request headers that carry them.
SELECT webhooks.auth_headers('{"type": "bearer", "token": "t0k"}');
SELECT webhooks.auth_headers('{"type": "basic", "username": "Aladdin", "password": "open sesame"}');
-- Long credentials: base64 without the line breaks encode() puts every 76 characters.
SELECT webhooks.auth_headers(jsonb_build_object('type', 'basic', 'username', 'user', 'password', repeat('p', 100)));
SELECT webhooks.auth_headers('{"type": "basic", "username": "jörg", "password": "pässword"}');
SELECT webhooks.auth_headers('{"type": "header", "name": "X-Api-Key", "value": "k"}');
SELECT webhooks.auth_headers(NULL), webhooks.auth_headers('{"type": "other"}');

-- check_headers: a JSON object of header names (RFC 9110 tokens) to string
-- values without CR or LF.
SELECT webhooks.check_headers('{}');
SELECT webhooks.check_headers('{"X-Api-Version": "2", "x-tenant": "acme", "Accept": "*/*"}');
SELECT webhooks.check_headers(NULL);
SELECT webhooks.check_headers('[]');
SELECT webhooks.check_headers('"X-A: b"');
SELECT webhooks.check_headers('{"X-Count": 2}');
SELECT webhooks.check_headers('{"X-A": null}');
SELECT webhooks.check_headers('{"X A": "b"}');
SELECT webhooks.check_headers('{"": "b"}');
SELECT webhooks.check_headers('{"X-A:": "b"}');
SELECT webhooks.check_headers(E'{"X-A": "b\\r\\nX-Injected: 1"}');
SELECT webhooks.check_headers(E'{"X-A": "b\\n"}');
-- Nor other control characters, DEL or non-ASCII text; tabs and spaces are
-- fine.
SELECT webhooks.check_headers(E'{"X-Bell": "\\u0007"}');
SELECT webhooks.check_headers(E'{"X-Del": "\\u007f"}');
SELECT webhooks.check_headers('{"X-Name": "Zoë"}');
SELECT webhooks.check_headers(E'{"X-Tab": "a\\tb c"}') IS NOT NULL AS accepted;

-- check_header_name: one header name.
SELECT webhooks.check_header_name('X-Webhook-Signature'), webhooks.check_header_name('x_sig.v1');
SELECT webhooks.check_header_name('X Signature');
SELECT webhooks.check_header_name('X-Sig:');
SELECT webhooks.check_header_name('');
SELECT webhooks.check_header_name(NULL);
SELECT webhooks.check_header_name('Sïg');

-- redacted_headers: values shown only for the public headers (names compared
-- case-insensitively).
SELECT webhooks.redacted_headers('{"X-Api-Key": "k", "X-Version": "2", "x-trace": "t"}', '{x-version,X-TRACE}');
SELECT webhooks.redacted_headers('{"X-Api-Key": "k"}', '{}');
SELECT webhooks.redacted_headers('{}', '{x}');
SELECT webhooks.redacted_headers('{"X-A": "a"}', NULL) IS NULL AS null_list;
-- Credential headers stay secret even when listed public (rows written
-- before set_public_headers() refused them, or by COPY).
SELECT webhooks.redacted_headers('{"Cookie": "c", "authorization": "a", "X-Version": "2"}', '{cookie,Authorization,x-version}');

-- secret_headers: the one list of secret header names, which claim() gives
-- the poller for the attempt log: credential headers, then the custom ones
-- not public; a NULL element makes no header public.
SELECT webhooks.credential_headers();
SELECT webhooks.secret_headers('{"X-Api-Key": "k", "X-Version": "2", "x-trace": "t"}', '{x-version}');
SELECT webhooks.secret_headers('{"X-Api-Key": "k"}', ARRAY[NULL]::text[]);
SELECT webhooks.secret_headers(NULL, NULL);

-- check_secret: a whsec_ secret must carry base64 of a non-empty key; any
-- other non-empty text is used as the key's UTF-8 bytes.
SELECT webhooks.check_secret('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT webhooks.check_secret('ABC12345'), webhooks.check_secret('whsec');
SELECT webhooks.check_secret('');
SELECT webhooks.check_secret('whsec_');
SELECT webhooks.check_secret('whsec_not base64!');
SELECT webhooks.check_secret('whsec_QUJD');
SELECT webhooks.check_secret('whsec_QUJ');
SELECT webhooks.check_secret(NULL) IS NULL AS is_null;

-- generate_secret: whsec_ and base64 of 32 random bytes, each one new.
SELECT s ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS shape, webhooks.check_secret(s) = s AS usable,
       length(decode(substr(s, 7), 'base64')) AS key_bytes
  FROM webhooks.generate_secret() s;
SELECT count(DISTINCT webhooks.generate_secret()) AS distinct_of_100 FROM generate_series(1, 100);

-- An endpoint's headers, auth and secret go through these checks.
SELECT * FROM webhooks.create_endpoint('https://example.com/hooks', headers => '{"X A": "b"}');
SELECT * FROM webhooks.create_endpoint('https://example.com/hooks', auth => '{"type": "bearer"}');
SELECT * FROM webhooks.create_endpoint('https://example.com/hooks', secret => 'whsec_!!');
SELECT * FROM webhooks.create_endpoint('https://example.com/hooks', signature_header => 'X Sig');
SELECT count(*) AS endpoints FROM webhooks.endpoint;
