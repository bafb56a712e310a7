//! Message text checks, sans-IO: normalization for word matching (case, Latin/Cyrillic
//! look-alikes, leetspeak, repeated letters, zero-width and joiner characters, separators
//! inside words), blocked terms, link detection with an allow list, mentions.

/// Characters that render as nothing and are used to split a word past a filter.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{FE00}'..='\u{FE0F}'
    )
}

/// One canonical letter for characters that look or are typed alike: Cyrillic and Latin
/// homoglyphs fold to the Latin letter, leetspeak digits and symbols to the letter they
/// stand for, `ё` to `е`.
fn fold(c: char) -> Option<char> {
    let c = c.to_lowercase().next().unwrap_or(c);
    Some(match c {
        // Cyrillic letters that look like Latin ones.
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' | 'є' => 'e',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'і' | 'ї' => 'i',
        // Handwritten and italic и look like u; people type it so.
        'и' | 'й' => 'u',
        // Leetspeak.
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        '8' => 'b',
        c if c.is_alphanumeric() => c,
        _ => return None,
    })
}

/// The text as words of folded letters: separators inside a word (`f.u.c.k`, `f-u-c-k`) and
/// invisible characters vanish, runs of one letter collapse to one, whitespace splits words.
pub(crate) fn skeleton(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if invisible(c) {
            continue;
        }
        if c.is_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        if let Some(f) = fold(c)
            && !word.ends_with(f)
        {
            word.push(f);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Words refused everywhere (obscenities and slurs, Russian and English), as roots: a word
/// of a message that begins with a root's skeleton matches it.
pub(crate) const DEFAULT_BLOCKED: &[&str] = &[
    "fuck",
    "cunt",
    "nigger",
    "faggot",
    "хуй",
    "хуе",
    "хуё",
    "пизд",
    "ебат",
    "ебан",
    "ебал",
    "бляд",
    "блят",
    "пидор",
    "пидар",
    "мудак",
];

/// The first of `terms` that the text contains (a term's words must begin consecutive words
/// of the text, each after the same normalization).
pub(crate) fn blocked_term<'a>(
    text: &str,
    terms: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let words = skeleton(text);
    // Also the text with separators between single letters removed ("f u c k").
    let joined: String = words.concat();
    terms.into_iter().find(|term| {
        let t = skeleton(term);
        if t.is_empty() {
            return false;
        }
        let whole = t.concat();
        words
            .windows(t.len())
            .any(|w| w.iter().zip(&t).all(|(a, b)| a.starts_with(b.as_str())))
            || (words.iter().filter(|w| w.chars().count() == 1).count() >= 2
                && joined.contains(&whole))
    })
}

/// Insults and hostility that are not refused outright but make a message suspicious
/// (held for review at higher AutoMod levels).
const SUSPICIOUS: &[&str] = &[
    "идиот",
    "дурак",
    "тупой",
    "тупая",
    "дебил",
    "лох",
    "сука",
    "урод",
    "stupid",
    "idiot",
    "dumb",
    "loser",
    "moron",
    "shit",
    "bitch",
    "retard",
];
/// Worse: wishing harm.
const HOSTILE: &[&str] = &["kys", "kill yourself", "убей себя", "сдохни"];

/// How suspicious a message looks, 0 (not at all) to 4, and why: insults, hostility,
/// shouting, repetition, many mentions. AutoMod level L holds messages scoring 5 - L or more.
pub(crate) fn suspicion(text: &str) -> (u8, &'static str) {
    let mut score = 0u8;
    let mut why = "";
    if blocked_term(text, HOSTILE.iter().copied()).is_some() {
        score += 3;
        why = "hostility";
    }
    if blocked_term(text, SUSPICIOUS.iter().copied()).is_some() {
        score += 2;
        if why.is_empty() {
            why = "insult";
        }
    }
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.len() >= 10
        && letters.iter().filter(|c| c.is_uppercase()).count() * 10 >= letters.len() * 7
    {
        score += 1;
        if why.is_empty() {
            why = "shouting";
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let repeated_word = words
        .iter()
        .any(|w| words.iter().filter(|x| x.eq_ignore_ascii_case(w)).count() >= 5);
    let mut run = 1;
    let mut repeated_char = false;
    let mut prev = None;
    for c in text.chars() {
        if Some(c) == prev {
            run += 1;
            repeated_char |= run >= 10;
        } else {
            run = 1;
        }
        prev = Some(c);
    }
    if repeated_word || repeated_char {
        score += 1;
        if why.is_empty() {
            why = "repetition";
        }
    }
    if mentions(text).len() >= 4 {
        score += 1;
        if why.is_empty() {
            why = "mass mentions";
        }
    }
    (score.min(4), why)
}

/// Domains of the links in `text` (`https://x.ru/...`, `www.x.com`, `x.ru/path`).
pub(crate) fn links(text: &str) -> Vec<String> {
    const TLDS: &[&str] = &[
        "ru", "su", "рф", "com", "net", "org", "io", "tv", "gg", "me", "xyz", "info", "biz", "co",
        "us", "uk", "de", "by", "kz", "ua", "app", "dev", "link", "site", "online", "shop", "top",
        "club", "live", "stream", "ly", "be", "to", "cc",
    ];
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let token = token.trim_matches(|c: char| "()[]<>\"'.,!?;:".contains(c));
        let rest = token
            .split_once("://")
            .map_or(token, |(_, r)| r)
            .trim_start_matches("www.");
        let host = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .split('@')
            .next_back()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .to_lowercase();
        let has_scheme = token.contains("://");
        let Some((_, tld)) = host.rsplit_once('.') else {
            continue;
        };
        let labels_ok = host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
        if labels_ok && (has_scheme || TLDS.contains(&tld)) {
            out.push(host);
        }
    }
    out
}

/// Whether `domain` is `allowed` or one of its subdomains.
pub(crate) fn domain_allowed(domain: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        let a = a.trim().trim_start_matches("www.").to_lowercase();
        !a.is_empty() && (domain == a || domain.ends_with(&format!(".{a}")))
    })
}

