-- Stream: live inputs, their broadcasts (videos), init segments and media segments.
CREATE TABLE stream_live_inputs (
    uid TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    meta TEXT NOT NULL,
    recording_mode TEXT NOT NULL,
    timeout_seconds BIGINT NOT NULL,
    require_signed_urls BIGINT NOT NULL,
    allowed_origins TEXT,
    delete_recording_after_days BIGINT,
    enabled BIGINT NOT NULL,
    secret TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    modified_ms BIGINT NOT NULL
);
CREATE INDEX stream_live_inputs_account ON stream_live_inputs (account_id, created_ms);

CREATE TABLE stream_videos (
    uid TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    live_input_id TEXT NOT NULL,
    recorded BIGINT NOT NULL,
    state TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    duration_ticks BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    codecs TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    modified_ms BIGINT NOT NULL
);
CREATE INDEX stream_videos_account ON stream_videos (account_id, created_ms);
CREATE INDEX stream_videos_input ON stream_videos (live_input_id, created_ms);

CREATE TABLE stream_inits (
    video_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    codecs TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    PRIMARY KEY (video_id, idx)
);

CREATE TABLE stream_segments (
    video_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    init_idx BIGINT NOT NULL,
    start_ticks BIGINT NOT NULL,
    duration_ticks BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    discontinuity BIGINT NOT NULL,
    PRIMARY KEY (video_id, seq)
);
