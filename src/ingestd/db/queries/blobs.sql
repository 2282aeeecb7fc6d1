-- The PostgreSQL blob store (ingestd/blobs/postgres.py).

-- name: put_small_blob
-- A one-part blob in one statement: the header and its part, or nothing when the key exists
-- (a concurrent put of the same bytes waits here for the first to commit, then does nothing).
WITH head AS (
    INSERT INTO blobs (key, size_bytes, parts) VALUES (%(key)s, %(size)s, 1)
    ON CONFLICT (key) DO NOTHING
    RETURNING key
)
INSERT INTO blob_parts (key, part, data) SELECT key, 0, %(data)s FROM head

-- name: put_small_blobs
-- Several one-part blobs in one statement (PostgresBlobStore.put_many): the headers of the keys
-- not stored yet, in key order (two such statements never wait on each other in a cycle), then
-- their parts. The keys come distinct.
WITH given AS (
    SELECT * FROM unnest(%(keys)s::text[], %(data)s::bytea[]) AS g(key, data)
), head AS (
    INSERT INTO blobs (key, size_bytes, parts)
    SELECT key, length(data), 1 FROM given ORDER BY key
    ON CONFLICT (key) DO NOTHING
    RETURNING key
)
INSERT INTO blob_parts (key, part, data) SELECT g.key, 0, g.data FROM head JOIN given g USING (key)

-- name: claim_blob
-- The header of a many-part blob, written first in the transaction that then copies its parts.
INSERT INTO blobs (key, size_bytes, parts) VALUES (%(key)s, %(size)s, %(parts)s)
ON CONFLICT (key) DO NOTHING
RETURNING key

-- name: copy_blob_parts
COPY blob_parts (key, part, data) FROM STDIN (FORMAT BINARY)

-- name: get_blob
SELECT b.parts, p.data FROM blobs b JOIN blob_parts p USING (key)
WHERE b.key = %(key)s ORDER BY p.part

-- name: get_blobs
-- Several blobs in one round trip (PostgresBlobStore.get_many): every part of each, in order.
SELECT b.key, b.parts, p.data FROM blobs b JOIN blob_parts p USING (key)
WHERE b.key = ANY(%(keys)s::text[]) ORDER BY b.key, p.part

-- name: get_blob_part
SELECT data FROM blob_parts WHERE key = %(key)s AND part = %(part)s

-- name: blob_header
SELECT size_bytes, parts FROM blobs WHERE key = %(key)s

-- name: delete_blob
DELETE FROM blobs WHERE key = %(key)s

-- name: list_blobs
-- A page of blobs in key order (keyset pagination: pass the last key seen, '' at first).
SELECT key, size_bytes, created_at FROM blobs WHERE key > %(after)s ORDER BY key LIMIT %(limit)s

-- name: referenced_blob_keys
-- Every blob something refers to: the uploads of documents and the parsed text of jobs.
-- ``ingestd blobs gc`` deletes what is not here; a new column holding blob keys goes here too.
SELECT blob_key AS key FROM documents
UNION
SELECT parsed_blob_key FROM jobs WHERE parsed_blob_key IS NOT NULL

-- name: share_blob_keys
-- Held by a transaction that stores blobs and records rows referring to them (an upload): a
-- delete of those blobs waits until the references are committed, and then sees them. Keys
-- come sorted, so two transactions always take their locks in the same order. The two-key form
-- of advisory locks, with a class of its own, cannot meet the single-key locks used elsewhere.
SELECT count(pg_advisory_xact_lock_shared(1651469410, hashtext(k))) AS locked
FROM unnest(%(keys)s::text[]) AS k

-- name: lock_blob_keys
-- Held by the transaction that checks blobs are unreferenced and deletes them (see share_blob_keys).
SELECT count(pg_advisory_xact_lock(1651469410, hashtext(k))) AS locked
FROM unnest(%(keys)s::text[]) AS k
