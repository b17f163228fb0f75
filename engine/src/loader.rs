//! Migrations as files: reads a folder of declarative `NAME.toml` files into definitions, refusing every file it
//! cannot fully read with its path, line and what is wrong, and checks a whole set of definitions (names unique,
//! every dependency known, no cycle). The format is documented in docs/writing-migrations.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::Row;
use toml::Spanned;

use crate::clickhouse::quote_identifier;
use crate::context::MigrationContext;
use crate::definition::{fill_placeholders, placeholders, CheckOutcome, MigrationDefinition, Operation, OperationAction, StepFn};
use crate::parameters::{ParameterKind, ParameterSpec, ParameterValue, Parameters, MAX_TEXT_LENGTH};
use crate::recipes::move_partitions::{MovePartitions, PartitionMove};
use crate::recipes::mutation::Mutation;
use crate::recipes::postgres_batches::PostgresBatches;
use crate::recipes::rewrite_table::RewriteTable;
use crate::version::{Version, VersionRange};
use crate::{Error, Result};

/// The migrations compiled into the binary (`compiled_in`, the product's Rust definitions) followed by those of `folder`'s files in name order, checked as a
/// whole: what the engine connects with and `amigo migrations check` checks. Refused with every problem of every
/// file and of the set at once.
pub fn assemble(compiled_in: Vec<MigrationDefinition>, folder: Option<&Path>) -> Result<Vec<MigrationDefinition>> {
    let Some(folder) = folder else {
        check(&compiled_in)?;
        return Ok(compiled_in);
    };
    let loaded = load_folder(folder, &compiled_in)?;
    let mut definitions = compiled_in;
    definitions.extend(loaded);
    Ok(definitions)
}

/// Reads every `*.toml` file of `folder` (not its subfolders, nor files whose names start with `.`) into a
/// definition, in name order, and checks them together with `alongside` (the migrations they join) as in
/// [`check`]. Nothing is returned unless every file reads and the whole set checks.
pub fn load_folder(folder: &Path, alongside: &[MigrationDefinition]) -> Result<Vec<MigrationDefinition>> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    match std::fs::read_dir(folder) {
        Ok(entries) => {
            for entry in entries {
                match entry {
                    Ok(entry) => files.push(entry.path()),
                    Err(error) => problems.push(Problem::in_file(folder, format!("cannot list the folder: {error}"))),
                }
            }
        }
        Err(error) => problems.push(Problem::in_file(folder, format!("cannot read the migrations folder (AMIGO_MIGRATIONS_DIR): {error}"))),
    }
    files.retain(|path| is_migration_file(path));
    files.sort();

    let mut loaded = Vec::new();
    let mut origins = Vec::new();
    let mut unreadable = BTreeSet::new();
    for path in files {
        let stem = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        let file = MigrationFileReader::read(&path, &stem);
        problems.extend(file.problems);
        loaded.extend(file.definition);
        match file.origin {
            Some(origin) => origins.push(origin),
            // Other files may name it in depends_on: it exists, only broken.
            None => {
                unreadable.insert(stem);
            }
        }
    }
    let members: Vec<Member> = alongside.iter().map(Member::compiled_in).chain(origins.iter().map(Member::from_file)).collect();
    problems.extend(set_problems(&members, &unreadable));
    problems.sort_by(|one, other| (&one.path, one.line, one.column).cmp(&(&other.path, other.line, other.column)));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(Error::InvalidMigrations(problems))
    }
}

/// One migration file compiled into the product's binary (`include_str!`), read as a file of the migrations
/// folder is: `path` (ending in `NAME.toml`) names it in problems and gives the migration its name. The set it
/// joins is checked when the engine connects, as for every definition compiled in.
///
/// ```
/// let definition = engine::loader::read_text(
///     "migrations/0100_orders_note.toml",
///     r#"
/// description = "Give every order a note"
/// [[operations]]
/// description = "add the column note"
/// clickhouse = "ALTER TABLE {database}.orders ADD COLUMN IF NOT EXISTS note String"
/// rollback = "ALTER TABLE {database}.orders DROP COLUMN IF EXISTS note"
/// "#,
/// )
/// .unwrap();
/// assert_eq!(definition.name, "0100_orders_note");
/// ```
pub fn read_text(path: &str, text: &str) -> Result<MigrationDefinition> {
    let path = Path::new(path);
    let stem = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let file = MigrationFileReader::parse(path, &stem, text.to_string());
    match file.definition {
        Some(definition) if file.problems.is_empty() => Ok(definition),
        _ => Err(Error::InvalidMigrations(file.problems)),
    }
}

/// A whole statement a migration file writes (an operation's, a rollback, a check or `is_required`), with
/// where it is: what `amigo migrations check --servers` has the servers parse.
#[derive(Debug, Clone)]
pub struct WrittenSql {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The key it is written under: `clickhouse`, `postgres`, `rollback`, `prechecks`, …
    pub field: String,
    pub database: Database,
    /// As written, with its `{placeholders}`.
    pub template: String,
    /// The migration's parameters, whose defaults fill the placeholders.
    parameters: Vec<ParameterSpec>,
}

impl WrittenSql {
    /// The statement as a run with the default parameters would send it to a ClickHouse database named
    /// `clickhouse_database`.
    pub fn with_defaults(&self, clickhouse_database: &str) -> String {
        fill_placeholders(&self.template, |name| {
            if name == "database" && self.database == Database::ClickHouse {
                return quote_identifier(clickhouse_database);
            }
            let Some(spec) = self.parameters.iter().find(|spec| spec.name == name) else {
                return format!("{{{name}}}");
            };
            match self.database {
                Database::ClickHouse => Parameters::sql_literal(&spec.kind, &spec.default),
                Database::Postgres => Parameters::postgres_literal(&spec.kind, &spec.default),
            }
        })
    }

    /// A problem at this statement's place in its file.
    pub fn problem(&self, message: String) -> Problem {
        Problem { path: Some(self.path.clone()), line: Some(self.line), column: Some(self.column), message }
    }
}

