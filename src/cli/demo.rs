//! Arguments of `synscope demo`.

use clap::Args;

/// The one-line help of `synscope demo`.
pub const ABOUT: &str =
    "Build a throwaway namespace lab and run every command in it: ping, scan, trace, dns.";

/// The long help of `synscope demo`.
pub const LONG_ABOUT: &str = "\
Build a throwaway namespace lab and run every command in it: ping, scan, trace, dns.

Pings an open, a closed and both kinds of filtered port (and IPv6), scans the
lab host, traces one whole connection with its ladder and checks an answer of
the lab's DNS server (NSD). Needs root (network namespaces, veth, nftables)
and the `ip`, `nft` and `nsd` tools. Sends nothing outside the lab; removes
everything it made when it ends, also on Ctrl-C, unless --keep: then the lab
stays up, with the commands to try in it printed, until
`synscope demo --remove`.";

/// Arguments of `synscope demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Probes per port.
    #[arg(short, long, default_value_t = 3)]
    pub count: u64,
    /// Leave the lab up after the demo (also after Ctrl-C once it is built)
    /// and print how to use it; `synscope demo --remove` removes it.
    #[arg(long, conflicts_with = "remove")]
    pub keep: bool,
    /// Remove the lab a `synscope demo --keep` left up, and nothing else.
    #[arg(long)]
    pub remove: bool,
    /// Internal: keep the lab described by FILE (listeners, NSD) until
    /// SIGTERM or 24 hours, then remove it.
    #[arg(long, value_name = "FILE", hide = true)]
    pub hold: Option<std::path::PathBuf>,
}
