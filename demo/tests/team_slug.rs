//! 0004_team_slug on a real Postgres team table: every team gets the slug of its name and the column ends NOT
//! NULL (teams created during the run included), rollback restores the table exactly, a stop keeps the
//! batches done and resume continues from the checkpoint, a failure injected mid-way and resumed ends
//! identical to a clean run, and an instance that has the column does not need it.

use std::time::Duration;

use demo::migrations::team_slug::{self, NAME};
use demo::seed_teams;
use engine::status::{Phase, Status};
use engine::testing::{is_settled, spawn_runner, wait_for};
use engine::{Engine, MigrationOverview};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;

const TESTER: &str = "tester@example.com";

async fn seeded(teams: u32) -> Engine {
    let config = engine::testing::fresh_databases().await;
    let engine = Engine::connect(&config, vec![team_slug::definition()]).await.expect("connect");
    assert_eq!(seed_teams(pool(&engine), teams).await.unwrap(), u64::from(teams));
    engine
}

fn pool(engine: &Engine) -> &PgPool {
    engine.store().pool()
}

async fn start(engine: &Engine, batch_size: i64) {
    let parameters = json!({ "batch_size": batch_size });
    engine.start(NAME, TESTER, parameters.as_object().unwrap()).await.expect("start");
}

async fn settled(engine: &Engine) -> MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(120), "settled", is_settled).await
}

fn last_id(overview: &MigrationOverview) -> Option<i64> {
    overview.record.checkpoint.as_ref().and_then(|checkpoint| checkpoint["last_key"].as_i64())
}

/// Waits until operation 1 has saved a checkpoint past `id`.
async fn wait_for_batches_past(engine: &Engine, id: i64) -> MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(60), "part way through the batches", |overview| {
        overview.record.current_operation_index == 1 && last_id(overview).is_some_and(|last| last > id)
    })
    .await
}

/// The slug the product expects, written independently of the migration's SQL.
fn expected_slug(id: i64, name: &str) -> String {
    let words: Vec<String> =
        name.split(|character: char| !character.is_ascii_alphanumeric()).filter(|word| !word.is_empty()).map(str::to_lowercase).collect();
    format!("{}-{id}", words.join("-"))
}

/// Teams whose slug is missing or not the expected one.
async fn wrong_slugs(engine: &Engine) -> Vec<(i64, String, Option<String>)> {
    let teams: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, slug FROM team ORDER BY id").fetch_all(pool(engine)).await.unwrap();
    teams.into_iter().filter(|(id, name, slug)| slug.as_deref() != Some(expected_slug(*id, name).as_str())).collect()
}

/// Each column of team: name, type, nullable.
async fn columns(engine: &Engine) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = 'team' ORDER BY ordinal_position",
    )
    .fetch_all(pool(engine))
    .await
    .unwrap()
}

/// A hash of every row, every column included.
async fn table_checksum(engine: &Engine) -> String {
    sqlx::query_scalar("SELECT md5(coalesce(string_agg(team::text, '|' ORDER BY id), '')) FROM team").fetch_one(pool(engine)).await.unwrap()
}

async fn filled_ids(engine: &Engine) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM team WHERE slug IS NOT NULL ORDER BY id").fetch_all(pool(engine)).await.unwrap()
}

#[tokio::test]
async fn every_team_gets_its_slug_in_batches_and_the_column_ends_not_null() {
    let engine = seeded(20_000).await;
    let _runner = spawn_runner(&engine);
    start(&engine, 50).await;
    // Operation 1 of 3 spans 33% to 66%: the checkpoint and progress move batch by batch.
    let batching = wait_for_batches_past(&engine, 5_000).await;
    assert!(batching.record.progress > 33 && batching.record.progress < 67, "{:?}", batching.record);
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);

    assert_eq!(wrong_slugs(&engine).await, []);
    assert_eq!(columns(&engine).await.last().unwrap(), &("slug".into(), "text".into(), "NO".into()));
    let slug: String = sqlx::query_scalar("SELECT slug FROM team WHERE id = 2").fetch_one(pool(&engine)).await.unwrap();
    assert_eq!(slug, "blue-harbor-eu-2");
}

