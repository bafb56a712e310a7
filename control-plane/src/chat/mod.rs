//! The chat area: a room per channel (named after the streamer), messages with the seed's
//! `ChatMessage`/`MessageContent` shape, moderation (delete, timeout, ban, moderators and
//! VIPs, a moderation log), room modes (slow, followers-only, emote-only, unique chat,
//! minimum account age, links), filters (length, per-user rate, duplicates, blocked terms
//! after normalization, links with an allow list) and follows.
//!
//! Data enters as REST calls ([`routes`]) and gateway frames (`realtime::gateway`); every
//! change to a room is written with the room's next sequence number into `chat_events` in
//! the same transaction as the change ([`store`]), then published on the bus, so clients on
//! any replica see one order and resume from an offset. This area owns the `chat_*` and
//! `follows` tables; it reads accounts only through `Db::user`/`user_by_name`.

pub(crate) mod filter;
pub(crate) mod routes;
pub(crate) mod store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A chat message (the seed's `ChatMessage`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// Id.
    pub id: String,
    /// The room (the channel's name).
    pub room_id: String,
    /// The room's sequence number of the event that created it.
    pub seq: i64,
    /// Author.
    pub user_id: String,
    /// Author's name.
    pub username: String,
    /// Text, mentions, links, emotes.
    pub content: MessageContent,
    /// Unix milliseconds.
    pub timestamp: i64,
    /// Where it was written: `potok` (other platforms' chats join later).
    pub platform: String,
    /// Whether a moderator removed it.
    pub is_moderated: bool,
    /// Why, when it was removed.
    pub moderation_reason: Option<String>,
    /// Reactions.
    pub reactions: Vec<MessageReaction>,
    /// Highlighted (paid highlight, donation).
    pub is_highlighted: bool,
    /// Sent with a donation.
    pub is_donation_message: bool,
    /// The donation, in kopecks.
    pub donation_amount: Option<i64>,
    /// Unix milliseconds of the last edit.
    pub edited_at: Option<i64>,
}

/// The seed's `MessageContent`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageContent {
    /// The text as written.
    pub text: String,
    /// Custom emote codes used (`:name:`).
    pub emojis: Vec<String>,
    /// Users mentioned as `@name` that exist.
    pub mentions: Vec<UserMention>,
    /// Link domains.
    pub links: Vec<String>,
    /// The author's subscriber badge in this channel (tier and months), when subscribed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<Box<crate::subscriptions::ChatBadge>>,
}

/// A mentioned user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserMention {
    /// Id.
    pub user_id: String,
    /// Name.
    pub username: String,
}

/// The seed's `MessageReaction`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageReaction {
    /// The emoji.
    pub emoji: String,
    /// How many reacted.
    pub count: i64,
    /// Who.
    pub users: Vec<String>,
}

/// A room's settings (the seed's `ChatSettings`). A change replaces them all: absent
/// fields are off.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ChatSettings {
    /// Seconds between two messages of one user (0: off).
    #[schema(minimum = 0, maximum = 86400)]
    #[serde(deserialize_with = "crate::api::whole")]
    pub slow_secs: i64,
    /// Only users following the channel for at least this many minutes may write.
    #[schema(minimum = 0, maximum = 525600)]
    #[serde(deserialize_with = "crate::api::whole_opt")]
    pub followers_only_minutes: Option<i64>,
    /// Only subscribers may write (subscriptions arrive with their own issue: until then
    /// only the channel's moderators, VIPs and owner write in this mode).
    pub subscribers_only: bool,
    /// Only emotes (Unicode emoji and the channel's `:codes:`).
    pub emote_only: bool,
    /// The same text may be said once per 10 minutes in the room.
    pub unique_chat: bool,
    /// Accounts younger than this many seconds may not write.
    #[schema(minimum = 0, maximum = 31536000)]
    #[serde(deserialize_with = "crate::api::whole")]
    pub min_account_age_secs: i64,
    /// Whether links are allowed (otherwise only domains of `link_allow_list`).
    pub links_allowed: bool,
    /// Domains always allowed (`youtube.com` covers its subdomains).
    #[schema(max_items = 100, value_type = Vec<crate::api::Bounded<1, 253>>)]
    pub link_allow_list: Vec<String>,
    /// The channel's blocked terms (matched after normalization, as word prefixes).
    #[schema(max_items = 500, value_type = Vec<crate::api::Bounded<1, 100>>)]
    pub blocked_terms: Vec<String>,
    /// The pinned message.
    pub pinned_message_id: Option<String>,
    /// The channel's custom emotes, used as `:code:` (letters, digits, `_`; 1-32 each).
    #[schema(max_items = 200, value_type = Vec<EmoteCode>)]
    pub emotes: Vec<String>,
    /// AutoMod: 0 off; 1-4 hold more and more suspicious messages (insults, hostility,
    /// shouting, repetition, mass mentions) until a moderator allows or denies them.
    #[schema(minimum = 0, maximum = 4)]
    #[serde(deserialize_with = "crate::api::whole")]
    pub automod_level: i64,
}

/// An emote code as the OpenAPI document describes it (bodies carry plain strings).
pub(crate) struct EmoteCode;

impl utoipa::PartialSchema for EmoteCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Za-z0-9_]{1,32}$"))
            .into()
    }
}

impl ToSchema for EmoteCode {}

/// What became of a sent message.
#[derive(Clone, Debug, PartialEq)]
pub enum Sent {
    /// Posted to the room.
    Posted(ChatMessage),
    /// Held for a moderator (AutoMod).
    Held(HeldMessage),
}

/// A message waiting for a moderator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeldMessage {
    /// Id (to allow or deny it).
    pub id: String,
    /// Author.
    pub user_id: String,
    /// Author's name.
    pub username: String,
    /// The text.
    pub text: String,
    /// Why it was held.
    pub reason: String,
    /// Its AutoMod score (1-4).
    pub score: i64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A user's report of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Report {
    /// Id.
    pub id: String,
    /// The message reported.
    pub message_id: String,
    /// Who reported it.
    pub reporter_id: String,
    /// Why.
    pub reason: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// What happens in a room, as the gateway sends it (`{"kind": ..., ...}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A new message.
    Message {
        /// It.
        message: ChatMessage,
    },
    /// A message was changed by its author.
    Edited {
        /// It, as it is now.
        message: ChatMessage,
    },
    /// A message was removed.
    Deleted {
        /// Its id.
        message_id: String,
        /// Why, when a moderator removed it.
        reason: Option<String>,
    },
    /// A user was timed out (`until` set) or banned; their recent messages are hidden.
    UserSanctioned {
        /// Who.
        user_id: String,
        /// Unix milliseconds, for a timeout.
        until: Option<i64>,
        /// Messages hidden with it.
        hidden: Vec<String>,
    },
    /// A ban or timeout was lifted.
    UserPardoned {
        /// Who.
        user_id: String,
    },
    /// Every message was removed.
    Cleared,
    /// The settings changed.
    Settings {
        /// As they are now.
        settings: ChatSettings,
    },
    /// A message's reactions changed.
    Reactions {
        /// The message.
        message_id: String,
        /// Its reactions now.
        reactions: Vec<MessageReaction>,
    },
}

/// An event with its place in the room's order: what travels on the bus and to clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sequenced {
    /// The room.
    pub room: String,
    /// Its sequence number in the room (1, 2, 3, ... without gaps).
    pub seq: i64,
    /// What happened.
    pub event: ChatEvent,
}

/// The gateway channel of a room.
pub(crate) fn channel_of(room: &str) -> String {
    format!("chat:{room}")
}
