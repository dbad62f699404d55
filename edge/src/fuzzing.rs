//! Entry points for the fuzz targets in `edge/fuzz` (cargo fuzz), also replayed over the
//! committed corpus by a normal test, so every input that ever mattered stays covered on
//! stable Rust.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use ta_shared::{SaltSchedule, SiteRegistry};

use crate::ingest::{Ingest, IngestRequest, Outcome};

fn ingest() -> &'static Ingest {
    static INGEST: OnceLock<Ingest> = OnceLock::new();
    INGEST.get_or_init(|| {
        Ingest::new(
            SiteRegistry::from_toml(
                "[[site]]\nid = 'site-1'\napi_keys = ['k1']\nallowed_origins = ['https://example.com']\n",
            )
            .expect("valid sites"),
            SaltSchedule::new("fuzz"),
            "fuzz",
        )
    })
}

/// Feed `data` as a request body to the single-event and batch pipelines, raw and as a gzip
/// body. Panics when a pipeline panics or answers bad input with anything but a 4xx.
pub fn collect_body(data: &[u8]) {
    let now: DateTime<Utc> = DateTime::from_timestamp_millis(1_764_000_000_000).expect("valid");
    let req = IngestRequest {
        body: data,
        api_key: Some("k1"),
        signature: None,
        timestamp: None,
        origin: None,
        client_ip: "203.0.113.9",
        user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        do_not_track: false,
        country_header: None,
        accept_language: None,
        now,
    };
    let ingest = ingest();
    match ingest.process(req) {
        Ok(Outcome::Accepted(event)) => {
            // What is accepted must survive the trip to the loader.
            let json = event.to_json();
            let back = ta_shared::EnrichedEvent::from_json(&json).expect("accepted events decode");
            assert_eq!(back, *event);
        }
        Ok(_) => {}
        Err(e) => assert!((400..500).contains(&e.status()), "{e:?} for bad input"),
    }
    match ingest.process_batch(req) {
        Ok(results) => {
            for r in results {
                if let Err(e) = r {
                    assert!((400..500).contains(&e.status()), "{e:?} for bad input");
                }
            }
        }
        Err(e) => assert!((400..500).contains(&e.status()), "{e:?} for bad input"),
    }
    if let Err(e) = crate::server::decode_body(Some("gzip"), data.to_vec(), 32 * 1024) {
        assert!(
            (400..500).contains(&e.status()),
            "{e:?} for a bad gzip body"
        );
    }
}
