-- Traffic control: shared rate limits, circuit breakers, the usage ledger. Used by
-- ingestd/traffic/*.py. Times come from the database clock, the one clock every worker shares.

-- name: ensure_limits
-- Settings seed a limit; once the vendor's headers corrected it, the headers win.
INSERT INTO rate_limits (name, rate, burst)
SELECT * FROM unnest(%(names)s::text[], %(rates)s::float8[], %(bursts)s::float8[])
ON CONFLICT (name) DO UPDATE SET rate = EXCLUDED.rate, burst = EXCLUDED.burst,
                                 updated_at = now()
WHERE rate_limits.source = 'settings'

-- name: acquire_limits
-- GCRA over every named limit at once: reserve all of them, or none when the longest wait
-- would pass max_wait. Returns the wait (seconds) and whether the units were reserved.
WITH clock AS (SELECT clock_timestamp() AS now),
want AS (
    SELECT l.name, l.rate, l.burst, least(u.cost, l.burst) AS cost,
           greatest(l.tat, c.now) AS base, l.paused_until, c.now
    FROM rate_limits l
    JOIN unnest(%(names)s::text[], %(costs)s::float8[]) AS u(name, cost) ON u.name = l.name
    CROSS JOIN clock c
    ORDER BY l.name
    FOR UPDATE OF l
), timed AS (
    SELECT name, base + make_interval(secs => cost / rate) AS new_tat,
           greatest(extract(epoch FROM base - now)::float8 + (cost - burst) / rate,
                    coalesce(extract(epoch FROM paused_until - now)::float8, 0), 0) AS wait
    FROM want
), verdict AS (
    SELECT coalesce(max(wait), 0) AS wait,
           (SELECT name FROM timed ORDER BY wait DESC LIMIT 1) AS slowest
    FROM timed
), reserved AS (
    UPDATE rate_limits l SET tat = t.new_tat
    FROM timed t, verdict v
    WHERE l.name = t.name AND v.wait <= %(max_wait)s
    RETURNING l.name
)
SELECT v.wait, v.slowest, (SELECT count(*) FROM reserved) > 0 AS reserved FROM verdict v

-- name: lock_limits
-- Every statement that changes several limits locks them in name order first: no deadlocks.
SELECT name FROM rate_limits WHERE name = ANY(%(names)s) ORDER BY name FOR UPDATE

-- name: adapt_limits
-- After an answer: the vendor's view of each limit (rate, burst, how far behind its bucket
-- is, a pause after a 429) corrects the shared row. The bucket is only ever made emptier.
UPDATE rate_limits l SET
    rate = coalesce(u.rate, l.rate),
    burst = coalesce(u.burst, l.burst),
    tat = greatest(l.tat, clock_timestamp()
                          + make_interval(secs => u.deficit / coalesce(u.rate, l.rate))),
    paused_until = CASE WHEN u.pause IS NULL THEN l.paused_until
                        ELSE greatest(l.paused_until,
                                      clock_timestamp() + make_interval(secs => u.pause)) END,
    source = CASE WHEN u.rate IS NULL AND u.burst IS NULL THEN l.source ELSE 'headers' END,
    updated_at = now()
FROM unnest(%(names)s::text[], %(rates)s::float8[], %(bursts)s::float8[], %(deficits)s::float8[],
            %(pauses)s::float8[]) AS u(name, rate, burst, deficit, pause)
WHERE l.name = u.name

-- name: read_breaker
SELECT service, state, window_started_at, calls, failures, half_open_at, probe_owner,
       probe_expires_at, clock_timestamp() AS now
FROM breakers WHERE service = %(service)s

-- name: ensure_breaker
INSERT INTO breakers (service) VALUES (%(service)s) ON CONFLICT (service) DO NOTHING

-- name: lock_breaker
SELECT service, state, window_started_at, calls, failures, half_open_at, probe_owner,
       probe_expires_at, clock_timestamp() AS now
FROM breakers WHERE service = %(service)s FOR UPDATE

-- name: write_breaker
UPDATE breakers SET state = %(state)s, window_started_at = %(window_started_at)s,
    calls = %(calls)s, failures = %(failures)s, half_open_at = %(half_open_at)s,
    probe_owner = %(probe_owner)s, probe_expires_at = %(probe_expires_at)s, updated_at = now()
WHERE service = %(service)s

-- name: insert_breaker_event
INSERT INTO breaker_events (service, from_state, to_state, reason, calls, failures, worker_id)
VALUES (%(service)s, %(from_state)s, %(to_state)s, %(reason)s, %(calls)s, %(failures)s,
        %(worker_id)s)

-- name: record_usage
INSERT INTO usage_ledger AS l (day, service, owner, requests, tokens, pages, cost_usd)
SELECT (now() AT TIME ZONE 'UTC')::date, %(service)s, u.owner, u.requests, u.tokens, u.pages,
       u.cost_usd
FROM unnest(%(owners)s::text[], %(requests)s::bigint[], %(tokens)s::bigint[],
            %(pages)s::bigint[], %(costs)s::numeric[]) AS u(owner, requests, tokens, pages, cost_usd)
ORDER BY u.owner
ON CONFLICT (day, service, owner) DO UPDATE SET
    requests = l.requests + EXCLUDED.requests, tokens = l.tokens + EXCLUDED.tokens,
    pages = l.pages + EXCLUDED.pages, cost_usd = l.cost_usd + EXCLUDED.cost_usd

-- name: period_spend
-- Spend of this UTC day and month, by owner, for the services named (budgets check it).
SELECT service, owner,
       sum(tokens) FILTER (WHERE day = today) AS day_tokens,
       sum(pages) FILTER (WHERE day = today) AS day_pages,
       sum(cost_usd) FILTER (WHERE day = today) AS day_usd,
       sum(tokens) AS month_tokens, sum(pages) AS month_pages, sum(cost_usd) AS month_usd,
       now() AS now
FROM usage_ledger, (SELECT (now() AT TIME ZONE 'UTC')::date AS today) t
WHERE (%(services)s::text[] IS NULL OR service = ANY(%(services)s)) AND day >= date_trunc('month', t.today)::date
GROUP BY service, owner

-- name: list_limits
SELECT name, rate, burst, source, paused_until, updated_at,
       greatest(0, burst - greatest(0, extract(epoch FROM tat - clock_timestamp())::float8)
                           * rate) AS available
FROM rate_limits ORDER BY name

-- name: list_breakers
SELECT service, state, calls, failures, window_started_at, half_open_at, updated_at
FROM breakers ORDER BY service

-- name: recent_breaker_events
SELECT service, from_state, to_state, reason, calls, failures, worker_id, created_at
FROM breaker_events ORDER BY id DESC LIMIT %(limit)s

-- name: waiting_counts
SELECT waiting_on, count(*) AS jobs FROM jobs
WHERE waiting_on IS NOT NULL AND completed_at IS NULL
GROUP BY waiting_on ORDER BY jobs DESC

-- name: costs_by_day
SELECT day, service, owner, requests, tokens, pages, cost_usd FROM usage_ledger
WHERE day >= %(since)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
ORDER BY day DESC, service, owner
