-- ingestd schema, version 1: documents, jobs (the state machine), buffers, chunks, events, workers.
-- The allowed states and transitions are copied here from ingestd/states.py by db.migrate
-- (job_states, job_transitions); a trigger rejects every other change of jobs.state.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE job_states (
    name      text PRIMARY KEY,
    terminal  boolean NOT NULL
);

CREATE TABLE job_transitions (
    from_state text NOT NULL REFERENCES job_states (name),
    to_state   text NOT NULL REFERENCES job_states (name),
    PRIMARY KEY (from_state, to_state)
);

CREATE TABLE documents (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner       text NOT NULL,
    filename    text NOT NULL,
    media_type  text NOT NULL,
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    sha256      text NOT NULL,
    blob_key    text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Identical content uploaded again by the same owner is the same document.
CREATE UNIQUE INDEX documents_owner_sha256 ON documents (owner, sha256);

CREATE TABLE jobs (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id            uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    owner                  text NOT NULL,
    state                  text NOT NULL DEFAULT 'uploaded' REFERENCES job_states (name),
    priority               integer NOT NULL DEFAULT 0,
    -- Fencing token: bumped by every claim; every later write of that claim must name it.
    attempt                integer NOT NULL DEFAULT 0,
    -- Failed tries of the current stage (reset when a stage succeeds).
    retry_count            integer NOT NULL DEFAULT 0,
    max_attempts           integer NOT NULL DEFAULT 5,
    lease_owner            text,
    lease_expires_at       timestamptz,
    next_attempt_at        timestamptz NOT NULL DEFAULT now(),
    last_error             jsonb,
    correlation_id         uuid NOT NULL DEFAULT gen_random_uuid(),
    parser                 text,
    parsed_blob_key        text,
    parse_metadata         jsonb NOT NULL DEFAULT '{}',
    remote_job_id          text,
    chunker_version        text,
    chunk_count            integer,
    embedding_model        text,
    embedding_dimensions   integer,
    usage                  jsonb NOT NULL DEFAULT '{}',
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    state_changed_at       timestamptz NOT NULL DEFAULT now(),
    processing_started_at  timestamptz,
    -- Set when the job reaches a terminal state; NULL means "still to do".
    completed_at           timestamptz
);
CREATE INDEX jobs_runnable ON jobs (priority DESC, next_attempt_at) WHERE completed_at IS NULL;
CREATE INDEX jobs_document ON jobs (document_id);
CREATE INDEX jobs_owner_state ON jobs (owner, state);
CREATE UNIQUE INDEX jobs_remote_job_id ON jobs (remote_job_id) WHERE remote_job_id IS NOT NULL;

CREATE FUNCTION ingestd_check_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'uploaded' THEN
            RAISE EXCEPTION 'illegal transition: a job starts in uploaded, not %', NEW.state
                USING ERRCODE = 'check_violation', HINT = 'ingestd_illegal_transition';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT EXISTS (SELECT 1 FROM job_transitions
                       WHERE from_state = OLD.state AND to_state = NEW.state) THEN
            RAISE EXCEPTION 'illegal transition: % -> %', OLD.state, NEW.state
                USING ERRCODE = 'check_violation', HINT = 'ingestd_illegal_transition';
        END IF;
        NEW.state_changed_at := now();
        IF (SELECT terminal FROM job_states WHERE name = NEW.state) THEN
            NEW.completed_at := now();
        ELSE
            NEW.completed_at := NULL;
        END IF;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER jobs_check_transition BEFORE INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION ingestd_check_transition();

CREATE FUNCTION ingestd_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ingestd_jobs', TG_OP);
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION ingestd_notify_jobs();

-- Append-only history: one row per transition (and per scheduled retry or released lease).
CREATE TABLE job_events (
    id              bigserial PRIMARY KEY,
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind            text NOT NULL DEFAULT 'transition',
    from_state      text NOT NULL,
    to_state        text NOT NULL,
    attempt         integer NOT NULL,
    worker_id       text,
    correlation_id  uuid NOT NULL,
    duration_ms     integer,
    error           jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_events_job ON job_events (job_id, id);

CREATE FUNCTION ingestd_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER job_events_append_only BEFORE UPDATE ON job_events
    FOR EACH ROW EXECUTE FUNCTION ingestd_append_only();

-- Chunks of a document being processed, written by the chunk stage.
CREATE TABLE document_chunk_buffer (
    job_id        uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chunk_id      text NOT NULL,
    ordinal       integer NOT NULL,
    text          text NOT NULL,
    token_count   integer NOT NULL,
    heading_path  text[] NOT NULL DEFAULT '{}',
    page          integer,
    start_offset  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, chunk_id)
);

-- Their vectors, written by the embed stage batch by batch.
CREATE TABLE document_vector_buffer (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chunk_id   text NOT NULL,
    batch_no   integer NOT NULL,
    embedding  vector NOT NULL,
    PRIMARY KEY (job_id, chunk_id)
);

-- The permanent, searchable chunks. Vectors of any dimension; each embedding model gets its own
-- partial HNSW index on embedding::vector(dims) (db.ensure_vector_index).
CREATE TABLE chunks (
    id               text PRIMARY KEY,
    document_id      uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    owner            text NOT NULL,
    ordinal          integer NOT NULL,
    text             text NOT NULL,
    token_count      integer NOT NULL,
    heading_path     text[] NOT NULL DEFAULT '{}',
    page             integer,
    embedding_model  text NOT NULL,
    embedding        vector NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chunks_document ON chunks (document_id, ordinal);
CREATE INDEX chunks_owner_model ON chunks (owner, embedding_model);

CREATE TABLE workers (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    concurrency   integer NOT NULL,
    status        text NOT NULL DEFAULT 'running',
    active_jobs   integer NOT NULL DEFAULT 0,
    processed     bigint NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- Usage counters (tokens, pages, credits, cost, requests) add up key by key.
CREATE FUNCTION ingestd_add_usage(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, coalesce((a ->> k)::numeric, 0) + coalesce((b ->> k)::numeric, 0)), '{}')
    FROM (SELECT jsonb_object_keys(coalesce(a, '{}')) AS k
          UNION SELECT jsonb_object_keys(coalesce(b, '{}'))) AS keys
$$;
