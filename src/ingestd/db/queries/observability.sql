-- Read-side queries for metrics, alerts and the dashboard. Used by ingestd/observability/.

-- name: fleet_counts
-- Jobs by state and error code, and usage totals: the sums of job_counts (kept by triggers in
-- migration 0011), a few rows however many jobs there are.
SELECT state, code, sum(jobs)::bigint AS jobs,
       sum(embedding_tokens)::float8 AS embedding_tokens, sum(parse_pages)::float8 AS parse_pages,
       sum(embedding_cost_usd)::float8 AS embedding_cost_usd,
       sum(parse_cost_usd)::float8 AS parse_cost_usd
FROM job_counts
GROUP BY state, code

-- name: fleet_pending
-- One pass over the unfinished jobs only (the partial index jobs_runnable holds them): what is
-- runnable, waiting, leased or stuck (due, yet in the same state for longer than the stuck
-- threshold: held by a hung worker, or by none), by what traffic control parked them on.
SELECT waiting_on,
       count(*) FILTER (WHERE next_attempt_at <= now()
                        AND (lease_expires_at IS NULL OR lease_expires_at < now())) AS runnable,
       count(*) FILTER (WHERE next_attempt_at > now() AND lease_owner IS NULL) AS waiting,
       count(*) FILTER (WHERE lease_expires_at >= now()) AS leased,
       count(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_expires_at < now())
           AS lease_expired,
       extract(epoch FROM now() - min(next_attempt_at) FILTER (
           WHERE next_attempt_at <= now()
             AND (lease_expires_at IS NULL OR lease_expires_at < now())))::float8
           AS oldest_runnable_seconds,
       count(*) FILTER (WHERE next_attempt_at <= now()
                        AND state_changed_at < now() - make_interval(secs => %(stuck)s))
           AS stuck,
       count(*) AS jobs
FROM jobs
WHERE completed_at IS NULL
GROUP BY waiting_on

-- name: fleet_workers
SELECT count(*) FILTER (WHERE heartbeat_at > now() - make_interval(secs => %(stale)s))
           AS live,
       count(*) FILTER (WHERE heartbeat_at <= now() - make_interval(secs => %(stale)s))
           AS stale,
       coalesce(sum(active_jobs) FILTER (
           WHERE heartbeat_at > now() - make_interval(secs => %(stale)s)), 0) AS held
FROM workers WHERE status <> 'stopped'

-- name: recent_event_counts
-- Events of the last window, for the error-rate and lease-expiry alerts.
SELECT count(*) FILTER (WHERE kind = 'fail') AS failed,
       count(*) FILTER (WHERE kind = 'fail' OR to_state = 'complete') AS finished,
       count(*) FILTER (WHERE kind = 'lease_expired') AS lease_expired
FROM job_events WHERE created_at > now() - make_interval(secs => %(window)s)

-- name: alert_states
SELECT name, firing, since, value, summary, evaluated_at FROM alert_state ORDER BY name

-- name: lock_alert_evaluation
SELECT pg_advisory_xact_lock(%(key)s)

-- name: save_alert_state
INSERT INTO alert_state (name, firing, since, value, summary, evaluated_at)
VALUES (%(name)s, %(firing)s, %(since)s, %(value)s, %(summary)s, now())
ON CONFLICT (name) DO UPDATE SET firing = EXCLUDED.firing, since = EXCLUDED.since,
    value = EXCLUDED.value, summary = EXCLUDED.summary, evaluated_at = now()

-- name: record_alert_event
INSERT INTO alert_events (name, status, value, summary) VALUES (%(name)s, %(status)s, %(value)s,
    %(summary)s)
RETURNING id, created_at

-- name: mark_alert_notified
UPDATE alert_events SET notified = true WHERE id = ANY(%(ids)s)

-- name: alert_history
SELECT id, name, status, value, summary, notified, created_at FROM alert_events
ORDER BY id DESC LIMIT %(limit)s

-- name: workers_overview
SELECT id, hostname, pid, concurrency, status, active_jobs, processed, started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_seconds,
       CASE WHEN status = 'stopped' THEN 'stopped'
            WHEN heartbeat_at > now() - make_interval(secs => %(stale)s) THEN 'live'
            ELSE 'stale' END AS liveness
FROM workers
WHERE %(all)s OR status <> 'stopped'
ORDER BY started_at

-- name: held_jobs
SELECT j.id, j.state, j.lease_owner, j.attempt, d.filename, j.lease_expires_at,
       extract(epoch FROM now() - j.state_changed_at)::float8 AS in_state_seconds
FROM jobs j JOIN documents d ON d.id = j.document_id
WHERE j.lease_owner = ANY(%(workers)s) AND j.completed_at IS NULL
ORDER BY j.lease_owner, j.state_changed_at

-- name: long_leased_jobs
SELECT count(*) AS jobs, max(extract(epoch FROM now() - state_changed_at))::float8 AS longest
FROM jobs
WHERE completed_at IS NULL AND lease_expires_at > now()
  AND state_changed_at < now() - make_interval(secs => %(seconds)s)

