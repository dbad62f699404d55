use std::collections::HashSet;

use ta_central::store::{self, EventRow, lifecycle, offsets};

use crate::{fresh_cluster_db, fresh_db, sample_row};

#[tokio::test]
async fn an_interrupted_migration_reruns_cleanly() {
    // A crash after the DDL ran but before the migration was recorded: the next start runs
    // every statement again (ADD COLUMN included) and must succeed.
    let args = fresh_db("migrations_rerun");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    db.query("DROP TABLE schema_migrations")
        .execute()
        .await
        .unwrap();
    let all: Vec<u32> = store::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(store::migrate(&args).await.unwrap(), all);
    let columns: u64 = db
        .query("SELECT count() FROM system.columns WHERE database = ? AND table = 'events' AND name IN ('source', 'channel', 'click_id')")
        .bind(&args.clickhouse_database)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(columns, 3);
}

/// The migrations build exactly the columns the event schema (`ta_shared::with_event_fields!`)
/// declares, with its types as this server renders them, plus the loader's source columns: a
/// field added to the schema without its migration, or the reverse, fails here.
#[tokio::test]
async fn the_events_table_has_the_columns_the_event_schema_declares() {
    let args = fresh_db("schema_columns");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let features = store::schema::server_features(&db).await.unwrap();
    let mut table: Vec<(String, String)> = db
        .query("SELECT name, type FROM system.columns WHERE database = ? AND table = 'events'")
        .bind(&args.clickhouse_database)
        .fetch_all()
        .await
        .unwrap();
    table.sort();
    let mut declared: Vec<(String, String)> = ta_shared::event::COLUMNS
        .iter()
        .map(|c| {
            // The type without its codec, as system.columns reports it.
            let ddl = features.render(c.ddl_type);
            let ty = ddl.split(" CODEC(").next().unwrap_or_default();
            (c.name.to_owned(), ty.to_owned())
        })
        .chain(
            [
                ("kafka_topic", features.render("{lc}")),
                ("kafka_partition", "UInt32".into()),
                ("kafka_offset", "UInt64".into()),
            ]
            .map(|(n, t)| (n.to_owned(), t)),
        )
        .collect();
    declared.sort();
    assert_eq!(table, declared);
}

#[tokio::test]
async fn migrations_apply_once_and_are_recorded() {
    let args = fresh_db("migrations");
    let all: Vec<u32> = store::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(store::migrate(&args).await.unwrap(), all);
    assert_eq!(
        store::migrate(&args).await.unwrap(),
        Vec::<u32>::new(),
        "second run applies nothing"
    );
    let db = args.store().await.unwrap();
    let n: u64 = db
        .query("SELECT count() FROM schema_migrations")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(n, all.len() as u64);
    for table in ["events", "dead_letters", "loader_offsets"] {
        let exists: u8 = db
            .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
            .bind(&args.clickhouse_database)
            .bind(table)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(exists, 1, "table {table} exists");
    }
}

#[tokio::test]
async fn rows_round_trip_through_rowbinary() {
    let args = fresh_db("roundtrip");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let row = sample_row("site-1", "/a", 42, 1_764_000_000, 7);
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    insert.write(&row).await.unwrap();
    insert.end().await.unwrap();
    let back: Vec<EventRow> = db
        .query("SELECT ?fields FROM events")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(back, vec![row]);
}

#[tokio::test]
async fn the_loaders_rowbinary_stores_what_event_row_stores() {
    // The loader writes RowBinary straight from a borrowed view of each record; reading the
    // rows back through the crate's own EventRow must give exactly EventRow::from_event.
    let args = fresh_db("loader_rowbinary");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let mut events = Vec::new();
    for i in 0..4u64 {
        let mut e = ta_shared::testing::event(i, 1_764_000_000_000 + i as i64 * 86_400_000);
        e.session_id = format!("s{i}");
        e.referrer = "https://www.google.com/".into();
        e.utm_source = "news".into();
        e.source = "Google".into();
        e.channel = "search".into();
        e.click_id = "gclid".into();
        e.country = "DE".into();
        e.props = [("b", "2"), ("a", "\u{e9}\t\"x\"")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        events.push(e);
    }
    events[1].path = format!("/{}", "long-path-".repeat(40)); // lengths over 127 bytes
    events[1].url = format!("https://example.com{}", events[1].path);
    events[2].props.clear();
    events[3].edge_region = "r\u{e9}gion \u{1f600}".into();
    let mut data = Vec::new();
    let mut expected = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let json = e.to_json();
        let pos = store::SourcePosition {
            topic: "t",
            partition: 1,
            offset: 10 + i as u64,
        };
        let row = ta_central::loader::decode(&json, pos, 0).expect("a valid event");
        row.write_row_binary(pos, &mut data);
        expected.push(EventRow::from_event(e.clone(), pos).unwrap());
    }
    store::rows::insert_event_rows(
        &db,
        &format!("ta_it_{:x}", rand::random::<u64>()),
        &data,
        None,
    )
    .await
    .unwrap();
    let back: Vec<EventRow> = db
        .query("SELECT ?fields FROM events ORDER BY kafka_offset")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(back, expected);
}

