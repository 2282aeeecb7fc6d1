-- Webhook receipts: one row per delivered event, so duplicates are recognised and ignored.

CREATE TABLE webhook_receipts (
    provider       text NOT NULL,
    event_id       text NOT NULL,
    event_type     text NOT NULL,
    remote_job_id  text NOT NULL,
    -- The event says the remote job ended (success, error, cancelled).
    terminal       boolean NOT NULL DEFAULT false,
    job_id         uuid REFERENCES jobs (id) ON DELETE SET NULL,
    outcome        text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX webhook_receipts_remote_job ON webhook_receipts (remote_job_id);
