//! ops (stub)
