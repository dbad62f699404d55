//! The edge node's Prometheus metrics. Every series carries the node's `region` as a constant
//! label; other labels are bounded (routes, status codes, reason codes, and the site ids of the
//! sites file or the registry snapshot in force).

use std::collections::HashMap;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use ta_shared::registry_follow::FollowMetrics;
use ta_shared::telemetry::{BATCH_RECORDS_BUCKETS, LATENCY_SECONDS_BUCKETS};

use crate::conn::ConnectionCounters;
use crate::forwarder::ForwarderMetrics;
use crate::spool::SpoolMetrics;

#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub rejected: IntCounterVec,
    pub bots: IntCounterVec,
    pub do_not_track: IntCounterVec,
    pub accepted: IntCounterVec,
    pub request_batch_events: Histogram,
    pub config_reloads: IntCounterVec,
    /// Referrer-spam and data-centre list reloads, by list and result.
    pub list_reloads: IntCounterVec,
    /// Entries of each traffic list in force (domains; merged networks).
    pub list_entries: IntGaugeVec,
    /// 1 while the sites file on disk is missing or does not parse (the sites in force are
    /// older than it).
    pub sites_file_stale: IntGauge,
    pub sites_configured: IntGauge,
    pub replay_signatures: IntGauge,
    pub replay_forgotten_early: IntCounter,
    /// Requests refused by the header-time limits, by which one (`address`, `key`).
    pub limited: IntCounterVec,
    pub address_limit_tracked: IntGauge,
    pub address_table_full: IntCounter,
    /// `ta_edge_registry_*`: following central's registry (at 0 while the node follows none).
    pub registry_follow: FollowMetrics,
    /// The forwarder's, the spool's and the ingest listener's own series.
    pub forwarder: ForwarderMetrics,
    pub spool: SpoolMetrics,
    pub connections: ConnectionCounters,
}

