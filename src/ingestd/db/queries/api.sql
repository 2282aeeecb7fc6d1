-- The HTTP API's own tables: API keys and idempotent uploads. Used by ingestd/service/.

-- name: insert_api_key
INSERT INTO api_keys (id, owner, name, admin, secret_sha256)
VALUES (%(id)s, %(owner)s, %(name)s, %(admin)s, %(secret_sha256)s)
RETURNING id, owner, name, admin, created_at, last_used_at, revoked_at

-- name: get_api_key
SELECT id, owner, name, admin, secret_sha256, created_at, last_used_at, revoked_at
FROM api_keys WHERE id = %(id)s

-- name: touch_api_key
UPDATE api_keys SET last_used_at = now()
WHERE id = %(id)s
  AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %(resolution)s))

-- name: list_api_keys
SELECT id, owner, name, admin, created_at, last_used_at, revoked_at FROM api_keys
WHERE %(owner)s::text IS NULL OR owner = %(owner)s
ORDER BY created_at, id

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = now() WHERE id = %(id)s AND revoked_at IS NULL

-- name: get_idempotent_response
SELECT status, response, request_sha256 FROM idempotency_keys
WHERE owner = %(owner)s AND key = %(key)s

-- name: claim_idempotency_key
-- The key for this request: a new row, or a lapsed claim (its request died) taken over. Nothing
-- when the key is answered or held by a live request: the caller reads the row and waits.
INSERT INTO idempotency_keys (owner, key, request_sha256, claim_token, claimed_until)
VALUES (%(owner)s, %(key)s, %(request_sha256)s, %(token)s,
        now() + make_interval(secs => %(hold_seconds)s))
ON CONFLICT (owner, key) DO UPDATE
    SET request_sha256 = EXCLUDED.request_sha256, claim_token = EXCLUDED.claim_token,
        claimed_until = EXCLUDED.claimed_until, created_at = now()
    WHERE idempotency_keys.status IS NULL AND idempotency_keys.claimed_until < now()
RETURNING key

-- name: answer_idempotency_key
-- Nothing when the claim was lost (it lapsed and another request took the key over).
UPDATE idempotency_keys
SET status = %(status)s, response = %(response)s, claim_token = NULL, claimed_until = NULL
WHERE owner = %(owner)s AND key = %(key)s AND claim_token = %(token)s AND status IS NULL
RETURNING key

-- name: release_idempotency_key
-- The request failed before it had an answer: the next request with the key starts afresh.
DELETE FROM idempotency_keys
WHERE owner = %(owner)s AND key = %(key)s AND claim_token = %(token)s AND status IS NULL

-- name: find_jobs
SELECT j.id, j.document_id, j.owner, d.filename, j.state, j.last_error, j.usage, j.attempt,
       j.retry_count, j.max_attempts, j.chunk_count, j.embedding_model, j.waiting_on,
       j.next_attempt_at, j.created_at,
       j.updated_at, j.state_changed_at, j.processing_started_at, j.completed_at,
       (SELECT count(*) FROM document_chunk_buffer b WHERE b.job_id = j.id) AS chunks_buffered,
       (SELECT count(*) FROM document_vector_buffer v WHERE v.job_id = j.id) AS vectors_buffered
