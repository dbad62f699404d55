//! User-agent parsing (woothee) and the bot verdict. The raw string never leaves this module's
//! callers: only the parsed fields go into the enriched event.

use woothee::parser::Parser;

/// What we keep of a user-agent string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    pub browser: String,
    /// Major version only: finer versions add cardinality, not insight.
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    /// `desktop`, `mobile`, `tablet` or `other`.
    pub device: String,
}

/// Why a request was classified as a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotReason {
    /// No user-agent, or one too short to come from a browser.
    EmptyUserAgent,
    /// woothee recognises a crawler.
    KnownCrawler,
    /// The user-agent matches the deny list (tools, headless browsers, monitors).
    DenyList,
    /// The user-agent matches a pattern of the published crawler list (`edge/data/crawler-patterns.txt`).
    CrawlerList,
    /// Not on any list, but shaped like an automated client: a URL or e-mail address in it, a
    /// word browsers never send (`crawler`, `feed`, `monitor`, `http`…), or IE's `compatible;`
    /// token without IE.
    BotShape,
    /// Not a browser's user-agent: unknown to woothee and without the `Mozilla/` token every
    /// browser sends, without the parenthesised platform every browser sends, or with control
    /// characters. Only applied to unsigned (browser) traffic: signed server senders may send
    /// their own client name.
    Garbage,
    /// The referrer's host is on the referrer-spam list (not a user-agent verdict; counted with
    /// the bots because it is automated traffic too).
    ReferrerSpam,
    /// The client address is in a data-centre network and the site drops such traffic.
    DataCentre,
}

impl BotReason {
    /// Every reason, for exporting each site's series at 0 from the start.
    pub const ALL: [BotReason; 8] = [
        Self::EmptyUserAgent,
        Self::KnownCrawler,
        Self::DenyList,
        Self::CrawlerList,
        Self::BotShape,
        Self::Garbage,
        Self::ReferrerSpam,
        Self::DataCentre,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmptyUserAgent => "empty_user_agent",
            Self::KnownCrawler => "known_crawler",
            Self::DenyList => "deny_list",
            Self::CrawlerList => "crawler_list",
            Self::BotShape => "bot_shape",
            Self::Garbage => "garbage_user_agent",
            Self::ReferrerSpam => "referrer_spam",
            Self::DataCentre => "datacenter",
        }
    }
}

/// Case-insensitive substrings that mark automated clients.
const DENY_LIST: &[&str] = &[
    "crawl",
    "spider",
    "slurp",
    "headlesschrome",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "lighthouse",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "okhttp",
    "axios/",
    "node-fetch",
    "httpclient",
    "libwww-perl",
    "scrapy",
    "pingdom",
    "uptimerobot",
    "statuscake",
    "facebookexternalhit",
    "preview",
];

/// The published crawler list, one RE2 pattern per line (`edge/data/refresh` rebuilds it).
const CRAWLER_PATTERNS: &str = include_str!("../data/crawler-patterns.txt");

/// Shapes no browser's user-agent has, matched against the lower-cased string (the crawler list
/// is matched as it is, case-sensitively, as its own tests do). Written from
/// what browsers send (a product token, a parenthesised platform, engine and version tokens),
/// not from any one crawler list, so that bots no list knows yet are caught too.
const BOT_SHAPES: &[&str] = &[
    // An address to contact the operator: crawlers advertise one, browsers never do.
    r"https?:|www\.|@[a-z0-9-]+\.[a-z]|[a-z0-9]\.(?:com|net|org|io|info)\b",
    // Words that name what a client does, not what it is.
    r"crawl|spider|scrap(?:e|er|ing)\b|fetch|monitor|checker|check\b|validat|archiv|heritrix|\bfeed|rss|reader\b|aggregat",
    r"\bscan|probe\b|audit|\bseo\b|analy[sz]|inspect|verif(?:y|ier|ication)|screenshot|thumbnail|headless|render(?:er|tron)",
    r"\bindex(?:er|ing)\b|search(?:engine|bot)|\bproxy\b|\bhttp|\blib[a-z]*/|library|\bsdk\b|\bclient\b",
    // HTTP libraries and runtimes.
    r"python|java[/ ]|\bperl\b|\bruby/|\bphp|\bcurl\b|wget|\bgo-|\bnode[./ ]|deno/|\bdart(?:/|:io)|reqwest|aiohttp|httpx|guzzle|okhttp|winhttp|\blwp\b",
    // Headless and automation.
    r"phantomjs|puppeteer|playwright|selenium|webdriver|cypress|splash\b|\bprerender",
    // A "bot" word: Googlebot, bot/1.0, a_bot; not the Cubot phone brand.
    r"bot(?:\b|[_/;-])|robot",
    // Browsers close the engine's comment at "like Gecko)"; fetchers append themselves to it.
    r"like gecko;|\bgoogle-|duplexweb|cloudflare|transcoder|advisor|measure|prospect|agent\b",
    // Templates and builds no browser ships: `Firefox/firefoxversion`, `-SNAPSHOT`, a
    // millisecond timestamp as a product, probes for secrets.
    r"(?:firefox|chrome|safari)/[a-z]{3}|-snapshot\b|\btime/\d{10}|\.env\b|\bcms/",
    // Feed readers and monitors that name themselves and nothing else.
    r"netnewswire|akregator|\bdaum|jiankong",
    // Two user agents glued together (`Thumbor/6.7, Mozilla/5.0 …`, `iphone|Mozilla/5.0`), a
    // version run into the next product (`Chrome/105.0.0.0MQQBrowser`), injection probes.
    r", mozilla/|\||/\d+(?:\.\d+)+[a-z]{2,}/|'\+\(select|load_file|burpcollaborator",
    // Second round, from isbot's fixtures (see edge/tests/bot_corpora.rs).
    r"scanner|classifier|dejaclick|wechatdevtools|qcloudcdn|googleweblight|\bcursor/\d",
];

