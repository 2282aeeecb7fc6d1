-- Read-side queries for metrics, alerts and the dashboard. Used by ingestd/observability/.

-- name: fleet_jobs
-- One pass over jobs: counts by state, and what is runnable, waiting, leased or stuck.
SELECT state,
       count(*) AS jobs,
       count(*) FILTER (WHERE completed_at IS NULL AND next_attempt_at <= now()
                        AND (lease_expires_at IS NULL OR lease_expires_at < now())) AS runnable,
       count(*) FILTER (WHERE completed_at IS NULL AND next_attempt_at > now()
                        AND lease_owner IS NULL) AS waiting,
       count(*) FILTER (WHERE lease_expires_at >= now()) AS leased,
       count(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_expires_at < now()
                        AND completed_at IS NULL) AS lease_expired,
       extract(epoch FROM now() - min(next_attempt_at) FILTER (
           WHERE completed_at IS NULL AND next_attempt_at <= now()
             AND (lease_expires_at IS NULL OR lease_expires_at < now())))::float8
           AS oldest_runnable_seconds,
       count(*) FILTER (WHERE completed_at IS NULL
                        AND state_changed_at < now() - make_interval(secs => %(stuck)s))
           AS stuck
FROM jobs
GROUP BY state

-- name: fleet_failures
SELECT state, coalesce(last_error ->> 'code', 'unknown') AS code, count(*) AS jobs
FROM jobs WHERE state = ANY(%(states)s)
GROUP BY 1, 2

-- name: fleet_usage
SELECT coalesce(sum((usage ->> 'embedding_tokens')::numeric), 0)::float8 AS embedding_tokens,
       coalesce(sum((usage ->> 'parse_pages')::numeric), 0)::float8 AS parse_pages,
       coalesce(sum((usage ->> 'embedding_cost_usd')::numeric), 0)::float8 AS embedding_cost_usd,
       coalesce(sum((usage ->> 'parse_cost_usd')::numeric), 0)::float8 AS parse_cost_usd
FROM jobs

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
