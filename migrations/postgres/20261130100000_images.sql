-- Images: originals, variants, per-account settings, signing keys, widget keys, and the
-- unique-transformation window used for metering. Keep in step with ../sqlite.
CREATE TABLE images (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    -- Platform-issued id that object keys are built from (custom ids may contain any safe chars).
    storage_uid TEXT NOT NULL,
    filename TEXT,
    -- 1 when the client chose the id (such images cannot require signed URLs).
    custom_id BIGINT NOT NULL,
    -- Object key of the original; each upload writes a fresh key so racing uploads cannot mix.
    original_object TEXT,
    meta TEXT NOT NULL,
    require_signed BIGINT NOT NULL,
    draft BIGINT NOT NULL,
    -- Direct creator uploads: sha256 of the one-time upload token, and when it expires.
    upload_token_sha256 TEXT,
    upload_expires_at BIGINT,
    format TEXT,
    width BIGINT,
    height BIGINT,
    animated BIGINT NOT NULL,
    size_bytes BIGINT,
    sha256 TEXT,
    -- Bumped whenever the original changes; part of every derivative cache key.
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    uploaded_at BIGINT,
    PRIMARY KEY (account_id, id)
);
CREATE UNIQUE INDEX images_storage_uid ON images(storage_uid);
CREATE INDEX images_account_created ON images(account_id, created_at, id);

CREATE TABLE image_variants (
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    options TEXT NOT NULL,
    never_require_signed BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE image_settings (
    account_id TEXT PRIMARY KEY NOT NULL,
    account_hash TEXT NOT NULL UNIQUE,
    flexible_variants BIGINT NOT NULL
);

CREATE TABLE image_signing_keys (
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE image_widget_keys (
    id TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    allowed_origins TEXT NOT NULL,
    uploads_per_minute BIGINT NOT NULL,
    max_file_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX image_widget_keys_account ON image_widget_keys(account_id);

CREATE TABLE image_transformations (
    account_id TEXT NOT NULL,
    transform_key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    PRIMARY KEY (account_id, transform_key)
);
