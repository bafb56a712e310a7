-- The payments area: donations and their payments, a double-entry ledger, refunds,
-- chargebacks, payouts, the events they publish, catalogs (gifts, items with key pools),
-- goals, alert settings, interactive donations and fraud blocks. Money is BIGINT in the
-- currency's minor unit (kopecks). Unique keys make every effect happen once.

CREATE TABLE donations (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    stream_id TEXT,
    donor_id TEXT,
    donor_key TEXT NOT NULL,
    donor_name TEXT NOT NULL,
    anonymous INTEGER NOT NULL,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    streamer_share BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    message TEXT,
    method TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_payment_id TEXT UNIQUE,
    idempotence_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    purpose TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    card_fingerprint TEXT,
    fraud TEXT,
    confirmation_url TEXT,
    return_url TEXT,
    failure_reason TEXT,
    refund_reason TEXT,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX donations_channel ON donations(channel_id, created_at);
CREATE INDEX donations_donor ON donations(donor_key, created_at);
CREATE INDEX donations_addr ON donations(client_addr, created_at);
CREATE INDEX donations_card ON donations(card_fingerprint, completed_at);
CREATE INDEX donations_status ON donations(status, created_at);

-- A row per donor, locked (updated) by every donation the donor starts, so parallel
-- donations cannot pass the daily limit together.
CREATE TABLE donor_limits (
    donor_key TEXT PRIMARY KEY,
    touched_at BIGINT NOT NULL
);

-- The ledger: every posting's entries sum to zero; an account's balance is the sum of its
-- entries (kept alongside, proven by `potok ledger reconcile`).
CREATE TABLE ledger_accounts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner_id TEXT,
    currency TEXT NOT NULL,
    balance BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE ledger_postings (
    id TEXT PRIMARY KEY,
    posting_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE ledger_entries (
    posting_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    PRIMARY KEY (posting_id, account_id)
);
CREATE INDEX ledger_entries_account ON ledger_entries(account_id);
CREATE INDEX ledger_postings_reference ON ledger_postings(reference);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    donation_id TEXT NOT NULL,
    provider_refund_id TEXT UNIQUE,
    amount BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    idempotence_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX refunds_donation ON refunds(donation_id);

CREATE TABLE chargebacks (
    id TEXT PRIMARY KEY,
    donation_id TEXT NOT NULL UNIQUE,
    reference TEXT NOT NULL UNIQUE,
    amount BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE payouts (
    id TEXT PRIMARY KEY,
    streamer_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    method TEXT NOT NULL,
    destination TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_payout_id TEXT UNIQUE,
    idempotence_key TEXT NOT NULL UNIQUE,
    failure_reason TEXT,
    created_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX payouts_streamer ON payouts(streamer_id, created_at);

-- Domain events (DonationProcessed, ChargebackReceived, PayoutCompleted ...), written in the
-- transaction of the change and dispatched after it; consumers record what they handled.
CREATE TABLE payment_events (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    dispatched_at BIGINT
);
CREATE INDEX payment_events_pending ON payment_events(dispatched_at, seq);
CREATE TABLE payment_event_counter (
    name TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
INSERT INTO payment_event_counter (name, last_seq) VALUES ('events', 0);

-- Overlay channels (`overlay:<channel>`): numbered events per channel, each from one key.
CREATE TABLE overlay_counters (
    channel TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
CREATE TABLE overlay_events (
    channel TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (channel, seq)
);
CREATE TABLE overlay_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX overlay_tokens_user ON overlay_tokens(user_id);

-- Notifications from events carry the event's key: each is added once.
ALTER TABLE notifications ADD COLUMN event_key TEXT;
CREATE UNIQUE INDEX notifications_event_key ON notifications(event_key);

-- Catalogs.
CREATE TABLE gifts (
    id TEXT PRIMARY KEY,
    owner_id TEXT,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price BIGINT NOT NULL,
    currency TEXT NOT NULL,
    image_url TEXT,
    animation TEXT,
    active INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX gifts_owner ON gifts(owner_id);
INSERT INTO gifts (id, owner_id, name, category, price, currency, image_url, animation, active, created_at) VALUES
    ('gift-rose', NULL, 'Роза', 'basic', 5000, 'RUB', NULL, 'float', 1, 0),
    ('gift-heart', NULL, 'Сердце', 'basic', 10000, 'RUB', NULL, 'pulse', 1, 0),
    ('gift-cup', NULL, 'Кубок', 'premium', 50000, 'RUB', NULL, 'spin', 1, 0),
    ('gift-rocket', NULL, 'Ракета', 'premium', 150000, 'RUB', NULL, 'launch', 1, 0);

CREATE TABLE catalog_items (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price BIGINT NOT NULL,
    currency TEXT NOT NULL,
    active INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX catalog_items_owner ON catalog_items(owner_id);
CREATE TABLE item_keys (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    donation_id TEXT UNIQUE,
    recipient_id TEXT,
    revealed_at BIGINT,
    added_at BIGINT NOT NULL
);
CREATE INDEX item_keys_free ON item_keys(item_id, donation_id);

-- Goals (donation goals and community goals) and viewer challenges.
CREATE TABLE donation_goals (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    target BIGINT NOT NULL,
    currency TEXT NOT NULL,
    deadline BIGINT,
    active INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX donation_goals_channel ON donation_goals(channel_id, active);
CREATE TABLE challenges (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    proposer_id TEXT NOT NULL,
    title TEXT NOT NULL,
    target BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX challenges_channel ON challenges(channel_id, status);
CREATE TABLE competitions (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    title TEXT NOT NULL,
    options TEXT NOT NULL,
    ends_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX competitions_channel ON competitions(channel_id, ends_at);
-- What each completed donation added to a goal, competition option or challenge (removed
-- again when it is refunded): totals are sums of these.
CREATE TABLE contributions (
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    donation_id TEXT NOT NULL,
    option_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    PRIMARY KEY (target_kind, target_id, donation_id)
);
CREATE INDEX contributions_donation ON contributions(donation_id);

-- Per-channel donation settings: alerts, the bloggers' register number, prices of
-- interactive donations.
CREATE TABLE donation_settings (
    channel_id TEXT PRIMARY KEY,
    alerts TEXT NOT NULL,
    registry_number TEXT,
    boost_price_per_minute BIGINT NOT NULL,
    request_price BIGINT NOT NULL,
    highlight_price BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE blocked_donors (
    channel_id TEXT NOT NULL,
    donor_key TEXT NOT NULL,
    reason TEXT NOT NULL,
    blocked_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, donor_key)
);

-- Song and game requests (the streamer's queue), highlights (moments for clips), boosts.
CREATE TABLE donation_requests (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    donation_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    link TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX donation_requests_channel ON donation_requests(channel_id, status, created_at);
CREATE TABLE highlights (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    stream_id TEXT,
    at_ms BIGINT NOT NULL,
    donation_id TEXT NOT NULL UNIQUE,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX highlights_channel ON highlights(channel_id, at_ms);
ALTER TABLE chat_rooms ADD COLUMN pinned_until BIGINT;

-- The sandbox provider's own books (what YooKassa keeps on its side).
CREATE TABLE sandbox_payments (
    id TEXT PRIMARY KEY,
    idempotence_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    method TEXT NOT NULL,
    donation_id TEXT,
    card_fingerprint TEXT,
    return_url TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE sandbox_refunds (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
