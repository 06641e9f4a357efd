//! controller (stub)
