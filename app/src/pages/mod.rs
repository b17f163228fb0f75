//! One module per page.

pub mod async_migrations;
pub mod login;