impl EdgeMetrics {
    pub fn new(region: &str) -> Self {
        let labels = HashMap::from([("region".to_owned(), region.to_owned())]);
        let registry = Registry::new_custom(None, Some(labels)).expect("valid registry labels");
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "ta_edge_requests_total",
                    "HTTP requests by route and status.",
                ),
                &["route", "status"],
            )
            .unwrap(),
            request_seconds: HistogramVec::new(
                HistogramOpts::new("ta_edge_request_duration_seconds", "HTTP request latency.")
                    .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
                &["route"],
            )
            .unwrap(),
            rejected: IntCounterVec::new(
                Opts::new(
                    "ta_edge_events_rejected_total",
                    "Events refused, by reason code.",
                ),
                &["reason"],
            )
            .unwrap(),
            bots: IntCounterVec::new(
                Opts::new(
                    "ta_edge_bot_events_total",
                    "Events dropped as bot traffic, by site and reason.",
                ),
                &["site_id", "reason"],
            )
            .unwrap(),
            do_not_track: IntCounterVec::new(
                Opts::new(
                    "ta_edge_events_do_not_track_total",
                    "Events dropped because the site respects DNT/GPC and the browser sent it, by site.",
                ),
                &["site_id"],
            )
            .unwrap(),
            request_batch_events: Histogram::with_opts(
                HistogramOpts::new(
                    "ta_edge_request_batch_events",
                    "Events per POST /v1/batch request.",
                )
                .buckets(BATCH_RECORDS_BUCKETS.to_vec()),
            )
            .unwrap(),
            config_reloads: IntCounterVec::new(
                Opts::new(
                    "ta_edge_config_reloads_total",
                    "Sites-file reloads by result: ok (changed file applied) or error (kept the previous sites).",
                ),
                &["result"],
            )
            .unwrap(),
            list_reloads: IntCounterVec::new(
                Opts::new(
                    "ta_edge_list_reloads_total",
                    "Traffic-list file reloads (referrer_spam, datacenter) by result: ok (changed file applied) or error (kept the list in force).",
                ),
                &["list", "result"],
            )
            .unwrap(),
            list_entries: IntGaugeVec::new(
                Opts::new(
                    "ta_edge_list_entries",
                    "Entries of each traffic list in force: referrer-spam domains, data-centre networks (merged).",
                ),
                &["list"],
            )
            .unwrap(),
            sites_file_stale: IntGauge::new(
                "ta_edge_sites_file_stale",
                "1 while the sites file is missing or does not parse: the node serves the sites it loaded before (or refuses everything with TA_SITES_FAIL_CLOSED).",
            )
            .unwrap(),
            sites_configured: IntGauge::new(
                "ta_edge_sites_configured",
                "Sites in the sites file currently in force.",
            )
            .unwrap(),
            accepted: IntCounterVec::new(
                Opts::new(
                    "ta_edge_events_accepted_total",
                    "Events answered 202: written to the durable spool, by site.",
                ),
                &["site_id"],
            )
            .unwrap(),
            replay_signatures: IntGauge::new(
                "ta_edge_replay_guard_signatures",
                "Signatures of signed requests remembered to refuse replays (bounded; kept 2 × the signature window).",
            )
            .unwrap(),
            replay_forgotten_early: IntCounter::new(
                "ta_edge_replay_guard_forgotten_early_total",
                "Signatures forgotten before 2 × the signature window because the replay guard was full (replays of them would pass).",
            )
            .unwrap(),
            limited: IntCounterVec::new(
                Opts::new(
                    "ta_edge_requests_limited_total",
                    "Requests refused with 429 before their body was read, by limit (address, key).",
                ),
                &["limit"],
            )
            .unwrap(),
            address_limit_tracked: IntGauge::new(
                "ta_edge_address_limit_tracked",
                "Client addresses the per-address limit tracks now (at most TA_ADDRESS_TABLE_SIZE).",
            )
            .unwrap(),
            address_table_full: IntCounter::new(
                "ta_edge_address_table_full_total",
                "Requests admitted untracked because the per-address table was full of busy addresses.",
            )
            .unwrap(),
            registry_follow: FollowMetrics::new("ta_edge"),
            forwarder: ForwarderMetrics::new(),
            spool: SpoolMetrics::new(),
            connections: ConnectionCounters::new(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.limited.clone()),
            Box::new(m.address_limit_tracked.clone()),
            Box::new(m.address_table_full.clone()),
            Box::new(m.request_seconds.clone()),
            Box::new(m.rejected.clone()),
            Box::new(m.bots.clone()),
            Box::new(m.do_not_track.clone()),
            Box::new(m.accepted.clone()),
            Box::new(m.request_batch_events.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.list_reloads.clone()),
            Box::new(m.list_entries.clone()),
            Box::new(m.sites_file_stale.clone()),
            Box::new(m.sites_configured.clone()),
            Box::new(m.replay_signatures.clone()),
            Box::new(m.replay_forgotten_early.clone()),
        ];
        ta_shared::telemetry::register_all(&m.registry, collectors);
        m.registry_follow.register(&m.registry);
        m.forwarder.register(&m.registry);
        m.spool.register(&m.registry);
        m.connections.register(&m.registry);
        // Exported at 0 from the start, so rate() and the alert rules see 0, not "no data".
        for result in ["ok", "error"] {
            m.config_reloads.with_label_values(&[result]);
            for list in ["referrer_spam", "datacenter"] {
                m.list_reloads.with_label_values(&[list, result]);
            }
        }
        for limit in ["address", "key"] {
            m.limited.with_label_values(&[limit]);
        }
        m
    }

    /// At scrape: what the per-address limit holds and has had to let through untracked.
    pub fn observe_address_limits(&self, limits: &crate::limits::AddressLimits) {
        self.address_limit_tracked
            .set(i64::try_from(limits.tracked()).unwrap_or(i64::MAX));
        self.address_table_full.inc_by(
            limits
                .table_full()
                .saturating_sub(self.address_table_full.get()),
        );
    }

    /// Start every configured site's accepted counter at 0, so a site that stops sending shows
    /// as a flat series (its rate drops to 0) rather than no series at all. Site ids come from
    /// the sites file, which bounds this label.
    pub fn register_sites<'a>(&self, site_ids: impl IntoIterator<Item = &'a str>) {
        let mut n = 0;
        for id in site_ids {
            self.accepted.with_label_values(&[id]);
            // At 0 from the start: Prometheus's increase() cannot see a series' first event
            // if the series is born with it ("bots filtered today" reads it).
            for reason in crate::user_agent::BotReason::ALL {
                self.bots.with_label_values(&[id, reason.as_str()]);
            }
            n += 1;
        }
        self.sites_configured.set(n);
    }

    /// Set the replay guard's series from the guard itself.
    pub fn observe_replay_guard(&self, guard: &crate::limits::ReplayGuard, now_secs: i64) {
        self.replay_signatures
            .set(i64::try_from(guard.len_at(now_secs)).unwrap_or(i64::MAX));
        let forgotten = guard.forgotten_early();
        self.replay_forgotten_early
            .inc_by(forgotten.saturating_sub(self.replay_forgotten_early.get()));
    }

    pub fn render(&self) -> String {
        ta_shared::telemetry::encode_text(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_sites_are_exported_at_zero_before_any_event() {
        let m = EdgeMetrics::new("eu");
        m.register_sites(["site-1", "site-2"]);
        m.accepted.with_label_values(&["site-2"]).inc_by(3);
        let text = m.render();
        assert!(
            text.contains(r#"ta_edge_events_accepted_total{site_id="site-1",region="eu"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ta_edge_events_accepted_total{site_id="site-2",region="eu"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ta_edge_produce_errors_total{kind="connect",region="eu"} 0"#),
            "{text}"
        );
        // The alert rules name these whether or not the node follows a registry.
        for series in [
            r#"ta_edge_registry_snapshot_stale{region="eu"} 0"#,
            r#"ta_edge_registry_snapshot_age_seconds{region="eu"} 0"#,
            r#"ta_edge_registry_fetches_total{outcome="bad_signature",region="eu"} 0"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
