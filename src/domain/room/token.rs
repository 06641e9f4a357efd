//! Room tokens: HMAC-SHA256 of `scheduler/room` under the server secret.
//!
//! Derived, not stored: a restarted controller recomputes every room's token from the secret, and
//! one room's token says nothing about another's. Comparison is constant-time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The token room `room` of scheduler `scheduler` must present.
pub fn room_token(secret: &[u8], scheduler: &str, room: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(scheduler.as_bytes());
    mac.update(b"/");
    mac.update(room.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `presented` is the token of that room.
pub fn verify_room_token(secret: &[u8], scheduler: &str, room: &str, presented: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(scheduler.as_bytes());
    mac.update(b"/");
    mac.update(room.as_bytes());
    match hex::decode(presented) {
        Ok(bytes) => mac.verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_valid_only_for_its_own_room() {
        let t = room_token(b"secret", "arena", "arena-1");
        assert!(verify_room_token(b"secret", "arena", "arena-1", &t));
        assert!(!verify_room_token(b"secret", "arena", "arena-2", &t));
        assert!(!verify_room_token(b"other", "arena", "arena-1", &t));
        assert!(!verify_room_token(b"secret", "arena", "arena-1", "not-hex"));
    }
}
