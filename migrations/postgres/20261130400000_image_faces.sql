-- Faces detected in an image's original (RetinaFace, images-faces crate), computed once per
-- original version on first need and reused by every gravity=face|auto transform.
-- Boxes are in pixels of the original after EXIF orientation. Keep in step with ../sqlite.
CREATE TABLE image_faces (
    storage_uid TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- JSON: {"width", "height", "faces": [{x1, y1, x2, y2, score, landmarks}]}
    faces TEXT NOT NULL,
    detected_at BIGINT NOT NULL,
    PRIMARY KEY (storage_uid, version)
);
