//! Room registry (stub).
pub struct Registry;
