-- Per-channel custom emotes: the `:code:` names a room knows (emote-only mode accepts them).
ALTER TABLE chat_rooms ADD COLUMN emotes TEXT NOT NULL DEFAULT '[]';
