//! The pressure signals on a real ClickHouse: a partition with too many active parts pauses a run, and the
//! signal clears once merges catch up.

use engine::definition::CheckOutcome;
use engine::pressure::{clickhouse_pressure, MAX_PARTS_PER_PARTITION};
use engine::Engine;

#[tokio::test]
async fn too_many_active_parts_in_a_partition_is_pressure_until_merged() {
    let engine = Engine::connect_with(&engine::testing::fresh_databases().await, vec![]).await.unwrap();
    let client = engine.clickhouse().client();
    client.query("CREATE TABLE crowded (n UInt64) ENGINE = MergeTree ORDER BY n").execute().await.unwrap();
    assert_eq!(clickhouse_pressure(engine.clickhouse(), &["crowded"]).await.unwrap(), CheckOutcome::Pass);

    client.query("SYSTEM STOP MERGES crowded").execute().await.unwrap();
    for batch in 0..MAX_PARTS_PER_PARTITION {
        client.query(&format!("INSERT INTO crowded VALUES ({batch})")).execute().await.unwrap();
    }
    let CheckOutcome::Fail(reason) = clickhouse_pressure(engine.clickhouse(), &["crowded", "other"]).await.unwrap() else {
        panic!("{MAX_PARTS_PER_PARTITION} parts in one partition must count as pressure");
    };
    assert_eq!(reason, format!("partition all of crowded has {MAX_PARTS_PER_PARTITION} active parts (pausing from {MAX_PARTS_PER_PARTITION}) until merges catch up"));
    assert_eq!(clickhouse_pressure(engine.clickhouse(), &["other"]).await.unwrap(), CheckOutcome::Pass, "only the named tables count");

    client.query("SYSTEM START MERGES crowded").execute().await.unwrap();
    client.query("OPTIMIZE TABLE crowded FINAL").execute().await.unwrap();
    assert_eq!(clickhouse_pressure(engine.clickhouse(), &["crowded"]).await.unwrap(), CheckOutcome::Pass);
}
