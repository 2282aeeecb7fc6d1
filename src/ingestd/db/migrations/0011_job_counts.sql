-- Observability, version 2: exact job counts without scanning jobs, and indexes for the
-- dashboard's first screen (docs/howto/observability.md, "How the figures stay cheap").
--
-- /metrics and the dashboard need jobs by state, failures by error code and usage totals. Counting
-- them with a pass over jobs costs ~1 s at 100k jobs; instead, statement-level triggers append what
-- each INSERT, UPDATE or DELETE on jobs changed (one row per (state, code) it touched, summed over
-- the statement) to job_counts, in the same transaction. A reader sums job_counts: in any snapshot
-- the sums equal what a count over jobs would say. Rows are only ever appended (no hot row for
-- concurrent workers to queue on); every few hundred writes one of them folds the table back into
-- one row per (state, code), under a try-lock so that nobody waits for it.

CREATE TABLE job_counts (
    state               text NOT NULL,
    code                text NOT NULL,     -- last_error ->> 'code', '' when the job has no error
    jobs                bigint NOT NULL,
    embedding_tokens    numeric NOT NULL DEFAULT 0,
    parse_pages         numeric NOT NULL DEFAULT 0,
    embedding_cost_usd  numeric NOT NULL DEFAULT 0,
    parse_cost_usd      numeric NOT NULL DEFAULT 0
);

-- Counts the appends between two folds (not transactional, never reset: only its rhythm matters).
CREATE SEQUENCE job_counts_appends;

-- Arbitrary, fixed: one fold at a time.
CREATE FUNCTION ingestd_fold_job_counts() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(72906311) THEN
        RETURN;
    END IF;
    WITH gone AS (DELETE FROM job_counts RETURNING *)
    INSERT INTO job_counts (state, code, jobs, embedding_tokens, parse_pages, embedding_cost_usd,
                            parse_cost_usd)
    SELECT state, code, sum(jobs), sum(embedding_tokens), sum(parse_pages),
           sum(embedding_cost_usd), sum(parse_cost_usd)
    FROM gone GROUP BY state, code
    HAVING sum(jobs) <> 0 OR sum(embedding_tokens) <> 0 OR sum(parse_pages) <> 0
        OR sum(embedding_cost_usd) <> 0 OR sum(parse_cost_usd) <> 0;
END $$;

CREATE FUNCTION ingestd_count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    appended bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_counts
        SELECT state, coalesce(last_error ->> 'code', ''), count(*),
               coalesce(sum((usage ->> 'embedding_tokens')::numeric), 0),
               coalesce(sum((usage ->> 'parse_pages')::numeric), 0),
               coalesce(sum((usage ->> 'embedding_cost_usd')::numeric), 0),
               coalesce(sum((usage ->> 'parse_cost_usd')::numeric), 0)
        FROM new_jobs GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO job_counts
        SELECT state, coalesce(last_error ->> 'code', ''), -count(*),
               -coalesce(sum((usage ->> 'embedding_tokens')::numeric), 0),
               -coalesce(sum((usage ->> 'parse_pages')::numeric), 0),
               -coalesce(sum((usage ->> 'embedding_cost_usd')::numeric), 0),
               -coalesce(sum((usage ->> 'parse_cost_usd')::numeric), 0)
        FROM old_jobs GROUP BY 1, 2;
    ELSE
        -- Claims and lease renewals change none of it: the sums cancel and nothing is appended.
        INSERT INTO job_counts
        SELECT state, code, sum(n), coalesce(sum(t), 0), coalesce(sum(p), 0),
               coalesce(sum(ec), 0), coalesce(sum(pc), 0)
        FROM (
            SELECT state, coalesce(last_error ->> 'code', '') AS code, 1 AS n,
                   (usage ->> 'embedding_tokens')::numeric AS t,
                   (usage ->> 'parse_pages')::numeric AS p,
                   (usage ->> 'embedding_cost_usd')::numeric AS ec,
                   (usage ->> 'parse_cost_usd')::numeric AS pc
            FROM new_jobs
            UNION ALL
            SELECT state, coalesce(last_error ->> 'code', ''), -1,
                   -(usage ->> 'embedding_tokens')::numeric,
                   -(usage ->> 'parse_pages')::numeric,
                   -(usage ->> 'embedding_cost_usd')::numeric,
                   -(usage ->> 'parse_cost_usd')::numeric
            FROM old_jobs
        ) AS d
        GROUP BY state, code
        HAVING sum(n) <> 0 OR coalesce(sum(t), 0) <> 0 OR coalesce(sum(p), 0) <> 0
            OR coalesce(sum(ec), 0) <> 0 OR coalesce(sum(pc), 0) <> 0;
    END IF;
    GET DIAGNOSTICS appended = ROW_COUNT;
    IF appended > 0 THEN
        IF nextval('job_counts_appends') % 500 = 0 THEN
            PERFORM ingestd_fold_job_counts();
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION ingestd_clear_job_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_counts;
    RETURN NULL;
END $$;

-- A trigger with transition tables names one event.
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION ingestd_count_jobs();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION ingestd_count_jobs();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION ingestd_count_jobs();
CREATE TRIGGER jobs_count_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION ingestd_clear_job_counts();

-- Counts everything again from jobs (jobs held against writers meanwhile): after writes that
-- bypassed the triggers (session_replication_role = replica, a partial restore).
CREATE FUNCTION ingestd_recount_jobs() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE jobs IN SHARE MODE;
    DELETE FROM job_counts;
    INSERT INTO job_counts
    SELECT state, coalesce(last_error ->> 'code', ''), count(*),
           coalesce(sum((usage ->> 'embedding_tokens')::numeric), 0),
           coalesce(sum((usage ->> 'parse_pages')::numeric), 0),
           coalesce(sum((usage ->> 'embedding_cost_usd')::numeric), 0),
           coalesce(sum((usage ->> 'parse_cost_usd')::numeric), 0)
    FROM jobs GROUP BY 1, 2;
END $$;

SELECT ingestd_recount_jobs();

-- The dashboard's jobs table (newest first) and latest failures read an index, not every job.
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_failed_recent ON jobs (completed_at DESC NULLS LAST)
    WHERE state IN ('failed_parse', 'failed_chunking', 'failed_embedding');
