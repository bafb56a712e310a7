-- Accounts, keys, streams and nodes. Times are Unix milliseconds (BIGINT) so that the
-- same queries run on SQLite and PostgreSQL; money and points, when they come, are integer
-- minor units (kopecks) in BIGINT columns, never floating point.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE stream_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX stream_keys_user ON stream_keys(user_id);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    http_url TEXT NOT NULL,
    rtmp_url TEXT,
    rtmps_url TEXT,
    srt_url TEXT,
    max_streams BIGINT NOT NULL,
    state TEXT NOT NULL,
    cpu DOUBLE PRECISION NOT NULL DEFAULT 0,
    live_streams BIGINT NOT NULL DEFAULT 0,
    transcode_rtf DOUBLE PRECISION,
    egress_bps BIGINT NOT NULL DEFAULT 0,
    registered_at BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    UNIQUE (role, name)
);

CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    language TEXT NOT NULL,
    tags TEXT NOT NULL,
    status TEXT NOT NULL,
    origin_node_id TEXT REFERENCES nodes(id),
    transcode BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    status_changed_at BIGINT NOT NULL,
    current_viewers BIGINT NOT NULL DEFAULT 0,
    peak_viewers BIGINT NOT NULL DEFAULT 0,
    total_views BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX streams_status ON streams(status);
CREATE INDEX streams_user ON streams(user_id, status);
CREATE INDEX streams_name ON streams(name, status);
