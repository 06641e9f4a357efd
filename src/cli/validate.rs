//! TEMP stub
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {}
pub fn run(_: ValidateArgs) -> anyhow::Result<std::process::ExitCode> { todo!() }
