//! TEMP stub
use super::*;
pub struct LocalConfig { pub state_dir: std::path::PathBuf, pub self_exe: std::path::PathBuf, pub host: String }
pub struct LocalRuntime;
impl LocalRuntime { pub fn new(_: LocalConfig, _: tokio::sync::mpsc::Sender<RuntimeEvent>) -> Self { LocalRuntime } }
#[async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str { "local" }
    async fn start(&self, _: StartRoom) -> Result<Started, RuntimeError> { todo!() }
    async fn stop(&self, _: &Room, _: std::time::Duration) -> Result<(), RuntimeError> { todo!() }
    async fn adopt(&self, _: &[Room]) -> Result<Vec<String>, RuntimeError> { todo!() }
}
