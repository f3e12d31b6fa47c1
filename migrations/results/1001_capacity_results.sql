-- Capacity-search results (soakd results store). Append-only: runs are created once,
-- levels inserted once; only a run's finish time and status are ever updated.
CREATE TABLE IF NOT EXISTS soakd_runs (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    fingerprint text NOT NULL,
    started_at  double precision NOT NULL,
    finished_at double precision,
    status      text NOT NULL,
    record      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS soakd_runs_resume ON soakd_runs (name, fingerprint) WHERE finished_at IS NULL;

CREATE TABLE IF NOT EXISTS soakd_levels (
    run_id  text NOT NULL REFERENCES soakd_runs (id),
    seq     integer NOT NULL,
    verdict text NOT NULL,
    result  jsonb NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE IF NOT EXISTS soakd_statements (
    run_id  text NOT NULL,
    seq     integer NOT NULL,
    queryid text NOT NULL,
    query   text NOT NULL,
    calls   bigint NOT NULL,
    mean_ms double precision NOT NULL,
    rows    bigint NOT NULL,
    PRIMARY KEY (run_id, seq, queryid),
    FOREIGN KEY (run_id, seq) REFERENCES soakd_levels (run_id, seq)
);
