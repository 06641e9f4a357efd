//! TEMP stub
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {}
pub fn run(_: SchemaArgs) -> anyhow::Result<std::process::ExitCode> { todo!() }
