-- Chat (the chat area owns these tables). A room per channel, named after the channel
-- (the streamer's username); every change to a room is an event with the room's next
-- sequence number, so clients resume from the last offset they saw and replicas deliver in
-- one order.
CREATE TABLE chat_rooms (
    room TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    -- Settings (ChatSettings): 0 / empty means off.
    slow_secs BIGINT NOT NULL DEFAULT 0,
    followers_only_minutes BIGINT,
    subscribers_only INTEGER NOT NULL DEFAULT 0,
    emote_only INTEGER NOT NULL DEFAULT 0,
    unique_chat INTEGER NOT NULL DEFAULT 0,
    min_account_age_secs BIGINT NOT NULL DEFAULT 0,
    links_allowed INTEGER NOT NULL DEFAULT 0,
    link_allow_list TEXT NOT NULL DEFAULT '[]',
    blocked_terms TEXT NOT NULL DEFAULT '[]',
    pinned_message_id TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE chat_messages (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL REFERENCES chat_rooms(room),
    seq BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    text TEXT NOT NULL,
    -- MessageContent beyond the text: mentions, links, emotes (JSON).
    content TEXT NOT NULL,
    platform TEXT NOT NULL,
    highlighted INTEGER NOT NULL DEFAULT 0,
    donation_amount BIGINT,
    created_at BIGINT NOT NULL,
    edited_at BIGINT,
    deleted_at BIGINT,
    moderation_reason TEXT
);
CREATE INDEX chat_messages_room ON chat_messages(room, seq);
CREATE INDEX chat_messages_user ON chat_messages(room, user_id, created_at);

-- The room's event log (messages, deletions, bans, clears, settings): what a reconnecting
-- client replays from its offset.
CREATE TABLE chat_events (
    room TEXT NOT NULL,
    seq BIGINT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room, seq)
);

CREATE TABLE chat_roles (
    room TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    added_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room, user_id)
);

-- A ban (until NULL) or a timeout (until a time).
CREATE TABLE chat_sanctions (
    room TEXT NOT NULL,
    user_id TEXT NOT NULL,
    until_ms BIGINT,
    reason TEXT NOT NULL,
    by_user TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room, user_id)
);

CREATE TABLE chat_modlog (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_modlog_room ON chat_modlog(room, created_at);

-- Follows (accounts area): who follows which channel since when.
CREATE TABLE follows (
    follower_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (follower_id, channel_id)
);
CREATE INDEX follows_channel ON follows(channel_id);
