-- Reactions, the AutoMod-like hold queue and user reports (the chat area).
CREATE TABLE chat_reactions (
    message_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);

-- 0: off; 1-4: hold more and more suspicious messages for a moderator (Twitch's levels).
ALTER TABLE chat_rooms ADD COLUMN automod_level BIGINT NOT NULL DEFAULT 0;

-- A held message waits here (not in chat_messages) until a moderator allows or denies it.
CREATE TABLE chat_held (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    text TEXT NOT NULL,
    reason TEXT NOT NULL,
    score BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_held_room ON chat_held(room, created_at);

CREATE TABLE chat_reports (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    message_id TEXT NOT NULL,
    reporter_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolved_by TEXT,
    UNIQUE (message_id, reporter_id)
);
CREATE INDEX chat_reports_room ON chat_reports(room, resolved_at);
