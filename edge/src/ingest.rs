//! The ingest pipeline for one event, free of I/O: auth → validate → bot filter → enrich.
//!
//! The HTTP layer hands it the raw body and the few headers that matter; it answers with an
//! [`EnrichedEvent`] ready for Kafka, a bot verdict, or a [`CollectError`]. The raw IP and
//! user-agent string are used here and dropped: they are not fields of the output.

use chrono::{DateTime, Utc};
use ta_shared::page::{PageUrl, referrer_host};
use ta_shared::source::{self, SourceInput};
use ta_shared::{
    EnrichedEvent, SCHEMA_VERSION, SaltSchedule, SiteRegistry, VisitorIdentity, signature,
};
use uuid::Uuid;

use crate::error::CollectError;
use crate::payload::CollectPayload;
use crate::user_agent::{BotReason, UserAgentParser};

/// What the HTTP layer knows about one collect request.
#[derive(Debug, Clone, Copy)]
pub struct IngestRequest<'a> {
    pub body: &'a [u8],
    pub api_key: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub client_ip: &'a str,
    pub user_agent: &'a str,
    pub now: DateTime<Utc>,
}

/// A request that passed auth and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Box<EnrichedEvent>),
    /// Valid and authenticated, but sent by a bot: counted, not forwarded.
    Bot {
        site_id: String,
        reason: BotReason,
    },
}

/// Everything the pipeline needs; shared by all request handlers.
#[derive(Debug)]
pub struct Ingest {
    pub sites: SiteRegistry,
    pub salts: SaltSchedule,
    pub global_hmac_secret: Option<String>,
    pub region: String,
    pub user_agents: UserAgentParser,
}

impl Ingest {
    pub fn new(sites: SiteRegistry, salts: SaltSchedule, region: impl Into<String>) -> Self {
        Self {
            sites,
            salts,
            global_hmac_secret: None,
            region: region.into(),
            user_agents: UserAgentParser,
        }
    }

    pub fn process(&self, req: IngestRequest<'_>) -> Result<Outcome, CollectError> {
        let api_key = req
            .api_key
            .filter(|k| !k.is_empty())
            .ok_or(CollectError::MissingApiKey)?;
        let payload = CollectPayload::parse(req.body)?;
        let site_id = payload
            .site_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CollectError::invalid("site_id", "is required"))?;
        let site = self
            .sites
            .get(site_id)
            .filter(|site| site.accepts_key(api_key))
            .ok_or(CollectError::InvalidApiKey)?;
        if let Some(origin) = req.origin
            && !site.allows_origin(origin)
        {
            return Err(CollectError::OriginNotAllowed(origin.to_owned()));
        }
        let secret = site
            .hmac_secret
            .as_deref()
            .or(self.global_hmac_secret.as_deref());
        match (req.signature, secret) {
            (Some(sig), Some(secret)) => {
                if !signature::verify(secret.as_bytes(), req.body, sig) {
                    return Err(CollectError::BadSignature);
                }
            }
            // A signature nobody can check is as bad as a wrong one: refuse rather than
            // silently treat a server sender's request as unsigned.
            (Some(_), None) => return Err(CollectError::BadSignature),
            (None, _) if site.require_signature => return Err(CollectError::MissingSignature),
            (None, _) => {}
        }

        let now_ms = req.now.timestamp_millis();
        let event = payload.validate(now_ms)?;
        let page =
            PageUrl::parse(&event.url).map_err(|e| CollectError::invalid("url", format!("{e}")))?;

