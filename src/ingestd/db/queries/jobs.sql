-- The job store: claim, lease, fence, transition, events, buffers. Used by ingestd/jobs.py.
-- Every write made on behalf of a claim names the job, the claim's attempt and the worker
-- (fencing): a worker whose lease was taken over matches no row and writes nothing.

-- name: claim_jobs
-- A candidate that still names a lease owner had its lease expire (its worker died or hung):
-- the claim records a 'lease_expired' event naming the previous owner.
WITH candidates AS (
    SELECT id, lease_owner AS previous_owner FROM jobs
    WHERE completed_at IS NULL
      AND next_attempt_at <= now()
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY priority DESC, next_attempt_at, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs j SET
        lease_owner = %(worker)s,
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        attempt = j.attempt + 1,
        processing_started_at = coalesce(j.processing_started_at, now())
    FROM candidates c, documents d
    WHERE j.id = c.id AND d.id = j.document_id
    RETURNING j.id, j.document_id, j.owner, j.state, j.attempt, j.retry_count, j.max_attempts,
              j.correlation_id, j.parsed_blob_key, j.parse_metadata, j.remote_job_id,
              j.chunker_version, j.chunk_count, j.embedding_model,
              d.filename, d.media_type, d.blob_key, d.size_bytes,
              c.previous_owner IS NOT NULL AS lease_expired, c.previous_owner
), expired AS (
    INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, worker_id,
                            correlation_id, error)
    SELECT id, 'lease_expired', state, state, attempt, %(worker)s, correlation_id,
           jsonb_build_object('code', 'lease.expired', 'message',
                              'the lease of ' || previous_owner || ' expired')
    FROM claimed WHERE lease_expired
)
SELECT id, document_id, owner, state, attempt, retry_count, max_attempts, correlation_id,
       parsed_blob_key, parse_metadata, remote_job_id, chunker_version, chunk_count,
       embedding_model, filename, media_type, blob_key, size_bytes, lease_expired
FROM claimed

-- name: apply_outcomes
-- The outcomes arrive as one JSON array of objects (JobStore._outcome_params): json.dumps builds
-- it in C, where adapting eleven parallel arrays element by element cost the worker more CPU
-- than any stage but chunking. A JSON null is an SQL NULL here.
WITH u AS (
    SELECT * FROM json_to_recordset(%(outcomes)s::json) AS u(
        id uuid, attempt int, from_state text, to_state text, kind text, release boolean,
        delay float8, retry_count int, error jsonb, patch jsonb, duration_ms int
    )
), moved AS (
    UPDATE jobs j SET
        state = u.to_state,
        retry_count = u.retry_count,
        last_error = CASE WHEN u.error IS NOT NULL THEN u.error
                          WHEN u.to_state = 'complete' THEN NULL
                          ELSE j.last_error END,
        next_attempt_at = CASE WHEN u.delay IS NULL THEN j.next_attempt_at
                               ELSE now() + make_interval(secs => u.delay) END,
        lease_owner = CASE WHEN u.release THEN NULL ELSE j.lease_owner END,
        lease_expires_at = CASE WHEN u.release THEN NULL ELSE j.lease_expires_at END,
        parser = coalesce(u.patch ->> 'parser', j.parser),
        parsed_blob_key = coalesce(u.patch ->> 'parsed_blob_key', j.parsed_blob_key),
        parse_metadata = coalesce(u.patch -> 'parse_metadata', j.parse_metadata),
        remote_job_id = coalesce(u.patch ->> 'remote_job_id', j.remote_job_id),
        chunker_version = coalesce(u.patch ->> 'chunker_version', j.chunker_version),
        chunk_count = coalesce((u.patch ->> 'chunk_count')::int, j.chunk_count),
        embedding_model = coalesce(u.patch ->> 'embedding_model', j.embedding_model),
        embedding_dimensions = coalesce((u.patch ->> 'embedding_dimensions')::int,
                                        j.embedding_dimensions),
        usage = CASE WHEN u.patch ? 'usage' THEN ingestd_add_usage(j.usage, u.patch -> 'usage')
                     ELSE j.usage END,
        -- A parked job says what it waits for; any other outcome clears it.
        waiting_on = CASE WHEN u.kind = 'park' THEN u.patch ->> 'waiting_on' END
    FROM u
    WHERE j.id = u.id AND j.attempt = u.attempt AND j.lease_owner = %(worker)s
      AND j.state = u.from_state
    RETURNING j.id, j.correlation_id, u.from_state, u.to_state, u.attempt, u.kind, u.error,
              u.duration_ms
), events AS (
    INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, worker_id,
                            correlation_id, duration_ms, error)
    SELECT id, kind, from_state, to_state, attempt, %(worker)s, correlation_id, duration_ms, error
    FROM moved
)
SELECT id FROM moved

