//! TEMP stub
#[derive(Debug, clap::Args)]
pub struct DemoRoomArgs {}
pub async fn run(_: DemoRoomArgs) -> anyhow::Result<()> { todo!() }
