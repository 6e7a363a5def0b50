//! Brings up the routed lab ([`synscope_lab::routed`]: client, three
//! routers, server; router 2 drops 8443, rejects 111, clamps the MSS on 8080,
//! rewrites DSCP/ECN on 8081, strips options on 8082) and runs a command in
//! the client namespace, with SERVER4 / SERVER6 set to the server's
//! addresses and TARPIT4 / TARPIT6 to the tarpit's (a raw responder beside
//! the server that answers every port); the lab is removed when the command
//! ends. Port 8090 (IPv4) is answered by a SYN proxy on router 3.
//!
//!     cargo run --example routed_lab -- sh -c 'synscope path $SERVER4:8080'   (as root)

use synscope_lab::Lab;
use synscope_lab::routed::{self, RoutedSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return Err("usage: routed_lab COMMAND [ARG...]".into());
    }
    let spec = RoutedSpec::standard();
    let lab = Lab::up_routed(&spec)?;
    let tarpit = routed::Tarpit::start(&lab, spec.routers)?;
    let status = lab
        .client_command(&args[0])
        .args(&args[1..])
        .env("SERVER4", routed::server_v4(spec.routers).to_string())
        .env("SERVER6", routed::server_v6(spec.routers).to_string())
        .env("TARPIT4", tarpit.v4.to_string())
        .env("TARPIT6", tarpit.v6.to_string())
        .status()?;
    drop(tarpit);
    drop(lab);
    std::process::exit(status.code().unwrap_or(1));
}
