-- Each channel's recording settings (the recordings area): whether its broadcasts are
-- recorded from their start (0/1), the renditions kept (JSON array; empty: the origin's
-- configuration), the longest recording (NULL: the configuration's) and the days a
-- recording is kept (0: forever). A channel without a row uses `storage.recordings`.
CREATE TABLE recording_settings (
    channel_id TEXT PRIMARY KEY,
    record BIGINT NOT NULL,
    renditions TEXT NOT NULL,
    max_duration_secs BIGINT,
    retention_days BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The recording in progress, as the stream's origin last reported it.
ALTER TABLE streams ADD COLUMN recording_id TEXT;
-- A highlighted moment becomes a clip of the recording in progress (`made`, with its id),
-- or is `skipped` (nothing was being recorded) or `failed` (the origin never took it).
ALTER TABLE highlights ADD COLUMN clip_id TEXT;
ALTER TABLE highlights ADD COLUMN clip_state TEXT;
