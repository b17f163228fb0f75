//! amigo's server side: the command line, its commands and the web server, as a library so tests can drive
//! them in-process.

pub mod body_limit;
pub mod cli;
pub mod commands;
pub mod error;
pub mod events;
#[cfg(any(test, feature = "testing"))]
pub mod input_properties;
pub mod metrics;
pub mod same_origin;
pub mod web;

pub use error::{Error, Result};
