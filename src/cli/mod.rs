//! The `troupe` command line (stub).
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
