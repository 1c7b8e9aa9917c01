-- MT5 Farm account service: a record that arrives with the key of a row already written but
-- with other content is never dropped silently (issue 12, fault 13). The first row stays where
-- it is (the trading record others have read; the writer role may only SELECT and INSERT);
-- the new one is kept here, with the row it collided with and the columns that differ, and
-- the service logs a warning and counts mt5_db_conflicts_total{table}. The same conflict
-- written again (a spool batch replayed after a crash) is one row (the unique key).

CREATE TABLE IF NOT EXISTS mt5_record_conflicts (
    id              bigserial PRIMARY KEY,
    login           bigint NOT NULL,
    table_name      text NOT NULL,          -- where the kept row is: mt5_deals, ...
    record_key      jsonb NOT NULL,         -- its key, e.g. {"login": 5001001, "ticket": 5000002}
    differs         text[] NOT NULL,        -- the columns whose values differ
    kept            jsonb,                  -- the row in table_name as found (NULL: another login's, hidden by RLS)
    incoming        jsonb NOT NULL,         -- the record that arrived with the same key
    incoming_sha256 text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (table_name, record_key, incoming_sha256)
);
CREATE INDEX IF NOT EXISTS mt5_record_conflicts_login_time
    ON mt5_record_conflicts (login, recorded_at);

ALTER TABLE mt5_record_conflicts ENABLE ROW LEVEL SECURITY;
CREATE POLICY mt5_own_rows ON mt5_record_conflicts
    USING (mt5_session_login() IS NULL OR login = mt5_session_login())
    WITH CHECK (mt5_session_login() IS NULL OR login = mt5_session_login());
