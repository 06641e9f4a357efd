//! The planner (stub).
pub mod live;
