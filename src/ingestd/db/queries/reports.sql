-- Read-side queries for status, jobs and search. Used by ingestd/reports.py and search.py.

-- name: state_counts
SELECT state, count(*) AS n FROM jobs
WHERE (%(owner)s::text IS NULL OR owner = %(owner)s)
GROUP BY state

-- name: overview
SELECT
    (SELECT count(*) FROM documents WHERE %(owner)s::text IS NULL OR owner = %(owner)s) AS documents,
    (SELECT count(*) FROM chunks WHERE %(owner)s::text IS NULL OR owner = %(owner)s) AS chunks,
    (SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL AND lease_expires_at > now()) AS leased,
    (SELECT count(*) FROM jobs WHERE completed_at IS NULL AND next_attempt_at > now()) AS waiting,
    (SELECT min(created_at) FROM jobs WHERE completed_at IS NULL) AS oldest_pending,
    u.embedding_tokens, u.parse_pages, u.parse_credits, u.cost_usd
FROM (
    SELECT coalesce(sum((usage ->> 'embedding_tokens')::numeric), 0) AS embedding_tokens,
           coalesce(sum((usage ->> 'parse_pages')::numeric), 0) AS parse_pages,
           coalesce(sum((usage ->> 'parse_credits')::numeric), 0) AS parse_credits,
           coalesce(sum(coalesce((usage ->> 'embedding_cost_usd')::numeric, 0)
                        + coalesce((usage ->> 'parse_cost_usd')::numeric, 0)), 0) AS cost_usd
    FROM jobs WHERE %(owner)s::text IS NULL OR owner = %(owner)s
) AS u

-- name: live_workers
SELECT id, hostname, pid, concurrency, status, active_jobs, processed, started_at, heartbeat_at
FROM workers
WHERE status <> 'stopped' AND heartbeat_at > now() - make_interval(secs => %(stale)s)
ORDER BY started_at

-- name: list_jobs
SELECT j.id, j.document_id, d.filename, j.state, j.last_error ->> 'code' AS error_code,
       j.last_error ->> 'message' AS error_message, j.retry_count, j.attempt, j.chunk_count,
       j.created_at, j.updated_at, j.completed_at, j.owner, j.waiting_on,
       (SELECT count(*) FROM document_chunk_buffer b WHERE b.job_id = j.id) AS chunks_buffered,
       (SELECT count(*) FROM document_vector_buffer v WHERE v.job_id = j.id) AS vectors_buffered
FROM jobs j JOIN documents d ON d.id = j.document_id
WHERE (%(owner)s::text IS NULL OR j.owner = %(owner)s)
  AND (%(states)s::text[] IS NULL OR j.state = ANY(%(states)s))
ORDER BY j.created_at DESC, j.id
LIMIT %(limit)s

-- name: get_job
SELECT j.*, d.filename, d.media_type, d.size_bytes, d.sha256,
       (SELECT count(*) FROM document_chunk_buffer b WHERE b.job_id = j.id) AS chunks_buffered,
       (SELECT count(*) FROM document_vector_buffer v WHERE v.job_id = j.id) AS vectors_buffered,
       (SELECT count(*) FROM chunks c WHERE c.document_id = j.document_id) AS chunks_stored
FROM jobs j JOIN documents d ON d.id = j.document_id
WHERE j.id::text LIKE %(prefix)s ESCAPE '\' AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
LIMIT 2

-- name: job_events
SELECT id, kind, from_state, to_state, attempt, worker_id, duration_ms, error, created_at
FROM job_events WHERE job_id = %(job_id)s ORDER BY id

