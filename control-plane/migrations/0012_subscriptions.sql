-- The subscriptions area: per-channel tiers, one subscription per (channel, viewer), what
-- happened to each (history), and who is in which chat room (for gift series). Every charge
-- of a subscription is a donation of kind 'subscription' (migration 0010): the payments area
-- credits, refunds and charges it back once, with the ledger's subscription share.

CREATE TABLE subscription_tiers (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    price BIGINT NOT NULL,
    currency TEXT NOT NULL,
    privileges TEXT NOT NULL,
    badge TEXT NOT NULL,
    emotes TEXT NOT NULL,
    active INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (channel_id, code)
);
CREATE INDEX subscription_tiers_channel ON subscription_tiers(channel_id, price);

-- status: incomplete (first payment not made), active, past_due (a renewal failed: still
-- entitled until access_until, retried at retry_at), paused, cancelled, expired.
-- access_until is when the privileges end (chat and the like read only it and status).
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    tier_id TEXT NOT NULL,
    status TEXT NOT NULL,
    auto_renew INTEGER NOT NULL,
    cancel_at_period_end INTEGER NOT NULL,
    cancel_reason TEXT,
    payment_method_id TEXT,
    gifted_by TEXT,
    started_at BIGINT,
    period_start BIGINT,
    period_end BIGINT,
    access_until BIGINT NOT NULL,
    months BIGINT NOT NULL,
    paused_at BIGINT,
    pause_until BIGINT,
    retry_at BIGINT,
    failed_attempts BIGINT NOT NULL,
    pending_charge TEXT,
    last_charge TEXT,
    discount_percent BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (channel_id, user_id)
);
CREATE INDEX subscriptions_user ON subscriptions(user_id);
CREATE INDEX subscriptions_due ON subscriptions(status, period_end);
CREATE INDEX subscriptions_last_charge ON subscriptions(last_charge);

-- What happened, each once (event_key).
CREATE TABLE subscription_history (
    id TEXT PRIMARY KEY,
    event_key TEXT NOT NULL UNIQUE,
    subscription_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    tier_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    donation_id TEXT,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX subscription_history_user ON subscription_history(user_id, at);
CREATE INDEX subscription_history_sub ON subscription_history(subscription_id, at);

-- Signed-in users with a socket in a channel, per control-plane replica (beside the
-- per-channel counts of 0009), refreshed with them.
CREATE TABLE presence_users (
    replica TEXT NOT NULL,
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (replica, channel, user_id)
);
CREATE INDEX presence_users_channel ON presence_users(channel, updated_at);

-- The sandbox's saved payment methods (YooKassa's `save_payment_method`).
ALTER TABLE sandbox_payments ADD COLUMN save_method INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandbox_payments ADD COLUMN payment_method_id TEXT;
CREATE TABLE sandbox_payment_methods (
    id TEXT PRIMARY KEY,
    card_fingerprint TEXT,
    created_at BIGINT NOT NULL
);
