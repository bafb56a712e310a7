-- Failed logins and refused stream keys per client address, shared by every control-plane
-- replica; rows older than the one-minute window are swept.
CREATE TABLE auth_failures (
    addr TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX auth_failures_addr ON auth_failures(addr, at);
