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
        for (key, value) in url.query_pairs() {
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
        Ok(Self {
            host,
            path: url.path().to_owned(),
            utm,
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
}
