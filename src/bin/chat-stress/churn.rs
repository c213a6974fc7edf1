use clap::Args;
use crate::{Common, Report};
#[derive(Args, Clone, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
}
pub fn run(_args: &ChurnArgs) -> Result<Report, String> { Err("todo".into()) }
