//! The rollup coverage check: which days of a range the visit rollup answers exactly, with
//! concurrent checks of one range shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clickhouse::Row;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::Deserialize;

use crate::sql::stats::{self as sql, Scope};

/// The database as the stats endpoints use it: the client, and the rollup coverage checks in
/// flight, so that concurrent requests for the same range (a dashboard's first load sends ten)
/// share one check instead of each scanning the range. Nothing is kept once a check is done: a
/// request that arrives after it runs its own.
#[derive(Clone)]
pub struct StatsDb {
    pub client: clickhouse::Client,
    in_flight: Arc<Mutex<HashMap<RangeKey, SharedCoverage>>>,
    checks_run: prometheus::IntCounter,
    checks_joined: prometheus::IntCounter,
}

/// Site, from, to.
type RangeKey = (String, u32, u32);
type SharedCoverage = Shared<BoxFuture<'static, sql::Coverage>>;

impl StatsDb {
    /// `checks`: counter of coverage checks by `result` (`run`, `joined`).
    pub fn new(client: clickhouse::Client, checks: &prometheus::IntCounterVec) -> Self {
        Self {
            client,
            in_flight: Arc::default(),
            checks_run: checks.with_label_values(&["run"]),
            checks_joined: checks.with_label_values(&["joined"]),
        }
    }
}

/// Removes a finished (or abandoned) check from the in-flight map.
struct FlightGuard<'a> {
    db: &'a StatsDb,
    key: RangeKey,
    flight: SharedCoverage,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.db.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|f| Shared::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

#[derive(Debug, Row, Deserialize)]
struct Covered {
    day: u32,
    build: u64,
}

/// The days of an unfiltered scope that the visit rollup answers exactly (none for a
/// filtered scope: rollups hold no event dimensions). A failing check (e.g. a schema from
/// before the rollup) reads everything from events.
pub async fn coverage(db: &StatsDb, scope: &Scope<'_>) -> sql::Coverage {
    if !scope.filters.is_empty() {
        return sql::Coverage::default();
    }
    let key = (scope.site_id.to_owned(), scope.from, scope.to);
    let (flight, _guard) = {
        let mut map = db.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(flight) => {
                db.checks_joined.inc();
                (flight.clone(), None)
            }
            None => {
                db.checks_run.inc();
                let (client, st) = (db.client.clone(), sql::coverage(scope));
                let (site, from, to) = key.clone();
                let flight = async move {
                    let scope = Scope {
                        site_id: &site,
                        from,
                        to,
                        filters: &[],
                    };
                    match st.query(&client).fetch_all::<Covered>().await {
                        Ok(rows) => {
                            let days: Vec<(u32, u64)> =
                                rows.iter().map(|r| (r.day, r.build)).collect();
                            sql::Coverage::of(&scope, &days)
                        }
                        Err(error) => {
                            tracing::warn!(message = "Checking the visit rollup failed; reading events.", error = %error);
                            sql::Coverage::default()
                        }
                    }
                }
                .boxed()
                .shared();
                map.insert(key.clone(), flight.clone());
                let guard = FlightGuard {
                    db,
                    key: key.clone(),
                    flight: flight.clone(),
                };
                (flight, Some(guard))
            }
        }
    };
    flight.await
}
