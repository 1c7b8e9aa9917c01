-- MT5 Farm account service: each account sees and writes only its own rows (least privilege).
-- Every account service logs in as its own role, mt5_account_<login> (the platform creates
-- them, members of the writer group that holds the table privileges). Row-level security
-- keeps such a session to the rows of its login, whatever role it then SETs: the login is
-- read from session_user, which SET ROLE does not change. Other sessions (the owner, who
-- bypasses RLS as the tables' owner; the read-only role of Grafana; a superuser) are held by
-- their privileges only and see every row.

-- NULL for a session that is not an account's; -1 (no row has it) for an account-shaped role
-- name whose login cannot be read, so such a session sees nothing rather than everything.
CREATE OR REPLACE FUNCTION mt5_session_login() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT CASE
            WHEN session_user::text !~ '^mt5_account_' THEN NULL
            WHEN session_user::text !~ '^mt5_account_[0-9]{1,19}$' THEN -1
            WHEN substr(session_user::text, 13)::numeric > 9223372036854775807 THEN -1
            ELSE substr(session_user::text, 13)::bigint
        END
    $$;

ALTER TABLE mt5_order_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE mt5_deals ENABLE ROW LEVEL SECURITY;
ALTER TABLE mt5_account_snapshots ENABLE ROW LEVEL SECURITY;

-- One policy for every command (SELECT, INSERT, DELETE; INSERT ... ON CONFLICT DO NOTHING
-- needs both its check and its read side): an account's session, its own login only.
CREATE POLICY mt5_own_rows ON mt5_order_requests
    USING (mt5_session_login() IS NULL OR login = mt5_session_login())
    WITH CHECK (mt5_session_login() IS NULL OR login = mt5_session_login());
CREATE POLICY mt5_own_rows ON mt5_deals
    USING (mt5_session_login() IS NULL OR login = mt5_session_login())
    WITH CHECK (mt5_session_login() IS NULL OR login = mt5_session_login());
CREATE POLICY mt5_own_rows ON mt5_account_snapshots
    USING (mt5_session_login() IS NULL OR login = mt5_session_login())
    WITH CHECK (mt5_session_login() IS NULL OR login = mt5_session_login());
