-- Viewers each edge reports per stream (its last heartbeat); a stream's current viewers are
-- the sum over alive edges.
CREATE TABLE edge_viewers (
    node_id TEXT NOT NULL REFERENCES nodes(id),
    stream_name TEXT NOT NULL,
    viewers BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (node_id, stream_name)
);
CREATE INDEX edge_viewers_stream ON edge_viewers(stream_name);
