//! Page URLs and referrers: host, path and UTM campaign parameters.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use url::{Position, Url, form_urlencoded};

/// UTM campaign parameters, empty strings when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    #[serde(rename = "utm_source", default)]
    pub source: String,
    #[serde(rename = "utm_medium", default)]
    pub medium: String,
    #[serde(rename = "utm_campaign", default)]
    pub campaign: String,
    #[serde(rename = "utm_term", default)]
    pub term: String,
    #[serde(rename = "utm_content", default)]
    pub content: String,
}

/// The parts of a page URL that analytics needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageUrl {
    pub host: String,
    /// Path without query or fragment, always starting with `/`.
    pub path: String,
    pub utm: Utm,
    /// The first ad click-id parameter present (one of [`crate::source::CLICK_IDS`]), empty
    /// when none. Only its name: the value identifies one click.
    pub click_id: String,
    /// The URL as stored: scheme, lowercased host, path and the query without campaign tags
    /// (`utm_*`), click ids or other tracking parameters; no fragment, no user info.
    pub normalized: String,
}

/// Query parameters removed from stored URLs besides `utm_*` and the click ids: they identify a
/// mailing or a person, not a page.
pub const TRACKING_PARAMS: &[&str] = &[
    "_ga",
    "_gl",
    "_hsenc",
    "_hsmi",
    "mc_cid",
    "mkt_tok",
    "oly_anon_id",
    "oly_enc_id",
    "vero_id",
    "ref_src",
    "__s",
    "s_cid",
];

