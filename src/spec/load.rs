//! Loading a revision: YAML files → located, validated schedulers.
//! (stub: filled in by the spec work)

use super::Scheduler;

/// One file of a revision, path relative to the source root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub contents: String,
}

/// A scheduler and where it was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file: String,
    pub line: usize,
    pub scheduler: Scheduler,
}

/// One problem in a revision, located: file, line, column (1-based) and field path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path inside the document, e.g. `spec.containers[0].ports[1].port`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, self.path, self.message)
    }
}

/// All problems of a revision at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in revision", .0.len())]
pub struct LoadError(pub Vec<Located>);

/// Parse and validate every file of a revision; any error anywhere fails the whole revision.
pub fn load_documents(_files: &[SourceFile]) -> Result<Vec<Document>, LoadError> {
    todo!()
}