FROM jobs j JOIN documents d ON d.id = j.document_id
WHERE (%(owner)s::text IS NULL OR j.owner = %(owner)s)
  AND (%(job_id)s::uuid IS NULL OR j.id = %(job_id)s)
  AND (%(states)s::text[] IS NULL OR j.state = ANY(%(states)s))
  AND (%(codes)s::text[] IS NULL OR j.last_error ->> 'code' = ANY(%(codes)s))
  AND (%(since)s::timestamptz IS NULL OR j.state_changed_at >= %(since)s)
  AND (%(before_created)s::timestamptz IS NULL
       OR (j.created_at, j.id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
ORDER BY j.created_at DESC, j.id DESC
LIMIT %(limit)s

-- name: cancel_jobs
-- Bumping the attempt fences out the worker that may hold the job: its next write (heartbeat,
-- stage output, transition) names the old attempt and matches nothing.
WITH targets AS (
    SELECT j.id, j.state FROM jobs j
    WHERE j.id = ANY(%(ids)s) AND j.completed_at IS NULL
      AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
    FOR UPDATE OF j
), moved AS (
    UPDATE jobs j SET state = 'cancelled', attempt = j.attempt + 1, lease_owner = NULL,
                      lease_expires_at = NULL
    FROM targets t WHERE j.id = t.id
    RETURNING j.id, t.state AS from_state, j.attempt, j.correlation_id
), events AS (
    INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, worker_id, correlation_id)
    SELECT id, 'cancel', from_state, 'cancelled', attempt, NULL, correlation_id FROM moved
)
SELECT id FROM moved

-- name: clear_buffers
-- A cancelled job's buffered chunks and vectors go (used by service.jobs.cancel_jobs).
WITH v AS (DELETE FROM document_vector_buffer WHERE job_id = ANY(%(ids)s))
DELETE FROM document_chunk_buffer WHERE job_id = ANY(%(ids)s)

-- name: find_documents
SELECT d.id, d.owner, d.filename, d.media_type, d.size_bytes, d.sha256, d.metadata,
       d.created_at, j.id AS job_id, j.state, j.last_error ->> 'code' AS error_code,
       j.chunk_count
FROM documents d
LEFT JOIN LATERAL (
    SELECT id, state, last_error, chunk_count FROM jobs
    WHERE document_id = d.id ORDER BY created_at DESC LIMIT 1
) j ON true
WHERE (%(owner)s::text IS NULL OR d.owner = %(owner)s)
  AND (%(document_id)s::uuid IS NULL OR d.id = %(document_id)s)
  AND (%(states)s::text[] IS NULL OR j.state = ANY(%(states)s))
  AND (%(media_types)s::text[] IS NULL OR d.media_type = ANY(%(media_types)s))
  AND (%(before_created)s::timestamptz IS NULL
       OR (d.created_at, d.id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
ORDER BY d.created_at DESC, d.id DESC
LIMIT %(limit)s

-- name: document_chunks
SELECT id, ordinal, text, token_count, heading_path, page FROM chunks
WHERE document_id = %(document_id)s AND ordinal > %(after)s
ORDER BY ordinal
LIMIT %(limit)s

-- name: lock_document
WITH d AS (
    SELECT id, blob_key FROM documents
    WHERE id = %(document_id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
    FOR UPDATE
)
SELECT d.id, d.blob_key,
       coalesce((SELECT array_agg(id) FROM jobs WHERE document_id = d.id), '{}') AS job_ids,
       coalesce((SELECT array_agg(parsed_blob_key) FROM jobs
                 WHERE document_id = d.id AND parsed_blob_key IS NOT NULL), '{}')
           AS parsed_blob_keys
FROM d

-- name: delete_document
DELETE FROM documents WHERE id = %(document_id)s

-- name: unreferenced_blobs
SELECT DISTINCT k AS key FROM unnest(%(keys)s::text[]) AS k
WHERE NOT EXISTS (SELECT 1 FROM documents WHERE blob_key = k)
  AND NOT EXISTS (SELECT 1 FROM jobs WHERE parsed_blob_key = k)

-- name: event_ids_after
-- Every event id after the cursor (all owners: gaps are judged on the whole sequence), with the
-- statement's snapshot bounds as plain integers.
SELECT e.id,
       pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
FROM job_events e
WHERE e.id > %(after)s
ORDER BY e.id
LIMIT %(limit)s

-- name: events_between
SELECT e.id, e.job_id, j.document_id, j.owner, e.kind, e.from_state, e.to_state, e.attempt,
       e.duration_ms, e.error, e.created_at
FROM job_events e JOIN jobs j ON j.id = e.job_id
WHERE e.id > %(after)s AND e.id <= %(upto)s
  AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
  AND (%(job_id)s::uuid IS NULL OR e.job_id = %(job_id)s)
ORDER BY e.id

-- name: latest_event_id
SELECT coalesce(max(id), 0) AS id FROM job_events