/// Longest UTM value kept; longer values are truncated on a character boundary.
pub const MAX_UTM_VALUE_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageUrlError {
    #[error("is not an absolute URL: {0}")]
    Invalid(#[from] url::ParseError),
    #[error("must use http or https, not `{0}`")]
    Scheme(String),
    #[error("has no host")]
    NoHost,
}

impl PageUrl {
    /// Parse an absolute `http(s)` page URL.
    ///
    /// One walk over the query: each `&`-separated pair is decoded (borrowed, without
    /// allocating, unless it holds `+` or `%` escapes), checked for UTM tags and click ids,
    /// and, unless it is a tracking parameter, appended to the stored URL. A kept pair is
    /// copied as it is when re-encoding it would give back the same bytes, and re-encoded
    /// (`application/x-www-form-urlencoded`, as `url::form_urlencoded::Serializer` does)
    /// otherwise, so the stored URL is the same as decoding every kept pair and serializing
    /// them all again.
    pub fn parse(raw: &str) -> Result<Self, PageUrlError> {
        Self::parse_keeping(raw, |_| true)
    }

    /// [`PageUrl::parse`], keeping in the stored URL only the query parameters `keep` accepts
    /// (besides dropping tracking parameters): the edge keeps a site's `url_query_params`, so
    /// tokens, e-mail addresses and other query values a report never uses are not stored. UTM
    /// tags and the click id's name are read from the whole query either way.
    pub fn parse_keeping(raw: &str, keep: impl Fn(&str) -> bool) -> Result<Self, PageUrlError> {
        let url = Url::parse(raw)?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(PageUrlError::Scheme(url.scheme().to_owned()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(PageUrlError::NoHost)?
            .to_ascii_lowercase();
        let path = url.path();
        // Scheme, host, `:port` when not the default one, and path: no user info.
        let mut normalized = String::with_capacity(url.as_str().len());
        normalized.push_str(url.scheme());
        normalized.push_str("://");
        normalized.push_str(&host);
        normalized.push_str(&url[Position::AfterHost..Position::AfterPath]);
        let mut utm = Utm::default();
        let mut click_id = String::new();
        let mut kept_any = false;
        let mut query = url.query().unwrap_or("");
        while let Some(pair) = QueryPair::next(&mut query) {
            let key = pair.key.as_ref();
            let click = crate::source::CLICK_IDS.iter().find(|id| **id == key);
            if click_id.is_empty()
                && let Some(id) = click
            {
                click_id = (*id).to_owned();
            }
            if let Some(field) = key.strip_prefix("utm_") {
                let slot = match field {
                    "source" => Some(&mut utm.source),
                    "medium" => Some(&mut utm.medium),
                    "campaign" => Some(&mut utm.campaign),
                    "term" => Some(&mut utm.term),
                    "content" => Some(&mut utm.content),
                    _ => None,
                };
                if let Some(slot) = slot.filter(|slot| slot.is_empty()) {
                    *slot = truncate_utm_value(&pair.value);
                }
                continue;
            }
            if click.is_some() || TRACKING_PARAMS.contains(&key) || !keep(key) {
                continue;
            }
            normalized.push(if kept_any { '&' } else { '?' });
            kept_any = true;
            if pair.canonical {
                normalized.push_str(pair.raw);
            } else {
                normalized.extend(form_urlencoded::byte_serialize(key.as_bytes()));
                normalized.push('=');
                normalized.extend(form_urlencoded::byte_serialize(pair.value.as_bytes()));
            }
        }
        Ok(Self {
            host,
            path: path.to_owned(),
            utm,
            click_id,
            normalized,
        })
    }
}

/// One non-empty `name[=value]` piece of a query, decoded as `url::form_urlencoded::parse`
/// decodes it.
struct QueryPair<'a> {
    /// The piece as it is in the query.
    raw: &'a str,
    key: Cow<'a, str>,
    value: Cow<'a, str>,
    /// Re-encoding the decoded pair gives back the piece byte for byte: it has exactly one
    /// `=`, and every other byte is one `byte_serialize` leaves as it is, or a `+` (decoded to
    /// a space, encoded back to `+`).
    canonical: bool,
}

impl<'a> QueryPair<'a> {
    /// The first non-empty piece of `query`, which is advanced past it; `None` at the end.
    /// One walk over the bytes finds the piece's end, its first `=`, whether it needs decoding
    /// and whether it is canonical (cheaper than `str::split`'s searcher on short pieces).
    fn next(query: &mut &'a str) -> Option<Self> {
        loop {
            if query.is_empty() {
                return None;
            }
            let mut end = query.len();
            let mut first_equals = None;
            let mut equals = 0;
            let mut escaped = false;
            let mut canonical = true;
            for (i, b) in query.bytes().enumerate() {
                match b {
                    b'&' => {
                        end = i;
                        break;
                    }
                    b'=' => {
                        first_equals.get_or_insert(i);
                        equals += 1;
                    }
                    b'+' => escaped = true,
                    b'%' => {
                        escaped = true;
                        canonical = false;
                    }
                    b'*' | b'-' | b'.' | b'_' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => {}
                    _ => canonical = false,
                }
            }
            // `&` and `=` are ASCII: every index here is a character boundary.
            let raw = &query[..end];
            *query = query.get(end + 1..).unwrap_or("");
            if raw.is_empty() {
                continue;
            }
            let (key, value) = if escaped {
                form_urlencoded::parse(raw.as_bytes())
                    .next()
                    .expect("a non-empty piece is one pair")
            } else {
                match first_equals {
                    Some(i) => (Cow::Borrowed(&raw[..i]), Cow::Borrowed(&raw[i + 1..])),
                    None => (Cow::Borrowed(raw), Cow::Borrowed("")),
                }
            };
            return Some(Self {
                raw,
                key,
                value,
                canonical: canonical && equals == 1,
            });
        }
    }
}

/// A UTM value as stored: its first [`MAX_UTM_VALUE_CHARS`] characters.
fn truncate_utm_value(value: &str) -> String {
    if value.len() <= MAX_UTM_VALUE_CHARS {
        // Never more characters than bytes.
        value.to_owned()
    } else {
        value.chars().take(MAX_UTM_VALUE_CHARS).collect()
    }
}

/// Host of a referrer URL, lowercased and without a leading `www.`; empty when the referrer is
/// empty or not a URL.
pub fn referrer_host(referrer: &str) -> String {
    referrer_parts(referrer).0
}

/// A referrer as stored: its host (lowercased, without a leading `www.`) and the referrer
/// reduced to what a report uses, origin and path (`https://news.example.com/item`), without
/// query, fragment or user info, where a search term, a session token or an e-mail address
/// would be. App referrers keep their scheme (`android-app://com.slack/`). Both empty when the
/// referrer is empty or not a URL with a host.
pub fn referrer_parts(referrer: &str) -> (String, String) {
    let Ok(url) = Url::parse(referrer) else {
        return (String::new(), String::new());
    };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return (String::new(), String::new());
    };
    let host = host.to_ascii_lowercase();
    let mut stored = String::with_capacity(referrer.len());
    stored.push_str(url.scheme());
    stored.push_str("://");
    stored.push_str(&host);
    stored.push_str(&url[Position::AfterHost..Position::AfterPath]);
    let host = host.strip_prefix("www.").map(str::to_owned).unwrap_or(host);
    (host, stored)
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy;

    use super::*;

    #[test]
    fn a_site_keeps_only_the_query_parameters_it_lists() {
        let raw =
            "https://shop.example/search?q=shoes&token=s3cret&email=a%40b.c&utm_source=news&page=2";
        let keep = ["q", "page"];
        let page = PageUrl::parse_keeping(raw, |k| keep.contains(&k)).unwrap();
        assert_eq!(
            page.normalized,
            "https://shop.example/search?q=shoes&page=2"
        );
        assert_eq!(
            page.utm.source, "news",
            "UTM tags are read from the whole query"
        );
        let none = PageUrl::parse_keeping(raw, |_| false).unwrap();
        assert_eq!(none.normalized, "https://shop.example/search");
    }

    #[test]
    fn a_referrer_is_stored_as_origin_and_path_only() {
        assert_eq!(
            referrer_parts("https://user:pw@www.Example.com:8443/item/42?session=s3cret&q=x#frag"),
            (
                "example.com".into(),
                "https://www.example.com:8443/item/42".into()
            )
        );
        assert_eq!(
            referrer_parts("android-app://com.google.android.gm/"),
            (
                "com.google.android.gm".into(),
                "android-app://com.google.android.gm/".into()
            )
        );
        assert_eq!(referrer_parts("not a url"), (String::new(), String::new()));
        assert_eq!(
            referrer_host("https://www.google.com/search?q=x"),
            "google.com"
        );
    }

    fn is_tracking_param(key: &str) -> bool {
        key.starts_with("utm_")
            || crate::source::CLICK_IDS.contains(&key)
            || TRACKING_PARAMS.contains(&key)
    }

    /// The first implementation of [`PageUrl::parse`], kept as the reference the faster one
    /// must match byte for byte: two walks over the decoded query pairs, the kept pairs
    /// copied and serialized again.
    fn parse_reference(raw: &str) -> Result<PageUrl, PageUrlError> {
        let url = Url::parse(raw)?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(PageUrlError::Scheme(url.scheme().to_owned()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(PageUrlError::NoHost)?
            .to_ascii_lowercase();
        let mut utm = Utm::default();
        let mut click_id = String::new();
        for (key, value) in url.query_pairs() {
            if click_id.is_empty()
                && let Some(id) = crate::source::CLICK_IDS.iter().find(|id| **id == key)
            {
                click_id = (*id).to_owned();
            }
            let slot = match key.as_ref() {
                "utm_source" => &mut utm.source,
                "utm_medium" => &mut utm.medium,
                "utm_campaign" => &mut utm.campaign,
                "utm_term" => &mut utm.term,
                "utm_content" => &mut utm.content,
                _ => continue,
            };
            if slot.is_empty() {
                *slot = value.chars().take(MAX_UTM_VALUE_CHARS).collect();
            }
        }
        let mut normalized = format!("{}://{host}", url.scheme());
        if let Some(port) = url.port() {
            normalized.push_str(&format!(":{port}"));
        }
        normalized.push_str(url.path());
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !is_tracking_param(k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if !kept.is_empty() {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish();
            normalized.push('?');
            normalized.push_str(&query);
        }
        Ok(PageUrl {
            host,
            path: url.path().to_owned(),
            utm,
            click_id,
            normalized,
        })
    }

    /// The fast parser gives exactly what the reference gives, error or page.
    #[track_caller]
    fn assert_same_as_reference(raw: &str) {
        assert_eq!(PageUrl::parse(raw), parse_reference(raw), "for {raw:?}");
    }

    #[test]
    fn extracts_host_path_and_every_utm_field() {
        let page = PageUrl::parse(
            "https://Shop.Example.com/p/42?utm_source=newsletter&utm_medium=email\
             &utm_campaign=black%20friday&utm_term=shoes&utm_content=top&x=1#frag",
        )
        .unwrap();
        assert_eq!(page.host, "shop.example.com");
        assert_eq!(page.path, "/p/42");
        assert_eq!(
            page.utm,
            Utm {
                source: "newsletter".into(),
                medium: "email".into(),
                campaign: "black friday".into(),
                term: "shoes".into(),
                content: "top".into(),
            }
        );
    }

    #[test]
    fn normalized_url_drops_tracking_params_fragment_and_credentials() {
        let page = PageUrl::parse(
            "HTTPS://user:pw@Shop.Example.com:8443/p/42?id=7&utm_source=x&gclid=abc\
             &fbclid=zz&_ga=1.2&q=a%20b#section",
        )
        .unwrap();
        assert_eq!(
            page.normalized,
            "https://shop.example.com:8443/p/42?id=7&q=a+b"
        );
        assert_eq!(page.click_id, "gclid");
        let plain = PageUrl::parse("https://example.com/a?utm_medium=email").unwrap();
        assert_eq!(plain.normalized, "https://example.com/a");
        assert_eq!(plain.click_id, "");
    }

    #[test]
    fn missing_utm_fields_are_empty() {
        let page = PageUrl::parse("http://example.com").unwrap();
        assert_eq!(page.path, "/");
        assert_eq!(page.utm, Utm::default());
    }

    #[test]
    fn first_utm_value_wins_and_long_values_are_truncated() {
        let long = "x".repeat(500);
        let page = PageUrl::parse(&format!(
            "https://e.com/?utm_source=a&utm_source=b&utm_term={long}"
        ))
        .unwrap();
        assert_eq!(page.utm.source, "a");
        assert_eq!(page.utm.term.len(), MAX_UTM_VALUE_CHARS);
    }

    #[test]
    fn rejects_relative_and_non_http_urls() {
        assert!(matches!(
            PageUrl::parse("/pricing"),
            Err(PageUrlError::Invalid(_))
        ));
        assert_eq!(
            PageUrl::parse("javascript:alert(1)"),
            Err(PageUrlError::Scheme("javascript".into()))
        );
    }

    #[test]
    fn referrer_host_strips_www_and_ignores_garbage() {
        assert_eq!(
            referrer_host("https://www.Google.com/search?q=x"),
            "google.com"
        );
        assert_eq!(referrer_host("android-app://com.slack"), "com.slack");
        assert_eq!(referrer_host(""), "");
        assert_eq!(referrer_host("not a url"), "");
    }

    #[test]
    fn matches_the_reference_on_tricky_urls() {
        for raw in [
            "https://example.com",
            "https://example.com/",
            "https://example.com/?",
            "https://example.com/?&&",
            "https://example.com/a?b",
            "https://example.com/a?b=",
            "https://example.com/a?=b",
            "https://example.com/a?=",
            "https://example.com/a?a=b=c&d==",
            "https://example.com/a?q=a+b&r=a%20b&s=a b&t=%2f%2F%zz%&u=%C3%A9%FF",
            "https://example.com/a?k*-._=v*-._&K=V&x=1#frag&utm_source=no",
            "https://example.com/a?utm_source=&utm_source=second&utm_medium=a+b",
            "https://example.com/a?utm%5Fsource=enc&%67clid=1&fbclid=2&gclid=3",
            "https://example.com/a?UTM_SOURCE=kept&Gclid=kept&utm_=x&utm_other=y",
            "https://example.com/a?_ga=1&_gl=2&mc_cid=3&mkt_tok=4&__s=5&s_cid=6&id=7",
            "https://example.com/a?caf%C3%A9=cr%C3%A8me&ключ=значение&emoji=😀",
            "https://example.com/a?x=<>\"'`{}|^&y=\t\n",
            "HTTP://User:Pw@WWW.Example.COM:80/A/./b/../C%2e?utm_term=T#x",
            "https://example.com:443/p?id=1",
            "https://example.com:8443/p?id=1",
            "https://münchen.de/straße?ö=ü",
            "https://[::1]:8080/?a=1",
            "https://127.0.0.1/?a=1",
            "https://0x7f.1/?a=1",
            "https://example.com./?a=1",
            "ftp://example.com/?a=1",
            "http://",
            "https:example.com/a?b=c",
            "/relative?a=b",
        ] {
            assert_same_as_reference(raw);
        }
        let long = "é".repeat(300);
        assert_same_as_reference(&format!(
            "https://e.com/?utm_source={long}&utm_term=%C3%A9{long}"
        ));
        assert_same_as_reference(&format!("https://e.com/?utm_campaign={}", "x".repeat(200)));
        assert_same_as_reference(&format!("https://e.com/?utm_campaign={}", "x".repeat(201)));
    }

    proptest::proptest! {
        /// Whatever the query holds, the stored URL keeps no campaign tag, click id or tracking
        /// parameter, keeps every other parameter, and parsing it again is a fixed point.
        #[test]
        fn normalisation_strips_exactly_the_tracking_params(
            path in "/[a-z0-9/]{0,20}",
            params in proptest::collection::vec(
                (proptest::sample::select(vec![
                    "utm_source", "utm_medium", "utm_x", "gclid", "fbclid", "_ga", "mc_cid",
                    "id", "q", "page", "lang", "ref",
                ]), "[a-zA-Z0-9 %&=]{0,8}"),
                0..8,
            ),
        ) {
            let query: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
                .collect();
            let raw = format!("https://Example.com{path}?{}", query.join("&"));
            let page = PageUrl::parse(&raw).unwrap();
            let kept = url::Url::parse(&page.normalized).unwrap();
            for (k, _) in kept.query_pairs() {
                proptest::prop_assert!(!is_tracking_param(&k), "{k} kept in {}", page.normalized);
            }
            let expected: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| !is_tracking_param(k))
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            let got: Vec<(String, String)> = kept
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            proptest::prop_assert_eq!(got, expected);
            proptest::prop_assert_eq!(PageUrl::parse(&page.normalized).unwrap().normalized, page.normalized.clone());
            proptest::prop_assert!(page.normalized.starts_with("https://example.com/"));
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn any_input_parses_or_errors(raw in ".{0,200}") {
            let _ = PageUrl::parse(&raw);
            let _ = referrer_host(&raw);
        }
    }

    /// A piece of a generated URL: tracking and ordinary names, escapes (valid, invalid,
    /// lowercase), separators, `+`, unicode, or any one character.
    fn url_token() -> impl Strategy<Value = String> {
        use proptest::prelude::*;
        let mut names: Vec<&str> = vec![
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "utm_x",
            "utm_",
            "UTM_SOURCE",
            "utm%5Fsource",
            "utm_source+",
            "%67clid",
            "id",
            "q",
            "page",
            "lang",
            "ref",
            "a b",
            "ключ",
            "k%3Dv",
        ];
        names.extend(crate::source::CLICK_IDS);
        names.extend(TRACKING_PARAMS);
        let pieces = vec![
            "=",
            "&",
            "&&",
            "+",
            "%",
            "%2",
            "%20",
            "%2f",
            "%2F",
            "%3D",
            "%26",
            "%zz",
            "%C3%A9",
            "%FF",
            "%e2%82%ac",
            "é",
            "😀",
            "中",
            " ",
            "#",
            "?",
            "/",
            "\t",
            "*",
            "-",
            ".",
            "_",
            "~",
            "'",
            "\"",
            "<",
            ">",
        ];
        prop_oneof![
            3 => proptest::sample::select(names).prop_map(str::to_owned),
            3 => proptest::sample::select(pieces).prop_map(str::to_owned),
            3 => "[a-zA-Z0-9]{1,5}",
            1 => any::<char>().prop_map(String::from),
        ]
    }

    fn url_tokens(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(url_token(), 0..max).prop_map(|t| t.concat())
    }

    /// One `name[=value]` query piece, mostly shaped like a real one.
    fn query_piece() -> impl Strategy<Value = String> {
        (
            url_tokens(3),
            proptest::option::weighted(0.8, url_tokens(5)),
        )
            .prop_map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5000))]

        /// On generated URLs (every part optional or odd: scheme case, user info, unicode and
        /// IP hosts, default and other ports, escaped paths, repeated, empty, escaped and
        /// tracking query names, fragments), the parser gives exactly what the reference does.
        #[test]
        fn matches_the_reference_on_generated_urls(
            scheme in proptest::sample::select(vec!["http", "https", "HTTPS", "Http", "ftp"]),
            user in proptest::sample::select(vec!["", "", "user@", "user:pw@"]),
            host in proptest::sample::select(vec![
                "example.com", "Shop.Example.COM", "www.example.org", "münchen.de",
                "127.0.0.1", "[::1]", "xn--mnchen-3ya.de", "example.com.",
            ]),
            port in proptest::sample::select(vec!["", "", ":80", ":443", ":8080", ":"]),
            path in url_tokens(6),
            query in proptest::option::weighted(
                0.9,
                proptest::collection::vec(query_piece(), 0..10).prop_map(|p| p.join("&")),
            ),
            fragment in proptest::option::of(url_tokens(4)),
        ) {
            let mut raw = format!("{scheme}://{user}{host}{port}/{path}");
            if let Some(query) = query {
                raw.push('?');
                raw.push_str(&query);
            }
            if let Some(fragment) = fragment {
                raw.push('#');
                raw.push_str(&fragment);
            }
            proptest::prop_assert_eq!(PageUrl::parse(&raw), parse_reference(&raw), "for {:?}", raw);
        }

        /// Any text after `?`, and any text at all, gives what the reference gives.
        #[test]
        fn matches_the_reference_on_any_query(query in ".{0,120}", raw in ".{0,120}") {
            let with_query = format!("https://example.com/p?{query}");
            proptest::prop_assert_eq!(PageUrl::parse(&with_query), parse_reference(&with_query));
            proptest::prop_assert_eq!(PageUrl::parse(&raw), parse_reference(&raw));
        }
    }
}
