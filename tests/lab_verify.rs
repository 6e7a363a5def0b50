//! Verified verdicts in the routed lab (client — 3 routers — server, real
//! kernels): port 8090 is answered by router 3's nftables `synproxy` (IPv4),
//! port 80 by the server itself, and the tarpit beside the server answers
//! every port with a raw SYN-ACK. `trace` and `ping --verify` must name the
//! SYN proxy, keep the plain open port plain (no false alarm) and, for ping,
//! report the tarpit as answering every port. Needs root, `ip`, `nft`.

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

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn trace_names_the_syn_proxy_and_leaves_the_real_server_plain() {
    let lab = lab();
    let proxied = format!("{}:8090", routed::server_v4(3));
    // (the lab's server never closes: the trace ends INCOMPLETE after our FIN)
    let out = synscope(
        &lab,
        &[
            "trace",
            &proxied,
            "--idle",
            "100ms",
            "--time-wait",
            "100ms",
            "--max-wait",
            "2s",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("port: open (syn-proxy: ttl 62, later 61, window 0, later"),
        "{text}"
    );
    let out = synscope(
        &lab,
        &[
            "trace",
            &proxied,
            "--idle",
            "100ms",
            "--time-wait",
            "100ms",
            "--max-wait",
            "2s",
            "--json",
        ],
    );
    let doc = json(&out);
    let v = &doc["traces"][0]["verification"];
    assert_eq!(v["result"], "syn-proxy", "{v}");
    assert_eq!(v["evidence"][0]["field"], "ttl", "{v}");
    assert_eq!(v["evidence"][0]["syn_ack"], 62, "{v}");
    assert_eq!(v["evidence"][0]["later"], 61, "{v}");
    assert_eq!(v["evidence"][1]["field"], "zero-window", "{v}");
    assert_eq!(v["syn_ack"]["window"], 0, "{v}");

    // the server itself, v4 and v6: verified, no alarm
    for t in [
        format!("{}:80", routed::server_v4(3)),
        format!("[{}]:80", routed::server_v6(3)),
        // IPv6 to 8090 bypasses the proxy (see RoutedSpec::syn_proxy)
        format!("[{}]:8090", routed::server_v6(3)),
    ] {
        let out = synscope(
            &lab,
            &[
                "trace",
                &t,
                "--idle",
                "100ms",
                "--time-wait",
                "100ms",
                "--max-wait",
                "2s",
                "--json",
            ],
        );
        let doc = json(&out);
        let v = &doc["traces"][0]["verification"];
        assert_eq!(v["result"], "verified", "{t}: {v}");
        assert_eq!(v["evidence"], serde_json::json!([]), "{t}: {v}");
        let out = synscope(
            &lab,
            &[
                "trace",
                &t,
                "--idle",
                "100ms",
                "--time-wait",
                "100ms",
                "--max-wait",
                "2s",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("port: open (verified"), "{t}: {text}");
        assert!(!text.contains("syn-proxy"), "{t}: {text}");
    }
}
