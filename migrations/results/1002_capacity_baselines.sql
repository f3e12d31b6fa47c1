-- Capacity baselines (soakd report --set-baseline). Append-only like the runs: setting
-- a baseline adds a row, and a search's baseline is its newest row.
CREATE TABLE IF NOT EXISTS soakd_baselines (
    name    text NOT NULL,
    run_id  text NOT NULL REFERENCES soakd_runs (id),
    set_at  double precision NOT NULL,
    PRIMARY KEY (name, set_at)
);
