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
    /// Not a browser's user-agent: unknown to woothee and without the `Mozilla/` token every
    /// browser sends, or with control characters. Only applied to unsigned (browser) traffic:
    /// signed server senders may send their own client name.
    Garbage,
}

impl BotReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmptyUserAgent => "empty_user_agent",
            Self::KnownCrawler => "known_crawler",
            Self::DenyList => "deny_list",
            Self::Garbage => "garbage_user_agent",
        }
    }
}

/// Case-insensitive substrings that mark automated clients.
const DENY_LIST: &[&str] = &[
    "bot",
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

/// Shortest user-agent we believe can come from a real browser.
const MIN_BROWSER_UA_LEN: usize = 12;

/// Distinct user-agent strings whose verdict is remembered. Real traffic repeats a few thousand
/// strings (browser × version × OS); parsing one costs woothee plus the deny list (~3 µs, about
/// a tenth of the edge's CPU per request before this cache).
const CACHE_ENTRIES: usize = 16_384;

/// Parses user agents, remembering recent verdicts; shared by all requests.
pub struct UserAgentParser {
    cache: quick_cache::sync::Cache<String, Result<ClientInfo, BotReason>>,
}

impl Default for UserAgentParser {
    fn default() -> Self {
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
        if !signed
            && (ua.chars().any(char::is_control)
                || (client.browser == "Unknown" && !ua.contains("Mozilla/")))
        {
            return Err(BotReason::Garbage);
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
    fn garbage_is_a_bot_unless_a_signed_server_sent_it() {
        for ua in [
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "billing-service/2.1",
            "Mozilla/5.0 \u{7}\u{8} x",
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
