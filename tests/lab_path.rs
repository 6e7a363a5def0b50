//! `synscope path` in a routed namespace lab (client — router 1 — router 2 —
//! router 3 — server, real kernels forwarding; router 2 drops, rejects and
//! rewrites by nftables): the dropping and the rejecting hop are named, every
//! rewrite is seen where it first shows, v4 and v6. Needs root, `ip`, `nft`.

use serde_json::Value;
use std::process::Output;
use synscope::lab::Lab;
use synscope::lab::routed::{self, RoutedSpec};

mod common;

fn lab() -> Lab {
    Lab::up_routed(&RoutedSpec::standard()).expect("routed lab up (needs root, iproute2, nftables)")
}

fn synscope(lab: &Lab, args: &[&str]) -> Output {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(args)
        .output()
        .expect("run synscope")
}

#[test]
fn the_routed_lab_forwards_and_its_routers_answer_time_exceeded() {
    let lab = lab();
    let server = format!("{}:80", routed::server_v4(3));
    let out = synscope(&lab, &["ping", &server, "-c", "1", "--json"]);
    common::assert_status(&out, 0);
    let out = synscope(
        &lab,
        &[
            "ping", &server, "-c", "1", "--ttl", "2", "--expect", "filtered",
        ],
    );
    common::assert_status(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("time-exceeded from 198.18.2.2"), "{text}");
    let server6 = format!("[{}]:80", routed::server_v6(3));
    let out = synscope(
        &lab,
        &[
            "ping", &server6, "-c", "1", "--ttl", "1", "--expect", "filtered",
        ],
    );
    common::assert_status(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("time-exceeded from 2001:db8:1::2"), "{text}");
    let _: Option<Value> = None;
}
