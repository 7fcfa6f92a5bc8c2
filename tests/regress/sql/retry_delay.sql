-- webhooks.retry_delay(schedule, attempt, retry_after, jitter): the pure
-- retry policy complete() applies after a failed attempt, and
-- webhooks.check_retry_schedule(), which validates an endpoint's schedule.

-- Pure: immutable and parallel safe, so it can be called anywhere.
SELECT provolatile, proparallel, proisstrict
  FROM pg_proc WHERE oid = 'webhooks.retry_delay'::regproc;

-- attempt is 1-based (the number of failed attempts so far); NULL once the
-- schedule is exhausted, and for attempt 0 or below. The default jitter, 0.5,
-- is the scheduled delay exactly.
SELECT a AS attempt, webhooks.retry_delay('{30s,2min,10min}', a) AS delay
  FROM generate_series(-1, 4) a;

-- The endpoint default schedule: six retries, then the delivery fails.
SELECT a AS attempt, webhooks.retry_delay('{30s,2min,10min,1h,6h,24h}', a) AS delay
  FROM generate_series(1, 7) a;

-- Jitter in [0, 1] spreads the delay over ±10%; outside it is clamped.
SELECT j AS jitter, webhooks.retry_delay('{100s}', 1, NULL, j) AS delay
  FROM unnest('{-5,0,0.25,0.5,0.75,1,7}'::float8[]) j;
SELECT webhooks.retry_delay('{1h}', 1, jitter => 0) AS low, webhooks.retry_delay('{1h}', 1, jitter => 1) AS high;

-- Sub-second steps keep microseconds.
SELECT webhooks.retry_delay('{1.5s}', 1, jitter => 0.3);

-- A NULL jitter counts as 0 (greatest() ignores NULL): the shortest delay.
SELECT webhooks.retry_delay('{100s}', 1, NULL, NULL);
-- NaN sorts above every number in PostgreSQL, so it counts as 1.
SELECT webhooks.retry_delay('{100s}', 1, NULL, 'NaN');

-- Month steps are scaled with months spilled into 30-day days.
SELECT webhooks.retry_delay('{1 mon}', 1, jitter => 0) AS one_month_low;

-- Retry-After replaces the scheduled delay (no jitter), capped at the
-- schedule's longest step; a negative one is ignored.
SELECT webhooks.retry_delay('{30s,2min,10min}', 1, '5min') AS honoured,
       webhooks.retry_delay('{30s,2min,10min}', 1, '1 day') AS capped,
       webhooks.retry_delay('{30s,2min,10min}', 1, '0') AS zero,
       webhooks.retry_delay('{30s,2min,10min}', 1, '-5s', 0) AS negative_ignored;
-- ...but does not extend an exhausted schedule.
SELECT webhooks.retry_delay('{30s}', 2, '5s') AS exhausted;

-- No schedule, no retry.
SELECT webhooks.retry_delay('{}', 1) AS empty, webhooks.retry_delay(NULL, 1) AS null_schedule,
       webhooks.retry_delay('{30s}', NULL) AS null_attempt;

-- Bad input is refused by the interval parser, before the function runs.
SELECT webhooks.retry_delay('{soon}', 1);

-- webhooks.check_retry_schedule: non-negative intervals; '{}' means a
-- single attempt.
SELECT webhooks.check_retry_schedule('{}');
SELECT webhooks.check_retry_schedule('{0,1s,2 days}');
SELECT webhooks.check_retry_schedule('{1s,NULL}');
SELECT webhooks.check_retry_schedule('{-1s}');
SELECT webhooks.check_retry_schedule('{1 mon -31 days}');
SELECT webhooks.check_retry_schedule(NULL);

-- Readers may compute the policy (granted to webhooks_reader); pollers need
-- not and may not.
SET ROLE webhooks_reader;
SELECT webhooks.retry_delay('{30s}', 1);
RESET ROLE;
SET ROLE webhooks_poller;
SELECT webhooks.retry_delay('{30s}', 1);
RESET ROLE;
