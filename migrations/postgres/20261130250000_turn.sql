-- TURN keys (Cloudflare `turn_keys`) and revoked ephemeral usernames.
-- The secret is stored as is: the server needs it to check HMAC credentials; the API shows it
-- only once, at creation.
CREATE TABLE turn_keys (
    id TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL
);
CREATE INDEX turn_keys_account ON turn_keys(account_id);

-- Rows are kept until the username's own expiry has passed; then they are pruned.
CREATE TABLE turn_revoked_credentials (
    key_id TEXT NOT NULL REFERENCES turn_keys(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, username)
);
