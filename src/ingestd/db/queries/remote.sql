-- Remote parsing (LlamaParse): the submit intent, the remote job id, webhook receipts.

-- name: mark_remote_submit
UPDATE jobs SET parse_metadata = parse_metadata || jsonb_build_object('remote_submit', %(marker)s::text)
WHERE id = %(id)s AND attempt = %(attempt)s AND lease_owner = %(worker)s
RETURNING id

-- name: store_remote_job_id
UPDATE jobs SET remote_job_id = %(remote_job_id)s
WHERE id = %(id)s AND attempt = %(attempt)s AND lease_owner = %(worker)s
RETURNING id

-- name: webhook_job_known
-- Whether a webhook's remote job is ours (a job has its id), and whether a submit is in flight
-- whose id is not stored yet (the vendor's webhook can beat that write: the route waits for it).
SELECT EXISTS (SELECT 1 FROM jobs WHERE remote_job_id = %(remote_job_id)s) AS known,
       EXISTS (SELECT 1 FROM jobs WHERE state = 'parse_queued' AND remote_job_id IS NULL
               AND parse_metadata ? 'remote_submit') AS submitting

-- name: insert_webhook_receipt
INSERT INTO webhook_receipts (provider, event_id, event_type, remote_job_id, terminal, outcome)
VALUES (%(provider)s, %(event_id)s, %(event_type)s, %(remote_job_id)s, %(terminal)s, 'received')
ON CONFLICT (provider, event_id) DO NOTHING
RETURNING event_id

-- name: wake_remote_job
-- A finished remote job: make its parse_queued job runnable now. Never changes its state, so a
-- late or reordered webhook can never move a job backwards.
UPDATE jobs SET next_attempt_at = now()
WHERE remote_job_id = %(remote_job_id)s AND state = 'parse_queued'
RETURNING id

-- name: wake_announced
-- Run right after committing jobs' waits: a webhook that announced the end of their remote parse
-- while they were still leased (its wake-up was then overwritten by the wait) wakes them now.
-- Whichever of the two transactions commits second sees the other's work, so none sleeps on.
UPDATE jobs j SET next_attempt_at = now()
WHERE j.id = ANY(%(ids)s) AND j.state = 'parse_queued' AND j.next_attempt_at > now()
  AND EXISTS (SELECT 1 FROM webhook_receipts r
              WHERE r.terminal AND r.remote_job_id = j.remote_job_id)
RETURNING j.id

-- name: finish_webhook_receipt
UPDATE webhook_receipts SET job_id = %(job_id)s, outcome = %(outcome)s
WHERE provider = %(provider)s AND event_id = %(event_id)s
