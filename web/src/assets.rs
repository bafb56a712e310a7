//! The pages' scripts, styles and the vendored hls.js, embedded in the binary. Each has a
//! content hash: pages link `/assets/NAME?v=HASH`, answered with a year of `immutable`
//! caching; any other request revalidates with the hash as its `ETag`.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// The name under `/assets/`.
    pub name: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static FILES: &[Asset] = &[
    Asset {
        name: "potok.css",
        content_type: CSS,
        body: include_bytes!("../assets/potok.css"),
    },
    Asset {
        name: "overlay.css",
        content_type: CSS,
        body: include_bytes!("../assets/overlay.css"),
    },
    Asset {
        name: "common.js",
        content_type: JS,
        body: include_bytes!("../assets/common.js"),
    },
    Asset {
        name: "chat.js",
        content_type: JS,
        body: include_bytes!("../assets/chat.js"),
    },
    Asset {
        name: "directory.js",
        content_type: JS,
        body: include_bytes!("../assets/directory.js"),
    },
    Asset {
        name: "watch.js",
        content_type: JS,
        body: include_bytes!("../assets/watch.js"),
    },
    Asset {
        name: "account.js",
        content_type: JS,
        body: include_bytes!("../assets/account.js"),
    },
    Asset {
        name: "dashboard.js",
        content_type: JS,
        body: include_bytes!("../assets/dashboard.js"),
    },
    Asset {
        name: "alerts.js",
        content_type: JS,
        body: include_bytes!("../assets/alerts.js"),
    },
    Asset {
        name: "overlay.js",
        content_type: JS,
        body: include_bytes!("../assets/overlay.js"),
    },
    Asset {
        name: "hls.min.js",
        content_type: JS,
        body: include_bytes!("../assets/vendor/hls.min.js"),
    },
    Asset {
        name: "hls.js.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../assets/vendor/hls.js.LICENSE"),
    },
];

/// The embedded file called `name`.
pub fn get(name: &str) -> Option<&'static Asset> {
    FILES.iter().find(|a| a.name == name)
}

/// The first 16 hex digits of the SHA-256 of `name`'s bytes (empty for an unknown name).
pub fn hash(name: &str) -> &'static str {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    let hashes = HASHES.get_or_init(|| {
        FILES
            .iter()
            .map(|a| {
                let d = Sha256::digest(a.body);
                d.iter().take(8).map(|b| format!("{b:02x}")).collect()
            })
            .collect()
    });
    FILES
        .iter()
        .position(|a| a.name == name)
        .map_or("", |i| hashes[i].as_str())
}

/// `/assets/NAME?v=HASH`.
pub fn url(name: &str) -> String {
    format!("/assets/{name}?v={}", hash(name))
}