/// Usernames mentioned as `@name`.
pub(crate) fn mentions(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| c.is_whitespace() || ",.!?;:()".contains(c))
        .filter_map(|t| t.strip_prefix('@'))
        .map(str::to_lowercase)
        .filter(|n| {
            (3..=32).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether the text is emotes only: no letters or digits at all (Unicode emoji, symbols) or
/// only `:name:` custom emote codes from `emotes`.
pub(crate) fn emote_only(text: &str, emotes: &[String]) -> bool {
    text.split_whitespace().all(|t| {
        !t.chars().any(char::is_alphanumeric)
            || t.strip_prefix(':')
                .and_then(|t| t.strip_suffix(':'))
                .is_some_and(|name| emotes.iter().any(|e| e == name))
    })
}

/// The text for duplicate detection (unique-chat mode, flood control): case, invisible
/// characters, spacing and letter look-alikes do not make a message new; digits and
/// punctuation do ("round 1" and "round 11" differ).
pub(crate) fn fingerprint(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| !invisible(*c))
                .map(|c| match fold(c) {
                    Some(f) if c.is_alphabetic() => f,
                    _ => c.to_lowercase().next().unwrap_or(c),
                })
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_leetspeak_repeats_and_invisible_characters_match() {
        let terms = ["дурак", "badword"];
        for text in [
            "ты дурак",
            "ты ДУРАК!",
            "ты дураки",
            "ты дуррррак",
            "ты д\u{200B}у\u{200D}рак",
            "ты дyрaк",          // Latin y and a inside Cyrillic
            "that is a b4dw0rd", // leetspeak
            "BADWORD",
            "b.a.d.w.o.r.d",
            "b a d w o r d",
            "baaaddwooord",
            "Ьadword", // not a look-alike we fold: must not match
        ] {
            let found = blocked_term(text, terms.iter().copied());
            if text.starts_with('Ь') {
                assert_eq!(found, None, "{text}");
            } else {
                assert!(found.is_some(), "{text} passed");
            }
        }
        for text in [
            "a fine message",
            "дуга",
            "bad word",
            "привет всем",
            "class assignment",
        ] {
            assert_eq!(blocked_term(text, terms.iter().copied()), None, "{text}");
        }
    }

    #[test]
    fn default_terms_cover_both_languages() {
        assert!(blocked_term("what the fuuuck", DEFAULT_BLOCKED.iter().copied()).is_some());
        assert!(blocked_term("ну ПИЗДЕЦ", DEFAULT_BLOCKED.iter().copied()).is_some());
        assert!(blocked_term("пиииздец", DEFAULT_BLOCKED.iter().copied()).is_some());
        assert!(blocked_term("хорошая игра, ребята", DEFAULT_BLOCKED.iter().copied()).is_none());
        assert!(blocked_term("скрипт для застрахуй", DEFAULT_BLOCKED.iter().copied()).is_none());
    }

    proptest::proptest! {
        /// Any text (chat text is untrusted): every check answers, none panics.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,600}", term in "\\PC{0,40}") {
            let _ = skeleton(&text);
            let _ = blocked_term(&text, [term.as_str()].into_iter().chain(DEFAULT_BLOCKED.iter().copied()));
            let _ = links(&text);
            let _ = mentions(&text);
            let _ = emote_only(&text, std::slice::from_ref(&term));
            let _ = suspicion(&text);
            proptest::prop_assert!(fingerprint(&text).len() <= text.len() * 4 + 4);
        }
    }

    #[test]
    fn suspicion_scores() {
        assert_eq!(suspicion("good game everyone").0, 0);
        assert_eq!(suspicion("ты идиот").0, 2);
        assert_eq!(suspicion("kys").0, 3);
        assert_eq!(suspicion("ТЫ ИДИОТ ПОЛНЫЙ КОНЕЧНО").0, 3);
        assert_eq!(suspicion("spam spam spam spam spam").0, 1);
        assert_eq!(suspicion("kys idiot @aaa @bbb @ccc @ddd").0, 4);
    }

    #[test]
    fn links_are_found_with_their_domains() {
        assert_eq!(
            links("see https://Evil.example/x and www.shop.ru, also t.me/chan and 3.14 or a.b"),
            vec!["evil.example", "shop.ru", "t.me"]
        );
        assert!(links("no links here, just text.").is_empty());
        let allow = vec!["youtube.com".to_owned()];
        assert!(domain_allowed("youtube.com", &allow));
        assert!(domain_allowed("m.youtube.com", &allow));
        assert!(!domain_allowed("notyoutube.com", &allow));
    }

    #[test]
    fn mentions_and_emotes() {
        assert_eq!(
            mentions("hi @Alice and @bob, @x @alice"),
            vec!["alice", "bob"]
        );
        let emotes = vec!["potokHype".to_owned()];
        assert!(emote_only("🔥🔥 :potokHype:", &emotes));
        assert!(!emote_only("🔥 hello", &emotes));
        assert!(!emote_only(":other:", &emotes));
        assert_eq!(fingerprint("HELLO   wоrld"), fingerprint("hello world"));
        assert_ne!(fingerprint("round 1"), fingerprint("round 11"));
    }
}
