//! The pressure signals on a real ClickHouse: a partition with too many active parts pauses a run, and the
//! signal clears once merges catch up; a disk under the free-space share pauses it on servers that report disks.

use engine::definition::CheckOutcome;
use engine::pressure::{clickhouse_pressure, MAX_PARTS_PER_PARTITION};
use engine::Engine;

#[tokio::test]
async fn too_many_active_parts_in_a_partition_is_pressure_until_merged() {
    let engine = Engine::connect(&engine::testing::fresh_databases().await, vec![]).await.unwrap();
    let client = engine.clickhouse().client();
    client.query("CREATE TABLE crowded (n UInt64) ENGINE = MergeTree ORDER BY n").execute().await.unwrap();
    assert_eq!(clickhouse_pressure(engine.clickhouse(), &["crowded"], 0).await.unwrap(), CheckOutcome::Pass);

    client.query("SYSTEM STOP MERGES crowded").execute().await.unwrap();
    for batch in 0..MAX_PARTS_PER_PARTITION {
        client.query(&format!("INSERT INTO crowded VALUES ({batch})")).execute().await.unwrap();
    }
    let CheckOutcome::Fail(reason) = clickhouse_pressure(engine.clickhouse(), &["crowded", "other"], 0).await.unwrap() else {
        panic!("{MAX_PARTS_PER_PARTITION} parts in one partition must count as pressure");
    };
    assert_eq!(reason, format!("partition all of crowded has {MAX_PARTS_PER_PARTITION} active parts (pausing from {MAX_PARTS_PER_PARTITION}) until merges catch up"));
    assert_eq!(clickhouse_pressure(engine.clickhouse(), &["other"], 0).await.unwrap(), CheckOutcome::Pass, "only the named tables count");

    client.query("SYSTEM START MERGES crowded").execute().await.unwrap();
    client.query("OPTIMIZE TABLE crowded FINAL").execute().await.unwrap();
    assert_eq!(clickhouse_pressure(engine.clickhouse(), &["crowded"], 0).await.unwrap(), CheckOutcome::Pass);
}

#[tokio::test]
async fn a_disk_under_the_free_share_is_pressure_where_the_server_reports_disks() {
    let engine = Engine::connect(&engine::testing::fresh_databases().await, vec![]).await.unwrap();
    let clickhouse = engine.clickhouse();
    clickhouse.client().query("CREATE TABLE roomy (n UInt64) ENGINE = MergeTree ORDER BY n").execute().await.unwrap();
    assert_eq!(clickhouse_pressure(clickhouse, &["roomy"], 0).await.unwrap(), CheckOutcome::Pass, "0 turns the disk check off");
    let outcome = clickhouse_pressure(clickhouse, &["roomy"], 100).await.unwrap();
    if clickhouse.capabilities().reports_disks() {
        let CheckOutcome::Fail(reason) = outcome else { panic!("no disk is 100% free: asking for 100% must pause") };
        assert!(
            reason.starts_with("only ")
                && reason.contains("% of ClickHouse disk ")
                && reason.ends_with("(pausing under 100%, the setting min_free_disk_percent)"),
            "{reason}"
        );
    } else {
        assert_eq!(outcome, CheckOutcome::Pass, "a server without system.disks has no disk check");
    }
}
