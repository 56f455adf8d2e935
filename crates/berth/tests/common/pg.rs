//! PostgreSQL for the replica tests: the store tests' helper (one file, included here).

#[path = "../../../berth-store/tests/common/pg.rs"]
mod launcher;

#[allow(unused_imports)]
pub use launcher::{Database, database, restart};
