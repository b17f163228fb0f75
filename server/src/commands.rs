//! The `amigo migrations ...`, `amigo check-upgrade`, `amigo worker`, `amigo seed` and `amigo users ...`
//! commands: each a thin layer over one engine verb, printing for people or, with `--json`, for tools.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use engine::runner::Runner;
use engine::status::Status;
use engine::version::Version;
use engine::{Engine, MigrationOverview};
use tokio::sync::watch;

use crate::cli::{MigrationsCommand, SeedArgs, UsersCommand};
use crate::{Error, Result};

/// Who the audit log names for actions taken from the command line.
fn cli_actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

pub async fn migrations(engine: &Engine, command: &MigrationsCommand) -> Result<ExitCode> {
    let actor = cli_actor();
    match command {
        MigrationsCommand::List { json } => {
            let migrations = engine.list().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&migrations)?);
            } else {
                print_table(&migrations);
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::Start { name, parameters, skip_checks, wait } => {
            let values = engine.parameters_from_assignments(name, parameters)?.to_json();
            let values = values.as_object().cloned().unwrap_or_default();
            match skip_checks {
                Some(reason) => engine.start_skipping_checks(name, &actor, &values, reason).await?,
                None => engine.start(name, &actor, &values).await?,
            }
            finish_request(engine, name, "started", *wait).await
        }
        MigrationsCommand::Plan { name, parameters, json } => {
            let plan = engine.plan(name, engine.parameters_from_assignments(name, parameters)?).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print_plan(&plan);
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::Stop { name, rollback } => {
            engine.stop(name, &actor, *rollback).await?;
            println!("{name}: stop requested{}", if *rollback { "; it will be rolled back" } else { "" });
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::Rollback { name, wait } => {
            engine.rollback(name, &actor).await?;
            finish_request(engine, name, "rollback requested", *wait).await
        }
        MigrationsCommand::Resume { name, wait } => {
            engine.resume(name, &actor).await?;
            finish_request(engine, name, "resume requested", *wait).await
        }
        MigrationsCommand::Pause { name } => {
            engine.pause(name, &actor).await?;
            println!("{name}: pause requested; its runner holds it after the unit of work in progress");
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::Continue { name } => {
            engine.continue_run(name, &actor).await?;
            println!("{name}: continuing");
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::Adjust { name, parameters } => {
            let mut values = serde_json::Map::new();
            for assignment in parameters {
                let (key, value) = engine::parameters::split_assignment(assignment).map_err(engine::Error::Parameter)?;
                values.insert(key.to_string(), serde_json::Value::String(value.to_string()));
            }
            let adjusted = engine.adjust(name, &actor, &values).await?;
            let now: Vec<String> = values.keys().map(|key| format!("{key} = {}", adjusted.record.parameters[key])).collect();
            println!("{name}: {} from its next unit of work", now.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::Finalize { name } => {
            let before = engine.migration(name).await?.record;
            engine.finalize(name, &actor).await?;
            let size = engine::plan::bytes_text(before.backup_bytes.unwrap_or_default().max(0) as u64);
            println!("{name}: finalized; dropped {} ({size} when it was made)", before.backup_table.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::CutOver { name } => {
            engine.cut_over(name, &actor).await?;
            println!("{name}: cutting over; its runner swaps the tables next");
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::MarkErrored { name, reason } => {
            let marked = engine.mark_errored(name, &actor, reason).await?;
            println!("{name}: {}", marked.record.status_note.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::MarkCompleted { name, reason } => {
            let marked = engine.mark_completed(name, &actor, reason).await?;
            println!("{name}: {}", marked.record.status_note.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        MigrationsCommand::Check { .. } | MigrationsCommand::New { .. } => {
            unreachable!("`amigo migrations check` and `new` run without connecting (server::run)")
        }
        MigrationsCommand::Errors { name, json } => {
            let errors = engine.errors(name).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&errors)?);
            } else if errors.is_empty() {
                println!("{name} has no errors");
            } else {
                for error in errors {
                    let operation = error.operation_index.map_or_else(|| "-".into(), |index| index.to_string());
                    let query = error.query_id.unwrap_or_default();
                    println!("{}  operation {operation}  {query}\n  {}", error.occurred_at.to_rfc3339(), error.message);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `amigo migrations check`: reads the migration files and checks them with those compiled in, without any
/// database; a line per migration in name order (the order `list` shows and auto-run starts them in), or the
/// problems (and exit code 1). With `servers`, ClickHouse and Postgres then parse the files' statements.
pub async fn check_migrations(
    config: &engine::EngineConfig,
    compiled_in: Vec<engine::definition::MigrationDefinition>,
    servers: bool,
) -> Result<ExitCode> {
    let mut definitions = engine::loader::assemble(compiled_in, config.migrations_dir.as_deref())?;
    definitions.sort_by(|a, b| a.name.cmp(&b.name));
    for definition in definitions {
        let count = definition.operations.len();
        println!("ok {} ({count} operation{})", definition.name, if count == 1 { "" } else { "s" });
    }
    if !servers {
        return Ok(ExitCode::SUCCESS);
    }
    let Some(folder) = config.migrations_dir.as_deref() else {
        println!("no migrations folder (AMIGO_MIGRATIONS_DIR): no statements of files for the servers to parse");
        return Ok(ExitCode::SUCCESS);
    };
    let check = engine::syntax::parse_on_servers(config, &engine::loader::written_sql(folder)).await?;
    if check.problems.is_empty() {
        println!("{check}");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &check.problems {
        eprintln!("{problem}");
    }
    eprintln!("{check}");
    Ok(ExitCode::FAILURE)
}

/// `amigo migrations new NAME --recipe R`: writes the starting file into the migrations folder and says what next.
pub fn new_migration(config: &engine::EngineConfig, name: &str, recipe: engine::scaffold::Recipe) -> Result<ExitCode> {
    let folder = config.migrations_dir.as_deref().ok_or_else(|| {
        crate::Error::Usage("amigo migrations new writes into the folder AMIGO_MIGRATIONS_DIR (or --migrations-dir) names: set it".into())
    })?;
    let path = engine::scaffold::write_new_migration(folder, name, recipe)?;
    println!("wrote {}: edit it, then check it with `amigo migrations check`", path.display());
    Ok(ExitCode::SUCCESS)
}

/// How many of a recipe's statements the text plan prints (`--json` lists every one).
const PLAN_STATEMENTS_SHOWN: usize = 6;

/// A plan as text: the migration, its parameters, each operation with what it sends and its rollback, then the
/// tables it touches, the disk it needs and how long it should take.
fn print_plan(plan: &engine::plan::Plan) {
    use engine::plan::{bytes_text, PlannedWork};
    println!("{}: {}", plan.migration, plan.description);
    println!("parameters: {}", plan.parameters);
    let count = plan.operations.len();
    for (index, operation) in plan.operations.iter().enumerate() {
        println!("operation {}/{count}: {}", index + 1, operation.description);
        match &operation.work {
            PlannedWork::Clickhouse { sql, rollback, .. } | PlannedWork::Postgres { sql, rollback } => {
                let server = if matches!(operation.work, PlannedWork::Postgres { .. }) { "Postgres" } else { "ClickHouse" };
                println!("  {server}: {sql}");
                println!("  rollback: {}", if rollback.trim().is_empty() { "nothing to undo" } else { rollback });
            }
            PlannedWork::Recipe { statements, rollback, note } => {
                for sql in statements.iter().take(PLAN_STATEMENTS_SHOWN) {
                    println!("  sends: {sql}");
                }
                if statements.len() > PLAN_STATEMENTS_SHOWN {
                    println!(
                        "  … and {} more statements of the same shape (--json lists them all)",
                        statements.len() - PLAN_STATEMENTS_SHOWN
                    );
                }
                if !note.is_empty() {
                    println!("  {note}");
                }
                match rollback.as_slice() {
                    [] => println!("  rollback: nothing to undo"),
                    rollback => rollback.iter().for_each(|sql| println!("  rollback sends: {sql}")),
                }
            }
            PlannedWork::Code => println!("  code (a product's Rust): its statements depend on what it reads as it runs"),
        }
    }
    for table in &plan.tables {
        let partitions = if table.partitions > 0 { format!("{} partitions, ", table.partitions) } else { String::new() };
        println!("touches {}: {partitions}{} rows, {}", table.table, table.rows, bytes_text(table.bytes));
    }
    println!("disk: {}", plan.disk_text());
    println!("duration: {}", plan.duration_text());
}

/// Prints what was queued; with `--wait`, runs a runner here until the migration's run ends.
async fn finish_request(engine: &Engine, name: &str, what: &str, wait: bool) -> Result<ExitCode> {
    if !wait {
        println!("{name}: {what}; a runner (amigo serve or amigo worker) carries it out");
        return Ok(ExitCode::SUCCESS);
    }
    let final_state = run_until_settled(engine, name).await?;
    let status = final_state.record.status;
    println!("{name}: {status}");
    Ok(if matches!(status, Status::Completed | Status::RolledBack) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs a runner in this process until `name` is neither queued, running nor rolling back; Ctrl-C stops the
/// runner, which leaves the migration errored and resumable.
async fn run_until_settled(engine: &Engine, name: &str) -> Result<MigrationOverview> {
    let (shutdown, shutdown_signal) = watch::channel(false);
    let mut changes = engine.subscribe().await;
    let runner = Runner::new(engine.clone());
    let runner_task = tokio::spawn(async move { runner.run(shutdown_signal).await });
    let mut progress = ProgressDisplay::new();
    let outcome = loop {
        let overview = engine.migration(name).await?;
        progress.show(&overview);
        let record = &overview.record;
        if !record.status.is_active() && record.requested_action.is_none() && record.runner_id.is_none() {
            break overview;
        }
        tokio::select! {
            _ = changes.recv() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\ninterrupted: stopping the runner; `amigo migrations resume {name}` continues");
                let _ = shutdown.send(true);
            }
        }
    };
    progress.finish();
    let _ = shutdown.send(true);
    let _ = runner_task.await;
    Ok(outcome)
}

/// A one-line progress bar on a terminal; a line per change of operation otherwise.
struct ProgressDisplay {
    terminal: bool,
    last_line: String,
}

impl ProgressDisplay {
    fn new() -> ProgressDisplay {
        ProgressDisplay { terminal: std::io::stderr().is_terminal(), last_line: String::new() }
    }

    fn show(&mut self, overview: &MigrationOverview) {
        let record = &overview.record;
        let filled = usize::try_from(record.progress.clamp(0, 100) / 5).unwrap_or(0);
        let operation = overview.current_operation.as_deref().unwrap_or("");
        let phase = if record.rolling_back { "rolling back" } else { "" };
        let line = format!(
            "{} [{}{}] {:>3}% {} operation {}/{} {operation} {phase}",
            record.name,
            "#".repeat(filled),
            ".".repeat(20 - filled),
            record.progress,
            record.status,
            record.current_operation_index + 1,
            overview.operation_count,
        );
        if line == self.last_line {
            return;
        }
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        self.last_line = line;
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

fn print_table(migrations: &[MigrationOverview]) {
    println!("{:<32} {:<22} {:>5}  {:<9} {:<25} {:<25}", "NAME", "PHASE", "DONE", "OPERATION", "STARTED", "FINISHED");
    for overview in migrations {
        let record = &overview.record;
        let time =
            |at: Option<chrono::DateTime<chrono::Utc>>| at.map_or_else(|| "-".into(), |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        println!(
            "{:<32} {:<22} {:>4}%  {:<9} {:<25} {:<25}",
            record.name,
            overview.phase.to_string(),
            record.progress,
            format!("{}/{}", record.current_operation_index, overview.operation_count),
            time(record.started_at),
            time(record.finished_at),
        );
        for shard in &record.shards {
            println!(
                "  shard {:<3} {:>4}%  operation {:<3} on {:<22} {}",
                shard.shard,
                shard.progress,
                shard.operation_index,
                shard.node,
                if shard.current_query_id.is_empty() { "-" } else { &shard.current_query_id },
            );
        }
    }
}

/// `amigo check-upgrade`: prints the refusal and exits 1 when migrations are pending.
pub async fn check_upgrade(engine: &Engine, target: Option<&str>) -> Result<ExitCode> {
    let target = target
        .map(|text| Version::parse(text).ok_or_else(|| Error::Usage(format!("--to {text:?} is not a version like 1.2.3"))))
        .transpose()?;
    let check = engine.check_upgrade(target.as_ref()).await?;
    if check.is_ready() {
        println!("Async migrations are completed: amigo {} may run.", check.target);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}", check.refusal());
        Ok(ExitCode::FAILURE)
    }
}

/// `amigo worker`: a runner without the web server, until Ctrl-C or SIGTERM.
pub async fn worker(engine: Engine) -> Result<ExitCode> {
    let (shutdown, shutdown_signal) = watch::channel(false);
    let runner = Runner::new(engine);
    let runner_task = tokio::spawn(async move { runner.run(shutdown_signal).await });
    crate::web::shutdown_signal().await;
    let _ = shutdown.send(true);
    let _ = runner_task.await;
    Ok(ExitCode::SUCCESS)
}

/// `amigo seed`: the product's demo data: events and persons in ClickHouse, then teams in Postgres (added
/// only where missing, so a second seed adds none).
pub async fn seed(engine: &Engine, args: &SeedArgs) -> Result<ExitCode> {
    let request = demo::SeedRequest { replace: args.replace, ..demo::SeedRequest::new(args.events) };
    let seeded_events = if args.if_empty && demo::events_table_exists(engine.clickhouse()).await? {
        let partitions = engine::tables::partition_row_counts(engine.clickhouse(), demo::EVENTS_TABLE).await?;
        partitions.iter().map(|(_, rows)| rows).sum::<u64>() > 0
    } else {
        false
    };
    if seeded_events {
        println!("events already there; left as they are");
    } else {
        println!("{}", demo::seed(engine.clickhouse(), &request).await?);
    }
    let teams = demo::seed_teams(engine.store().pool(), request.teams).await?;
    println!("{teams} teams in Postgres");
    Ok(ExitCode::SUCCESS)
}

/// `amigo users create`: adds an account and prints how to log in with it.
pub async fn users(engine: &Engine, command: &UsersCommand) -> Result<ExitCode> {
    match command {
        UsersCommand::Create { email, staff } => {
            let password = new_password()?;
            let user = engine::accounts::Accounts::of(engine).create_user(email, &password, *staff).await?;
            let kind = if user.is_staff { "staff account" } else { "account (not staff: it cannot use the staff page)" };
            println!("created {kind} {}; log in at /login with this email and the password", user.email);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The new account's password: `AMIGO_USER_PASSWORD`, or typed twice on a terminal without echo.
fn new_password() -> Result<String> {
    if let Ok(password) = std::env::var("AMIGO_USER_PASSWORD") {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage("set AMIGO_USER_PASSWORD, or run `amigo users create` on a terminal to type the password".into()));
    }
    let password = read_hidden("Password: ")?;
    if read_hidden("Password again: ")? != password {
        return Err(Error::Usage("the two passwords differ; nothing was created".into()));
    }
    Ok(password)
}

/// Reads a line from the terminal with echo switched off (`stty -echo`), switching it back on afterwards.
fn read_hidden(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let stty = |setting: &str| std::process::Command::new("stty").arg(setting).stdin(std::process::Stdio::inherit()).status();
    stty("-echo")?;
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    stty("echo")?;
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
