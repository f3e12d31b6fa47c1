-- The seed's goal-progress table, written by the buffered writer and read by the
-- API path. Primary key (user_id, goal_id) is what the batched UPSERT conflicts on.
CREATE TABLE IF NOT EXISTS user_goal_progress (
    user_id      TEXT        NOT NULL,
    goal_id      TEXT        NOT NULL,
    challenge_id TEXT        NOT NULL,
    namespace    TEXT        NOT NULL,
    progress     INTEGER     NOT NULL DEFAULT 0,
    status       TEXT        NOT NULL DEFAULT 'not_started',
    completed_at TIMESTAMPTZ,
    claimed_at   TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, goal_id)
);

-- Composite index for challenge queries.
CREATE INDEX IF NOT EXISTS idx_user_challenge
    ON user_goal_progress (user_id, challenge_id);

-- Partial index for unclaimed completed goals (the claim path).
CREATE INDEX IF NOT EXISTS idx_completed_unclaimed
    ON user_goal_progress (user_id, status)
    WHERE status = 'completed' AND claimed_at IS NULL;
