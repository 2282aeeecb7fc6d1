-- An Idempotency-Key is bound to the request it first answered: a fingerprint of its files (raw
-- name, size, sha256, in order) and metadata. The same key with another request is refused
-- (422 idempotency.mismatch) instead of silently answering the first request's documents.
-- Rows from before this column have none and keep answering as they did.
ALTER TABLE idempotency_keys ADD COLUMN request_sha256 text;
