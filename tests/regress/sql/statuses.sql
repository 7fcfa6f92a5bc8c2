-- webhooks.unfinished_statuses(): the one list of statuses of deliveries
-- not finished yet, which the functions reading deliveries use. The CHECK
-- constraint and the two partial indexes of webhooks.delivery spell it out
-- (an index is not rebuilt when a function changes); this file checks that
-- they agree, and that a query written with the function still uses the
-- partial indexes (the planner inlines it into a constant).

SELECT webhooks.unfinished_statuses();

-- Each partial index's predicate lists exactly these statuses.
SELECT i.indexrelid::regclass AS index, pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_get_expr(i.indpred, i.indrelid) LIKE
         format('%%status = ANY (ARRAY[%s])%%',
                (SELECT string_agg(quote_literal(s) || '::text', ', ')
                   FROM unnest(webhooks.unfinished_statuses()) s)) AS lists_them
  FROM pg_index i
 WHERE i.indrelid = 'webhooks.delivery'::regclass AND i.indpred IS NOT NULL
 ORDER BY 1;

-- The status constraint allows them.
SELECT s, pg_get_constraintdef(c.oid) LIKE '%' || quote_literal(s) || '%' AS allowed
  FROM unnest(webhooks.unfinished_statuses()) s, pg_constraint c
 WHERE c.conrelid = 'webhooks.delivery'::regclass AND c.conname = 'delivery_status';

-- Written with the function, the claim's probes still use the partial
-- indexes (with the list not proved, neither index could be used at all).
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT d.id FROM webhooks.delivery d
 WHERE d.endpoint_id = 1 AND d.status = ANY (webhooks.unfinished_statuses()) AND d.next_attempt_at <= now()
 ORDER BY d.next_attempt_at LIMIT 1;
EXPLAIN (COSTS OFF)
SELECT 1 FROM webhooks.delivery o
 WHERE o.endpoint_id = 1 AND o.ordering_key = 'k' AND o.status = ANY (webhooks.unfinished_statuses())
   AND o.event_id < '00000000-0000-0000-0000-000000000000';
RESET enable_seqscan;
