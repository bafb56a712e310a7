-- Attempts are counted before they are judged (issue 11): every login, stream-key check and
-- sign-up writes its row first and then counts, so parallel requests cannot all pass a check
-- made before any of them was recorded. `kind` separates the limits ('auth' failures,
-- 'signup'); a row is removed again when its attempt succeeds (a right password) or when the
-- attempt is refused outright, so an address holds at most its limit's worth of rows.
CREATE TABLE rate_events (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    addr TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX rate_events_kind_addr ON rate_events(kind, addr, at);
DROP TABLE auth_failures;

-- The installation's first account becomes its admin: whoever inserts the one row of this
-- table inside their sign-up transaction. Installations that already have users are seeded
-- with the oldest one, so no later sign-up can claim it.
CREATE TABLE first_admin (
    slot INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL
);
INSERT INTO first_admin (slot, user_id)
    SELECT 1, id FROM users ORDER BY created_at, id LIMIT 1;

-- Public stream names that configuration owns (`origin.streams`, the demo stream): origins
-- send them when they register; no account may take one of them.
CREATE TABLE reserved_names (
    name TEXT PRIMARY KEY,
    node_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