/// The compiled lists, built once per process when the first parser is made; the verdict cache
/// keeps them off the path of repeated user agents.
struct Rules {
    crawlers: regex::Regex,
    shapes: regex::Regex,
}

static RULES: std::sync::LazyLock<Rules> = std::sync::LazyLock::new(|| Rules {
    crawlers: alternation(
        CRAWLER_PATTERNS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty()),
    ),
    shapes: alternation(BOT_SHAPES.iter().copied()),
});

/// One regex matching any of `patterns`. The lists are part of the binary and
/// a test compiles them, so a pattern that does not compile is a build defect, not an input.
fn alternation<'a>(patterns: impl Iterator<Item = &'a str>) -> regex::Regex {
    let joined = patterns
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    regex::RegexBuilder::new(&joined)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
        .expect("the compiled-in user-agent lists are valid regexes")
}

/// Whether a user agent that claims `Mozilla/` has the platform comment browsers send:
/// `Mozilla/5.0 (Windows NT 10.0; Win64; x64)`, several `;`-separated parts. Crawlers write
/// `Mozilla/5.0 (Morningscore/1.0)` or `(compatible; Name/1.0; +url)`; IE's own
/// `(compatible; MSIE 10.0; …)` and a few others are browsers.
fn mozilla_shaped(ua: &str) -> bool {
    let Some(rest) = ua.strip_prefix("Mozilla/") else {
        return true;
    };
    let Some(open) = rest.find('(') else {
        // `Mozilla/5.0 Name/1.0`: no platform at all. (Some logs strip the parentheses of
        // real browsers' strings; those keep their `;`.)
        return rest.contains(';');
    };
    let after_open = &rest[open + 1..];
    let close = after_open.find(')').unwrap_or(after_open.len());
    let comment = &after_open[..close];
    if !comment.contains(';') {
        // `(Windows NT 5.1)` or `(Linux armv7l)` before an engine token is a browser;
        // `(Morningscore/1.0)` or `(Mixnode)` with nothing after it is not.
        let engine = ["AppleWebKit/", "Gecko/", "Presto/", "Trident/"]
            .iter()
            .any(|e| after_open[close..].contains(e));
        return engine && !comment.contains('/') && comment != "compatible";
    }
    match comment.strip_prefix("compatible;") {
        None => true,
        Some(after) => {
            let after = after.trim_start();
            ["MSIE ", "Konqueror/", "IEMobile", "Linux", "U;", "Windows"]
                .iter()
                .any(|p| after.starts_with(p))
                && !after.starts_with("MSIE or")
        }
    }
}

/// Checks that apply to unsigned (browser) traffic only: every browser sends `Mozilla/` (or is
/// known to woothee) and no control characters.
fn browser_shaped(ua: &str, client: &ClientInfo) -> Result<(), BotReason> {
    if ua.chars().any(char::is_control) {
        return Err(BotReason::Garbage);
    }
    if client.browser == "Unknown" && !ua.contains("Mozilla/") {
        return Err(BotReason::Garbage);
    }
    Ok(())
}

/// Shortest user-agent we believe can come from a real browser.
const MIN_BROWSER_UA_LEN: usize = 12;

/// Distinct user-agent strings whose verdict is remembered. Real traffic repeats a few thousand
/// strings (browser × version × OS); a verdict costs woothee, the lists and the shape rules, a
/// remembered one a cache lookup, roughly ten times less (`cargo bench --bench hot -- user_agent`).
const CACHE_ENTRIES: usize = 16_384;