        let client = match self.user_agents.classify(req.user_agent) {
            Ok(client) => client,
            Err(reason) => {
                return Ok(Outcome::Bot {
                    site_id: event.site_id,
                    reason,
                });
            }
        };
        let identity = match &event.user_id {
            Some(user_id) => VisitorIdentity::User { user_id },
            None => VisitorIdentity::Network {
                ip: req.client_ip,
                user_agent: req.user_agent,
            },
        };
        let visitor = self
            .salts
            .visitor_hash(req.now.date_naive(), &event.site_id, identity);
        let referrer_host = referrer_host(&event.referrer);
        let source = source::classify(SourceInput {
            referrer_host: &referrer_host,
            page_host: &page.host,
            utm_source: &page.utm.source,
            utm_medium: &page.utm.medium,
            click_id: &page.click_id,
        });
        Ok(Outcome::Accepted(Box::new(EnrichedEvent {
            v: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            site_id: event.site_id,
            event_name: event.event_name,
            ts_ms: event.ts_ms,
            received_ms: now_ms,
            visitor_hash: visitor.0,
            session_id: event.session_id,
            url: page.normalized,
            host: page.host,
            path: page.path,
            referrer: event.referrer,
            referrer_host,
            utm_source: page.utm.source,
            utm_medium: page.utm.medium,
            utm_campaign: page.utm.campaign,
            utm_term: page.utm.term,
            utm_content: page.utm.content,
            source: source.name,
            channel: source.channel.as_str().to_owned(),
            click_id: page.click_id,
            browser: client.browser,
            browser_version: client.browser_version,
            os: client.os,
            os_version: client.os_version,
            device: client.device,
            country: String::new(),
            edge_region: self.region.clone(),
            props: event.props,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
    const SITES: &str = r#"
        [[site]]
        id = "site-1"
        api_keys = ["k1"]
        allowed_origins = ["https://example.com"]
        [[site]]
        id = "signed"
        api_keys = ["k2"]
        hmac_secret = "s2"
        require_signature = true
    "#;

    fn ingest() -> Ingest {
        Ingest::new(
            SiteRegistry::from_toml(SITES).unwrap(),
            SaltSchedule::new("salt"),
            "eu",
        )
    }

    fn request(body: &str) -> IngestRequest<'_> {
        IngestRequest {
            body: body.as_bytes(),
            api_key: Some("k1"),
            signature: None,
            origin: None,
            client_ip: "203.0.113.9",
            user_agent: FIREFOX,
            now: DateTime::from_timestamp_millis(1_764_000_000_000).unwrap(),
        }
    }

    const PAGEVIEW: &str = r#"{"site_id":"site-1","event_name":"pageview",
        "url":"https://example.com/pricing?utm_source=news&utm_campaign=bf",
        "referrer":"https://www.google.com/"}"#;

    fn accepted(outcome: Outcome) -> EnrichedEvent {
        match outcome {
            Outcome::Accepted(e) => *e,
            other => panic!("expected accepted, got {other:?}"),
        }
    }

    #[test]
    fn enriches_a_pageview_without_raw_ip_or_user_agent() {
        let ev = accepted(ingest().process(request(PAGEVIEW)).unwrap());
        assert_eq!(ev.path, "/pricing");
        assert_eq!(ev.utm_source, "news");
        assert_eq!(ev.utm_campaign, "bf");
        assert_eq!(ev.referrer_host, "google.com");
        // utm_source wins over the referrer for the name only when the referrer is unknown.
        assert_eq!(
            (ev.source.as_str(), ev.channel.as_str()),
            ("Google", "search")
        );
        assert_eq!(
            ev.url, "https://example.com/pricing",
            "campaign tags stripped"
        );
        assert_eq!(ev.browser, "Firefox");
        assert_eq!(ev.edge_region, "eu");
        let json = String::from_utf8(ev.to_json()).unwrap();
        assert!(!json.contains("203.0.113.9"));
        assert!(!json.contains("Gecko/20100101"));
    }

    #[test]
    fn click_ids_mark_paid_traffic_and_never_reach_the_stored_url() {
        let body = r#"{"site_id":"site-1","event_name":"pageview",
            "url":"https://example.com/landing?gclid=Cj0KCQ-secret&lang=en"}"#;
        let ev = accepted(ingest().process(request(body)).unwrap());
        assert_eq!(ev.click_id, "gclid");
        assert_eq!(ev.channel, "paid");
        assert_eq!(ev.url, "https://example.com/landing?lang=en");
        assert!(
            !String::from_utf8(ev.to_json())
                .unwrap()
                .contains("Cj0KCQ-secret")
        );
    }

    #[test]
    fn same_visitor_gets_same_hash_and_others_differ() {
        let ing = ingest();
        let a = accepted(ing.process(request(PAGEVIEW)).unwrap());
        let b = accepted(ing.process(request(PAGEVIEW)).unwrap());
        assert_eq!(a.visitor_hash, b.visitor_hash);
        assert_ne!(a.event_id, b.event_id);
        let other = IngestRequest {
            client_ip: "198.51.100.1",
            ..request(PAGEVIEW)
        };
        assert_ne!(
            accepted(ing.process(other).unwrap()).visitor_hash,
            a.visitor_hash
        );
    }

    #[test]
    fn auth_failures_are_distinguished() {
        let ing = ingest();
        let no_key = IngestRequest {
            api_key: None,
            ..request(PAGEVIEW)
        };
        assert_eq!(ing.process(no_key), Err(CollectError::MissingApiKey));
        let wrong = IngestRequest {
            api_key: Some("k2"),
            ..request(PAGEVIEW)
        };
        assert_eq!(ing.process(wrong), Err(CollectError::InvalidApiKey));
        let unknown = r#"{"site_id":"nope","event_name":"pageview","url":"https://e.com/"}"#;
        assert_eq!(
            ing.process(request(unknown)),
            Err(CollectError::InvalidApiKey)
        );
        let evil = IngestRequest {
            origin: Some("https://evil.com"),
            ..request(PAGEVIEW)
        };
        assert!(matches!(
            ing.process(evil),
            Err(CollectError::OriginNotAllowed(_))
        ));
        let good_origin = IngestRequest {
            origin: Some("https://example.com"),
            ..request(PAGEVIEW)
        };
        assert!(ing.process(good_origin).is_ok());
    }

    #[test]
    fn signatures_are_checked_against_the_site_secret() {
        let ing = ingest();
        let body = r#"{"site_id":"signed","event_name":"signup","url":"https://e.com/"}"#;
        let base = IngestRequest {
            api_key: Some("k2"),
            ..request(body)
        };
        assert_eq!(ing.process(base), Err(CollectError::MissingSignature));
        let sig = signature::sign(b"s2", body.as_bytes());
        assert!(
            ing.process(IngestRequest {
                signature: Some(&sig),
                ..base
            })
            .is_ok()
        );
        let wrong = signature::sign(b"other", body.as_bytes());
        assert_eq!(
            ing.process(IngestRequest {
                signature: Some(&wrong),
                ..base
            }),
            Err(CollectError::BadSignature)
        );
    }

    #[test]
    fn global_secret_verifies_sites_without_their_own() {
        let mut ing = ingest();
        let sig = signature::sign(b"global", PAGEVIEW.as_bytes());
        let signed = IngestRequest {
            signature: Some(&sig),
            ..request(PAGEVIEW)
        };
        assert_eq!(ing.process(signed), Err(CollectError::BadSignature));
        ing.global_hmac_secret = Some("global".into());
        assert!(ing.process(signed).is_ok());
    }

    #[test]
    fn bots_are_recognised_after_auth() {
        let ing = ingest();
        let bot = IngestRequest {
            user_agent: "curl/8.4.0",
            ..request(PAGEVIEW)
        };
        assert_eq!(
            ing.process(bot),
            Ok(Outcome::Bot {
                site_id: "site-1".into(),
                reason: BotReason::EmptyUserAgent
            })
        );
        let crawler = IngestRequest {
            user_agent: "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            ..request(PAGEVIEW)
        };
        assert!(matches!(ing.process(crawler), Ok(Outcome::Bot { .. })));
    }

    #[test]
    fn relative_urls_are_rejected_naming_the_field() {
        let body = r#"{"site_id":"site-1","event_name":"pageview","url":"/pricing"}"#;
        assert!(matches!(
            ingest().process(request(body)),
            Err(CollectError::InvalidField { field: "url", .. })
        ));
    }

    #[test]
    fn user_id_makes_the_visitor_independent_of_network() {
        let ing = ingest();
        let body = r#"{"site_id":"site-1","event_name":"x","url":"https://e.com/","user_id":"u7"}"#;
        let a = accepted(ing.process(request(body)).unwrap());
        let b = accepted(
            ing.process(IngestRequest {
                client_ip: "10.0.0.1",
                ..request(body)
            })
            .unwrap(),
        );
        assert_eq!(a.visitor_hash, b.visitor_hash);
    }
}
