-- Sockets per channel on each control-plane replica (the real-time area): a channel's
-- presence is the sum over replicas that refreshed their rows within the last minute.
CREATE TABLE presence (
    replica TEXT NOT NULL,
    channel TEXT NOT NULL,
    sockets BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (replica, channel)
);
CREATE INDEX presence_channel ON presence(channel);