/// Parses user agents, remembering recent verdicts; shared by all requests.
pub struct UserAgentParser {
    cache: quick_cache::sync::Cache<String, Result<ClientInfo, BotReason>>,
}

impl Default for UserAgentParser {
    fn default() -> Self {
        // At start-up, not on the first request.
        std::sync::LazyLock::force(&RULES);
        Self {
            cache: quick_cache::sync::Cache::new(CACHE_ENTRIES),
        }
    }
}

impl std::fmt::Debug for UserAgentParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgentParser")
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl UserAgentParser {
    /// `Err(reason)` for bots, otherwise the parsed client. `signed`: the request came from an
    /// authenticated server sender, whose client name need not look like a browser's.
    pub fn classify_request(&self, ua: &str, signed: bool) -> Result<ClientInfo, BotReason> {
        let client = match self.cache.get(ua) {
            Some(verdict) => verdict?,
            None => {
                let verdict = self.classify(ua);
                // Only user agents of a sane size are kept: a flood of unique giant strings
                // must not evict real ones for long or hold much memory.
                if ua.len() <= 512 {
                    self.cache.insert(ua.to_owned(), verdict.clone());
                }
                verdict?
            }
        };
        if !signed {
            browser_shaped(ua, &client)?;
        }
        Ok(client)
    }

    /// `Err(reason)` for bots, otherwise the parsed client.
    pub fn classify(&self, ua: &str) -> Result<ClientInfo, BotReason> {
        let ua = ua.trim();
        if ua.len() < MIN_BROWSER_UA_LEN {
            return Err(BotReason::EmptyUserAgent);
        }
        let lower = ua.to_ascii_lowercase();
        let parsed = Parser::new().parse(ua);
        if parsed.as_ref().is_some_and(|r| r.category == "crawler") {
            return Err(BotReason::KnownCrawler);
        }
        if DENY_LIST.iter().any(|needle| lower.contains(needle)) {
            return Err(BotReason::DenyList);
        }
        let rules = &*RULES;
        if rules.crawlers.is_match(ua) {
            return Err(BotReason::CrawlerList);
        }
        // The Cubot phone brand is the one browser that names a bot.
        let shape_input = if lower.contains("cubot") {
            std::borrow::Cow::Owned(lower.replace("cubot", "cu-phone"))
        } else {
            std::borrow::Cow::Borrowed(lower.as_str())
        };
        if rules.shapes.is_match(&shape_input) || !mozilla_shaped(ua) {
            return Err(BotReason::BotShape);
        }
        let Some(r) = parsed else {
            return Ok(ClientInfo {
                browser: "Unknown".into(),
                os: "Unknown".into(),
                device: "other".into(),
                ..ClientInfo::default()
            });
        };
        let device = match r.category {
            "pc" => "desktop",
            "smartphone" | "mobilephone" if lower.contains("ipad") || lower.contains("tablet") => {
                "tablet"
            }
            "smartphone" | "mobilephone" => "mobile",
            _ => "other",
        };
        let major = r.version.split('.').next().unwrap_or_default();
        Ok(ClientInfo {
            browser: known_or_unknown(r.name),
            browser_version: if major == "UNKNOWN" {
                String::new()
            } else {
                major.to_owned()
            },
            os: known_or_unknown(r.os),
            os_version: if r.os_version == "UNKNOWN" {
                String::new()
            } else {
                r.os_version.into_owned()
            },
            device: device.to_owned(),
        })
    }
}

