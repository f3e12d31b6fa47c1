-- Deploys of the system under test and their verdicts (the deploy judge). One row per
-- deploy, updated when its verdict is given or revised; the newest deploys.keep are kept.
CREATE TABLE IF NOT EXISTS soakd_deploys (
    id      text PRIMARY KEY,
    target  text NOT NULL,
    at      double precision NOT NULL,
    record  jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS soakd_deploys_at ON soakd_deploys (at);
