-- Connectivity monitoring (issue #5): why and how often each environment's
-- agent link ended, and its last host metrics, so an environment shows the
-- right offline status after a hub restart. The last-seen time stays in
-- environments.last_seen.

CREATE TABLE env_status (
    env_id            INTEGER PRIMARY KEY NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    disconnect_reason TEXT,
    disconnect_count  INTEGER NOT NULL DEFAULT 0,
    disconnected_at   INTEGER,
    last_metrics      TEXT
);
