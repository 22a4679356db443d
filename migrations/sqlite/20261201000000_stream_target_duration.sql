-- EXT-X-TARGETDURATION of a video's playlists in seconds, fixed when its broadcast starts: RFC 8216
-- §6.2.1 forbids changing it, so the recorder keeps every segment within it instead of the
-- playlist following the segments. 0 for videos recorded before this column (their playlists use
-- the longest segment). Keep in step with ../sqlite and ../postgres.
ALTER TABLE stream_videos ADD COLUMN target_duration BIGINT NOT NULL DEFAULT 0;
-- 0 when the segment does not start with a keyframe: the publisher's keyframes came too late and
-- the recorder cut inside a GOP to stay within the target duration. Playlists listing such a
-- segment drop EXT-X-INDEPENDENT-SEGMENTS; clips start at an earlier independent segment.
ALTER TABLE stream_segments ADD COLUMN independent BIGINT NOT NULL DEFAULT 1;
