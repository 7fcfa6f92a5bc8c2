-- Signatures and ids: webhooks.sign_standard() (Standard Webhooks v1),
-- sign_hex(), delivery_id(), uuid_v7(), uuid_v7_floor() and uuid_v7_time().

-- The Standard Webhooks specification's test vector.
SELECT webhooks.sign_standard('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330,
                              '{"test": 2432232314}');
-- A secret without the whsec_ prefix is used as UTF-8 bytes: the same as a
-- whsec_ secret carrying those bytes in base64.
SELECT webhooks.sign_standard('ABC12345', 'msg_1', 1, 'body')
     = webhooks.sign_standard('whsec_' || encode('ABC12345', 'base64'), 'msg_1', 1, 'body') AS same_key;
-- Every part is signed.
SELECT count(DISTINCT s) AS distinct_of_5
  FROM unnest(ARRAY[webhooks.sign_standard('k', 'msg_1', 1, 'body'), webhooks.sign_standard('k2', 'msg_1', 1, 'body'),
                    webhooks.sign_standard('k', 'msg_2', 1, 'body'), webhooks.sign_standard('k', 'msg_1', 2, 'body'),
                    webhooks.sign_standard('k', 'msg_1', 1, 'body ')]) s;
SELECT webhooks.sign_standard('k', 'msg_1', -1, ''), webhooks.sign_standard('k', 'msg_1', 0, 'ünïcode');
SELECT webhooks.sign_standard('whsec_!!', 'msg_1', 1, 'body');
SELECT webhooks.sign_standard('', 'msg_1', 1, 'body');

-- sign_hex: HMAC-SHA256 in lowercase hex, keyed with the secret's UTF-8
-- bytes (RFC 4231 test case 2, and the well-known "quick brown fox").
SELECT webhooks.sign_hex('Jefe', 'what do ya want for nothing?');
SELECT webhooks.sign_hex('key', 'The quick brown fox jumps over the lazy dog');
-- whsec_ secrets are not decoded here.
SELECT webhooks.sign_hex('whsec_QUJD', 'x') = webhooks.sign_hex('whsec_QUJD', 'x') AS stable,
       webhooks.sign_hex('whsec_QUJD', 'x') <> webhooks.sign_hex('ABC', 'x') AS not_decoded;
SELECT webhooks.sign_hex('', 'x');

-- delivery_id: the same event and endpoint always give the same id (so a
-- fan-out made again sends the same webhook-id): a UUIDv7 with the event's
-- time, different per endpoint.
SELECT webhooks.delivery_id('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', 1) AS endpoint_1,
       webhooks.delivery_id('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', 1) = webhooks.delivery_id('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', 1) AS stable;
SELECT e AS endpoint, left(d::text, 13) AS time_part, substr(d::text, 15, 1) AS version,
       substr(d::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant,
       webhooks.uuid_v7_time(d) = webhooks.uuid_v7_time('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b') AS event_time
  FROM generate_series(1, 3) e, LATERAL webhooks.delivery_id('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', e) d;
SELECT count(DISTINCT webhooks.delivery_id('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', e)) AS distinct_of_1000
  FROM generate_series(1, 1000) e;

-- uuid_v7: version 7, RFC variant, time-ordered, about now.
SELECT substr(u::text, 15, 1) AS version, substr(u::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant,
       abs(extract(epoch FROM webhooks.uuid_v7_time(u) - clock_timestamp())) < 60 AS about_now
  FROM webhooks.uuid_v7() u;
SELECT count(DISTINCT u) AS distinct_of_1000, bool_and(u > lag) AS increasing
  FROM (SELECT u, lag(u, 1, '00000000-0000-0000-0000-000000000000') OVER (ORDER BY n) AS lag
          FROM (SELECT n, webhooks.uuid_v7() AS u FROM generate_series(1, 1000) n) x) y;

-- uuid_v7_floor: the smallest UUIDv7 of a time (milliseconds, truncated);
-- uuid_v7_time: a UUIDv7's time, to the millisecond.
SELECT t, webhooks.uuid_v7_floor(t) AS floor, webhooks.uuid_v7_time(webhooks.uuid_v7_floor(t)) AS back
  FROM unnest('{1970-01-01 00:00:00+00,2024-06-10 12:00:00.1239+00,2024-06-10 12:00:00.9999+00,9999-12-31 23:59:59.999+00}'::timestamptz[]) t;
SELECT webhooks.uuid_v7_time('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b');
SELECT webhooks.uuid_v7_floor(NULL) IS NULL AS a, webhooks.uuid_v7_time(NULL) IS NULL AS b;
-- Before 1970 (a negative millisecond count): the smallest UUIDv7 of all.
SELECT webhooks.uuid_v7_floor('1969-12-31 23:59:59+00');
