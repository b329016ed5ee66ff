//! Storage backends for Rotary. SQLite (embedded, the default) lives here now;
//! PostgreSQL (multi-node) will sit beside it and run the same
//! [`conformance`] suite.

mod cache;
mod durable;
mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use sqlite::{SqliteOptions, SqliteStore};