-- name: retry_jobs
WITH targets AS (
    SELECT j.id, j.state, t.start_state
    FROM jobs j
    JOIN unnest(%(from_states)s::text[], %(to_states)s::text[]) AS t(failed_state, start_state)
      ON t.failed_state = j.state
    WHERE (%(ids)s::uuid[] IS NULL OR j.id = ANY(%(ids)s))
      AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
      AND (%(states)s::text[] IS NULL OR j.state = ANY(%(states)s))
      AND (%(codes)s::text[] IS NULL OR j.last_error ->> 'code' = ANY(%(codes)s))
      AND (%(since)s::timestamptz IS NULL OR j.state_changed_at >= %(since)s)
    FOR UPDATE OF j
), moved AS (
    UPDATE jobs j SET state = t.start_state, retry_count = 0, next_attempt_at = now(),
                      lease_owner = NULL, lease_expires_at = NULL, waiting_on = NULL
    FROM targets t WHERE j.id = t.id
    RETURNING j.id, t.state AS from_state, t.start_state AS to_state, j.attempt, j.correlation_id
), events AS (
    INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, worker_id, correlation_id)
    SELECT id, 'retry_requested', from_state, to_state, attempt, NULL, correlation_id FROM moved
)
SELECT id FROM moved

-- name: wake_parked_jobs
-- Parked jobs (waiting on a limit, breaker or budget) that match the filters: due now.
WITH woken AS (
    UPDATE jobs j SET next_attempt_at = now()
    WHERE j.waiting_on IS NOT NULL AND j.completed_at IS NULL AND j.next_attempt_at > now()
      AND (j.lease_owner IS NULL OR j.lease_expires_at < now())
      AND (%(ids)s::uuid[] IS NULL OR j.id = ANY(%(ids)s))
      AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
      AND (%(states)s::text[] IS NULL OR j.state = ANY(%(states)s))
      AND (%(codes)s::text[] IS NULL OR j.last_error ->> 'code' = ANY(%(codes)s))
      AND (%(since)s::timestamptz IS NULL OR j.updated_at >= %(since)s)
    RETURNING j.id, j.state, j.attempt, j.correlation_id
), events AS (
    INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, worker_id, correlation_id)
    SELECT id, 'wake_requested', state, state, attempt, NULL, correlation_id FROM woken
)
SELECT id FROM woken

-- name: notify_jobs
SELECT pg_notify('ingestd_jobs', 'retry')

-- name: search_chunks
-- {model} and {dims} are composed in as literals (psycopg.sql) so that the planner can match
-- the model's partial HNSW index; the rest are parameters.
SELECT c.id AS chunk_id, c.document_id, d.filename, c.ordinal, c.text, c.heading_path, c.page,
       1 - (c.embedding::vector({dims}) <=> %(query)s::vector({dims})) AS score
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.embedding_model = {model}
  AND (%(owner)s::text IS NULL OR c.owner = %(owner)s)
  AND (%(document_ids)s::uuid[] IS NULL OR c.document_id = ANY(%(document_ids)s))
  AND (%(metadata)s::jsonb IS NULL OR d.metadata @> %(metadata)s)
ORDER BY c.embedding::vector({dims}) <=> %(query)s::vector({dims})
LIMIT %(limit)s

-- name: job_states_of
SELECT state, count(*) AS n FROM jobs WHERE id = ANY(%(ids)s) GROUP BY state

-- name: reindex_jobs
-- Complete documents whose chunks were made with other settings (or all, when forced) go back
-- to parse_validated; their old chunks stay searchable until the new ones are swapped in.
WITH targets AS (
    SELECT j.id FROM jobs j
    WHERE j.state = 'complete'
      AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
      AND (%(document_ids)s::uuid[] IS NULL OR j.document_id = ANY(%(document_ids)s))
      AND (%(force)s OR j.chunker_version IS DISTINCT FROM %(chunker_version)s
           OR j.embedding_model IS DISTINCT FROM %(embedding_model)s)
    FOR UPDATE OF j SKIP LOCKED
), moved AS (
    UPDATE jobs j SET state = 'parse_validated', retry_count = 0, next_attempt_at = now(),
                      lease_owner = NULL, lease_expires_at = NULL, chunker_version = NULL,
                      chunk_count = NULL, embedding_model = NULL, embedding_dimensions = NULL
    FROM targets t WHERE j.id = t.id
    RETURNING j.id, j.attempt, j.correlation_id
), events AS (
    INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, worker_id, correlation_id)
    SELECT id, 'reindex', 'complete', 'parse_validated', attempt, NULL, correlation_id FROM moved
)
SELECT id FROM moved
