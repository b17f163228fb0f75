//! Starting files for `amigo migrations new`: a commented migration file per recipe, written into the
//! migrations folder without ever replacing a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::loader::is_migration_name;
use crate::{Error, Result};

/// What a new migration file starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// ClickHouse and Postgres statements with their rollbacks, parameters and checks.
    Sql,
    RewriteTable,
    Mutation,
    MovePartitions,
    PostgresBatches,
}

impl Recipe {
    pub const ALL: [Recipe; 5] = [Recipe::Sql, Recipe::RewriteTable, Recipe::Mutation, Recipe::MovePartitions, Recipe::PostgresBatches];

    /// The name `--recipe` takes.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Sql => "sql",
            Recipe::RewriteTable => "rewrite_table",
            Recipe::Mutation => "mutation",
            Recipe::MovePartitions => "move_partitions",
            Recipe::PostgresBatches => "postgres_batches",
        }
    }

    /// The recipe named `name`, or an error listing the names.
    pub fn from_name(name: &str) -> Result<Recipe> {
        Recipe::ALL.into_iter().find(|recipe| recipe.name() == name).ok_or_else(|| {
            Error::InvalidRequest(format!("no recipe {name:?}: the recipes are {}", Recipe::ALL.map(Recipe::name).join(", ")))
        })
    }

    /// The commented file it starts from; every one reads and checks as it is (a test makes sure).
    pub fn template(self) -> &'static str {
        match self {
            Recipe::Sql => include_str!("scaffold/sql.toml"),
            Recipe::RewriteTable => include_str!("scaffold/rewrite_table.toml"),
            Recipe::Mutation => include_str!("scaffold/mutation.toml"),
            Recipe::MovePartitions => include_str!("scaffold/move_partitions.toml"),
            Recipe::PostgresBatches => include_str!("scaffold/postgres_batches.toml"),
        }
    }
}

/// Writes `folder/name.toml` from `recipe`'s template (creating `folder` if need be) and returns its path.
/// Refused, with nothing written, for a name a migration cannot have or a file that exists.
pub fn write_new_migration(folder: &Path, name: &str, recipe: Recipe) -> Result<PathBuf> {
    if !is_migration_name(name) {
        return Err(Error::InvalidRequest(format!(
            "{name:?} cannot name a migration: use lowercase letters, digits and _ (at most 100), and begin it with a number, e.g. 0100_orders_currency"
        )));
    }
    std::fs::create_dir_all(folder)
        .map_err(|error| Error::InvalidRequest(format!("cannot create the migrations folder {}: {error}", folder.display())))?;
    let path = folder.join(format!("{name}.toml"));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|error| {
        Error::InvalidRequest(match error.kind() {
            std::io::ErrorKind::AlreadyExists => format!("{} exists; amigo never replaces a migration file", path.display()),
            _ => format!("cannot create {}: {error}", path.display()),
        })
    })?;
    file.write_all(recipe.template().as_bytes())
        .map_err(|error| Error::InvalidRequest(format!("cannot write {}: {error}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_reads_and_checks_as_written() {
        for recipe in Recipe::ALL {
            let folder = std::env::temp_dir().join(format!("amigo-scaffold-{}-{}", recipe.name(), uuid::Uuid::new_v4().simple()));
            let path = write_new_migration(&folder, "0100_new", recipe).unwrap();
            assert_eq!(path, folder.join("0100_new.toml"));
            let loaded = crate::loader::load_folder(&folder, &[]);
            std::fs::remove_dir_all(&folder).unwrap();
            let loaded = loaded.unwrap_or_else(|error| panic!("{}: {error}", recipe.name()));
            assert_eq!(loaded.len(), 1, "{}", recipe.name());
            assert!(!loaded[0].operations.is_empty(), "{}", recipe.name());
        }
        assert_eq!(Recipe::from_name("mutation").unwrap(), Recipe::Mutation);
        assert!(Recipe::from_name("copy").unwrap_err().to_string().contains("the recipes are sql, rewrite_table, mutation"));
    }

    #[test]
    fn an_existing_file_or_a_bad_name_is_refused_and_nothing_is_written() {
        let folder = std::env::temp_dir().join(format!("amigo-scaffold-{}", uuid::Uuid::new_v4().simple()));
        write_new_migration(&folder, "0100_new", Recipe::Sql).unwrap();
        std::fs::write(folder.join("0100_new.toml"), "kept").unwrap();
        let refused = write_new_migration(&folder, "0100_new", Recipe::Mutation).unwrap_err().to_string();
        assert!(refused.ends_with("0100_new.toml exists; amigo never replaces a migration file"), "{refused}");
        assert_eq!(std::fs::read_to_string(folder.join("0100_new.toml")).unwrap(), "kept");
        let bad = write_new_migration(&folder, "Orders-Currency", Recipe::Sql).unwrap_err().to_string();
        assert!(bad.contains("cannot name a migration"), "{bad}");
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
