//! Arguments of `synscope demo`.

use clap::Args;

pub const ABOUT: &str =
    "Build a throwaway namespace lab and ping an open, a closed and a filtered port.";

pub const LONG_ABOUT: &str = "\
Build a throwaway namespace lab and ping an open, a closed and a filtered port.

Needs root (network namespaces, veth, nftables) and the `ip` and `nft` tools.
Sends nothing outside the lab; removes everything it made when it ends.";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Probes per port.
    #[arg(short, long, default_value_t = 3)]
    pub count: u64,
}
