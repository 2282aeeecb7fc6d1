-- Concurrent first uses of one Idempotency-Key get one answer and record the upload once: the
-- first request claims the key (a row with no answer yet, held until claimed_until, owned by
-- claim_token) and the others wait for its answer. A claim whose request died lapses and is
-- taken over by the next request with the key; a request that fails gives its claim back.
ALTER TABLE idempotency_keys
    ALTER COLUMN status DROP NOT NULL,
    ALTER COLUMN response DROP NOT NULL,
    ADD COLUMN claim_token uuid,
    ADD COLUMN claimed_until timestamptz;