-- name: job_fences
SELECT id, state, attempt, lease_owner FROM jobs WHERE id = ANY(%(ids)s)

-- name: extend_leases
UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => %(lease)s)
FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS u(id, attempt)
WHERE j.id = u.id AND j.attempt = u.attempt AND j.lease_owner = %(worker)s
RETURNING j.id

-- name: release_leases
WITH released AS (
    UPDATE jobs j SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = now()
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS u(id, attempt)
    WHERE j.id = u.id AND j.attempt = u.attempt AND j.lease_owner = %(worker)s
    RETURNING j.id, j.state, j.attempt, j.correlation_id
), events AS (
    INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, worker_id, correlation_id)
    SELECT id, 'release', state, state, attempt, %(worker)s, correlation_id FROM released
)
SELECT id FROM released

-- name: lock_fenced
SELECT j.id FROM jobs j
JOIN unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS u(id, attempt)
  ON j.id = u.id AND j.attempt = u.attempt
WHERE j.lease_owner = %(worker)s
FOR UPDATE OF j

-- name: delete_chunk_buffer
DELETE FROM document_chunk_buffer WHERE job_id = ANY(%(ids)s)

-- name: copy_chunk_buffer
COPY document_chunk_buffer (job_id, chunk_id, ordinal, text, token_count, heading_path, page,
                            start_offset) FROM STDIN

-- name: read_chunk_buffer
SELECT job_id, chunk_id, ordinal, text, token_count FROM document_chunk_buffer
WHERE job_id = ANY(%(ids)s) ORDER BY job_id, ordinal

-- name: pending_vectors
SELECT c.job_id, c.chunk_id, c.text
FROM document_chunk_buffer c
LEFT JOIN document_vector_buffer v ON v.job_id = c.job_id AND v.chunk_id = c.chunk_id
WHERE c.job_id = ANY(%(ids)s) AND v.chunk_id IS NULL
ORDER BY c.job_id, c.ordinal
LIMIT %(limit)s

-- name: replace_vectors_batch_no
-- Drops the rows about to be rewritten (a slice stored again after a lost commit) and returns
-- the next batch number of these jobs, in one round trip. Every part of the statement sees the
-- same snapshot, so the maximum still counts the rows being deleted: the number is fresh.
WITH gone AS (
    DELETE FROM document_vector_buffer
    WHERE job_id = ANY(%(ids)s) AND chunk_id = ANY(%(chunk_ids)s)
)
SELECT coalesce(max(batch_no), -1) + 1 FROM document_vector_buffer WHERE job_id = ANY(%(ids)s)

-- name: copy_vector_buffer
COPY document_vector_buffer (job_id, chunk_id, batch_no, embedding) FROM STDIN (FORMAT BINARY)

-- name: unfinished_jobs
SELECT c.job_id FROM document_chunk_buffer c
LEFT JOIN document_vector_buffer v ON v.job_id = c.job_id AND v.chunk_id = c.chunk_id
WHERE c.job_id = ANY(%(ids)s) AND v.chunk_id IS NULL
GROUP BY c.job_id

-- name: delete_document_chunks
-- Only where new chunks are buffered: finalising twice must not lose the first result.
DELETE FROM chunks c USING jobs j
WHERE j.id = ANY(%(ids)s) AND c.document_id = j.document_id
  AND EXISTS (SELECT 1 FROM document_chunk_buffer b WHERE b.job_id = j.id)

-- name: finalize_chunks
-- (Tried: one statement that also empties both buffers, INSERT ... SELECT from DELETE ...
-- RETURNING; the HNSW insert it feeds measured 10-25 percent slower in two A/B rounds: not kept.)
INSERT INTO chunks (id, document_id, owner, ordinal, text, token_count, heading_path, page,
                    embedding_model, embedding)
SELECT b.chunk_id, j.document_id, j.owner, b.ordinal, b.text, b.token_count, b.heading_path,
       b.page, j.embedding_model, v.embedding
FROM document_chunk_buffer b
JOIN document_vector_buffer v ON v.job_id = b.job_id AND v.chunk_id = b.chunk_id
JOIN jobs j ON j.id = b.job_id
WHERE b.job_id = ANY(%(ids)s)

-- name: upsert_worker
INSERT INTO workers (id, hostname, pid, concurrency, status, active_jobs, processed)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(concurrency)s, %(status)s, %(active_jobs)s, %(processed)s)
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, active_jobs = EXCLUDED.active_jobs,
    processed = EXCLUDED.processed, heartbeat_at = now(),
    stopped_at = CASE WHEN EXCLUDED.status = 'stopped' THEN now() END
