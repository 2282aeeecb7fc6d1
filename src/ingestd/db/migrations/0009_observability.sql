-- Observability: alert state and history, per-minute rollups for the dashboard's charts,
-- dashboard sessions, and a BRIN index that keeps "events of the last minutes" cheap.

-- job_events is append-only and created_at grows with it: a BRIN index costs almost nothing to
-- maintain and lets the rollup read only the recent end of the table.
CREATE INDEX job_events_created_brin ON job_events USING brin (created_at);

-- Per minute, per stage (from_state), kind, target state and error code: what happened.
-- Filled by ingestd.observability.rollup from job_events; recent minutes are recomputed.
CREATE TABLE event_rollup (
    minute        timestamptz NOT NULL,
    from_state    text NOT NULL,
    kind          text NOT NULL,
    to_state      text NOT NULL,
    code          text NOT NULL DEFAULT '',
    events        integer NOT NULL,
    duration_ms_sum  bigint NOT NULL DEFAULT 0,
    duration_ms_max  integer NOT NULL DEFAULT 0,
    timed         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, from_state, kind, to_state, code)
);

-- The current state of each alert rule, as ingestd last evaluated it.
CREATE TABLE alert_state (
    name          text PRIMARY KEY,
    firing        boolean NOT NULL DEFAULT false,
    since         timestamptz,
    value         double precision,
    summary       text NOT NULL DEFAULT '',
    evaluated_at  timestamptz NOT NULL DEFAULT now()
);

-- Firing -> resolved transitions, append-only.
CREATE TABLE alert_events (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('firing', 'resolved')),
    value       double precision,
    summary     text NOT NULL DEFAULT '',
    notified    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_name ON alert_events (name, id);

-- Browser sessions of the dashboard, opened with an admin API key; only a hash is stored.
CREATE TABLE dashboard_sessions (
    token_hash  text PRIMARY KEY,
    key_id      text,
    subject     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
