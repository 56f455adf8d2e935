//! Helpers shared by the store's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

pub mod pg;
