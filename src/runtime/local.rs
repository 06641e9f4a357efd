//! Local runtime (stub).