/// The whole statements of every file of `folder` that reads without a problem, file by file in name order.
pub fn written_sql(folder: &Path) -> Vec<WrittenSql> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
    files.retain(|path| is_migration_file(path));
    files.sort();
    let mut written = Vec::new();
    for path in files {
        let stem = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        let file = MigrationFileReader::read(&path, &stem);
        if file.definition.is_some() {
            written.extend(file.written);
        }
    }
    written
}

/// A `*.toml` file (not a folder, nor a name starting with `.`): what the migrations folder's loader reads.
fn is_migration_file(path: &Path) -> bool {
    let hidden = path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.'));
    path.extension().is_some_and(|extension| extension == "toml") && !hidden && !path.is_dir()
}

/// Checks a whole set of definitions: no two share a name, every dependency is one of them, and no migration
/// depends on itself through others.
pub fn check(definitions: &[MigrationDefinition]) -> Result<()> {
    let problems = set_problems(&definitions.iter().map(Member::compiled_in).collect::<Vec<_>>(), &BTreeSet::new());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidMigrations(problems))
    }
}

/// One thing wrong with a migration file or a set of migrations: where it is, when known, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or folder) it is in; `None` for a problem among the migrations compiled into the binary.
    pub path: Option<PathBuf>,
    /// 1-based line and column in the file, when the problem is at one place of it.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl Problem {
    fn in_file(path: &Path, message: String) -> Problem {
        Problem { path: Some(path.to_path_buf()), line: None, column: None, message }
    }

    fn compiled_in(message: String) -> Problem {
        Problem { path: None, line: None, column: None, message }
    }
}

impl fmt::Display for Problem {
    /// `path:line:column: message`, the form editors and terminals link to the place.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(formatter, "{}:", path.display())?;
            if let (Some(line), Some(column)) = (self.line, self.column) {
                write!(formatter, "{line}:{column}:")?;
            }
            formatter.write_str(" ")?;
        }
        formatter.write_str(&self.message)
    }
}

/// A file that reads as TOML of the right shape (its content may still be wrong): its migration's name and
/// dependencies, with where they are written, for the problems of the set it joins.
struct Origin {
    path: PathBuf,
    name: String,
    /// Where `name` is written; `None` when the name is the file's.
    name_at: Option<Position>,
    dependencies: Vec<(String, Position)>,
}

#[derive(Debug, Clone, Copy)]
struct Position {
    line: usize,
    column: usize,
}

impl Origin {
    fn problem(&self, at: Option<Position>, message: String) -> Problem {
        Problem { path: Some(self.path.clone()), line: at.map(|at| at.line), column: at.map(|at| at.column), message }
    }

    fn dependency_at(&self, dependency: &str) -> Option<Position> {
        self.dependencies.iter().find(|(name, _)| name == dependency).map(|(_, at)| *at)
    }
}

/// A migration as the set check sees it: its name, what it depends on, and its file if it has one.
struct Member<'a> {
    name: &'a str,
    depends_on: Vec<&'a str>,
    origin: Option<&'a Origin>,
}

impl<'a> Member<'a> {
    fn compiled_in(definition: &'a MigrationDefinition) -> Member<'a> {
        Member { name: &definition.name, depends_on: definition.depends_on.iter().map(String::as_str).collect(), origin: None }
    }

    fn from_file(origin: &'a Origin) -> Member<'a> {
        Member { name: &origin.name, depends_on: origin.dependencies.iter().map(|(name, _)| name.as_str()).collect(), origin: Some(origin) }
    }

    /// `message`, placed at where this migration names `dependency` when it is a file's.
    fn dependency_problem(&self, dependency: &str, message: String) -> Problem {
        match self.origin {
            Some(origin) => origin.problem(origin.dependency_at(dependency), message),
            None => Problem::compiled_in(message),
        }
    }
}

/// Duplicate names, unknown dependencies and dependency cycles among `members`. `unreadable` names files that
/// did not read: they exist, so depending on them is no further problem.
fn set_problems(members: &[Member], unreadable: &BTreeSet<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut by_name: BTreeMap<&str, Vec<&Member>> = BTreeMap::new();
    for member in members {
        by_name.entry(member.name).or_default().push(member);
    }
    for (name, namesakes) in by_name.iter().filter(|(_, namesakes)| namesakes.len() > 1) {
        problems.push(match namesakes.iter().find_map(|member| member.origin) {
            Some(origin) => origin.problem(
                origin.name_at,
                format!("the name {name} is taken: a migration compiled into this binary has it; give this one another name"),
            ),
            None => Problem::compiled_in(format!("{} migrations compiled into this binary are named {name}", namesakes.len())),
        });
    }
    for member in members {
        for dependency in
            member.depends_on.iter().filter(|dependency| !by_name.contains_key(*dependency) && !unreadable.contains(**dependency))
        {
            let message = format!(
                "{} depends on {dependency:?}, which is no migration amigo knows (neither a file nor one compiled into this binary)",
                member.name
            );
            problems.push(member.dependency_problem(dependency, message));
        }
    }
    let graph: BTreeMap<&str, Vec<&str>> = members.iter().map(|member| (member.name, member.depends_on.clone())).collect();
    for cycle in cycles(&graph) {
        let message = format!("dependency cycle: {}; no migration of it could ever start", cycle.join(" -> "));
        // Placed in the first file of the cycle, at its dependency on the next.
        let in_a_file = cycle.windows(2).find_map(|step| {
            let member = by_name.get(step[0])?.iter().find(|member| member.origin.is_some())?;
            Some(member.dependency_problem(step[1], message.clone()))
        });
        problems.push(in_a_file.unwrap_or(Problem::compiled_in(message)));
    }
    problems
}

/// Every cycle of `graph` (migration -> what it depends on) met by a depth-first walk from each name in order,
/// each as the path that closes it: `[a, b, a]`.
fn cycles<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        finished: &mut BTreeSet<&'a str>,
        path: &mut Vec<&'a str>,
        found: &mut Vec<Vec<&'a str>>,
    ) {
        if finished.contains(node) {
            return;
        }
        if let Some(start) = path.iter().position(|on_path| *on_path == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node);
            found.push(cycle);
            return;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten().filter(|next| graph.contains_key(*next)) {
            visit(next, graph, finished, path, found);
        }
        path.pop();
        finished.insert(node);
    }
    let mut finished = BTreeSet::new();
    let mut found = Vec::new();
    for node in graph.keys() {
        visit(node, graph, &mut finished, &mut Vec::new(), &mut found);
    }
    found
}

