//! Page URLs and referrers: host, path and UTM campaign parameters.

use serde::{Deserialize, Serialize};
use url::Url;

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

fn is_tracking_param(key: &str) -> bool {
    key.starts_with("utm_")
        || crate::source::CLICK_IDS.contains(&key)
        || TRACKING_PARAMS.contains(&key)
}

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
    pub fn parse(raw: &str) -> Result<Self, PageUrlError> {
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
        Ok(Self {
            host,
            path: url.path().to_owned(),
            utm,
            click_id,
            normalized,
        })
    }
}

/// Host of a referrer URL, lowercased and without a leading `www.`; empty when the referrer is
/// empty or not a URL.
pub fn referrer_host(referrer: &str) -> String {
    Url::parse(referrer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .map(|h| h.strip_prefix("www.").map(str::to_owned).unwrap_or(h))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
