//! amigo's server side: the command line and the web server, as a library so tests can drive them in-process.

pub mod cli;
pub mod web;