fn known_or_unknown(s: &str) -> String {
    if s == "UNKNOWN" {
        "Unknown".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
        (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) \
        AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

    #[test]
    fn parses_desktop_chrome_with_major_version() {
        let c = UserAgentParser::default().classify(CHROME_WINDOWS).unwrap();
        assert_eq!(c.browser, "Chrome");
        assert_eq!(c.browser_version, "120");
        assert_eq!(c.os, "Windows 10");
        assert_eq!(c.device, "desktop");
    }

    #[test]
    fn parses_mobile_safari_and_firefox() {
        let c = UserAgentParser::default().classify(SAFARI_IPHONE).unwrap();
        assert_eq!(
            (c.browser.as_str(), c.os.as_str(), c.device.as_str()),
            ("Safari", "iPhone", "mobile")
        );
        let f = UserAgentParser::default().classify(FIREFOX_LINUX).unwrap();
        assert_eq!(
            (f.browser.as_str(), f.browser_version.as_str()),
            ("Firefox", "121")
        );
        assert_eq!(f.os, "Linux");
    }

    #[test]
    fn known_crawlers_are_bots() {
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert_eq!(
            UserAgentParser::default().classify(google),
            Err(BotReason::KnownCrawler)
        );
    }

    #[test]
    fn tools_and_headless_browsers_are_bots() {
        for ua in [
            "curl/8.4.0",
            "python-requests/2.31.0",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        ] {
            assert!(UserAgentParser::default().classify(ua).is_err(), "{ua}");
        }
    }

    #[test]
    fn bots_no_list_names_are_caught_by_shape() {
        // Made-up names first: only their shape gives them away.
        for ua in [
            "Mozilla/5.0 (compatible; Zorblax/1.0; +https://zorblax.example/about)",
            "Mozilla/5.0 (Zorblax/2.1)",
            "Mozilla/5.0 Zorblax/2.1",
            "Zorblax-Feed-Parser/1.0",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko; Zorblax-Preview) Chrome/120.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 ZorblaxMonitor",
            "Mozilla/5.0 (compatible) zorblax",
            "zorblax-http-client/0.3 (contact admin@zorblax.example)",
            // The issue's misses, as the corpora have them.
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/78.0.3904.108 Safari/537.36 DareBoost",
            "Mozilla/5.0 (X11; Linux x86_64; rv:45.0; Rigor) Gecko/20100101 Firefox/45.0",
            "Mozilla/5.0 (compatible; OhDear/1.1; +https://ohdear.app/checker; brokenLinks)",
            "Mozilla/5.0 (compatible; Google-Site-Verification/1.0)",
            "Mozilla/5.0 (compatible; Ezgif/1.0; +https://ezgif.com/about)",
            "Google-NotebookLM",
            "flieder - neofonie heritrix/1.14.3 (+http://spider.neofonie.de)",
            // Shown as a browser on the dashboard before: a feed reader in a browser's clothes.
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 RSSReader/4.2",
        ] {
            assert!(
                UserAgentParser::default()
                    .classify_request(ua, false)
                    .is_err(),
                "{ua}"
            );
        }
        // Browsers whose strings come close: a Cubot phone, IE's `compatible;`, XP's comment
        // without `;`, a TV.
        for ua in [
            "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
            "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; Trident/6.0)",
            "Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/49.0.2623.112 Safari/537.36",
            "Mozilla/5.0 (Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/84.0 Safari/537.36 OPR/46.0",
            "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1; Trident/7.0; SLCC2; .NET CLR 2.0.50727)",
        ] {
            assert!(
                UserAgentParser::default()
                    .classify_request(ua, false)
                    .is_ok(),
                "{ua}"
            );
        }
    }

    #[test]
    fn the_compiled_in_lists_compile() {
        assert!(RULES.crawlers.is_match("Googlebot/2.1"));
        assert!(!RULES.crawlers.is_match(CHROME_WINDOWS));
        assert!(!RULES.shapes.is_match(&CHROME_WINDOWS.to_ascii_lowercase()));
    }

    #[test]
    fn garbage_is_a_bot_unless_a_signed_server_sent_it() {
        for ua in [
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "billing-service/2.1",
            "Mozilla/5.0 (X11; \u{7}\u{8}) x",
        ] {
            assert_eq!(
                UserAgentParser::default().classify_request(ua, false),
                Err(BotReason::Garbage),
                "{ua}"
            );
        }
        assert!(
            UserAgentParser::default()
                .classify_request("billing-service/2.1", true)
                .is_ok()
        );
        // An unknown browser that still looks like one is a visitor.
        assert!(
            UserAgentParser::default()
                .classify_request("Mozilla/5.0 (X11; FooOS) SomeNewBrowser/1.0", false)
                .is_ok()
        );
        assert!(
            UserAgentParser::default()
                .classify_request(CHROME_WINDOWS, false)
                .is_ok()
        );
        // Signed or not, a crawler is a crawler.
        assert!(
            UserAgentParser::default()
                .classify_request("curl/8.4.0", true)
                .is_err()
        );
    }

    #[test]
    fn cached_verdicts_equal_fresh_ones() {
        let parser = UserAgentParser::default();
        for ua in [
            CHROME_WINDOWS,
            SAFARI_IPHONE,
            "curl/8.4.0",
            "",
            "garbage-garbage-garbage",
        ] {
            let first = parser.classify_request(ua, false);
            assert_eq!(parser.classify_request(ua, false), first, "{ua}");
            assert_eq!(
                first,
                UserAgentParser::default().classify_request(ua, false)
            );
        }
        // The signed exemption for garbage is applied after the cache.
        assert!(
            parser
                .classify_request("garbage-garbage-garbage", true)
                .is_ok()
        );
    }

    #[test]
    fn empty_and_tiny_user_agents_are_bots() {
        assert_eq!(
            UserAgentParser::default().classify(""),
            Err(BotReason::EmptyUserAgent)
        );
        assert_eq!(
            UserAgentParser::default().classify("   x  "),
            Err(BotReason::EmptyUserAgent)
        );
    }
}