-- name: refresh_rollup
-- Recompute the last few minutes (events of transactions still open then are counted on the
-- next pass), and catch up from the last rolled-up minute when nobody refreshed for a while.
WITH since AS (
    SELECT greatest(coalesce(max(minute), '-infinity'::timestamptz) - interval '3 minutes',
                    now() - interval '7 days') AS t
    FROM event_rollup
)
INSERT INTO event_rollup (minute, from_state, kind, to_state, code, events, duration_ms_sum,
                          duration_ms_max, timed)
SELECT date_trunc('minute', e.created_at), e.from_state, e.kind, e.to_state,
       coalesce(e.error ->> 'code', ''), count(*), coalesce(sum(e.duration_ms), 0),
       coalesce(max(e.duration_ms), 0), count(e.duration_ms)
FROM job_events e, since
WHERE e.created_at >= since.t
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (minute, from_state, kind, to_state, code) DO UPDATE SET
    events = EXCLUDED.events, duration_ms_sum = EXCLUDED.duration_ms_sum,
    duration_ms_max = EXCLUDED.duration_ms_max, timed = EXCLUDED.timed

-- name: rollup_series
SELECT minute, from_state, kind, to_state, code, events, duration_ms_sum, duration_ms_max, timed
FROM event_rollup
WHERE minute >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s)
ORDER BY minute

-- name: latest_failures
SELECT j.id, j.owner, d.filename, j.state, j.last_error ->> 'code' AS code,
       j.last_error ->> 'message' AS message, j.completed_at
FROM jobs j JOIN documents d ON d.id = j.document_id
WHERE j.state = ANY(%(states)s)
ORDER BY j.completed_at DESC NULLS LAST
LIMIT %(limit)s

-- name: dashboard_jobs
SELECT j.id, j.owner, d.filename, j.state, j.last_error ->> 'code' AS code, j.retry_count,
       j.attempt, j.created_at, j.updated_at
FROM jobs j JOIN documents d ON d.id = j.document_id
WHERE (%(state)s::text IS NULL OR j.state = %(state)s)
  AND (%(code)s::text IS NULL OR j.last_error ->> 'code' = %(code)s)
  AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
  AND (%(q)s::text IS NULL OR d.filename ILIKE '%%' || %(q)s || '%%')
  AND (%(before)s::timestamptz IS NULL
       OR (j.created_at, j.id) < (%(before)s::timestamptz, %(before_id)s::uuid))
ORDER BY j.created_at DESC, j.id DESC
LIMIT %(limit)s

-- name: dashboard_job
SELECT j.id, j.document_id, j.owner, d.filename, d.media_type, d.size_bytes, j.state,
       j.attempt, j.retry_count, j.max_attempts, j.lease_owner, j.lease_expires_at,
       j.next_attempt_at, j.last_error, j.correlation_id, j.parser, j.chunker_version,
       j.chunk_count, j.embedding_model, j.usage, j.created_at, j.updated_at, j.completed_at
FROM jobs j JOIN documents d ON d.id = j.document_id
WHERE j.id = %(id)s

-- name: dashboard_job_chunks
SELECT id, ordinal, token_count, page, heading_path, left(text, 240) AS preview
FROM chunks WHERE document_id = %(document_id)s ORDER BY ordinal LIMIT %(limit)s

-- name: error_codes
-- The codes on the jobs there are now, from the counts (not a pass over jobs).
SELECT DISTINCT code FROM (
    SELECT code FROM job_counts WHERE code <> '' GROUP BY state, code HAVING sum(jobs) > 0
) AS present
ORDER BY 1

-- name: dashboard_owners
-- The first 200 owners, one index probe each (a loose scan of jobs_owner_state), not a pass over
-- every job.
WITH RECURSIVE owners AS (
    (SELECT owner FROM jobs ORDER BY owner LIMIT 1)
    UNION ALL
    SELECT (SELECT j.owner FROM jobs j WHERE j.owner > o.owner ORDER BY j.owner LIMIT 1)
    FROM owners o WHERE o.owner IS NOT NULL
)
SELECT owner FROM owners WHERE owner IS NOT NULL LIMIT 200

-- name: open_dashboard_session
INSERT INTO dashboard_sessions (token_hash, key_id, subject, expires_at)
VALUES (%(token_hash)s, %(key_id)s, %(subject)s, now() + make_interval(secs => %(seconds)s))

-- name: dashboard_session
-- A session lasts while it has not expired and the admin key that opened it is not revoked.
SELECT s.subject FROM dashboard_sessions s
JOIN api_keys k ON k.id = s.key_id
WHERE s.token_hash = %(token_hash)s AND s.expires_at > now()
  AND k.revoked_at IS NULL AND k.admin

-- name: close_dashboard_session
DELETE FROM dashboard_sessions WHERE token_hash = %(token_hash)s OR expires_at < now()
