//! The domain: what Troupe decides, as plain data and plain functions.
//!
//! Must always hold: nothing here performs I/O or imports an I/O crate (tokio, kube, axum, git2,
//! hyper, reqwest, notify), and nothing here reads the clock: a time is a value passed in.
//! `tests/architecture.rs` checks the imports. Every decision of the controller is a function
//! here, table-tested with plain `#[test]`s; the controller observes, calls it, and acts.

pub mod admission;
pub mod adoption;
pub mod applied;
pub mod autoscale;
pub mod converge;
pub mod operation;
pub mod plan;
pub mod reconcile;
pub mod room;
pub mod spec;
pub mod timeouts;

pub use applied::Applied;
