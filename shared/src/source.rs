//! Where a visit came from: referrer and campaign tags → a source name and a channel.
//!
//! The rules, in order (the first that applies wins):
//! 1. a paid click id on the landing URL (`gclid`, `msclkid`, ...) or `utm_medium` naming a paid
//!    medium (`cpc`, `ppc`, `paid*`, `display`, ...) → channel `paid`;
//! 2. `utm_medium` = `email`/`newsletter` → `email`; a known social/search medium likewise;
//! 3. a referrer host found in [`KNOWN_SOURCES`] → that source's channel (`search`, `social`,
//!    `email`);
//! 4. any other referrer (or a `utm_source` without a recognisable medium) → `referral`;
//! 5. nothing → `direct`.
//!
//! The source *name* is the table's display name when the referrer (or `utm_source`) is known,
//! else the referrer host, else `utm_source` as sent. A referrer from the page's own host is an
//! internal navigation, not a source.

/// Traffic channel of a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Direct,
    Search,
    Social,
    Email,
    Paid,
    Referral,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Direct => "direct",
            Channel::Search => "search",
            Channel::Social => "social",
            Channel::Email => "email",
            Channel::Paid => "paid",
            Channel::Referral => "referral",
        }
    }

    /// Every channel, in display order.
    pub const ALL: [Channel; 6] = [
        Channel::Direct,
        Channel::Search,
        Channel::Social,
        Channel::Email,
        Channel::Paid,
        Channel::Referral,
    ];
}

/// Known referrers: host suffix (without `www.`), display name, channel. A host matches an entry
/// when it equals the suffix or ends with `.` + suffix; entries ending in `.` match any public
/// suffix after them (`google.` matches `google.de`, `google.co.uk`).
pub const KNOWN_SOURCES: &[(&str, &str, Channel)] = &[
    // search engines
    ("google.", "Google", Channel::Search),
    ("bing.com", "Bing", Channel::Search),
    ("duckduckgo.com", "DuckDuckGo", Channel::Search),
    ("search.yahoo.com", "Yahoo!", Channel::Search),
    ("yahoo.com", "Yahoo!", Channel::Search),
    ("yandex.", "Yandex", Channel::Search),
    ("baidu.com", "Baidu", Channel::Search),
    ("ecosia.org", "Ecosia", Channel::Search),
    ("search.brave.com", "Brave Search", Channel::Search),
    ("qwant.com", "Qwant", Channel::Search),
    ("startpage.com", "Startpage", Channel::Search),
    ("kagi.com", "Kagi", Channel::Search),
    ("naver.com", "Naver", Channel::Search),
    ("seznam.cz", "Seznam", Channel::Search),
    ("perplexity.ai", "Perplexity", Channel::Search),
    ("chatgpt.com", "ChatGPT", Channel::Search),
    // social networks and communities
    ("facebook.com", "Facebook", Channel::Social),
    ("m.facebook.com", "Facebook", Channel::Social),
    ("l.facebook.com", "Facebook", Channel::Social),
    ("instagram.com", "Instagram", Channel::Social),
    ("t.co", "Twitter", Channel::Social),
    ("twitter.com", "Twitter", Channel::Social),
    ("x.com", "Twitter", Channel::Social),
    ("linkedin.com", "LinkedIn", Channel::Social),
    ("lnkd.in", "LinkedIn", Channel::Social),
    ("reddit.com", "Reddit", Channel::Social),
    ("news.ycombinator.com", "Hacker News", Channel::Social),
    ("youtube.com", "YouTube", Channel::Social),
    ("tiktok.com", "TikTok", Channel::Social),
    ("pinterest.", "Pinterest", Channel::Social),
    ("mastodon.social", "Mastodon", Channel::Social),
    ("bsky.app", "Bluesky", Channel::Social),
    ("threads.net", "Threads", Channel::Social),
    ("vk.com", "VKontakte", Channel::Social),
    ("com.slack", "Slack", Channel::Social),
    ("app.slack.com", "Slack", Channel::Social),
    ("discord.com", "Discord", Channel::Social),
    ("telegram.org", "Telegram", Channel::Social),
    ("t.me", "Telegram", Channel::Social),
    ("whatsapp.com", "WhatsApp", Channel::Social),
    // web mail
    ("mail.google.com", "Gmail", Channel::Email),
    ("outlook.live.com", "Outlook", Channel::Email),
    ("mail.yahoo.com", "Yahoo! Mail", Channel::Email),
    ("mail.proton.me", "Proton Mail", Channel::Email),
];

/// Click-id query parameters of ad networks, with the channel they imply. They are stripped
/// from stored URLs; only which one was present is kept.
pub const CLICK_IDS: &[&str] = &[
    "gclid",
    "gbraid",
    "wbraid",
    "dclid",
    "msclkid",
    "fbclid",
    "ttclid",
    "twclid",
    "li_fat_id",
    "yclid",
    "igshid",
    "mc_eid",
];

