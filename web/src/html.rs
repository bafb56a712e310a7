//! HTML shells. Every page is a shell rendered here (title, navigation, the language
//! switch, the page's data) plus scripts that build the rest with `textContent`: no user
//! text is ever put into markup by a script, and what the server puts there goes through
//! [`escape`] (text and attributes) or [`json_for_script`] (the page's data block).

use crate::assets;
use crate::i18n::Lang;

/// `s` safe inside element text and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that cannot end or break out of a `<script type="application/json">` element:
/// `<`, `>`, `&` and the JavaScript line separators are written as `\u` escapes.
pub fn json_for_script(v: &serde_json::Value) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// What a shell shows.
pub struct Shell<'a> {
    /// The language.
    pub lang: Lang,
    /// The `<title>` (already translated, not yet escaped).
    pub title: String,
    /// `directory`, `watch`, `login`, `signup`, `account`, `dashboard`, `overlay`, `notfound`.
    pub page: &'a str,
    /// The page's data for its scripts (merged with `lang` and the dictionary).
    pub data: serde_json::Value,
    /// Scripts after `common.js`, by asset name.
    pub scripts: &'a [&'a str],
    /// The path of this page (for the language switch to come back to).
    pub path: &'a str,
    /// An overlay: transparent, no navigation.
    pub overlay: bool,
}

/// The whole document.
pub fn render(s: &Shell<'_>) -> String {
    let lang = s.lang;
    let mut data = s.data.clone();
    if let Some(obj) = data.as_object_mut() {
        obj.insert("lang".into(), lang.code().into());
        obj.insert("page".into(), s.page.into());
        let dict: serde_json::Map<String, serde_json::Value> = lang
            .dict()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        obj.insert("dict".into(), dict.into());
    }
    let css = if s.overlay {
        "overlay.css"
    } else {
        "potok.css"
    };
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"");
    out.push_str(lang.code());
    out.push_str("\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\"><title>");
    out.push_str(&escape(&s.title));
    out.push_str("</title><link rel=\"stylesheet\" href=\"");
    out.push_str(&assets::url(css));
    out.push_str("\"></head><body class=\"page-");
    out.push_str(&escape(s.page));
    out.push_str("\">");
    if !s.overlay {
        out.push_str(&nav(lang, s.path));
    }
    out.push_str("<main id=\"app\"><noscript>");
    out.push_str(&escape(&lang.t("noscript", &[])));
    out.push_str("</noscript></main><script type=\"application/json\" id=\"boot\">");
    out.push_str(&json_for_script(&data));
    out.push_str("</script><script src=\"");
    out.push_str(&assets::url("common.js"));
    out.push_str("\"></script>");
    for script in s.scripts {
        out.push_str("<script src=\"");
        out.push_str(&assets::url(script));
        out.push_str("\"></script>");
    }
    out.push_str("</body></html>\n");
    out
}

fn nav(lang: Lang, path: &str) -> String {
    let link = |href: &str, key: &str, id: &str| {
        format!(
            "<a href=\"{}\" id=\"{id}\">{}</a>",
            escape(href),
            escape(&lang.t(key, &[]))
        )
    };
    let next = escape(&percent_encode(path));
    let switch = |code: &str, label: &str| {
        let current = if code == lang.code() {
            " aria-current=\"true\""
        } else {
            ""
        };
        format!(
            "<a href=\"/lang/{code}?next={next}\" id=\"lang-{code}\" hreflang=\"{code}\"{current}>{label}</a>"
        )
    };
    format!(
        "<header class=\"top\"><a class=\"brand\" href=\"/\">{}</a><nav>{}{}<span id=\"nav-user\">{}{}</span></nav><span class=\"lang\" title=\"{}\">{} {}</span></header>",
        escape(&lang.t("brand", &[])),
        link("/", "nav.directory", "nav-directory"),
        link("/dashboard", "nav.dashboard", "nav-dashboard"),
        link("/login", "nav.login", "nav-login"),
        link("/signup", "nav.signup", "nav-signup"),
        escape(&lang.t("lang.switch", &[])),
        switch("ru", "RU"),
        switch("en", "EN"),
    )
}

/// Percent-encodes everything but unreserved characters and `/` (for a path in a query).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<img src=x onerror="alert('1')">&"#),
            "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn json_cannot_close_the_script_element() {
        let v = serde_json::json!({"t": "</script><script>alert(1)</script>\u{2028}&"});
        let s = json_for_script(&v);
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn the_shell_escapes_its_title_and_data() {
        let html = render(&Shell {
            lang: Lang::En,
            title: "<b>x</b>".into(),
            page: "watch",
            data: serde_json::json!({"channel": "</script><img src=x onerror=alert(1)>"}),
            scripts: &["watch.js"],
            path: "/\"><script>",
            overlay: false,
        });
        assert!(html.contains("<title>&lt;b&gt;x&lt;/b&gt;</title>"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("\"><script>"));
        assert_eq!(html.matches("<script").count(), 3, "{html}");
        assert!(html.contains(&assets::url("watch.js")));
    }
}
