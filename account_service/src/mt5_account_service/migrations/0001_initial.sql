-- MT5 Farm account service: orders, deals and account snapshots of every account.
-- Owned by the mt5-account-service package; applied by the service (or `mt5-account-service
-- migrate`) under an advisory lock, so many accounts starting at once is safe.

CREATE TABLE IF NOT EXISTS mt5_order_requests (
    id              bigserial PRIMARY KEY,
    record_id       uuid NOT NULL UNIQUE,
    login           bigint NOT NULL,
    server          text NOT NULL,
    requested_at    timestamptz NOT NULL,
    operation       text NOT NULL,          -- open | close | modify_position | modify_order | cancel
    idempotency_key text,
    request         jsonb NOT NULL,         -- what the client asked for
    http_status     integer NOT NULL,       -- what the client was answered
    retcode         integer,                -- MT5 trade server return code, if it got that far
    result          jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS mt5_order_requests_login_time
    ON mt5_order_requests (login, requested_at);

CREATE TABLE IF NOT EXISTS mt5_deals (
    login        bigint NOT NULL,
    ticket       bigint NOT NULL,
    order_ticket bigint NOT NULL,
    time         timestamptz NOT NULL,      -- the terminal's deal time (trade server time)
    type         integer NOT NULL,
    entry        integer NOT NULL,
    magic        bigint NOT NULL,
    position_id  bigint NOT NULL,
    reason       integer NOT NULL,
    volume       double precision NOT NULL,
    price        double precision NOT NULL,
    commission   double precision NOT NULL,
    swap         double precision NOT NULL,
    profit       double precision NOT NULL,
    fee          double precision NOT NULL,
    symbol       text NOT NULL,
    comment      text NOT NULL,
    raw          jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (login, ticket)
);

CREATE TABLE IF NOT EXISTS mt5_account_snapshots (
    id           bigserial PRIMARY KEY,
    record_id    uuid NOT NULL UNIQUE,
    login        bigint NOT NULL,
    taken_at     timestamptz NOT NULL,
    balance      double precision NOT NULL,
    equity       double precision NOT NULL,
    margin       double precision NOT NULL,
    margin_free  double precision NOT NULL,
    margin_level double precision NOT NULL,
    profit       double precision NOT NULL,
    positions    integer NOT NULL,
    orders       integer NOT NULL,
    raw          jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS mt5_account_snapshots_login_time
    ON mt5_account_snapshots (login, taken_at);
