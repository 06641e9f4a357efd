//! demo_room (stub)
