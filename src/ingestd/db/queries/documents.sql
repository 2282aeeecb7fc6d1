-- Documents: upload (with dedup by owner + content hash), lookup. Used by ingestd/ingest.py.

-- name: insert_documents
INSERT INTO documents (owner, filename, media_type, size_bytes, sha256, blob_key, metadata)
SELECT %(owner)s, f, m, s, h, k, md
FROM unnest(%(filenames)s::text[], %(media_types)s::text[], %(sizes)s::bigint[],
            %(sha256s)s::text[], %(blob_keys)s::text[], %(metadatas)s::jsonb[])
     AS u(f, m, s, h, k, md)
ON CONFLICT (owner, sha256) DO NOTHING
RETURNING id, sha256

-- name: insert_jobs
INSERT INTO jobs (document_id, owner, max_attempts, priority)
SELECT d, %(owner)s, %(max_attempts)s, %(priority)s FROM unnest(%(document_ids)s::uuid[]) AS d
RETURNING id, document_id

-- name: existing_documents
SELECT DISTINCT ON (d.id) d.id, d.sha256, j.id AS job_id
FROM documents d LEFT JOIN jobs j ON j.document_id = d.id
WHERE d.owner = %(owner)s AND d.sha256 = ANY(%(sha256s)s)
ORDER BY d.id, j.created_at DESC
