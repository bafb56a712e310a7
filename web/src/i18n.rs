//! Russian and English: the dictionaries (`web/i18n/*.json`, embedded), the choice of a
//! language for a request (the `potok_lang` cookie set by the switch, then
//! `Accept-Language`, then `web.default_language`) and money in minor units.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A language the pages are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Russian.
    Ru,
    /// English.
    En,
}

/// The cookie the language switch sets.
pub const COOKIE: &str = "potok_lang";

impl Lang {
    /// `ru` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    /// `ru` → Russian, `en` → English, anything else none.
    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "ru" => Some(Lang::Ru),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The dictionary's source text (JSON object of key → text).
    pub fn source(self) -> &'static str {
        match self {
            Lang::Ru => include_str!("../i18n/ru.json"),
            Lang::En => include_str!("../i18n/en.json"),
        }
    }

    /// The dictionary.
    pub fn dict(self) -> &'static BTreeMap<String, String> {
        static RU: OnceLock<BTreeMap<String, String>> = OnceLock::new();
        static EN: OnceLock<BTreeMap<String, String>> = OnceLock::new();
        let cell = match self {
            Lang::Ru => &RU,
            Lang::En => &EN,
        };
        // A dictionary that fails to parse is caught by this crate's tests; at run time it
        // degrades to showing keys.
        cell.get_or_init(|| serde_json::from_str(self.source()).unwrap_or_default())
    }

    /// The text for `key` with `{name}` placeholders filled from `vars` (the key itself when
    /// the dictionary lacks it).
    pub fn t(self, key: &str, vars: &[(&str, &str)]) -> String {
        let mut s = self
            .dict()
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_owned());
        for (name, value) in vars {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }
}

/// The language of a request: the switch's cookie, then the best of Russian and English in
/// `Accept-Language` (Russian for every `ru-*` locale), then `default`.
pub fn choose(cookie_header: Option<&str>, accept_language: Option<&str>, default: Lang) -> Lang {
    if let Some(lang) = cookie_header
        .and_then(|h| cookie(h, COOKIE))
        .and_then(Lang::from_code)
    {
        return lang;
    }
    accept_language
        .and_then(from_accept_language)
        .unwrap_or(default)
}

/// A cookie's value from a `Cookie` header (the first of that name), bounded.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .take(64)
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim())
}

/// The best-weighted of Russian and English in an `Accept-Language` value; ties go to the
/// one listed first. Looks at the first 32 entries of the first 1 KiB only.
fn from_accept_language(header: &str) -> Option<Lang> {
    let mut end = header.len().min(1024);
    while !header.is_char_boundary(end) {
        end -= 1;
    }
    let mut best: Option<(Lang, f32)> = None;
    for entry in header[..end].split(',').take(32) {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        let Some(lang) = Lang::from_code(primary) else {
            continue;
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        // q=0 means "not this one"; NaN is not a weight.
        if q.is_nan() || q <= 0.0 {
            continue;
        }
        if best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map(|(l, _)| l)
}

/// `amount` minor units of `currency` the way `lang` writes money: `1 234,56 ₽` in Russian,
/// `₽1,234.56` in English (the pages do the same with `Intl.NumberFormat`; this is for
/// server-rendered text). Currencies other than RUB, USD and EUR show their code.
pub fn money(amount: i64, currency: &str, lang: Lang) -> String {
    let negative = amount < 0;
    let abs = amount.unsigned_abs();
    let (whole, cents) = (abs / 100, abs % 100);
    let digits = whole.to_string();
    let sep = match lang {
        Lang::Ru => '\u{a0}',
        Lang::En => ',',
    };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(sep);
        }
        grouped.push(c);
    }
    let symbol = match currency {
        "RUB" => "₽",
        "USD" => "$",
        "EUR" => "€",
        other => other,
    };
    let sign = if negative { "-" } else { "" };
    match lang {
        Lang::Ru => format!("{sign}{grouped},{cents:02}\u{a0}{symbol}"),
        Lang::En => format!("{sign}{symbol}{grouped}.{cents:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dictionaries_parse_and_have_the_same_keys() {
        let ru: BTreeMap<String, String> = serde_json::from_str(Lang::Ru.source()).unwrap();
        let en: BTreeMap<String, String> = serde_json::from_str(Lang::En.source()).unwrap();
        assert!(ru.len() > 50);
        let missing: Vec<_> = ru.keys().filter(|k| !en.contains_key(*k)).collect();
        let extra: Vec<_> = en.keys().filter(|k| !ru.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{missing:?} {extra:?}"
        );
        assert_ne!(ru["nav.login"], en["nav.login"]);
    }

    #[test]
    fn the_cookie_wins_then_accept_language_then_the_default() {
        let ru_browser = Some("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7");
        assert_eq!(choose(None, ru_browser, Lang::En), Lang::Ru);
        assert_eq!(
            choose(Some("a=b; potok_lang=en"), ru_browser, Lang::Ru),
            Lang::En
        );
        assert_eq!(
            choose(Some("potok_lang=xx"), Some("en-GB"), Lang::Ru),
            Lang::En
        );
        assert_eq!(choose(None, Some("de-DE,de;q=0.9"), Lang::Ru), Lang::Ru);
        assert_eq!(choose(None, Some("de-DE,de;q=0.9"), Lang::En), Lang::En);
        assert_eq!(choose(None, Some("en;q=0.5, ru;q=0.8"), Lang::En), Lang::Ru);
        assert_eq!(choose(None, Some("ru;q=0, en"), Lang::Ru), Lang::En);
        assert_eq!(choose(None, Some("uk, ru_UA;q=0.7"), Lang::En), Lang::Ru);
    }

    #[test]
    fn accept_language_is_bounded_and_never_panics() {
        let long = "xx;q=0.1,".repeat(10_000) + "ru";
        assert_eq!(choose(None, Some(&long), Lang::En), Lang::En);
        for s in [
            "",
            ";",
            ";;q=",
            "ru;q=abc",
            "é;q=1",
            "ru;q=NaN",
            "\u{fffd},,,",
        ] {
            let _ = choose(Some(s), Some(s), Lang::Ru);
        }
        let cut = "ё".repeat(600);
        let _ = choose(None, Some(&cut), Lang::Ru);
    }

    #[test]
    fn money_is_rubles_with_kopecks() {
        assert_eq!(money(50_000, "RUB", Lang::Ru), "500,00\u{a0}₽");
        assert_eq!(money(12_345_678, "RUB", Lang::Ru), "123\u{a0}456,78\u{a0}₽");
        assert_eq!(money(105, "RUB", Lang::En), "₽1.05");
        assert_eq!(money(100_000_000, "USD", Lang::En), "$1,000,000.00");
        assert_eq!(money(-5, "KZT", Lang::Ru), "-0,05\u{a0}KZT");
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            Lang::En.t("title.watch", &[("channel", "alice")]),
            "alice on Potok"
        );
        assert_eq!(Lang::Ru.t("no.such.key", &[]), "no.such.key");
    }
}
