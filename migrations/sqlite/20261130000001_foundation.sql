-- Accounts, API tokens, platform bookkeeping and hourly usage. Keep in step with ../postgres.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_account ON api_tokens(account_id);

CREATE TABLE platform_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE usage_hourly (
    account_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    hour_start BIGINT NOT NULL,
    quantity DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, metric, hour_start)
);
