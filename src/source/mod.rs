//! Sources of desired state (stub).
