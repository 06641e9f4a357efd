//! TEMP stub
use std::sync::Arc;
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitInfo { pub sha: String }
#[derive(Debug, Clone)]
pub struct Snapshot { pub revision: String, pub files: Vec<crate::spec::SourceFile>, pub commit: Option<CommitInfo> }
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct SourceError;
pub trait Source: Send + Sync { fn load(&self) -> Result<Snapshot, SourceError>; fn describe(&self) -> String; }
pub fn open(_: &std::path::Path, _: Option<String>, _: Option<String>) -> Result<Box<dyn Source>, SourceError> { todo!() }
pub fn watch(_: Arc<dyn Source>, _: std::time::Duration) -> (tokio::sync::watch::Receiver<Option<Result<Snapshot, String>>>, tokio::task::JoinHandle<()>) { todo!() }