#[tokio::test]
async fn checkpoint_and_stored_offsets_describe_the_partition() {
    let args = fresh_db("offsets");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    assert_eq!(offsets::checkpoint(&db, "t", 0).await.unwrap(), None);
    offsets::write_checkpoint(&db, "t", 0, 5, None)
        .await
        .unwrap();
    offsets::write_checkpoint(&db, "t", 0, 9, None)
        .await
        .unwrap();
    offsets::write_checkpoint(&db, "t", 1, 100, None)
        .await
        .unwrap();
    assert_eq!(offsets::checkpoint(&db, "t", 0).await.unwrap(), Some(9));
    assert_eq!(offsets::checkpoint(&db, "t", 1).await.unwrap(), Some(100));
    assert_eq!(offsets::checkpoint(&db, "other", 0).await.unwrap(), None);

    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    for offset in [3, 9, 11, 12] {
        insert
            .write(&sample_row("s", "/", 1, 1_764_000_000, offset))
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    let stored = offsets::stored_offsets_from(&db, "t", 0, 9).await.unwrap();
    assert_eq!(stored, HashSet::from([9, 11, 12]));
    let ids = offsets::event_ids_from(&db, "t", 0, 10).await.unwrap();
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn each_site_and_month_is_its_own_partition() {
    let args = fresh_db("partitions");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    insert
        .write(&sample_row("a", "/", 1, NOV_2025, 0))
        .await
        .unwrap();
    insert.end().await.unwrap();
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    insert
        .write(&sample_row("b", "/", 1, NOV_2025, 1))
        .await
        .unwrap();
    insert
        .write(&sample_row("b", "/", 1, OCT_2025, 2))
        .await
        .unwrap();
    insert.end().await.unwrap();
    let parts = lifecycle::events_partitions(&db).await.unwrap();
    let names: Vec<(String, u32)> = parts.into_iter().map(|p| (p.site_id, p.month)).collect();
    assert_eq!(
        names,
        [
            ("a".into(), 202511),
            ("b".into(), 202510),
            ("b".into(), 202511)
        ]
    );
}

const OCT_2025: u32 = 1_760_000_000; // 2025-10-09
const NOV_2025: u32 = 1_764_000_000; // 2025-11-24

async fn count(db: &clickhouse::Client, sql: &str) -> u64 {
    db.query(sql).fetch_one::<u64>().await.unwrap()
}

#[tokio::test]
async fn retention_drops_only_months_past_each_sites_retention() {
    retention_case(fresh_db("retention")).await;
}

#[tokio::test]
async fn on_a_cluster_retention_drops_only_months_past_each_sites_retention() {
    retention_case(fresh_cluster_db("retention_cluster")).await;
}

async fn retention_case(args: ta_central::ClickHouseArgs) {
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    for (i, (site, ts)) in [
        ("short", OCT_2025),
        ("short", NOV_2025),
        ("long", OCT_2025),
        ("long", NOV_2025),
    ]
    .into_iter()
    .enumerate()
    {
        insert
            .write(&sample_row(site, "/", 1, ts, i as u64))
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    let built = store::rollup::build_pending(&db, chrono::Utc::now(), 2_000, |_, _, _| {})
        .await
        .unwrap();
    assert_eq!(
        (built.days, built.events),
        (4, 4),
        "each site-day rolled up"
    );
    let policy = lifecycle::RetentionPolicy {
        default_days: 400,
        per_site: lifecycle::RetentionPolicy::parse_overrides("short=20").unwrap(),
    };
    // 2025-12-05: October ended more than 20 days ago, November did not.
    let now = chrono::DateTime::parse_from_rfc3339("2025-12-05T00:00:00Z")
        .unwrap()
        .to_utc();
    let dropped = lifecycle::apply_retention(&db, &policy, now).await.unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        (dropped[0].site_id.as_str(), dropped[0].month),
        ("short", 202510)
    );
    assert_eq!(
        count(&db, "SELECT count() FROM events WHERE site_id = 'short'").await,
        1
    );
    assert_eq!(
        count(&db, "SELECT count() FROM events WHERE site_id = 'long'").await,
        2
    );
    // The expired month's rollups went with it; the others stay, and nothing is pending.
    let oct = u64::from(OCT_2025 / 86_400);
    assert_eq!(
        count(
            &db,
            &format!("SELECT count() FROM day_values WHERE site_id = 'short' AND day = {oct}")
        )
        .await,
        0
    );
    for table in ["visits", "rollup_days"] {
        assert_eq!(
            count(
                &db,
                &format!("SELECT count() FROM {table} WHERE site_id = 'short' AND day = {oct}")
            )
            .await,
            0,
            "{table}"
        );
        assert_eq!(
            count(&db, &format!("SELECT count() FROM {table}")).await,
            3,
            "{table}"
        );
    }
    assert!(
        store::rollup::pending_days(&db, chrono::Utc::now(), 2_000)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn erasure_removes_a_site_or_a_visitor_completely() {
    erasure_case(fresh_db("erasure")).await;
}

#[tokio::test]
async fn on_a_cluster_erasure_removes_a_site_or_a_visitor_completely() {
    erasure_case(fresh_cluster_db("erasure_cluster")).await;
}

async fn erasure_case(args: ta_central::ClickHouseArgs) {
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    for (i, (site, visitor, ts)) in [
        ("gone", 1, OCT_2025),
        ("gone", 2, NOV_2025),
        ("kept", 7, NOV_2025),
        ("kept", 8, NOV_2025),
        ("kept", 7, OCT_2025),
    ]
    .into_iter()
    .enumerate()
    {
        insert
            .write(&sample_row(site, "/", visitor, ts, i as u64))
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    let mut dead = db
        .insert::<store::DeadLetterRow>("dead_letters")
        .await
        .unwrap();
    for (i, raw) in [
        r#"{"site_id":"gone","x":1}"#,
        r#"{"site_id":"kept","visitor_hash":7,"y":1}"#,
        r#"{"site_id":"kept"}"#,
    ]
    .into_iter()
    .enumerate()
    {
        dead.write(&store::DeadLetterRow {
            loaded_at: NOV_2025,
            kafka_topic: "t".into(),
            kafka_partition: 0,
            kafka_offset: 100 + i as u64,
            reason: "malformed: test".into(),
            raw: raw.into(),
        })
        .await
        .unwrap();
    }
    dead.end().await.unwrap();
    store::rollup::build_pending(&db, chrono::Utc::now(), 2_000, |_, _, _| {})
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT count() FROM visits").await, 5);
    assert_eq!(lifecycle::erase_site(&db, "gone").await.unwrap(), 2);
    for table in ["visits", "day_values", "rollup_days"] {
        assert_eq!(
            count(
                &db,
                &format!("SELECT count() FROM {table} WHERE site_id = 'gone'")
            )
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(&db, "SELECT count() FROM events WHERE site_id = 'gone'").await,
        0
    );
    assert_eq!(count(&db, "SELECT count() FROM dead_letters").await, 2);
    lifecycle::erase_visitor(&db, "kept", 7).await.unwrap();
    for table in ["events", "visits", "day_values"] {
        assert_eq!(
            count(
                &db,
                &format!("SELECT count() FROM {table} WHERE visitor_hash = 7")
            )
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(&db, "SELECT count() FROM visits WHERE visitor_hash = 8").await,
        1
    );
    assert_eq!(
        count(&db, "SELECT count() FROM events WHERE visitor_hash = 8").await,
        1
    );
    assert_eq!(count(&db, "SELECT count() FROM dead_letters").await, 1);
    // Each erasure is logged (no identifier), for ta-query to drop its cached answers.
    assert_eq!(count(&db, "SELECT count() FROM erasures").await, 2);
}

#[tokio::test]
async fn dead_letters_older_than_their_retention_are_deleted_and_newer_ones_kept() {
    dead_letter_retention_case(fresh_db("dead_letter_retention")).await;
}

#[tokio::test]
async fn on_a_cluster_dead_letters_older_than_their_retention_are_deleted_and_newer_ones_kept() {
    dead_letter_retention_case(fresh_cluster_db("dead_letter_retention_cluster")).await;
}

async fn dead_letter_retention_case(args: ta_central::ClickHouseArgs) {
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let now = chrono::Utc::now();
    let mut dead = db
        .insert::<store::DeadLetterRow>("dead_letters")
        .await
        .unwrap();
    for (i, age_days) in [45_i64, 31, 29, 1].into_iter().enumerate() {
        dead.write(&store::DeadLetterRow {
            loaded_at: (now - chrono::Duration::days(age_days)).timestamp() as u32,
            kafka_topic: "t".into(),
            kafka_partition: 0,
            kafka_offset: i as u64,
            reason: "malformed: test".into(),
            raw: "{}".into(),
        })
        .await
        .unwrap();
    }
    dead.end().await.unwrap();
    assert_eq!(
        lifecycle::expire_dead_letters(&db, 0, now).await.unwrap(),
        0
    );
    assert_eq!(
        count(&db, "SELECT count() FROM dead_letters").await,
        4,
        "0 keeps them"
    );
    assert_eq!(
        lifecycle::expire_dead_letters(&db, 30, now).await.unwrap(),
        2
    );
    assert_eq!(count(&db, "SELECT count() FROM dead_letters").await, 2);
    assert_eq!(
        lifecycle::expire_dead_letters(&db, 30, now).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn gates_store_only_what_the_partitions_latest_lease_holder_writes() {
    gate_case(fresh_db("gates")).await;
}

#[tokio::test]
async fn on_a_cluster_gates_store_only_what_the_partitions_latest_lease_holder_writes() {
    gate_case(fresh_cluster_db("gates_cluster")).await;
}

/// Writes through the gates with tokens 4 (a stale holder) and 7 (the latest) of partition 0,
/// and 7 on partition 1, which no holder fenced: only partition 0's token-7 rows are stored.
async fn gate_case(args: ta_central::ClickHouseArgs) {
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let (events_gate, dead_gate, offsets_gate) = store::schema::gates();
    offsets::record_fence(&db, "t", 0, 4).await.unwrap();
    offsets::record_fence(&db, "t", 0, 7).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut offset = 0;
    for (partition, token) in [(0u32, 4i64), (0, 7), (1, 7)] {
        let mut data = Vec::new();
        for i in 0..3 {
            let e = ta_shared::testing::event(offset, now);
            let pos = store::SourcePosition {
                topic: "t",
                partition,
                offset,
            };
            let json = e.to_json();
            let row = ta_central::loader::decode(&json, pos, 0).expect("a valid event");
            row.write_row_binary(pos, &mut data);
            data.extend_from_slice(&token.to_le_bytes());
            offset += 1;
            let _ = i;
        }
        store::rows::insert_event_rows(&db, &format!("ta_it_{offset}"), &data, Some(&events_gate))
            .await
            .unwrap();
        let dead = store::DeadLetterRow {
            loaded_at: NOV_2025,
            kafka_topic: "t".into(),
            kafka_partition: partition,
            kafka_offset: offset,
            reason: "malformed: test".into(),
            raw: "{}".into(),
        };
        let mut insert = db
            .insert::<store::rows::GatedDeadLetterRow<'_>>(&dead_gate)
            .await
            .unwrap();
        insert.write(&dead.gated(token)).await.unwrap();
        insert.end().await.unwrap();
        offsets::write_checkpoint(
            &db,
            "t",
            partition,
            offset as i64,
            Some((&offsets_gate, token)),
        )
        .await
        .unwrap();
    }
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Stored {
        kafka_partition: u32,
        kafka_offset: u64,
    }
    let events: Vec<Stored> = db
        .query("SELECT kafka_partition, kafka_offset FROM events ORDER BY kafka_offset")
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<(u32, u64)> = events
        .iter()
        .map(|s| (s.kafka_partition, s.kafka_offset))
        .collect();
    assert_eq!(
        got,
        [(0, 3), (0, 4), (0, 5)],
        "only the latest holder's events"
    );
    let dead: Vec<Stored> = db
        .query("SELECT kafka_partition, kafka_offset FROM dead_letters ORDER BY kafka_offset")
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<(u32, u64)> = dead
        .iter()
        .map(|s| (s.kafka_partition, s.kafka_offset))
        .collect();
    assert_eq!(got, [(0, 6)], "only the latest holder's dead letter");
    assert_eq!(offsets::checkpoint(&db, "t", 0).await.unwrap(), Some(6));
    assert_eq!(
        offsets::checkpoint(&db, "t", 1).await.unwrap(),
        None,
        "unfenced: nothing"
    );
}