#[tokio::test]
async fn teams_created_while_it_runs_get_their_slug_too() {
    let engine = seeded(20_000).await;
    let (stop_creating, mut stopped) = watch::channel(false);
    let creator_pool = pool(&engine).clone();
    let creator = tokio::spawn(async move {
        let mut created = 0;
        while !*stopped.borrow_and_update() {
            // The product, not yet writing slugs, creates teams: some after the batches' position, some before.
            let id = if created % 2 == 0 { 1_000_000 + created } else { -created };
            let insert = sqlx::query("INSERT INTO team (id, name, created_at) VALUES ($1, 'Late Team', now())").bind(id);
            match insert.execute(&creator_pool).await {
                Ok(_) => created += 1,
                // Once slug is NOT NULL, a team without one is refused: from then on the product writes slugs.
                Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23502") => break,
                Err(error) => panic!("create a team: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        created
    });
    let _runner = spawn_runner(&engine);
    start(&engine, 50).await;
    let done = settled(&engine).await;
    stop_creating.send_replace(true);
    let created = creator.await.unwrap();
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert!(created >= 10, "only {created} teams were created during the run");
    assert_eq!(wrong_slugs(&engine).await, []);
}

#[tokio::test]
async fn stop_and_rollback_restores_the_team_table_exactly() {
    let engine = seeded(20_000).await;
    let (original_columns, original_rows) = (columns(&engine).await, table_checksum(&engine).await);
    let _runner = spawn_runner(&engine);
    start(&engine, 10).await;
    wait_for_batches_past(&engine, 1_000).await;
    engine.stop(NAME, TESTER, true).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", engine.errors(NAME).await);
    assert_eq!(columns(&engine).await, original_columns);
    assert_eq!(table_checksum(&engine).await, original_rows);
}

#[tokio::test]
async fn a_stop_keeps_the_batches_done_and_resume_continues_from_the_last_id() {
    let engine = seeded(20_000).await;
    let _runner = spawn_runner(&engine);
    start(&engine, 10).await;
    wait_for_batches_past(&engine, 1_000).await;
    engine.stop(NAME, TESTER, false).await.unwrap();
    let stopped = settled(&engine).await;
    assert_eq!(stopped.record.status, Status::Errored);
    assert_eq!(stopped.record.current_operation_index, 1);
    let last = last_id(&stopped).expect("the checkpoint holds the last id done");
    assert!(last < 20_000, "stopped before the end: {last}");
    // Every team up to the checkpoint is filled; past it at most the batch in flight, if it committed.
    let filled = filled_ids(&engine).await;
    assert!(filled.len() as i64 >= last && filled.len() as i64 <= last + 10, "{} filled, checkpoint {last}", filled.len());
    assert_eq!(filled[..last as usize], (1..=last).collect::<Vec<_>>());

    engine.resume(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert_eq!(wrong_slugs(&engine).await, []);
}

#[tokio::test]
async fn batch_size_adjusted_while_paused_is_what_the_next_batches_use() {
    let engine = seeded(2_000).await;
    // Every UPDATE statement on team counts once: operation 1's batches, then operation 2's fill.
    sqlx::raw_sql(
        "CREATE TABLE team_updates (at timestamptz NOT NULL DEFAULT clock_timestamp());
         CREATE FUNCTION count_team_update() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO team_updates DEFAULT VALUES; RETURN NULL; END $$;
         CREATE TRIGGER team_updated AFTER UPDATE ON team FOR EACH STATEMENT EXECUTE FUNCTION count_team_update();",
    )
    .execute(pool(&engine))
    .await
    .unwrap();
    let updates = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM team_updates").fetch_one(pool(&engine)).await.unwrap() };
    start(&engine, 10).await;
    // Paused before the runner takes it up: it holds before the first batch.
    engine.pause(NAME, TESTER).await.unwrap();
    let _runner = spawn_runner(&engine);
    wait_for(&engine, NAME, Duration::from_secs(60), "paused", |overview| overview.phase == Phase::Paused).await;
    assert_eq!(updates().await, 0);

    let refused = engine.adjust(NAME, TESTER, json!({ "batch_size": 0 }).as_object().unwrap()).await.unwrap_err();
    assert_eq!(refused.to_string(), format!("parameter batch_size of {NAME}: 0 is out of range: it must be from 1 to 100000"));
    let adjusted = engine.adjust(NAME, TESTER, json!({ "batch_size": "1000" }).as_object().unwrap()).await.unwrap();
    assert_eq!(adjusted.record.parameters["batch_size"], 1000);
    assert_eq!(adjusted.phase, Phase::Paused, "adjusting does not end the pause");
    engine.continue_run(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert_eq!(wrong_slugs(&engine).await, []);
    // 2 000 teams in batches of 1 000 (and the batch that finds none left), then operation 2's one UPDATE; at
    // the 10 the run started with they would have been 201.
    assert_eq!(updates().await, 4);
    let audit = engine.audit_log(10).await.unwrap();
    let adjust = audit.iter().find(|entry| entry.action == "adjust").expect("the adjustment is audited");
    assert_eq!(adjust.parameters, json!({ "batch_size": { "from": 10, "to": 1000 } }));
    assert_eq!(audit.iter().filter(|entry| entry.action == "adjust").count(), 1, "the refused one changed nothing");
}

#[tokio::test]
async fn a_failure_mid_way_resumed_from_its_checkpoint_is_identical_to_a_clean_run() {
    let clean = seeded(20_000).await;
    let clean_runner = spawn_runner(&clean);
    start(&clean, 100).await;
    assert_eq!(settled(&clean).await.record.status, Status::Completed);
    drop(clean_runner);

    let failing = seeded(20_000).await;
    failing.update_setting("disable_auto_rollback", &json!(true), TESTER).await.unwrap();
    // Injected failure: updating team 12,345 raises, as a broken row or a lost connection would.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_team_12345() RETURNS trigger AS $$
         BEGIN RAISE EXCEPTION 'injected failure on team %', NEW.id; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER refuse_team_12345 BEFORE UPDATE ON team FOR EACH ROW WHEN (NEW.id = 12345)
             EXECUTE FUNCTION refuse_team_12345();",
    )
    .execute(pool(&failing))
    .await
    .unwrap();
    let _runner = spawn_runner(&failing);
    start(&failing, 100).await;
    let errored = settled(&failing).await;
    assert_eq!(errored.record.status, Status::Errored);
    assert_eq!(errored.record.current_operation_index, 1);
    assert_eq!(last_id(&errored), Some(12_300), "the checkpoint is the last batch before the failing one");
    let message = failing.errors(NAME).await.unwrap().last().unwrap().message.clone();
    assert!(message.contains("injected failure on team 12345"), "{message}");
    assert_eq!(filled_ids(&failing).await.len(), 12_300, "the failing batch rolled back whole");

    sqlx::raw_sql("DROP TRIGGER refuse_team_12345 ON team; DROP FUNCTION refuse_team_12345();").execute(pool(&failing)).await.unwrap();
    failing.resume(NAME, TESTER).await.unwrap();
    let done = settled(&failing).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", failing.errors(NAME).await);
    assert_eq!(table_checksum(&failing).await, table_checksum(&clean).await);
    assert_eq!(columns(&failing).await, columns(&clean).await);
}

#[tokio::test]
async fn an_instance_whose_teams_have_slugs_does_not_need_it() {
    let engine = seeded(3).await;
    sqlx::query("ALTER TABLE team ADD COLUMN slug text NOT NULL DEFAULT ''").execute(pool(&engine)).await.unwrap();
    engine.complete_not_required().await.unwrap();
    let record = engine.migration(NAME).await.unwrap().record;
    assert_eq!(record.status, Status::Completed);
    assert!(record.started_at.is_none(), "it never ran");
}

#[tokio::test]
async fn seeding_teams_again_adds_only_the_missing_ones() {
    let engine = seeded(5).await;
    let before = table_checksum(&engine).await;
    assert_eq!(seed_teams(pool(&engine), 5).await.unwrap(), 5);
    assert_eq!(table_checksum(&engine).await, before, "the same teams, unchanged");
    assert_eq!(seed_teams(pool(&engine), 8).await.unwrap(), 8);
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM team ORDER BY id").fetch_all(pool(&engine)).await.unwrap();
    assert_eq!(names[..3], ["Hedgehog & Co.", "Blue Harbor (EU)", "Northwind Traders"]);
}
