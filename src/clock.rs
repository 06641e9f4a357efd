//! The wall clock, read in one place. Domain functions never read it: they take the time as a
//! value, so that their decisions can be tested at any instant.

/// Milliseconds since the Unix epoch, the time unit of every persisted record.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
