-- The HTTP API: API keys (only a hash of the secret is kept), idempotent uploads, and a
-- notification on every batch of new job events, which the server-sent-events stream follows.

CREATE TABLE api_keys (
    -- The public part of the key (`ingestd_<id>_<secret>`): shown in lists, used for lookup.
    id             text PRIMARY KEY,
    owner          text NOT NULL,
    name           text NOT NULL DEFAULT '',
    admin          boolean NOT NULL DEFAULT false,
    -- sha256 of the secret part (256 random bits; see docs/decisions/0007-http-api-and-keys.md).
    secret_sha256  bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz,
    revoked_at     timestamptz
);
CREATE INDEX api_keys_owner ON api_keys (owner);

-- An upload sent again with the same Idempotency-Key gets the first answer back.
CREATE TABLE idempotency_keys (
    owner       text NOT NULL,
    key         text NOT NULL,
    status      integer NOT NULL,
    response    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key)
);

-- One notification per statement that appends events (not per row): listeners read the rows.
CREATE FUNCTION ingestd_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingestd_events', '');
    RETURN NULL;
END $$;

CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION ingestd_notify_events();

CREATE INDEX documents_owner_created ON documents (owner, created_at DESC, id DESC);
-- Deleting a document removes its blobs unless another document or job still uses them.
CREATE INDEX documents_blob_key ON documents (blob_key);
CREATE INDEX jobs_parsed_blob_key ON jobs (parsed_blob_key) WHERE parsed_blob_key IS NOT NULL;
