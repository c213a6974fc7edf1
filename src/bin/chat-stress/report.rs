use clap::Args;
#[derive(Args, Clone, Debug)]
pub struct ReportArgs {}
pub fn run(_args: &ReportArgs) -> Result<(), String> { Err("todo".into()) }
