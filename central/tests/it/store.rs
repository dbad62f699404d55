use ta_central::store::{self, EventRow};

use crate::{fresh_db, sample_row};

#[tokio::test]
async fn migrations_apply_once_and_are_recorded() {
    let args = fresh_db("migrations");
    assert_eq!(store::migrate(&args).await.unwrap(), vec![1]);
    assert_eq!(
        store::migrate(&args).await.unwrap(),
        Vec::<u32>::new(),
        "second run applies nothing"
    );
    let db = args.client();
    let n: u64 = db
        .query("SELECT count() FROM schema_migrations")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(n, 1);
    for table in ["events", "dead_letters"] {
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
    let db = args.client();
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
async fn next_offset_is_one_past_the_highest_stored_offset_of_that_partition() {
    let args = fresh_db("next_offset");
    store::migrate(&args).await.unwrap();
    let db = args.client();
    assert_eq!(store::next_offset(&db, "t", 0).await.unwrap(), None);
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    for offset in [3, 9, 4] {
        insert
            .write(&sample_row("s", "/", 1, 1_764_000_000, offset))
            .await
            .unwrap();
    }
    let mut other = sample_row("s", "/", 1, 1_764_000_000, 100);
    other.kafka_partition = 1;
    insert.write(&other).await.unwrap();
    insert.end().await.unwrap();
    assert_eq!(store::next_offset(&db, "t", 0).await.unwrap(), Some(10));
    assert_eq!(store::next_offset(&db, "t", 1).await.unwrap(), Some(101));
    assert_eq!(
        store::next_offset(&db, "other-topic", 0).await.unwrap(),
        None
    );
}