/// Click ids that mean the visit came from a paid ad (the others are organic share ids).
const PAID_CLICK_IDS: &[&str] = &["gclid", "gbraid", "wbraid", "dclid", "msclkid", "yclid"];

/// The classification of one visit's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub channel: Channel,
}

/// Inputs of [`classify`], all already parsed (hosts lowercased, `www.` stripped).
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceInput<'a> {
    pub referrer_host: &'a str,
    /// Host of the page itself; a referrer from it is internal navigation.
    pub page_host: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    /// Name of the click-id parameter on the landing URL, empty when none.
    pub click_id: &'a str,
}

/// Look a host up in [`KNOWN_SOURCES`].
pub fn known_source(host: &str) -> Option<(&'static str, Channel)> {
    let host = host.strip_prefix("www.").unwrap_or(host);
    // Most specific first: `mail.google.com` must win over `google.`.
    let mut best: Option<(usize, &'static str, Channel)> = None;
    for &(pattern, name, channel) in KNOWN_SOURCES {
        let matched = if let Some(prefix) = pattern.strip_suffix('.') {
            // `google.` — `google.<tld>` or `<sub>.google.<tld>`, with a short public suffix.
            host_label_match(host, prefix)
        } else {
            host == pattern
                || host
                    .strip_suffix(pattern)
                    .is_some_and(|rest| rest.ends_with('.'))
        };
        if matched && best.is_none_or(|(len, _, _)| pattern.len() > len) {
            best = Some((pattern.len(), name, channel));
        }
    }
    best.map(|(_, name, channel)| (name, channel))
}

/// `host` is `<prefix>.<suffix>` or `<anything>.<prefix>.<suffix>` where the suffix is one or two
/// short labels (`de`, `co.uk`, `com.br`).
fn host_label_match(host: &str, prefix: &str) -> bool {
    // Cheap reject first: this runs for every known pattern on every event.
    if !host.contains(prefix) {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    labels.iter().enumerate().any(|(i, label)| {
        let rest = &labels[i + 1..];
        *label == prefix
            && !rest.is_empty()
            && rest.len() <= 2
            && rest.iter().all(|l| (2..=3).contains(&l.len()))
    })
}

fn medium_channel(medium: &str) -> Option<Channel> {
    let m = medium.to_ascii_lowercase();
    let paid = [
        "cpc",
        "ppc",
        "cpm",
        "cpv",
        "cpa",
        "display",
        "banner",
        "retargeting",
    ];
    if paid.contains(&m.as_str()) || m.starts_with("paid") {
        return Some(Channel::Paid);
    }
    match m.as_str() {
        "email" | "e-mail" | "e_mail" | "newsletter" => Some(Channel::Email),
        "social" | "social-network" | "social-media" | "sm" => Some(Channel::Social),
        "organic" | "search" => Some(Channel::Search),
        "referral" | "link" => Some(Channel::Referral),
        _ => None,
    }
}

/// Classify a visit. See the module docs for the rules.
pub fn classify(input: SourceInput<'_>) -> Source {
    let referrer = input
        .referrer_host
        .strip_prefix("www.")
        .unwrap_or(input.referrer_host);
    let page = input
        .page_host
        .strip_prefix("www.")
        .unwrap_or(input.page_host);
    let external_referrer = (!referrer.is_empty() && referrer != page).then_some(referrer);
    let known = external_referrer.and_then(known_source).or_else(|| {
        (!input.utm_source.is_empty())
            .then(|| known_source(&input.utm_source.to_ascii_lowercase()))
            .flatten()
    });
    let name = match (known, external_referrer) {
        (Some((name, _)), _) => name.to_owned(),
        (None, Some(host)) => host.to_owned(),
        (None, None) => input.utm_source.to_owned(),
    };
    let channel = if PAID_CLICK_IDS.contains(&input.click_id) {
        Channel::Paid
    } else if let Some(channel) = medium_channel(input.utm_medium) {
        channel
    } else if let Some((_, channel)) = known {
        channel
    } else if external_referrer.is_some() || !input.utm_source.is_empty() {
        Channel::Referral
    } else if !input.click_id.is_empty() {
        // An organic share id (fbclid, ...) without a referrer: the app hid it.
        Channel::Social
    } else {
        Channel::Direct
    };
    Source { name, channel }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_referrer(host: &str) -> Source {
        classify(SourceInput {
            referrer_host: host,
            page_host: "example.com",
            ..Default::default()
        })
    }

    #[test]
    fn search_engines_by_referrer_including_country_domains() {
        for host in [
            "google.com",
            "google.de",
            "www.google.co.uk",
            "google.com.br",
            "bing.com",
            "duckduckgo.com",
            "yandex.ru",
        ] {
            assert_eq!(from_referrer(host).channel, Channel::Search, "{host}");
        }
        assert_eq!(from_referrer("google.de").name, "Google");
    }

    #[test]
    fn look_alike_hosts_are_not_search_engines() {
        // `google.` must be a whole label followed by a short public suffix.
        assert_eq!(from_referrer("notgoogle.com").channel, Channel::Referral);
        assert_eq!(
            from_referrer("google.evil.example.com").channel,
            Channel::Referral
        );
        assert_eq!(from_referrer("fakebing.com").channel, Channel::Referral);
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let gmail = from_referrer("mail.google.com");
        assert_eq!(
            (gmail.name.as_str(), gmail.channel),
            ("Gmail", Channel::Email)
        );
        assert_eq!(from_referrer("l.facebook.com").name, "Facebook");
        assert_eq!(from_referrer("news.ycombinator.com").name, "Hacker News");
    }

    #[test]
    fn social_networks() {
        for host in [
            "t.co",
            "x.com",
            "reddit.com",
            "old.reddit.com",
            "linkedin.com",
            "com.slack",
        ] {
            assert_eq!(from_referrer(host).channel, Channel::Social, "{host}");
        }
    }

    #[test]
    fn unknown_referrer_is_a_referral_named_by_host() {
        let s = from_referrer("blog.rust-lang.org");
        assert_eq!(
            (s.name.as_str(), s.channel),
            ("blog.rust-lang.org", Channel::Referral)
        );
    }

    #[test]
    fn no_referrer_no_tags_is_direct_and_self_referrer_is_internal() {
        assert_eq!(
            from_referrer(""),
            Source {
                name: String::new(),
                channel: Channel::Direct
            }
        );
        assert_eq!(from_referrer("example.com").channel, Channel::Direct);
        assert_eq!(from_referrer("www.example.com").channel, Channel::Direct);
    }

    #[test]
    fn utm_medium_overrides_the_referrer() {
        let s = classify(SourceInput {
            referrer_host: "google.com",
            page_host: "example.com",
            utm_source: "google",
            utm_medium: "cpc",
            click_id: "",
        });
        assert_eq!((s.name.as_str(), s.channel), ("Google", Channel::Paid));
        let newsletter = classify(SourceInput {
            utm_source: "weekly",
            utm_medium: "Newsletter",
            page_host: "example.com",
            ..Default::default()
        });
        assert_eq!(
            (newsletter.name.as_str(), newsletter.channel),
            ("weekly", Channel::Email)
        );
    }

    #[test]
    fn paid_click_ids_mean_paid_and_share_ids_mean_social() {
        let ad = classify(SourceInput {
            referrer_host: "google.com",
            page_host: "example.com",
            click_id: "gclid",
            ..Default::default()
        });
        assert_eq!(ad.channel, Channel::Paid);
        let share = classify(SourceInput {
            page_host: "example.com",
            click_id: "fbclid",
            ..Default::default()
        });
        assert_eq!(share.channel, Channel::Social);
    }

    #[test]
    fn utm_source_alone_is_named_and_known_names_are_recognised() {
        let s = classify(SourceInput {
            utm_source: "partner-site",
            page_host: "example.com",
            ..Default::default()
        });
        assert_eq!(
            (s.name.as_str(), s.channel),
            ("partner-site", Channel::Referral)
        );
        let fb = classify(SourceInput {
            utm_source: "facebook.com",
            page_host: "example.com",
            ..Default::default()
        });
        assert_eq!(
            (fb.name.as_str(), fb.channel),
            ("Facebook", Channel::Social)
        );
    }

    #[test]
    fn every_table_entry_classifies_as_itself() {
        for &(pattern, name, channel) in KNOWN_SOURCES {
            let host = if pattern.ends_with('.') {
                format!("{pattern}com")
            } else {
                pattern.to_owned()
            };
            let s = from_referrer(&host);
            assert_eq!((s.name.as_str(), s.channel), (name, channel), "{host}");
        }
    }

    proptest::proptest! {
        /// Every input gets one of the six channels, direct exactly when nothing names a source.
        #[test]
        fn classification_is_total_and_direct_means_no_source(
            referrer in "[a-z.]{0,20}",
            utm_source in "[a-z]{0,6}",
            utm_medium in proptest::sample::select(vec!["", "cpc", "email", "social", "xyz"]),
            click_id in proptest::sample::select(vec!["", "gclid", "fbclid"]),
        ) {
            let s = classify(SourceInput {
                referrer_host: &referrer,
                page_host: "example.com",
                utm_source: &utm_source,
                utm_medium,
                click_id,
            });
            proptest::prop_assert!(Channel::ALL.contains(&s.channel));
            if s.channel == Channel::Direct {
                proptest::prop_assert!(s.name.is_empty());
            }
            if referrer.is_empty() && utm_source.is_empty() && utm_medium.is_empty() && click_id.is_empty() {
                proptest::prop_assert_eq!(s.channel, Channel::Direct);
            }
        }
    }
}
