//! The library in one call (`synscope::syn_ping`, `scan`, `dns_query`)
//! against the Linux kernel's TCP, nftables and NSD in a namespace lab. Each
//! call runs on a thread inside the lab's client namespace. Needs root, `ip`,
//! `nft`, `nsd`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use synscope::{DnsOptions, PingOptions, PortState, ScanOptions};
use synscope_lab::dns::LabDns;
use synscope_lab::{Lab, LabSpec, SERVER_V4, SERVER_V6, in_netns};

/// Runs `f` on a current-thread runtime in the lab's client namespace.
fn in_client<T: Send + 'static>(lab: &Lab, f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    in_netns(&lab.client_ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
    .expect("enter the client namespace")
}

fn filtered(reason: &str, from: Option<IpAddr>) -> PortState {
    PortState::Filtered {
        reason: reason.into(),
        from,
    }
}

#[test]
fn syn_ping_names_every_answer_on_both_families() {
    if synscope_lab::skip_unless_root("syn_ping_names_every_answer_on_both_families") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).expect("lab up");
    let v4 = IpAddr::V4(SERVER_V4);
    let cases = [
        (SocketAddr::new(v4, 80), PortState::Open),
        (SocketAddr::new(v4, 81), PortState::Closed),
        (SocketAddr::new(v4, 21), filtered("no-answer", None)),
        (
            SocketAddr::new(v4, 111),
            filtered("admin-prohibited", Some(v4)),
        ),
        (SocketAddr::new(SERVER_V6.into(), 443), PortState::Open),
    ];
    for (target, want) in cases {
        let opts = PingOptions::default().timeout(Duration::from_millis(300));
        let r = in_client(&lab, async move || synscope::syn_ping(target, &opts).await)
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(r.target, target);
        assert_eq!(r.state, want, "{target}: {r:?}");
        if want == PortState::Open || want == PortState::Closed {
            assert!(
                r.rtt.is_some_and(|t| t < Duration::from_millis(300)),
                "{r:?}"
            );
            assert!(r.kernel_timed, "{r:?}");
            assert_eq!(r.ttl, Some(64), "{r:?}");
        }
        if want == PortState::Open {
            assert!(r.options.is_some(), "{r:?}");
        }
    }
}

#[test]
fn syn_ping_error_names_operation_and_address() {
    if synscope_lab::skip_unless_root("syn_ping_error_names_operation_and_address") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).expect("lab up");
    // no route to it inside the lab: nothing is sent
    let target: SocketAddr = "198.19.255.1:80".parse().unwrap();
    let e = in_client(&lab, async move || {
        synscope::syn_ping(target, &PingOptions::default()).await
    })
    .expect_err("no route");
    assert_eq!(e.operation, "syn_ping");
    assert_eq!(e.address, "198.19.255.1:80");
    assert!(!e.needs_privileges());
    let line = e.to_string();
    assert!(
        line.starts_with("syn_ping 198.19.255.1:80: no route to 198.19.255.1"),
        "{line}"
    );
}

#[test]
fn scan_gives_one_result_per_host_and_port() {
    if synscope_lab::skip_unless_root("scan_gives_one_result_per_host_and_port") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).expect("lab up");
    let results = in_client(&lab, async || {
        let opts = ScanOptions::default()
            .rate(1000)
            .timeout(Duration::from_millis(300));
        synscope::scan(
            &["198.18.0.2", "2001:db8::2"],
            &[22, 80, 81, 21, 111],
            &opts,
        )
        .await
    })
    .unwrap();
    let state = |host: &str, port: u16| {
        let host: IpAddr = host.parse().unwrap();
        results
            .iter()
            .find(|r| r.host == host && r.port == port)
            .map(|r| r.state.clone())
    };
    assert_eq!(results.len(), 10, "{results:?}");
    for host in ["198.18.0.2", "2001:db8::2"] {
        let h: IpAddr = host.parse().unwrap();
        assert_eq!(state(host, 22), Some(PortState::Open), "{results:?}");
        assert_eq!(state(host, 80), Some(PortState::Open), "{results:?}");
        assert_eq!(state(host, 81), Some(PortState::Closed), "{results:?}");
        assert_eq!(state(host, 21), Some(filtered("no-answer", None)));
        assert_eq!(
            state(host, 111),
            Some(filtered("admin-prohibited", Some(h))),
            "{results:?}"
        );
    }
    let open = results.iter().find(|r| r.state == PortState::Open).unwrap();
    assert!(open.rtt.is_some(), "{open:?}");
    // sorted by host, then port
    let keys: Vec<(IpAddr, u16)> = results.iter().map(|r| (r.host, r.port)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn dns_query_answers_from_nsd_raw_and_over_a_socket() {
    if synscope_lab::skip_unless_root("dns_query_answers_from_nsd_raw_and_over_a_socket") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).expect("lab up");
    let _nsd = LabDns::start(&lab).expect("nsd (apt-get install nsd)");
    let server = SocketAddr::new(SERVER_V4.into(), 53);
    for raw in [true, false] {
        let a = in_client(&lab, async move || {
            let opts = DnsOptions::default().raw(raw);
            synscope::dns_query(server, "b.lab.test", "a", &opts).await
        })
        .unwrap();
        assert_eq!(a.rcode.as_deref(), Some("NOERROR"), "{a:?}");
        let mut answers = a.answers.clone();
        answers.sort();
        assert_eq!(answers, ["198.18.0.11", "198.18.0.12"], "{a:?}");
        assert_eq!(a.name, "b.lab.test.");
        assert_eq!(a.rtype, "A");
        assert!(a.rtt.is_some() && a.reply.is_some(), "{a:?}");
        assert_eq!(a.attempts, 1);
    }
    let nx = in_client(&lab, async move || {
        synscope::dns_query(server, "nx.lab.test", "AAAA", &DnsOptions::default()).await
    })
    .unwrap();
    assert_eq!(nx.rcode.as_deref(), Some("NXDOMAIN"), "{nx:?}");
    assert!(nx.answers.is_empty());
    // nothing listens on 5353: the ICMP port unreachable ends it at once
    let closed = SocketAddr::new(SERVER_V4.into(), 5353);
    let r = in_client(&lab, async move || {
        synscope::dns_query(closed, "a.lab.test", "A", &DnsOptions::default()).await
    })
    .unwrap();
    assert!(r.reply.is_none() && r.rcode.is_none(), "{r:?}");
    assert!(
        r.refused
            .as_deref()
            .is_some_and(|f| f.contains("port-unreachable")),
        "{r:?}"
    );
    // a bad type is an error naming the call and the server
    let e = in_client(&lab, async move || {
        synscope::dns_query(server, "a.lab.test", "NOPE", &DnsOptions::default()).await
    })
    .expect_err("bad type");
    assert_eq!(
        (e.operation, e.address.as_str()),
        ("dns_query", "198.18.0.2:53")
    );
}
