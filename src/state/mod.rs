//! State: what Troupe must remember across a `kill -9`, each record journaled before it is
//! visible.
//!
//! [`journal`] is the append-only file every record lives in; [`registry`] holds the rooms,
//! [`ops`] the operation queue and its history, [`history`] the revisions seen and the
//! schedulers suspended.

pub mod history;
pub mod journal;
pub mod ops;
pub mod registry;

pub use registry::{Registry, RegistryError};
