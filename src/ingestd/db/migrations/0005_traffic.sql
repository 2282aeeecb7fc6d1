-- Fleet-wide traffic control: rate limits shared by every worker (GCRA, one row per limit),
-- circuit breakers with their transitions, the usage ledger that budgets and `ingestd costs`
-- read, and why a parked job waits.

-- One row per limit, named <service>:<model>:<unit> (openai:text-embedding-3-small:tokens).
-- GCRA: `tat` is the theoretical arrival time of the next unit; a request of `cost` units may
-- go at greatest(tat, now) + cost/rate - burst/rate (and not before `paused_until`).
CREATE TABLE rate_limits (
    name          text PRIMARY KEY,
    rate          float8 NOT NULL CHECK (rate > 0),    -- units per second
    burst         float8 NOT NULL CHECK (burst > 0),   -- units that may go at once
    tat           timestamptz NOT NULL DEFAULT now(),
    paused_until  timestamptz,                         -- a 429's retry-after, for every worker
    source        text NOT NULL DEFAULT 'settings',    -- settings | headers
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE breakers (
    service            text PRIMARY KEY,
    state              text NOT NULL DEFAULT 'closed'
                       CHECK (state IN ('closed', 'open', 'half_open')),
    window_started_at  timestamptz NOT NULL DEFAULT now(),
    calls              integer NOT NULL DEFAULT 0,
    failures           integer NOT NULL DEFAULT 0,
    half_open_at       timestamptz,                    -- when an open breaker lets one probe by
    probe_owner        text,
    probe_expires_at   timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Append-only, like job_events: one row per breaker transition.
CREATE TABLE breaker_events (
    id          bigserial PRIMARY KEY,
    service     text NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    reason      text NOT NULL,
    calls       integer NOT NULL DEFAULT 0,
    failures    integer NOT NULL DEFAULT 0,
    worker_id   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX breaker_events_service ON breaker_events (service, id);
CREATE TRIGGER breaker_events_append_only BEFORE UPDATE ON breaker_events
    FOR EACH ROW EXECUTE FUNCTION ingestd_append_only();

-- What every external call served, by UTC day, service and owner (the budgets' ledger).
CREATE TABLE usage_ledger (
    day       date NOT NULL,
    service   text NOT NULL,
    owner     text NOT NULL,
    requests  bigint NOT NULL DEFAULT 0,
    tokens    bigint NOT NULL DEFAULT 0,
    pages     bigint NOT NULL DEFAULT 0,
    cost_usd  numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (day, service, owner)
);

-- What a parked job waits for (a limit, a breaker, a budget); NULL when it is not parked.
ALTER TABLE jobs ADD COLUMN waiting_on text;
