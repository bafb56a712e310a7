-- Notifications (the notifications area): a numbered feed per user (its offset is what a
-- reconnecting socket resumes from), and an outbox an external delivery service (push, mail,
-- Telegram) consumes at least once.
CREATE TABLE notification_counters (
    user_id TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE notifications (
    user_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at BIGINT,
    PRIMARY KEY (user_id, seq)
);

CREATE TABLE notification_outbox (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX notification_outbox_age ON notification_outbox(created_at, id);
