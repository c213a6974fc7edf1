use clap::Args;
use crate::{Common, Report};
#[derive(Args, Clone, Debug)]
pub struct HoldArgs {
    #[command(flatten)]
    pub common: Common,
}
pub fn run(_args: &HoldArgs) -> Result<Report, String> { Err("todo".into()) }
