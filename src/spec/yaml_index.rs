//! Path → position index of a YAML document. (stub)
