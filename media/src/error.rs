//! The one error type of the media parsers: what was malformed, never a panic.

/// Why bytes could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The input ended before a complete structure.
    #[error("{what}: truncated")]
    Truncated {
        /// The structure being read.
        what: &'static str,
    },
    /// A field holds a value the format does not allow.
    #[error("{what}: {why}")]
    Invalid {
        /// The structure being read.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Well-formed, but a codec or feature Potok does not handle (yet).
    #[error("unsupported {what}: {why}")]
    Unsupported {
        /// The structure being read.
        what: &'static str,
        /// What it is.
        why: String,
    },
}

impl MediaError {
    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        MediaError::Invalid {
            what,
            why: why.into(),
        }
    }
}

/// Result of a media parser.
pub type Result<T, E = MediaError> = std::result::Result<T, E>;
