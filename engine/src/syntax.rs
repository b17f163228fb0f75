//! `amigo migrations check --servers`: the product's ClickHouse and Postgres parse every whole statement the
//! migration files write (with the default parameters), without running any of it.
//!
//! ClickHouse parses with `EXPLAIN AST` (any statement since 21.1; older servers cannot parse without
//! running, and their statements are counted as not parsed). Postgres parses the statements as the body of a
//! temporary SQL function created in a transaction that is rolled back: its parser reads every statement, and
//! nothing of it is kept. Only syntax errors are problems there: that a table or column does not exist yet is
//! not, since an earlier operation may create it.

use std::fmt;

use sqlx::postgres::PgPoolOptions;

use crate::clickhouse::ClickHouse;
use crate::loader::{Database, Problem, WrittenSql};
use crate::{EngineConfig, Error, Result};

/// Postgres' SQLSTATE for a syntax error.
const POSTGRES_SYNTAX_ERROR: &str = "42601";

/// What the servers made of the statements of the migration files.
#[derive(Debug, Default)]
pub struct SyntaxCheck {
    /// Statements each server parsed without a problem.
    pub parsed_by_clickhouse: usize,
    pub parsed_by_postgres: usize,
    /// ClickHouse statements the server could not parse without running them, with why.
    pub not_parsed: Option<(usize, String)>,
    /// The statements a server refused, each at its place in its file with the server's words.
    pub problems: Vec<Problem>,
}

impl fmt::Display for SyntaxCheck {
    /// The summary line(s) `amigo migrations check --servers` prints after the migrations.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "the servers parsed {} ClickHouse and {} Postgres statement{} of the migration files without running them",
            self.parsed_by_clickhouse,
            self.parsed_by_postgres,
            if self.parsed_by_postgres == 1 { "" } else { "s" },
        )?;
        if let Some((count, reason)) = &self.not_parsed {
            write!(formatter, "\nnot parsed: {count} ClickHouse statement{} ({reason})", if *count == 1 { "" } else { "s" })?;
        }
        Ok(())
    }
}

/// Connects to the configured ClickHouse and Postgres (changing neither) and has them parse `statements`.
pub async fn parse_on_servers(config: &EngineConfig, statements: &[WrittenSql]) -> Result<SyntaxCheck> {
    let clickhouse = ClickHouse::connect(&config.clickhouse_url, &config.clickhouse_database).await?;
    let postgres = PgPoolOptions::new().max_connections(1).connect(&config.database_url).await?;
    let mut check = SyntaxCheck::default();
    let explains = clickhouse.capabilities().explains_syntax();
    for statement in statements {
        let sql = statement.with_defaults(clickhouse.database());
        match statement.database {
            Database::ClickHouse if explains => match clickhouse.refusal_to_parse(&sql).await? {
                None => check.parsed_by_clickhouse += 1,
                Some(refusal) => check.problems.push(statement.problem(format!("ClickHouse cannot parse it: {refusal}"))),
            },
            Database::ClickHouse => {
                let reason =
                    format!("ClickHouse {} cannot parse a statement without running it; EXPLAIN AST does since 21.1", clickhouse.version());
                check.not_parsed.get_or_insert((0, reason)).0 += 1;
            }
            Database::Postgres => match parse_on_postgres(&postgres, &sql).await? {
                None => check.parsed_by_postgres += 1,
                Some(refusal) => check.problems.push(statement.problem(format!("Postgres cannot parse it: {refusal}"))),
            },
        }
    }
    postgres.close().await;
    Ok(check)
}

/// Postgres' syntax error in `sql`, if it has one: `sql` becomes the body of a temporary function, which
/// Postgres parses when it is created (`check_function_bodies`), in a transaction rolled back at once.
async fn parse_on_postgres(postgres: &sqlx::PgPool, sql: &str) -> Result<Option<String>> {
    let tag = (0..).map(|number| format!("$amigo_parse{number}$")).find(|tag| !sql.contains(tag.as_str())).unwrap_or_default();
    let mut transaction = postgres.begin().await?;
    sqlx::raw_sql("SET LOCAL check_function_bodies = on").execute(&mut *transaction).await?;
    let created = sqlx::raw_sql(&format!("CREATE FUNCTION pg_temp.amigo_parse() RETURNS void LANGUAGE sql AS {tag}\n{sql}\n{tag}"))
        .execute(&mut *transaction)
        .await;
    transaction.rollback().await?;
    match created {
        Ok(_) => Ok(None),
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(POSTGRES_SYNTAX_ERROR) => {
            Ok(Some(error.message().to_string()))
        }
        // Anything else is about the schema as it is now (a table an earlier operation creates), not syntax.
        Err(sqlx::Error::Database(_)) => Ok(None),
        Err(error) => Err(Error::from(error)),
    }
}