// The file format. Every table refuses fields it does not know; the SQL fields keep their place in the file so
// that a problem in them can name its line.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationFile {
    name: Option<Spanned<String>>,
    description: Spanned<String>,
    versions: Option<Spanned<VersionBounds>>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    requires: Option<Requirements>,
    #[serde(default)]
    parameters: Vec<Spanned<ParameterEntry>>,
    is_required: Option<Spanned<QueryEntry>>,
    #[serde(default)]
    prechecks: Vec<Spanned<CheckEntry>>,
    #[serde(default)]
    health_checks: Vec<Spanned<CheckEntry>>,
    rewrite_table: Option<Spanned<RewriteTableEntry>>,
    operations: Option<Spanned<Vec<Spanned<OperationEntry>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionBounds {
    min: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Requirements {
    clickhouse: Option<Spanned<String>>,
    postgres: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterEntry {
    name: Spanned<String>,
    kind: KindEntry,
    description: Spanned<String>,
    default: Spanned<toml::Value>,
    min: Option<Spanned<i64>>,
    max: Option<Spanned<i64>>,
    max_length: Option<Spanned<usize>>,
    #[serde(default)]
    adjustable: bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum KindEntry {
    Integer,
    Boolean,
    Identifier,
    Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryEntry {
    clickhouse: Option<Spanned<String>>,
    postgres: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckEntry {
    clickhouse: Option<Spanned<String>>,
    postgres: Option<Spanned<String>>,
    message: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationEntry {
    description: Spanned<String>,
    clickhouse: Option<Spanned<String>>,
    postgres: Option<Spanned<String>>,
    mutation: Option<Spanned<MutationEntry>>,
    postgres_batches: Option<Spanned<PostgresBatchesEntry>>,
    move_partitions: Option<Spanned<MovePartitionsEntry>>,
    rollback: Option<Spanned<String>>,
    settings: Option<Spanned<Settings>>,
    timeout_seconds: Option<Spanned<u64>>,
}

/// ClickHouse settings as a file writes them: strings, whole numbers or booleans.
type Settings = BTreeMap<String, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MutationEntry {
    table: Spanned<String>,
    command: Spanned<String>,
    marker: Spanned<String>,
    settings: Option<Spanned<Settings>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresBatchesEntry {
    table: Spanned<String>,
    key: Spanned<String>,
    set: Spanned<String>,
    pending: Spanned<String>,
    batch_size_parameter: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MovePartitionsEntry {
    from: Spanned<String>,
    to: Spanned<String>,
    partitions_where: Spanned<String>,
    row_identity: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteTableEntry {
    table: Spanned<String>,
    new_table: Spanned<String>,
    backup_table: Spanned<String>,
    order_by: Option<Spanned<String>>,
    primary_key: Option<Spanned<String>>,
    sample_by: Option<Spanned<String>>,
    engine: Option<Spanned<String>>,
    #[serde(default)]
    settings: BTreeMap<String, Spanned<String>>,
    row_identity: Spanned<String>,
    row_checksum: Option<Spanned<String>>,
}

/// The database a statement or check is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    ClickHouse,
    Postgres,
}

/// A check's SQL and where it is asked.
struct CheckQuery {
    database: Database,
    sql: String,
}

/// A precheck or health check: its query and what a false answer says.
struct Check {
    query: CheckQuery,
    message: String,
}

/// Reads one file, collecting every problem it finds.
struct MigrationFileReader<'a> {
    path: &'a Path,
    text: String,
    problems: Vec<Problem>,
    /// Set when the file reads as TOML of the right shape.
    origin: Option<Origin>,
    /// Set when nothing in it is wrong.
    definition: Option<MigrationDefinition>,
    /// The whole statements it writes, as written, for the servers to parse.
    written: Vec<WrittenSql>,
}

/// Keys of the file's top level only: met in a `[[...]]` table, they were written after its header.
const TOP_LEVEL_ONLY: [&str; 4] = ["versions", "depends_on", "requires", "is_required"];

impl<'a> MigrationFileReader<'a> {
    /// Reads the file at `path`, whose name without `.toml` is `stem`.
    fn read(path: &'a Path, stem: &str) -> MigrationFileReader<'a> {
        match std::fs::read_to_string(path) {
            Ok(text) => MigrationFileReader::parse(path, stem, text),
            Err(error) => MigrationFileReader {
                path,
                text: String::new(),
                problems: vec![Problem::in_file(path, format!("cannot read it: {error}"))],
                origin: None,
                definition: None,
                written: Vec::new(),
            },
        }
    }

    /// Reads `text`, the content of the file `path` whose name without `.toml` is `stem`.
    fn parse(path: &'a Path, stem: &str, text: String) -> MigrationFileReader<'a> {
        let mut reader = MigrationFileReader { path, text, problems: Vec::new(), origin: None, definition: None, written: Vec::new() };
        match toml::from_str::<MigrationFile>(&reader.text) {
            Ok(file) => {
                reader.origin = Some(reader.origin_of(stem, &file));
                reader.definition = reader.convert(stem, file);
                if let Some(definition) = &reader.definition {
                    for written in &mut reader.written {
                        written.parameters.clone_from(&definition.parameters);
                    }
                }
            }
            Err(error) => {
                let span = error.span().unwrap_or(0..0);
                let mut message = error.message().trim_end().to_string();
                let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()).unwrap_or_default();
                if TOP_LEVEL_ONLY.contains(&unknown) {
                    message.push_str(&format!(
                        "; {unknown} belongs at the top of the file: in TOML, every key after a [[...]] header is part of that table"
                    ));
                }
                reader.problem(&span, message);
            }
        }
        reader
    }

    fn position(&self, offset: usize) -> Position {
        let before = self.text.as_bytes().get(..offset).unwrap_or(self.text.as_bytes());
        let line_start = before.iter().rposition(|byte| *byte == b'\n').map_or(0, |newline| newline + 1);
        Position {
            line: before.iter().filter(|byte| **byte == b'\n').count() + 1,
            column: String::from_utf8_lossy(&before[line_start..]).chars().count() + 1,
        }
    }

    fn problem(&mut self, span: &Range<usize>, message: String) {
        let at = self.position(span.start);
        self.problems.push(Problem { path: Some(self.path.to_path_buf()), line: Some(at.line), column: Some(at.column), message });
    }

    fn origin_of(&self, stem: &str, file: &MigrationFile) -> Origin {
        Origin {
            path: self.path.to_path_buf(),
            name: stem.to_string(),
            name_at: file.name.as_ref().map(|name| self.position(name.span().start)),
            dependencies: file
                .depends_on
                .iter()
                .map(|dependency| (dependency.get_ref().clone(), self.position(dependency.span().start)))
                .collect(),
        }
    }

    /// The definition the file describes, or `None` (with the problems recorded) when any part is wrong.
    fn convert(&mut self, stem: &str, file: MigrationFile) -> Option<MigrationDefinition> {
        let problems_before = self.problems.len();
        if !is_migration_name(stem) {
            self.problems.push(Problem::in_file(
                self.path,
                format!(
                    "{stem:?} is not a migration name: name the file with lowercase letters, digits and _ (e.g. 0005_orders_region.toml)"
                ),
            ));
        }
        if let Some(name) = &file.name {
            if name.get_ref() != stem {
                self.problem(
                    &name.span(),
                    format!("name is {:?}, but the file is {stem}.toml: the file's name is the migration's", name.get_ref()),
                );
            }
        }
        self.require_text(&file.description, "description");

        let mut definition = MigrationDefinition::new(stem, file.description.get_ref().trim());
        if let Some(versions) = &file.versions {
            definition.versions = self.version_range(versions);
        }
        definition.depends_on = file.depends_on.iter().map(|dependency| dependency.get_ref().clone()).collect();
        if let Some(requires) = &file.requires {
            definition.clickhouse_versions.min =
                requires.clickhouse.as_ref().and_then(|version| self.version(version, "requires.clickhouse"));
            definition.postgres_versions.min = requires.postgres.as_ref().and_then(|version| self.version(version, "requires.postgres"));
        }
        // The recipe's parameters, checks and operations come first; the file's own follow them.
        if let Some(entry) = &file.rewrite_table {
            if let Some(is_required) = &file.is_required {
                self.problem(&is_required.span(), "is_required next to [rewrite_table]: the recipe decides it; remove is_required".into());
            }
            if let Some(recipe) = self.rewrite_table(entry.get_ref()) {
                definition = recipe.define(definition);
            }
        }
        let from_recipe: Vec<String> = definition.parameters.iter().map(|spec| spec.name.clone()).collect();
        for entry in &file.parameters {
            let name = entry.get_ref().name.get_ref();
            if from_recipe.contains(name) {
                self.problem(&entry.get_ref().name.span(), format!("parameter {name} is declared by [rewrite_table] already"));
            } else if let Some(spec) = self.parameter(entry, &definition.parameters) {
                definition.parameters.push(spec);
            }
        }
        // Placeholders are checked against every parameter written, valid or not: one wrong parameter is one problem.
        let declared: Vec<&str> = from_recipe
            .iter()
            .map(String::as_str)
            .chain(file.parameters.iter().map(|entry| entry.get_ref().name.get_ref().as_str()))
            .collect();
        let integers: Vec<&str> = file
            .parameters
            .iter()
            .filter(|entry| entry.get_ref().kind == KindEntry::Integer)
            .map(|entry| entry.get_ref().name.get_ref().as_str())
            .collect();

        let operations = file.operations.as_ref().map_or(&[][..], |operations| operations.get_ref().as_slice());
        if operations.is_empty() && file.rewrite_table.is_none() {
            let message = "a migration needs at least one [[operations]] (or a [rewrite_table])".to_string();
            match &file.operations {
                Some(operations) => self.problem(&operations.span(), message),
                None => self.problems.push(Problem::in_file(self.path, message)),
            }
        }
        // Checks and recipe fields render their SQL like the operations: with the migration's name and parameters.
        let renderer =
            Arc::new(MigrationDefinition { parameters: definition.parameters.clone(), ..MigrationDefinition::new(&definition.name, "") });
        for entry in operations {
            if let Some(operation) = self.operation(entry, &declared, &integers, &renderer) {
                definition.operations.push(operation);
            }
        }

        if let Some(entry) = &file.is_required {
            let query = entry.get_ref();
            if let Some(query) =
                self.check_query(query.clickhouse.as_ref(), query.postgres.as_ref(), &entry.span(), "is_required", &declared)
            {
                let renderer = renderer.clone();
                let query = Arc::new(query);
                definition = definition.is_required(move |context| {
                    let (renderer, query) = (renderer.clone(), query.clone());
                    async move { ask(&query, &renderer, &context, "is_required").await }
                });
            }
        }
        if let Some(checks) = self.checks(&file.prechecks, "prechecks", &declared) {
            let first = definition.precheck.clone();
            definition = definition.precheck(all_pass(first, checks, renderer.clone(), "precheck"));
        }
        if let Some(checks) = self.checks(&file.health_checks, "health_checks", &declared) {
            let first = definition.health_check.clone();
            definition = definition.health_check(all_pass(first, checks, renderer, "health check"));
        }

        (self.problems.len() == problems_before).then_some(definition)
    }

    fn require_text(&mut self, text: &Spanned<String>, field: &str) {
        if text.get_ref().trim().is_empty() {
            self.problem(&text.span(), format!("{field} is empty"));
        }
    }

    fn version(&mut self, text: &Spanned<String>, field: &str) -> Option<Version> {
        let version = Version::parse(text.get_ref());
        if version.is_none() {
            self.problem(&text.span(), format!("{field} {:?} is not a version like 1.2.3", text.get_ref()));
        }
        version
    }

    fn version_range(&mut self, bounds: &Spanned<VersionBounds>) -> VersionRange {
        let range = VersionRange {
            min: bounds.get_ref().min.as_ref().and_then(|min| self.version(min, "versions.min")),
            max: bounds.get_ref().max.as_ref().and_then(|max| self.version(max, "versions.max")),
        };
        if let (Some(min), Some(max)) = (&range.min, &range.max) {
            if min > max {
                self.problem(&bounds.span(), format!("versions: min {min} is greater than max {max}"));
            }
        }
        range
    }

    fn parameter(&mut self, entry: &Spanned<ParameterEntry>, declared: &[ParameterSpec]) -> Option<ParameterSpec> {
        let parameter = entry.get_ref();
        let name = parameter.name.get_ref().as_str();
        let problems_before = self.problems.len();
        if !is_migration_name(name) {
            self.problem(&parameter.name.span(), format!("parameter name {name:?} is not lowercase letters, digits and _"));
        } else if name == "database" {
            self.problem(&parameter.name.span(), "a parameter cannot be named database: {database} is the ClickHouse database".into());
        } else if declared.iter().any(|spec| spec.name == name) {
            self.problem(&parameter.name.span(), format!("parameter {name} is declared twice"));
        }
        self.require_text(&parameter.description, "the parameter's description");
        let kind = match parameter.kind {
            KindEntry::Integer => match (&parameter.min, &parameter.max) {
                (Some(min), Some(max)) if min.get_ref() > max.get_ref() => {
                    self.problem(&min.span(), format!("parameter {name}: min {} is greater than max {}", min.get_ref(), max.get_ref()));
                    None
                }
                (Some(min), Some(max)) => Some(ParameterKind::Integer { min: *min.get_ref(), max: *max.get_ref() }),
                _ => {
                    self.problem(&entry.span(), format!("parameter {name}: an integer parameter needs min and max"));
                    None
                }
            },
            KindEntry::Boolean => Some(ParameterKind::Boolean),
            KindEntry::Identifier => Some(ParameterKind::Identifier),
            KindEntry::Text => match &parameter.max_length {
                Some(max_length) if !(1..=MAX_TEXT_LENGTH).contains(max_length.get_ref()) => {
                    self.problem(&max_length.span(), format!("parameter {name}: max_length must be from 1 to {MAX_TEXT_LENGTH}"));
                    None
                }
                Some(max_length) => Some(ParameterKind::Text { max_length: *max_length.get_ref() }),
                None => Some(ParameterKind::Text { max_length: MAX_TEXT_LENGTH }),
            },
        };
        if parameter.kind != KindEntry::Integer {
            for bound in [&parameter.min, &parameter.max].into_iter().flatten() {
                self.problem(&bound.span(), format!("parameter {name}: min and max are for integer parameters only"));
            }
        }
        if parameter.kind != KindEntry::Text {
            if let Some(max_length) = &parameter.max_length {
                self.problem(&max_length.span(), format!("parameter {name}: max_length is for text parameters only"));
            }
        }
        let default = match (parameter.kind, parameter.default.get_ref()) {
            (KindEntry::Integer, toml::Value::Integer(number)) => Some(ParameterValue::Integer(*number)),
            (KindEntry::Boolean, toml::Value::Boolean(flag)) => Some(ParameterValue::Boolean(*flag)),
            (KindEntry::Identifier | KindEntry::Text, toml::Value::String(text)) => Some(ParameterValue::Text(text.clone())),
            (kind, other) => {
                let expected = match kind {
                    KindEntry::Integer => "a whole number",
                    KindEntry::Boolean => "true or false",
                    KindEntry::Identifier | KindEntry::Text => "a string",
                };
                self.problem(
                    &parameter.default.span(),
                    format!("parameter {name}: the default is {} {}, not {expected}", article(other.type_str()), other.type_str()),
                );
                None
            }
        };
        let (Some(kind), Some(default)) = (kind, default) else { return None };
        let spec = ParameterSpec {
            name: name.into(),
            description: parameter.description.get_ref().trim().into(),
            kind,
            default,
            adjustable: parameter.adjustable,
        };
        if let Err(reason) = spec.check(&spec.default) {
            self.problem(&parameter.default.span(), format!("parameter {name}: the default is invalid: {reason}"));
        }
        (self.problems.len() == problems_before).then_some(spec)
    }

    fn operation(
        &mut self,
        entry: &Spanned<OperationEntry>,
        parameters: &[&str],
        integers: &[&str],
        renderer: &Arc<MigrationDefinition>,
    ) -> Option<Operation> {
        let operation = entry.get_ref();
        let problems_before = self.problems.len();
        self.require_text(&operation.description, "the operation's description");
        let kinds = [
            ("clickhouse", operation.clickhouse.is_some()),
            ("postgres", operation.postgres.is_some()),
            ("mutation", operation.mutation.is_some()),
            ("postgres_batches", operation.postgres_batches.is_some()),
            ("move_partitions", operation.move_partitions.is_some()),
        ];
        let given: Vec<&str> = kinds.iter().filter(|(_, given)| *given).map(|(kind, _)| *kind).collect();
        match given.as_slice() {
            [] => {
                let message = "an operation needs clickhouse, postgres, mutation, postgres_batches or move_partitions: give exactly one";
                self.problem(&entry.span(), message.into());
                return None;
            }
            [_] => {}
            [rest @ .., last] => {
                let both = if rest.len() == 1 { "both " } else { "" };
                self.problem(&entry.span(), format!("an operation has {both}{} and {last}: give exactly one", rest.join(", ")));
                return None;
            }
        }
        if operation.clickhouse.is_none() && operation.postgres.is_none() {
            return self.recipe_operation(operation, parameters, integers, renderer).filter(|_| self.problems.len() == problems_before);
        }
        let (database, sql) =
            self.exactly_one(operation.clickhouse.as_ref(), operation.postgres.as_ref(), &entry.span(), "an operation")?;
        self.placeholders_known(sql, database, parameters, database_field(database));
        self.write_down(sql, database, database_field(database));
        let rollback = operation.rollback.as_ref();
        if let Some(rollback) = rollback {
            self.placeholders_known(rollback, database, parameters, "rollback");
            if !rollback.get_ref().trim().is_empty() {
                self.write_down(rollback, database, "rollback");
            }
        }
        let rollback = rollback.map_or("", |rollback| rollback.get_ref().as_str());
        let description = operation.description.get_ref().trim();
        let mut built = match database {
            Database::ClickHouse => Operation::clickhouse(description, sql.get_ref(), rollback),
            Database::Postgres => Operation::postgres(description, sql.get_ref(), rollback),
        };
        if let Some(settings) = &operation.settings {
            if database == Database::Postgres {
                self.problem(&settings.span(), "settings are for ClickHouse operations only".into());
            }
            for (name, text) in self.settings(settings.get_ref()) {
                built = built.with_setting(&name, &text);
            }
        }
        if let Some(timeout) = &operation.timeout_seconds {
            if database == Database::Postgres {
                self.problem(&timeout.span(), "timeout_seconds is for ClickHouse operations only".into());
            } else if *timeout.get_ref() == 0 {
                self.problem(&timeout.span(), "timeout_seconds must be at least 1".into());
            }
            built = built.with_timeout(Duration::from_secs(*timeout.get_ref()));
        }
        (self.problems.len() == problems_before).then_some(built)
    }

    /// ClickHouse settings as text, each value a string, a whole number or true/false (sent as 1 or 0); a
    /// problem for each other value.
    fn settings(&mut self, settings: &Settings) -> Vec<(String, String)> {
        let mut texts = Vec::new();
        for (name, value) in settings {
            let text = match value.get_ref() {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Boolean(flag) => u8::from(*flag).to_string(),
                other => {
                    self.problem(
                        &value.span(),
                        format!(
                            "setting {name}: {} {} is not a string, a whole number or true/false",
                            article(other.type_str()),
                            other.type_str()
                        ),
                    );
                    continue;
                }
            };
            texts.push((name.clone(), text));
        }
        texts
    }

    /// The operation of a `mutation`, `postgres_batches` or `move_partitions` table: the recipe, with its own
    /// rollback, so a `rollback`, `settings` or `timeout_seconds` of the operation's is refused. Its SQL fields
    /// (`mutation.command`, `postgres_batches.set` and `pending`, `move_partitions.partitions_where`) may hold
    /// placeholders: then the recipe is built from them as rendered for each run ([`rendered_recipe`]).
    fn recipe_operation(
        &mut self,
        operation: &OperationEntry,
        parameters: &[&str],
        integers: &[&str],
        renderer: &Arc<MigrationDefinition>,
    ) -> Option<Operation> {
        if let Some(rollback) = &operation.rollback {
            self.problem(&rollback.span(), "rollback next to a recipe: the recipe has its own rollback; remove rollback".into());
        }
        if let Some(settings) = &operation.settings {
            self.problem(&settings.span(), "settings are for clickhouse operations; a mutation takes them in its own table".into());
        }
        if let Some(timeout) = &operation.timeout_seconds {
            self.problem(&timeout.span(), "timeout_seconds is for clickhouse operations only".into());
        }
        let description = operation.description.get_ref().trim();
        if let Some(entry) = &operation.mutation {
            let mutation = entry.get_ref();
            let table = self.recipe_field(&mutation.table, "mutation.table");
            let command = self.sql_field(&mutation.command, "mutation.command", Database::ClickHouse, parameters);
            let marker = self.recipe_field(&mutation.marker, "mutation.marker");
            let mut recipe = Mutation::new(&table, &command, &marker);
            if let Some(settings) = &mutation.settings {
                recipe.settings = self.settings(settings.get_ref());
            }
            if placeholders(&command).is_empty() {
                return Some(recipe.operation(description));
            }
            return Some(rendered_recipe(description, renderer.clone(), move |renderer, context, description| {
                Ok(Mutation { command: renderer.render_clickhouse(&recipe.command, context)?, ..recipe.clone() }.operation(description))
            }));
        }
        if let Some(entry) = &operation.postgres_batches {
            let batches = entry.get_ref();
            let recipe = PostgresBatches {
                table: self.recipe_field(&batches.table, "postgres_batches.table"),
                key: self.recipe_field(&batches.key, "postgres_batches.key"),
                set: self.sql_field(&batches.set, "postgres_batches.set", Database::Postgres, parameters),
                pending: self.sql_field(&batches.pending, "postgres_batches.pending", Database::Postgres, parameters),
                batch_size_parameter: batches.batch_size_parameter.get_ref().clone(),
            };
            if !integers.contains(&recipe.batch_size_parameter.as_str()) {
                let declared =
                    if integers.is_empty() { "it declares none".to_string() } else { format!("it declares {}", integers.join(", ")) };
                self.problem(
                    &batches.batch_size_parameter.span(),
                    format!(
                        "postgres_batches.batch_size_parameter: {:?} is not an integer parameter of this migration ({declared})",
                        recipe.batch_size_parameter
                    ),
                );
            }
            if placeholders(&recipe.set).is_empty() && placeholders(&recipe.pending).is_empty() {
                return Some(recipe.operation(description));
            }
            return Some(rendered_recipe(description, renderer.clone(), move |renderer, context, description| {
                let set = renderer.render_postgres(&recipe.set, context)?;
                let pending = renderer.render_postgres(&recipe.pending, context)?;
                Ok(PostgresBatches { set, pending, ..recipe.clone() }.operation(description))
            }));
        }
        let entry = operation.move_partitions.as_ref()?;
        let partitions = entry.get_ref();
        let recipe = PartitionMove {
            from: self.recipe_field(&partitions.from, "move_partitions.from"),
            to: self.recipe_field(&partitions.to, "move_partitions.to"),
            partitions_where: self.sql_field(
                &partitions.partitions_where,
                "move_partitions.partitions_where",
                Database::ClickHouse,
                parameters,
            ),
            moves: MovePartitions { row_identity: self.recipe_field(&partitions.row_identity, "move_partitions.row_identity") },
        };
        if placeholders(&recipe.partitions_where).is_empty() {
            return Some(recipe.operation(description));
        }
        Some(rendered_recipe(description, renderer.clone(), move |renderer, context, description| {
            let partitions_where = renderer.render_clickhouse(&recipe.partitions_where, context)?;
            Ok(PartitionMove { partitions_where, ..recipe.clone() }.operation(description))
        }))
    }

    /// The `[rewrite_table]` recipe, or `None` when one of its fields is wrong.
    fn rewrite_table(&mut self, entry: &RewriteTableEntry) -> Option<RewriteTable> {
        let problems_before = self.problems.len();
        let mut optional = |field: &Option<Spanned<String>>, name: &str| field.as_ref().map(|text| self.recipe_field(text, name));
        let (order_by, primary_key, sample_by, engine, row_checksum) = (
            optional(&entry.order_by, "rewrite_table.order_by"),
            optional(&entry.primary_key, "rewrite_table.primary_key"),
            optional(&entry.sample_by, "rewrite_table.sample_by"),
            optional(&entry.engine, "rewrite_table.engine"),
            optional(&entry.row_checksum, "rewrite_table.row_checksum"),
        );
        let settings = entry
            .settings
            .iter()
            .map(|(name, value)| (name.clone(), self.recipe_field(value, &format!("rewrite_table.settings.{name}"))))
            .collect();
        let recipe = RewriteTable {
            table: self.recipe_field(&entry.table, "rewrite_table.table"),
            new_table: self.recipe_field(&entry.new_table, "rewrite_table.new_table"),
            backup_table: self.recipe_field(&entry.backup_table, "rewrite_table.backup_table"),
            order_by,
            primary_key,
            sample_by,
            engine,
            settings,
            row_identity: self.recipe_field(&entry.row_identity, "rewrite_table.row_identity"),
            row_checksum,
        };
        (self.problems.len() == problems_before).then_some(recipe)
    }

    /// A recipe's SQL field, trimmed; a problem when it is empty or names a placeholder that is not `{database}`
    /// (ClickHouse only) or a declared parameter.
    fn sql_field(&mut self, text: &Spanned<String>, field: &str, database: Database, parameters: &[&str]) -> String {
        self.require_text(text, field);
        self.placeholders_known(text, database, parameters, field);
        text.get_ref().trim().to_string()
    }

    /// A recipe's field naming tables, columns or a marker, trimmed; a problem when it is empty or has a
    /// `{placeholder}` (these are sent as they are).
    fn recipe_field(&mut self, text: &Spanned<String>, field: &str) -> String {
        self.require_text(text, field);
        if let Some((_, name)) = placeholders(text.get_ref()).first() {
            self.problem(&text.span(), format!("{field}: this field takes no placeholders, so {{{name}}} would be sent as it is"));
        }
        text.get_ref().trim().to_string()
    }

    /// The checks of a `[[prechecks]]` or `[[health_checks]]` list, or `None` when there are none or one is wrong.
    fn checks(&mut self, entries: &[Spanned<CheckEntry>], field: &str, parameters: &[&str]) -> Option<Vec<Check>> {
        let mut checks = Vec::new();
        for entry in entries {
            let check = entry.get_ref();
            self.require_text(&check.message, &format!("the message of one of {field}"));
            if let Some(query) = self.check_query(check.clickhouse.as_ref(), check.postgres.as_ref(), &entry.span(), field, parameters) {
                checks.push(Check { query, message: check.message.get_ref().trim().into() });
            }
        }
        (!checks.is_empty() && checks.len() == entries.len()).then_some(checks)
    }

    fn check_query(
        &mut self,
        clickhouse: Option<&Spanned<String>>,
        postgres: Option<&Spanned<String>>,
        span: &Range<usize>,
        field: &str,
        parameters: &[&str],
    ) -> Option<CheckQuery> {
        let (database, sql) = self.exactly_one(clickhouse, postgres, span, &format!("each of {field}"))?;
        self.write_down(sql, database, field);
        self.placeholders_known(sql, database, parameters, database_field(database))
            .then(|| CheckQuery { database, sql: sql.get_ref().clone() })
    }

    /// The one SQL of `clickhouse` and `postgres` that is given, with its database.
    fn exactly_one<'s>(
        &mut self,
        clickhouse: Option<&'s Spanned<String>>,
        postgres: Option<&'s Spanned<String>>,
        span: &Range<usize>,
        what: &str,
    ) -> Option<(Database, &'s Spanned<String>)> {
        let (database, sql) = match (clickhouse, postgres) {
            (Some(sql), None) => (Database::ClickHouse, sql),
            (None, Some(sql)) => (Database::Postgres, sql),
            (Some(_), Some(_)) => {
                self.problem(span, format!("{what} has both clickhouse and postgres: give exactly one"));
                return None;
            }
            (None, None) => {
                self.problem(span, format!("{what} needs clickhouse or postgres: give exactly one"));
                return None;
            }
        };
        if sql.get_ref().trim().is_empty() {
            self.problem(&sql.span(), format!("{} is empty", database_field(database)));
            return None;
        }
        Some((database, sql))
    }

    /// Notes a whole statement the file writes (its parameters are filled in once the file is read).
    fn write_down(&mut self, sql: &Spanned<String>, database: Database, field: &str) {
        let at = self.position(sql.span().start);
        self.written.push(WrittenSql {
            path: self.path.to_path_buf(),
            line: at.line,
            column: at.column,
            field: field.to_string(),
            database,
            template: sql.get_ref().clone(),
            parameters: Vec::new(),
        });
    }

    /// Whether every placeholder of `sql` is `{database}` (ClickHouse SQL only) or a declared parameter; records a
    /// problem for each that is not.
    fn placeholders_known(&mut self, sql: &Spanned<String>, database: Database, parameters: &[&str], field: &str) -> bool {
        let mut known = true;
        for (_, name) in placeholders(sql.get_ref()) {
            if parameters.contains(&name) || (name == "database" && database == Database::ClickHouse) {
                continue;
            }
            known = false;
            let message = if name == "database" {
                format!("{field}: {{database}} is the ClickHouse database; Postgres SQL has no such placeholder")
            } else {
                let declared = if parameters.is_empty() {
                    "it declares no parameters".to_string()
                } else {
                    format!("it declares {}", parameters.join(", "))
                };
                let what = if database == Database::ClickHouse { "is neither {database} nor" } else { "is not" };
                format!("{field}: {{{name}}} {what} a parameter of this migration ({declared})")
            };
            self.problem(&sql.span(), message);
        }
        known
    }
}

/// "a" or "an" before a TOML type's name.
fn article(type_name: &str) -> &'static str {
    if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn database_field(database: Database) -> &'static str {
    match database {
        Database::ClickHouse => "clickhouse",
        Database::Postgres => "postgres",
    }
}

/// Lowercase letters, digits and `_`, at most 100 characters: what names of migrations and parameters may be.
pub(crate) fn is_migration_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The operation of a recipe whose SQL fields hold placeholders: `build` makes the recipe's operation from the
/// fields as `renderer` (the migration's parameters) renders them for the context of the run, rollback or
/// interruption at hand, so that each uses the run's own parameter values.
fn rendered_recipe<Build>(description: &str, renderer: Arc<MigrationDefinition>, build: Build) -> Operation
where
    Build: Fn(&MigrationDefinition, &MigrationContext, &str) -> Result<Operation> + Send + Sync + 'static,
{
    let description_text = description.to_string();
    let built = Arc::new(move |context: &MigrationContext| build(&renderer, context, &description_text));
    let (for_run, for_rollback, for_interrupt) = (built.clone(), built.clone(), built);
    let step = |operation: Operation, rollback: bool| match operation.action {
        OperationAction::Rust { run, rollback: undo } => Ok(if rollback { undo } else { run }),
        _ => Err(Error::Migration(format!("the recipe of {:?} did not build a Rust operation", operation.description))),
    };
    Operation::rust(
        description,
        move |context| {
            let built = for_run.clone();
            async move { step(built(&context)?, false)?(context).await }
        },
        move |context| {
            let built = for_rollback.clone();
            async move { step(built(&context)?, true)?(context).await }
        },
    )
    .on_interrupt(move |context| {
        let built = for_interrupt.clone();
        async move {
            match built(&context)?.on_interrupt {
                Some(interrupt) => interrupt(context).await,
                None => Ok(None),
            }
        }
    })
}

/// One check made of `first` (a recipe's, when the migration has one) and then `checks` asked in order: the first
/// failure fails it with its message.
fn all_pass(
    first: Option<StepFn<CheckOutcome>>,
    checks: Vec<Check>,
    renderer: Arc<MigrationDefinition>,
    what: &'static str,
) -> impl Fn(MigrationContext) -> futures::future::BoxFuture<'static, Result<CheckOutcome>> + Send + Sync + 'static {
    let checks = Arc::new(checks);
    move |context| {
        let (first, checks, renderer) = (first.clone(), checks.clone(), renderer.clone());
        Box::pin(async move {
            if let Some(first) = first {
                let outcome = first(context.clone()).await?;
                if !matches!(outcome, CheckOutcome::Pass) {
                    return Ok(outcome);
                }
            }
            for (index, check) in checks.iter().enumerate() {
                if !ask(&check.query, &renderer, &context, &format!("{what} {}", index + 1)).await? {
                    return Ok(CheckOutcome::Fail(check.message.clone()));
                }
            }
            Ok(CheckOutcome::Pass)
        })
    }
}

/// Renders a check's SQL for `renderer` (its parameters) and asks its database; true or false. ClickHouse's
/// answer is read as a scalar subquery through `ifNull(toUInt8(...), 0)`, which is UInt8 on every version (the
/// client validates column types on current releases): whether the SQL gives UInt8 (18.16) or Bool, and though
/// current releases make a scalar subquery Nullable. No row is false.
async fn ask(query: &CheckQuery, renderer: &MigrationDefinition, context: &MigrationContext, what: &str) -> Result<bool> {
    let failed = |error: Error| Error::Migration(format!("{what} of {} could not be asked: {error}", renderer.name));
    match query.database {
        Database::ClickHouse => {
            let sql = renderer.render_clickhouse(&query.sql, context)?;
            // On lines of their own, so that a trailing comment in the check's SQL comments out nothing of this.
            let sql = format!("SELECT ifNull(toUInt8((\n{}\n)), 0) AS passed", sql.trim().trim_end_matches(';'));
            let passed: u8 = context.clickhouse.client().query_raw(&sql).fetch_one().await.map_err(|error| failed(error.into()))?;
            Ok(passed != 0)
        }
        Database::Postgres => {
            let sql = renderer.render_postgres(&query.sql, context)?;
            let row = sqlx::query(&sql).fetch_optional(&context.postgres).await.map_err(|error| failed(error.into()))?;
            let row =
                row.ok_or_else(|| failed(Error::Migration("its SQL returned no row; it must return one row of one boolean".into())))?;
            row.try_get::<bool, _>(0).map_err(|error| failed(Error::Migration(format!("its SQL must return one boolean: {error}"))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph<'a>(edges: &[(&'a str, &[&'a str])]) -> BTreeMap<&'a str, Vec<&'a str>> {
        edges.iter().map(|(name, dependencies)| (*name, dependencies.to_vec())).collect()
    }

    #[test]
    fn cycles_are_found_once_each_and_unknown_names_are_no_cycle() {
        assert_eq!(cycles(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])), Vec::<Vec<&str>>::new());
        assert_eq!(cycles(&graph(&[("a", &["b"]), ("b", &["a"])])), [["a", "b", "a"]]);
        assert_eq!(cycles(&graph(&[("a", &["a"])])), [["a", "a"]]);
        assert_eq!(cycles(&graph(&[("a", &["nowhere"])])), Vec::<Vec<&str>>::new());
        assert_eq!(cycles(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"]), ("d", &["c"])])), [["b", "c", "b"]]);
    }

    #[test]
    fn problems_read_as_path_line_column_message() {
        let problem = Problem { path: Some("m/0005_x.toml".into()), line: Some(3), column: Some(7), message: "wrong".into() };
        assert_eq!(problem.to_string(), "m/0005_x.toml:3:7: wrong");
        assert_eq!(Problem { line: None, column: None, ..problem.clone() }.to_string(), "m/0005_x.toml: wrong");
        assert_eq!(Problem { path: None, ..problem }.to_string(), "wrong");
    }

    #[test]
    fn compiled_in_migrations_that_clash_or_miss_a_dependency_are_refused() {
        let twice = vec![MigrationDefinition::new("a", "one"), MigrationDefinition::new("a", "two").depends_on("b")];
        let Err(Error::InvalidMigrations(problems)) = check(&twice) else { panic!("refused") };
        let messages: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert_eq!(
            messages,
            [
                "2 migrations compiled into this binary are named a",
                "a depends on \"b\", which is no migration amigo knows (neither a file nor one compiled into this binary)"
            ]
        );
    }
}
