-- Calls (SFU) apps: each has an id and a secret that authenticates /v1/apps/{id}/... calls.
-- Only the secret's SHA-256 is stored; the secret is shown once, on create.
CREATE TABLE calls_apps (
    uid TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL
);
CREATE INDEX calls_apps_account ON calls_apps(account_id);
