//! The command loops of ping, trace and path run through the simulated link:
//! no root, no namespace, exact (seeded) and instant (simulated time).

use super::sim::{
    Ending, Leg, PortIs, Routers, SimClock, SimLink, SynPeer, TcpPeer, clean_path, random_path,
};
use crate::cmd::{Interrupt, Log, status};
use crate::event::Timestamp;
use crate::io::Clock;
use crate::probe::SynProbeConfig;
use crate::probe::path::{Outcome, PathConfig, PathProber};
use crate::probe::ping::{PingConfig, PingMachine};
use crate::probe::tcp_client::{CloseMode, Dir, TcpClientConfig, Teardown};
use crate::probe::trace::Trace;
use crate::report::OutputFormat;
use crate::report::ping::{Expect, PingReport, PingSummary, PingTarget};
use crate::report::trace::TraceRun;
use crate::wire::SeqNumber;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const US: &str = "198.18.0.1";
const THEM: &str = "198.18.0.2";
const T0: Timestamp = Timestamp(1_800_000_000_000_000_000);
const QUIET: Log = Log { verbose: false };

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn them(port: u16) -> SocketAddr {
    SocketAddr::new(THEM.parse().unwrap(), port)
}

/// A simulated Ctrl-C `after` the start, or none.
fn ctrl_c_after(clock: &SimClock, after: Option<Duration>) -> Interrupt<'static> {
    match after {
        Some(d) => clock.interrupt_at(T0 + d),
        None => Interrupt::never(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What a ping run printed and summed up.
struct Pinged {
    summary: PingSummary,
    text: String,
    link: SimLink<SynPeer>,
}

fn ping(
    port: u16,
    peer: SynPeer,
    path: super::sim::Path,
    count: Option<u64>,
    expect: Expect,
    interrupt_after: Option<Duration>,
) -> Pinged {
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, peer, path, 7);
    let probe = SynProbeConfig {
        src: US.parse().unwrap(),
        dst: them(port),
        ttl: 64,
        syn_options: true,
        mss: 1460,
        window: 64240,
        timeout: Duration::from_secs(1),
    };
    let mut machine = PingMachine::new(
        PingConfig {
            probe,
            interval: ms(100),
            count,
            fixed_port: None,
            window: 1000,
            bound: None,
            settle: crate::probe::ping::SETTLE,
        },
        None,
    );
    let mut report = PingReport::new(
        PingTarget {
            host: THEM.into(),
            address: them(port),
            source: US.parse().unwrap(),
            interface: "sim0".into(),
            syn_options: true,
        },
        OutputFormat::Text,
        expect,
    );
    let mut interrupt = ctrl_c_after(&clock, interrupt_after);
    let mut out = Vec::new();
    let summary = rt()
        .block_on(crate::cmd::ping::session(
            &mut machine,
            &mut link,
            &clock,
            &mut report,
            &mut out,
            ms(100),
            QUIET,
            &mut interrupt,
        ))
        .unwrap();
    report.finish(&mut out, &summary).unwrap();
    Pinged {
        summary,
        text: String::from_utf8(out).unwrap(),
        link,
    }
}

fn rtt_ms(s: &PingSummary) -> (f64, f64) {
    let r = s.rtt.as_ref().expect("RTTs");
    (r.min_us / 1e3, r.max_us / 1e3)
}

#[test]
fn ping_on_a_clean_path_counts_every_answer_with_the_path_rtt() {
    let p = ping(
        80,
        SynPeer::new(&[(80, PortIs::Open)]),
        clean_path(ms(10)),
        Some(5),
        Expect::Open,
        None,
    );
    let s = &p.summary;
    assert_eq!((s.sent, s.answered, s.open, s.no_response), (5, 5, 5, 0));
    // 10 ms there, 20 µs to answer, 10 ms back, from the kernel's send stamp
    assert_eq!(rtt_ms(s), (20.02, 20.02));
    assert_eq!(status::of(s.expectation_met), status::OK);
    assert_eq!(p.link.held(), 0, "every port released");
    assert!(p.text.matches("open").count() >= 5, "{}", p.text);
    // 100 ms apart, on the simulated clock
    let sends: Vec<u64> = p.link.sent.iter().map(|(t, _)| t.0 - T0.0).collect();
    assert_eq!(sends, [0, 100, 200, 300, 400].map(|n| n * 1_000_000));
}

#[test]
fn ping_counts_lost_answers_as_loss_not_as_failure() {
    // the answers to the 2nd and 4th probe are lost on the way back
    let path: super::sim::Path = Box::new(|leg, n, _| match (leg, n) {
        (Leg::Back, 1 | 3) => vec![],
        _ => vec![ms(5)],
    });
    let p = ping(
        80,
        SynPeer::new(&[(80, PortIs::Open)]),
        path,
        Some(5),
        Expect::Open,
        None,
    );
    let s = &p.summary;
    assert_eq!((s.sent, s.answered, s.no_response), (5, 3, 2));
    assert_eq!(s.loss_percent, 40.0);
    assert_eq!(status::of(s.expectation_met), status::OK);
    assert_eq!(p.link.held(), 0);
}

#[test]
fn duplicated_answers_are_counted_once() {
    let path: super::sim::Path = Box::new(|leg, _, _| match leg {
        Leg::Back => vec![ms(5), ms(6)],
        Leg::Out => vec![ms(5)],
    });
    let p = ping(81, SynPeer::new(&[]), path, Some(4), Expect::Closed, None);
    let s = &p.summary;
    assert_eq!((s.sent, s.answered, s.closed, s.no_response), (4, 4, 4, 0));
    assert_eq!(rtt_ms(s), (10.02, 10.02), "the first copy times the probe");
    assert_eq!(status::of(s.expectation_met), status::OK);
}

#[test]
fn reordered_and_late_answers_each_time_their_own_probe() {
    // answers come back slower and slower: 350, 250, 150, 50 ms (reordered
    // behind later probes' answers), and the 5th after its 1 s timeout
    let path: super::sim::Path = Box::new(|leg, n, _| match (leg, n) {
        (Leg::Out, _) => vec![Duration::ZERO],
        (Leg::Back, 4) => vec![ms(1500)],
        (Leg::Back, n) => vec![ms(350 - 100 * n)],
    });
    let p = ping(
        80,
        SynPeer::new(&[(80, PortIs::Open)]),
        path,
        Some(5),
        Expect::Open,
        None,
    );
    let s = &p.summary;
    assert_eq!((s.sent, s.open, s.no_response), (5, 4, 1));
    assert_eq!(rtt_ms(s), (50.02, 350.02));
    let probe_lines: Vec<&str> = p.text.lines().filter(|l| l.contains("seq=")).collect();
    assert_eq!(probe_lines.len(), 5, "{}", p.text);
}

#[test]
fn a_random_lossy_path_keeps_the_books_balanced() {
    for seed in 0..20 {
        let p = ping(
            80,
            SynPeer::new(&[(80, PortIs::Open)]),
            random_path(seed, ms(2), ms(300), 0.2, 0.2),
            Some(20),
            Expect::Open,
            None,
        );
        let s = &p.summary;
        assert_eq!(s.sent, 20);
        assert_eq!(s.answered + s.no_response, 20, "seed {seed}");
        assert!(
            s.answered > 0 && s.answered < 20,
            "seed {seed}: {}",
            s.answered
        );
        let r = s.rtt.as_ref().unwrap();
        // 2 ms each way at least, at most 2 x (2 + 300) ms
        assert!(
            r.min_us >= 4_000.0 && r.max_us <= 604_100.0,
            "seed {seed}: {r:?}"
        );
        assert_eq!(p.link.held(), 0);
    }
}

#[test]
fn closed_and_prohibited_ports_fail_an_open_expectation() {
    let p = ping(
        81,
        SynPeer::new(&[]),
        clean_path(ms(1)),
        Some(2),
        Expect::Open,
        None,
    );
    assert_eq!(p.summary.closed, 2);
    assert_eq!(status::of(p.summary.expectation_met), status::FAILED);
    let p = ping(
        111,
        SynPeer::new(&[(111, PortIs::Prohibited)]),
        clean_path(ms(1)),
        Some(2),
        Expect::Filtered,
        None,
    );
    assert_eq!(p.summary.filtered, 2);
    assert!(p.text.contains("admin-prohibited"), "{}", p.text);
    assert_eq!(status::of(p.summary.expectation_met), status::OK);
}

#[test]
fn ctrl_c_ends_an_endless_ping_with_the_summary_so_far() {
    let p = ping(
        80,
        SynPeer::new(&[(80, PortIs::Open)]),
        clean_path(ms(10)),
        None,
        Expect::Open,
        Some(ms(450)),
    );
    let s = &p.summary;
    assert!(s.interrupted);
    assert_eq!((s.sent, s.open), (5, 5));
    assert!(
        p.text.contains("5 probes sent") || p.text.contains("sent"),
        "{}",
        p.text
    );
}

/// `path` to 198.18.0.2:443 with these hops, probes per hop, timeout and port use.
fn path_config(max_hops: u8, count: u16, timeout: Duration, one_port: bool) -> PathConfig {
    PathConfig {
        src: US.parse().unwrap(),
        dst: them(443),
        max_hops,
        count,
        timeout,
        syn_options: true,
        mss: 1460,
        window: 64240,
        tos: 0,
        ecn: false,
        one_port,
    }
}

fn trace_config(close: CloseMode) -> TcpClientConfig {
    TcpClientConfig {
        src: SocketAddr::new(US.parse().unwrap(), 40000),
        dst: them(80),
        isn: SeqNumber(1000),
        ttl: 64,
        mss: 1460,
        syn_options: true,
        payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        close,
        half_open: false,
        rto: Duration::from_secs(1),
        max_retries: 3,
        idle: ms(100),
        time_wait: ms(10),
        max_wait: Duration::from_secs(10),
    }
}

/// One trace against any simulated peer over `path` (`seed`: the link's
/// randomness): how the drive loop ended, the run and its teardown.
fn play_trace(
    peer: impl super::sim::Peer,
    path: super::sim::Path,
    seed: u64,
) -> (crate::drive::Ended, TraceRun, Teardown) {
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, peer, path, seed);
    let mut t = Trace::new(trace_config(CloseMode::Fin));
    let ended = rt()
        .block_on(crate::cmd::trace::play(
            &mut t,
            &mut link,
            &clock,
            &mut Interrupt::never(),
            QUIET,
        ))
        .unwrap();
    let (c, _) = t.into_parts();
    (ended, TraceRun::from_client(0, &c), c.teardown().unwrap())
}

/// One trace against `peer`; the run and the ladder as "S:FLAGS" / "R:FLAGS".
fn trace(peer: TcpPeer, path: super::sim::Path) -> (TraceRun, Vec<String>, Teardown) {
    let (ended, run, teardown) = play_trace(peer, path, 3);
    assert!(!ended.interrupted && !ended.out_of_time);
    let ladder = run
        .segments
        .iter()
        .map(|e| {
            let d = if e.dir == Dir::Sent { "S" } else { "R" };
            format!("{d}:{}", e.flags)
        })
        .collect();
    (run, ladder, teardown)
}

#[test]
fn trace_ladder_of_a_normal_close() {
    let (run, ladder, teardown) = trace(
        TcpPeer::new(Ending::Normal, b"HTTP/1.0 200 OK\r\n\r\n"),
        clean_path(ms(5)),
    );
    assert_eq!(teardown, Teardown::WeClosedFirst, "{ladder:?}");
    assert!(run.succeeded(), "{ladder:?}");
    // every segment we sent was stamped by the (simulated) capture
    assert!(
        run.segments
            .iter()
            .filter(|e| e.dir == Dir::Sent)
            .all(|e| e.stamp == crate::probe::tcp_client::StampSource::Kernel),
        "{:?}",
        run.segments
    );
    assert_eq!(
        ladder.first().map(String::as_str),
        Some("S:S"),
        "{ladder:?}"
    );
    assert_eq!(ladder.last().map(String::as_str), Some("S:."), "{ladder:?}");
    let fins: Vec<&String> = ladder.iter().filter(|l| l.contains('F')).collect();
    assert_eq!(fins.len(), 2, "{ladder:?}");
    assert!(
        fins[0].starts_with("S:") && fins[1].starts_with("R:"),
        "{ladder:?}"
    );
}

#[test]
fn trace_ladder_when_the_peer_closes_first() {
    let (run, ladder, teardown) = trace(
        TcpPeer::new(Ending::PeerClosesFirst, b"banner\r\n"),
        clean_path(ms(5)),
    );
    assert_eq!(teardown, Teardown::PeerClosedFirst, "{ladder:?}");
    assert!(run.succeeded(), "{ladder:?}");
    let fins: Vec<&String> = ladder.iter().filter(|l| l.contains('F')).collect();
    assert!(fins[0].starts_with("R:"), "{ladder:?}");
}

#[test]
fn trace_ladder_of_a_merged_fin_ack() {
    let (run, ladder, teardown) =
        trace(TcpPeer::new(Ending::MergedFinAck, b"ok"), clean_path(ms(5)));
    assert_eq!(teardown, Teardown::ThreeSegmentClose, "{ladder:?}");
    assert!(run.succeeded(), "{ladder:?}");
    let fins: Vec<&String> = ladder.iter().filter(|l| l.contains('F')).collect();
    assert_eq!(fins.len(), 2, "{ladder:?}");
}

#[test]
fn trace_ladder_of_a_reset() {
    let (run, ladder, teardown) = trace(TcpPeer::new(Ending::Rst, b""), clean_path(ms(5)));
    assert_eq!(teardown, Teardown::ResetByPeer, "{ladder:?}");
    assert!(!run.succeeded(), "{ladder:?}");
    assert!(
        ladder
            .iter()
            .any(|l| l.starts_with("R:") && l.contains('R')),
        "{ladder:?}"
    );
}

#[test]
fn trace_retransmits_a_syn_whose_answer_was_lost() {
    // the first SYN-ACK is lost
    let path: super::sim::Path = Box::new(|leg, n, _| match (leg, n) {
        (Leg::Back, 0) => vec![],
        _ => vec![ms(5)],
    });
    let (run, ladder, teardown) = trace(TcpPeer::new(Ending::Normal, b"ok"), path);
    assert_eq!(teardown, Teardown::WeClosedFirst, "{ladder:?}");
    assert_eq!(
        ladder.iter().filter(|l| *l == "S:S").count(),
        2,
        "{ladder:?}"
    );
    assert!(run.succeeded(), "{ladder:?}");
}

#[test]
fn path_finds_the_destination_behind_a_chain_of_routers() {
    let routers: Vec<IpAddr> = (1..=4).map(|i| IpAddr::from([198, 18, 9, i])).collect();
    let peer = Routers {
        routers: routers.clone(),
        dst: SynPeer::new(&[(443, PortIs::Open)]),
        silent: [2].into(),
        per_hop: ms(1),
    };
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, peer, clean_path(ms(1)), 11);
    let mut prober = PathProber::new(path_config(12, 1, ms(500), false));
    let ended = rt()
        .block_on(crate::cmd::path::probe(
            &mut prober,
            &mut link,
            &clock,
            &mut Interrupt::never(),
            QUIET,
            &mut |_| Ok(()),
        ))
        .unwrap();
    assert!(!ended.interrupted && !ended.out_of_time);
    let r = prober.result();
    assert!(
        matches!(r.outcome, Outcome::Reached { .. }),
        "{:?}",
        r.outcome
    );
    let mut out = Vec::new();
    crate::report::path::write(
        &mut out,
        OutputFormat::Text,
        &crate::report::path::PathTarget {
            host: THEM.into(),
            address: them(443),
            source: US.parse().unwrap(),
            interface: "sim0".into(),
        },
        prober.config(),
        &r,
        false,
        0,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    for (i, a) in routers.iter().enumerate() {
        assert_eq!(text.contains(&a.to_string()), i != 1, "{text}");
    }
    assert_eq!(link.held(), 0, "every port released");
    // it ends once every hop is answered or waited out: the silent one's 500 ms
    assert!(clock.elapsed() < ms(600), "{:?}", clock.elapsed());
}

#[test]
fn path_ndjson_writes_each_hop_line_as_soon_as_the_hop_is_final() {
    // hop 3 is silent: its probes wait out their 500 ms while hops 1 and 2
    // are answered within milliseconds
    let routers: Vec<IpAddr> = (1..=4).map(|i| IpAddr::from([198, 18, 9, i])).collect();
    let peer = Routers {
        routers,
        dst: SynPeer::new(&[(443, PortIs::Open)]),
        silent: [3].into(),
        per_hop: ms(1),
    };
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, peer, clean_path(ms(1)), 13);
    let mut prober = PathProber::new(path_config(12, 2, ms(500), false));
    let mut out = Vec::new();
    // (hop, when its line was written)
    let mut lines: Vec<(u8, Duration)> = Vec::new();
    let mut streamed = 0;
    rt().block_on(crate::cmd::path::probe(
        &mut prober,
        &mut link,
        &clock,
        &mut Interrupt::never(),
        QUIET,
        &mut |h| {
            crate::report::path::write_hop(&mut out, h)?;
            lines.push((h.hop.ttl, clock.elapsed()));
            streamed = h.hop.ttl;
            Ok(())
        },
    ))
    .unwrap();
    let done = clock.elapsed();
    // every hop up to the destination's (5), in order, none beyond it
    let ttls: Vec<u8> = lines.iter().map(|l| l.0).collect();
    assert_eq!(ttls, [1, 2, 3, 4, 5]);
    assert_eq!(streamed, 5);
    // hops 1 and 2 came out long before the run ended, hop 3 after its timeout
    assert!(lines[1].1 < ms(50), "{lines:?}");
    assert!(
        lines[2].1 >= ms(500) && done >= lines[2].1,
        "{lines:?} {done:?}"
    );
    // streamed lines and the rest are what one write at the end gives
    let target = crate::report::path::PathTarget {
        host: THEM.into(),
        address: them(443),
        source: US.parse().unwrap(),
        interface: "sim0".into(),
    };
    let r = prober.result();
    let cfg = prober.config();
    crate::report::path::write(&mut out, OutputFormat::Ndjson, &target, cfg, &r, false, 5).unwrap();
    let mut whole = Vec::new();
    crate::report::path::write(&mut whole, OutputFormat::Ndjson, &target, cfg, &r, false, 0)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(whole).unwrap()
    );
}

#[test]
fn an_unanswered_trace_gives_up_after_its_retries() {
    let (run, ladder, teardown) = trace(
        TcpPeer::new(Ending::Normal, b""),
        Box::new(|_, _, _| vec![]),
    );
    assert_eq!(teardown, Teardown::NoAnswer, "{ladder:?}");
    assert_eq!(ladder, ["S:S"; 4], "the SYN and 3 retries");
    assert!(!run.succeeded());
}

#[test]
fn ctrl_c_mid_connection_resets_it_and_ends_the_trace() {
    // the peer never answers the request: the client would retransmit for
    // seconds; Ctrl-C at 50 ms ends it with an RST
    let path: super::sim::Path = Box::new(|leg, n, _| match (leg, n) {
        (Leg::Out, 0) | (Leg::Back, _) => vec![ms(5)],
        _ => vec![],
    });
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, TcpPeer::new(Ending::Normal, b""), path, 5);
    let mut t = Trace::new(trace_config(CloseMode::Fin));
    let ended = rt()
        .block_on(crate::cmd::trace::play(
            &mut t,
            &mut link,
            &clock,
            &mut clock.interrupt_at(T0 + ms(50)),
            QUIET,
        ))
        .unwrap();
    assert!(ended.interrupted);
    let c = t.client();
    assert_eq!(c.teardown(), Some(Teardown::Interrupted));
    let last = &c.events().last().unwrap();
    assert_eq!(
        (last.dir, last.flags.to_string()),
        (Dir::Sent, "R.".to_string())
    );
    // it lingered for the kernel's stamp of that RST, no longer
    assert!(clock.elapsed() < ms(50) + super::super::probe::trace::LINGER + ms(1));
}

#[test]
fn ping_waits_for_ports_when_they_run_out() {
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(
        &clock,
        SynPeer::new(&[(80, PortIs::Open)]),
        clean_path(ms(150)),
        9,
    );
    // two ports to go round, answers take 300 ms, a probe is due every 100 ms
    link.port_limit = 2;
    let probe = SynProbeConfig {
        src: US.parse().unwrap(),
        dst: them(80),
        ttl: 64,
        syn_options: false,
        mss: 1460,
        window: 64240,
        timeout: Duration::from_secs(1),
    };
    let mut m = PingMachine::new(
        PingConfig {
            probe,
            interval: ms(100),
            count: Some(6),
            fixed_port: None,
            window: 1000,
            bound: None,
            settle: crate::probe::ping::SETTLE,
        },
        None,
    );
    let mut events = Vec::new();
    let ended = rt()
        .block_on(super::drive(
            &mut m,
            &mut link,
            &clock,
            &mut |e| {
                events.push(e);
                Ok(())
            },
            &mut Interrupt::never(),
        ))
        .unwrap();
    assert!(!ended.interrupted);
    use crate::probe::ping::PingEvent;
    let answered = events
        .iter()
        .filter(|e| matches!(e, PingEvent::Probe(r) if r.verdict == crate::probe::SynAnswer::Open))
        .count();
    assert_eq!(answered, 6);
    assert!(events.contains(&PingEvent::WindowShrunk { window: 2 }));
    assert_eq!(link.held(), 0);
    // never more than two SYNs out at once: the 3rd leaves when the 1st is answered
    let sends: Vec<u64> = link
        .sent
        .iter()
        .map(|(t, _)| (t.0 - T0.0) / 1_000_000)
        .collect();
    assert_eq!(sends[..3], [0, 100, 300], "{sends:?}");
}

#[test]
fn the_probe_crate_machines_run_on_a_recorder_too() {
    // the same contract without the drive loop: a Recorder context
    use crate::probe::machine::{Machine, Recorder};
    let mut m = PathProber::new(path_config(3, 2, ms(100), false));
    let mut cx = Recorder::new(1);
    assert_eq!(
        m.poll_at(),
        Some(Timestamp(0)),
        "the first probes are due at once"
    );
    m.poll(T0, &mut cx);
    assert_eq!(cx.sent.len(), 6);
    assert_eq!(cx.held.len(), 6);
    assert_eq!(
        m.poll_at(),
        Some(T0 + ms(100) + crate::probe::machine::SETTLE)
    );
    m.poll(T0 + ms(102), &mut cx);
    assert!(Machine::is_done(&m));
    assert!(cx.held.is_empty(), "expired probes free their ports");
}

/// One trace against any simulated peer on a clean path; its teardown.
fn trace_against(peer: impl super::sim::Peer) -> (TraceRun, Teardown) {
    let (_, run, teardown) = play_trace(peer, clean_path(ms(2)), 4);
    (run, teardown)
}

#[test]
fn trace_matches_an_icmp_error_quoting_its_syn_and_an_rst_to_it() {
    let (run, teardown) = trace_against(SynPeer::new(&[(80, PortIs::Prohibited)]));
    assert_eq!(teardown, Teardown::Unreachable);
    assert!(!run.succeeded());
    let (_, teardown) = trace_against(SynPeer::new(&[(80, PortIs::Closed)]));
    assert_eq!(teardown, Teardown::Refused);
}

/// Answers every segment with the same one to another port of ours, and a
/// SYN-ACK from another port of theirs, before the real answer.
struct CrossTalk(TcpPeer);

impl super::sim::Peer for CrossTalk {
    fn on_datagram(&mut self, at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let mut out = Vec::new();
        if let Ok(p) = crate::wire::Datagram::parse(d)
            && let crate::wire::Transport::Tcp(t) = &p.transport
        {
            for (sport, dport) in [(t.dst_port, t.src_port + 1), (t.dst_port + 1, t.src_port)] {
                let foreign = crate::wire::TcpRepr {
                    src_port: sport,
                    dst_port: dport,
                    seq: SeqNumber(7),
                    ack: t.seq + 1,
                    flags: crate::wire::TcpFlags::SYN.union(crate::wire::TcpFlags::ACK),
                    window: 1000,
                    ..Default::default()
                };
                out.push((
                    Duration::ZERO,
                    super::sim::tcp_datagram(p.ip.dst, p.ip.src, &foreign),
                ));
            }
        }
        out.extend(self.0.on_datagram(at, d));
        out
    }
}

#[test]
fn trace_ignores_segments_of_other_flows() {
    let (run, teardown) = trace_against(CrossTalk(TcpPeer::new(Ending::Normal, b"ok")));
    assert_eq!(teardown, Teardown::WeClosedFirst);
    assert!(run.succeeded());
    // none of the foreign SYN-ACKs made it into the ladder
    let synacks = run
        .segments
        .iter()
        .filter(|e| e.dir == Dir::Received && e.flags.to_string() == "S.")
        .count();
    assert_eq!(synacks, 1);
}

/// A DNS server that ignores the first `silent` queries and answers the
/// next with an empty NOERROR reply (the query with QR set).
struct Dns {
    silent: u32,
    seen: u32,
}

impl super::sim::Peer for Dns {
    fn on_datagram(&mut self, _at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let Ok(p) = crate::wire::Datagram::parse(d) else {
            return Vec::new();
        };
        let crate::wire::Transport::Udp(u) = p.transport else {
            return Vec::new();
        };
        self.seen += 1;
        if self.seen <= self.silent || u.payload.len() < 12 {
            return Vec::new();
        }
        let mut msg = u.payload.clone();
        msg[2] |= 0x80;
        let udp = crate::wire::UdpRepr {
            src_port: u.dst_port,
            dst_port: u.src_port,
            payload: msg,
        };
        vec![(ms(1), super::sim::udp_datagram(p.ip.dst, p.ip.src, &udp))]
    }
}

#[test]
fn a_dns_query_is_retried_until_answered_and_timed_from_its_last_attempt() {
    use crate::probe::dns::{DnsExchange, DnsProbeConfig};
    use crate::probe::dns_query::{OneQuery, QueryEvent};
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, Dns { silent: 2, seen: 0 }, clean_path(ms(3)), 8);
    let mut ex = DnsExchange::new(DnsProbeConfig {
        src: US.parse().unwrap(),
        ttl: 64,
        timeout: ms(500),
        retries: 3,
        answers_only: false,
    });
    let server = SocketAddr::new(THEM.parse().unwrap(), 53);
    let query = crate::wire::dns::QueryRepr {
        id: 0x1234,
        question: crate::wire::dns::Question::new(
            "example.test.".parse().unwrap(),
            hickory_proto::rr::RecordType::A,
        ),
        recursion_desired: true,
        edns: None,
    };
    let mut q = OneQuery::new(&mut ex, server, 5353, query);
    let mut events = Vec::new();
    rt().block_on(super::drive(
        &mut q,
        &mut link,
        &clock,
        &mut |e| {
            events.push(e);
            Ok(())
        },
        &mut Interrupt::never(),
    ))
    .unwrap();
    let o = q.take_outcome().expect("an outcome");
    assert_eq!(o.attempts, 3);
    assert!(o.reply.is_some());
    // 3 ms there, 1 ms to answer, 3 ms back, from the third attempt's kernel stamp
    assert_eq!(o.rtt, Some(ms(7)));
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(events[0], QueryEvent::Sent { .. }));
    assert!(matches!(events[2], QueryEvent::Retry { .. }));
    // two timeouts of 500 ms, then the answer
    assert_eq!(
        clock.elapsed(),
        ms(1000) + ms(7) + super::sim::TX_STAMP_DELAY
    );
}

#[test]
fn traces_over_a_lossy_reordering_duplicating_path_end_within_their_bounds() {
    let mut endings = std::collections::BTreeMap::new();
    for seed in 0..40 {
        let clock = SimClock::starting_at(T0);
        let mut link = SimLink::new(
            &clock,
            TcpPeer::new(Ending::Normal, b"HTTP/1.0 200 OK\r\n\r\n"),
            random_path(seed, ms(2), ms(30), 0.15, 0.15),
            seed,
        );
        let mut t = Trace::new(trace_config(CloseMode::Fin));
        let ended = rt()
            .block_on(crate::cmd::trace::play(
                &mut t,
                &mut link,
                &clock,
                &mut Interrupt::never(),
                QUIET,
            ))
            .unwrap();
        assert!(!ended.interrupted, "seed {seed}");
        let c = t.client();
        let teardown = c.teardown().expect("ended");
        *endings.entry(format!("{teardown:?}")).or_insert(0) += 1;
        // within max_wait and TIME_WAIT, and the linger
        assert!(
            clock.elapsed() <= Duration::from_secs(10) + ms(10) + ms(21),
            "seed {seed}: {:?}",
            clock.elapsed()
        );
        assert!(!ended.out_of_time, "seed {seed}");
    }
    // most connections close in order despite the path (a FIN overtaking
    // the ACK before it reads as FIN+ACK: a three-segment close); the rest
    // end unfinished at --max-wait when both copies of a peer's segment were lost
    let orderly = ["WeClosedFirst", "ThreeSegmentClose"]
        .iter()
        .map(|k| endings.get(*k).copied().unwrap_or(0))
        .sum::<u32>();
    assert!(orderly >= 30, "{endings:?}");
    assert!(
        endings.keys().all(
            |k| ["WeClosedFirst", "ThreeSegmentClose", "Unfinished", "GaveUp"]
                .contains(&k.as_str())
        ),
        "{endings:?}"
    );
}

#[test]
fn path_from_one_source_port_sends_one_probe_at_a_time() {
    let routers: Vec<IpAddr> = (1..=2).map(|i| IpAddr::from([198, 18, 9, i])).collect();
    let peer = Routers {
        routers,
        dst: SynPeer::new(&[(443, PortIs::Open)]),
        silent: Default::default(),
        per_hop: ms(1),
    };
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, peer, clean_path(ms(1)), 12);
    let mut prober = PathProber::new(path_config(8, 2, ms(500), true));
    prober.set_source_port(41000);
    rt().block_on(crate::cmd::path::probe(
        &mut prober,
        &mut link,
        &clock,
        &mut Interrupt::never(),
        QUIET,
        &mut |_| Ok(()),
    ))
    .unwrap();
    assert!(matches!(prober.result().outcome, Outcome::Reached { .. }));
    assert_eq!(link.held(), 0, "no port reserved from the link");
    let ports: std::collections::BTreeSet<u16> = link
        .sent
        .iter()
        .map(|(_, d)| u16::from_be_bytes([d[20], d[21]]))
        .collect();
    assert_eq!(ports, [41000].into());
    // each SYN leaves once the one before it was answered: 2 per hop, 3 hops
    assert_eq!(link.sent.len(), 6);
    let gaps: Vec<u64> = link.sent.windows(2).map(|w| w[1].0.0 - w[0].0.0).collect();
    assert!(gaps.iter().all(|g| *g >= 2_000_000), "{gaps:?}");
}

// ---- scan: the whole scan machine over the simulated link ----

use super::sim::{Hosts, Peer, Policer};
use crate::probe::SynAnswer;
use crate::scan::machine::{Found, ScanTally};
use crate::scan::targets::parse_target;
use crate::scan::{
    Cookie, PortList, ScanConfig, ScanEvent, ScanMachine, ScanMatcher, Shard, SourceMap, TargetSet,
};
use std::collections::BTreeMap;

/// Each pair's verdicts, in the order reported (one each when all is well).
type Verdicts = BTreeMap<(IpAddr, u16), Vec<SynAnswer>>;

/// What a simulated scan reported.
struct Scanned<P> {
    results: Verdicts,
    absorbed: Vec<(IpAddr, u16)>,
    every_port: Vec<IpAddr>,
    /// Every reported RTT.
    rtts: Vec<Duration>,
    tally: ScanTally,
    ended: super::Ended,
    link: SimLink<P>,
}

fn host(n: u8) -> IpAddr {
    IpAddr::from([198, 18, 0, n])
}

fn scan_config(targets: &str, ports: &str) -> ScanConfig {
    let no = |_: &str| Err("no names".to_string());
    let include: Vec<_> = targets
        .split(',')
        .map(|t| parse_target(t, &no).unwrap())
        .collect();
    ScanConfig {
        matcher: ScanMatcher {
            sources: SourceMap::single(US.parse().unwrap()),
            sport: 40000,
            cookie: Cookie::new([7; 16]),
            targets: TargetSet::build(&include, &[]).unwrap(),
            ports: PortList::parse(ports).unwrap(),
            ttl: 64,
            syn_options: true,
            mss: 1460,
        },
        seed: 11,
        shard: Shard::WHOLE,
        block_size: None,
        rate: 10_000,
        auto_rate: None,
        retries: 1,
        wait: Duration::from_secs(1),
        canaries: false,
        verify: false,
        verbose: false,
        progress: false,
    }
}

fn run_scan<P: Peer>(
    cfg: ScanConfig,
    peer: P,
    path: super::sim::Path,
    interrupt_after: Option<Duration>,
) -> Scanned<P> {
    run_scan_lagging(cfg, peer, path, interrupt_after, Duration::ZERO)
}

/// [`run_scan`] with the link's sends leaving `lag` after the loop hands
/// them over, from 60 ms on.
fn run_scan_lagging<P: Peer>(
    cfg: ScanConfig,
    peer: P,
    path: super::sim::Path,
    interrupt_after: Option<Duration>,
    lag: Duration,
) -> Scanned<P> {
    run_scan_on(cfg, peer, path, interrupt_after, |link| {
        // the sends start to lag once the rate control knows the path's RTT
        link.send_lag = lag;
        link.lag_from = T0 + ms(60);
    })
}

/// [`run_scan`] on a link `setup` changed.
fn run_scan_on<P: Peer>(
    cfg: ScanConfig,
    peer: P,
    path: super::sim::Path,
    interrupt_after: Option<Duration>,
    setup: impl FnOnce(&mut SimLink<P>),
) -> Scanned<P> {
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, peer, path, 5);
    setup(&mut link);
    let mut rtts = Vec::new();
    let mut machine = ScanMachine::new(cfg);
    let mut results = Verdicts::new();
    let (mut absorbed, mut every_port) = (Vec::new(), Vec::new());
    let mut reporter = |e: ScanEvent| {
        match e {
            ScanEvent::Result(f, _) => {
                rtts.extend(f.rtt_ns.map(Duration::from_nanos));
                results
                    .entry((f.host, f.port))
                    .or_default()
                    .push(f.verdict());
            }
            ScanEvent::Absorbed(Found { host, port, .. }) => absorbed.push((host, port)),
            ScanEvent::EveryPort(h) => every_port.push(h.host),
            ScanEvent::Progress { .. } | ScanEvent::Debug(_) => {}
        }
        Ok(())
    };
    let mut interrupt = ctrl_c_after(&clock, interrupt_after);
    let ended = rt()
        .block_on(super::drive(
            &mut machine,
            &mut link,
            &clock,
            &mut reporter,
            &mut interrupt,
        ))
        .unwrap();
    Scanned {
        results,
        absorbed,
        every_port,
        rtts,
        tally: machine.tally().clone(),
        ended,
        link,
    }
}

/// The verdict's class, as the report names it.
fn class(v: &SynAnswer) -> &'static str {
    match v {
        SynAnswer::Open => "open",
        SynAnswer::Closed => "closed",
        SynAnswer::Filtered { .. } => "filtered",
        SynAnswer::NoAnswer => "no-response",
    }
}

/// .2: 22 and 80 open, 443 prohibited (ICMP), 8080 silent, the rest
/// closed; .3: every port closed; .4: no host.
fn three_hosts() -> Hosts {
    let mut h = Hosts::default();
    h.hosts.insert(
        host(2),
        SynPeer::new(&[
            (22, PortIs::Open),
            (80, PortIs::Open),
            (443, PortIs::Prohibited),
            (8080, PortIs::Silent),
        ]),
    );
    h.hosts.insert(host(3), SynPeer::new(&[]));
    h
}

fn expected_three_hosts(port: u16, h: u8) -> &'static str {
    match (h, port) {
        (2, 22 | 80) => "open",
        (2, 443) => "filtered",
        (2, 8080) | (4, _) => "no-response",
        _ => "closed",
    }
}

const FIVE_PORTS: &str = "22,80,81,443,8080";

/// Every pair of [`three_hosts`] reported once, with its verdict.
fn assert_three_hosts(results: &Verdicts) {
    assert_verdicts(
        results,
        &[2, 3, 4],
        &[22, 80, 81, 443, 8080],
        expected_three_hosts,
    );
}

/// Every pair reported exactly once, with the verdict `want` gives.
fn assert_verdicts(
    results: &Verdicts,
    hosts: &[u8],
    ports: &[u16],
    want: impl Fn(u16, u8) -> &'static str,
) {
    assert_eq!(results.len(), hosts.len() * ports.len(), "{results:?}");
    for &h in hosts {
        for &p in ports {
            let got = &results[&(host(h), p)];
            assert_eq!(got.len(), 1, "{}:{p} reported {got:?}", host(h));
            assert_eq!(class(&got[0]), want(p, h), "{}:{p}", host(h));
        }
    }
}

#[test]
fn scan_gives_open_closed_filtered_and_silent_verdicts_for_several_hosts() {
    let s = run_scan(
        scan_config("198.18.0.2-4", FIVE_PORTS),
        three_hosts(),
        clean_path(ms(1)),
        None,
    );
    assert_three_hosts(&s.results);
    let t = &s.tally;
    assert_eq!(t.probes, 15);
    // the 6 silent pairs (.2:8080, .4 ×5) get one retry each
    assert_eq!(t.sent, 15 + 6);
    assert_eq!(
        (t.cut_short, t.interrupted, s.ended.interrupted),
        (0, false, false)
    );
    assert_eq!(
        t.coverage.icmp_silent_pairs, 1,
        "8080 of the host that sent ICMP"
    );
    // each open port's half-open connection is reset by us
    let rsts = s
        .link
        .sent
        .iter()
        .filter(|(_, d)| {
            matches!(crate::wire::Datagram::parse(d).map(|d| d.transport),
                Ok(crate::wire::Transport::Tcp(t)) if t.flags == crate::wire::TcpFlags::RST)
        })
        .count();
    assert_eq!(rsts, 2);
    // and the wait after the last round is a few RTTs, not the whole --wait
    let took = s.link.sent.last().unwrap().0.saturating_sub(T0);
    assert!(took < ms(500), "{took:?}");
}

/// The RSTs we sent, by destination port.
fn our_rsts<P>(link: &SimLink<P>) -> Vec<u16> {
    link.sent
        .iter()
        .filter_map(
            |(_, d)| match crate::wire::Datagram::parse(d).map(|d| d.transport) {
                Ok(crate::wire::Transport::Tcp(t)) if t.flags == crate::wire::TcpFlags::RST => {
                    Some(t.dst_port)
                }
                _ => None,
            },
        )
        .collect()
}

#[test]
fn scan_leaves_syn_acks_to_a_kernel_seen_resetting_them_else_resets_them_itself() {
    // 64 hosts, port 80 open, 81 closed
    let hosts = || Hosts {
        hosts: (2..66)
            .map(|n| (host(n), SynPeer::new(&[(80, PortIs::Open)])))
            .collect(),
    };
    let cfg = || scan_config("198.18.0.2-65", "80,81");
    let open = |s: &Scanned<Hosts>| {
        s.results
            .values()
            .filter(|v| v.as_slice() == [SynAnswer::Open])
            .count() as u64
    };
    // a kernel that resets: seen 16 times in a row, trusted; none of ours
    let s = run_scan_on(cfg(), hosts(), clean_path(ms(1)), None, |l| {
        (l.kernel_resets, l.shows_resets) = (true, true)
    });
    assert_eq!(open(&s), 64);
    assert_eq!(our_rsts(&s.link), Vec::<u16>::new());
    assert_eq!((s.tally.resets_sent, s.tally.kernel_resets_seen), (0, 16));
    assert_eq!(s.link.kernel_rsts, 64);
    // the capture stops showing what leaves once trusted
    assert!(!s.link.watching);
    // a kernel kept from the SYN-ACKs (a firewall): ours, one per open port
    let s = run_scan_on(cfg(), hosts(), clean_path(ms(1)), None, |l| {
        (l.kernel_resets, l.shows_resets) = (false, true)
    });
    assert_eq!(open(&s), 64);
    assert_eq!(our_rsts(&s.link), vec![80; 64]);
    assert_eq!((s.tally.resets_sent, s.tally.kernel_resets_seen), (64, 0));
    assert!(!s.link.watching);
    // a link that cannot show what leaves: ours at once, as before
    let s = run_scan_on(cfg(), hosts(), clean_path(ms(1)), None, |l| {
        l.kernel_resets = true
    });
    assert_eq!(our_rsts(&s.link), vec![80; 64]);
    assert_eq!(s.tally.kernel_resets_seen, 0);
}

#[test]
fn scan_cut_short_resets_the_syn_acks_still_on_their_way_unless_the_kernel_does() {
    // 1,024 hosts with port 80 open, 5 ms away, 20k SYN/s, interrupted at
    // 50 ms: about 100 SYN-ACKs are on their way when it comes
    let hosts = || Hosts {
        hosts: (0..1024u32)
            .map(|n| {
                let a = IpAddr::from((u32::from_be_bytes([198, 18, 0, 0]) + n).to_be_bytes());
                (a, SynPeer::new(&[(80, PortIs::Open)]))
            })
            .collect(),
    };
    let cfg = || {
        let mut c = scan_config("198.18.0.0/22", "80");
        c.rate = 20_000;
        c
    };
    let syn_acks = |s: &Scanned<Hosts>| s.link.peer.hosts.values().map(|h| h.syns).sum::<u64>();
    // the kernel kept from the SYN-ACKs: every one gets our RST, those
    // after the interrupt too
    let s = run_scan_on(cfg(), hosts(), clean_path(ms(5)), Some(ms(50)), |l| {
        l.shows_resets = true
    });
    assert!(s.tally.interrupted);
    let n = syn_acks(&s);
    assert!((500..1024).contains(&n), "{n} SYN-ACKs");
    assert_eq!(our_rsts(&s.link).len() as u64, n);
    assert_eq!(s.tally.resets_sent, n);
    let after = s.link.sent.iter().filter(|(t, _)| *t > T0 + ms(51)).count();
    assert!(after > 0 && s.link.sent.iter().all(|(t, _)| *t < T0 + ms(80)));
    // a kernel that resets them: nothing of ours, and no linger
    let s = run_scan_on(cfg(), hosts(), clean_path(ms(5)), Some(ms(50)), |l| {
        (l.kernel_resets, l.shows_resets) = (true, true)
    });
    assert_eq!(our_rsts(&s.link), Vec::<u16>::new());
    assert!(s.link.sent.iter().all(|(t, _)| *t <= T0 + ms(51)));
}

#[test]
fn scan_retry_rounds_recover_answers_lost_in_the_first() {
    // a quarter of the first round's SYNs are lost on the way out
    let first_round = 15;
    let path: super::sim::Path = Box::new(move |leg, n, _| {
        if leg == Leg::Out && n < first_round && n % 4 == 1 {
            Vec::new()
        } else {
            vec![ms(1)]
        }
    });
    let mut cfg = scan_config("198.18.0.2-4", FIVE_PORTS);
    cfg.retries = 2;
    let s = run_scan(cfg, three_hosts(), path, None);
    assert_three_hosts(&s.results);
    // 4 lost in round 0; the 6 silent pairs are tried twice more
    assert_eq!(s.tally.sent, 15 + (6 + 4) + 6);
}

#[test]
fn scan_counts_duplicated_and_reordered_replies_once() {
    let path = random_path(3, ms(2), ms(3), 0.0, 0.5);
    let s = run_scan(
        scan_config("198.18.0.2-4", FIVE_PORTS),
        three_hosts(),
        path,
        None,
    );
    assert_three_hosts(&s.results);
    let dups = s
        .tally
        .ignored
        .get(&crate::probe::Ignored::NoProbe)
        .copied();
    assert!(
        dups.unwrap_or(0) > 0,
        "duplicates seen: {:?}",
        s.tally.ignored
    );
}

#[test]
fn scan_on_a_lossy_random_path_ends_with_every_pair_judged_once() {
    let mut cfg = scan_config("198.18.0.2-4", FIVE_PORTS);
    cfg.retries = 6;
    let s = run_scan(
        cfg,
        three_hosts(),
        random_path(9, ms(1), ms(1), 0.2, 0.1),
        None,
    );
    assert_three_hosts(&s.results);
}

#[test]
fn scan_rate_auto_backs_off_before_a_policer_and_every_verdict_ends_right() {
    // 64 hosts, 64 ports each (every 8th open), behind a policer of 5000 SYNs/s
    let mut hosts = Hosts::default();
    let open: Vec<(u16, PortIs)> = (0..8).map(|i| (1000 + i * 8, PortIs::Open)).collect();
    for n in 10..74 {
        hosts.hosts.insert(host(n), SynPeer::new(&open));
    }
    let peer = Policer::new(hosts, 5000.0, 20.0);
    let mut cfg = scan_config("198.18.0.10-73", "1000-1063");
    cfg.rate = 20_000;
    cfg.auto_rate = Some((100, 200_000));
    cfg.retries = 1;
    let s = run_scan(cfg, peer, clean_path(ms(1)), None);
    let hosts: Vec<u8> = (10..74).collect();
    let ports: Vec<u16> = (1000..1064).collect();
    assert_verdicts(&s.results, &hosts, &ports, |p, _| {
        if p % 8 == 0 { "open" } else { "closed" }
    });
    let c = &s.tally.coverage;
    assert!(c.peak_loss > 0.3, "the policer's loss was seen: {c:?}");
    assert!(
        c.settled_pps < c.peak_loss_rate_pps / 2.0,
        "backed off from where the loss was: {c:?}"
    );
    assert!(s.link.peer.dropped > 0);
    // the lost SYNs were sent again, not the whole scan many times over
    assert!(s.tally.sent < 2 * 64 * 64, "{} sent", s.tally.sent);
}

#[test]
fn scan_canaries_catch_a_tarpit_answering_every_port() {
    let mut hosts = three_hosts();
    hosts.hosts.insert(host(5), SynPeer::tarpit());
    let mut cfg = scan_config("198.18.0.2-5", FIVE_PORTS);
    cfg.canaries = true;
    let s = run_scan(cfg, hosts, clean_path(ms(1)), None);
    assert_eq!(s.every_port, vec![host(5)]);
    // its SYN-ACKs are not open ports: absorbed, not reported
    let mut absorbed = s.absorbed.clone();
    absorbed.sort();
    let all: Vec<(IpAddr, u16)> = [22, 80, 81, 443, 8080]
        .iter()
        .map(|&p| (host(5), p))
        .collect();
    assert_eq!(absorbed, all);
    assert!(s.results.keys().all(|(h, _)| *h != host(5)));
    // the normal hosts as before, .2 after its canary came back closed
    assert_three_hosts(&s.results);
    // .2 cost one canary (its RST), the tarpit three (the first's SYN-ACK
    // sent the other two)
    assert_eq!(s.tally.follow.canary_hosts, 2);
    assert_eq!(s.tally.follow.canary_probes, 1 + 3);
}

#[test]
fn scan_ctrl_c_mid_scan_ends_with_a_summary_marked_interrupted() {
    // 65535 ports at 1000/s: a minute of sending, interrupted at 200 ms
    let mut cfg = scan_config("198.18.0.2", "1-65535");
    cfg.rate = 1000;
    let s = run_scan(cfg, three_hosts(), clean_path(ms(1)), Some(ms(200)));
    assert!(s.ended.interrupted && s.tally.interrupted);
    let reported: u64 = s.results.values().map(|v| v.len() as u64).sum();
    assert!(
        reported > 0 && s.tally.sent < 300,
        "{reported} reported, {} sent",
        s.tally.sent
    );
    // what was sent and not answered is counted, not listed
    assert!(s.tally.cut_short > 0);
    assert!(reported + s.tally.cut_short <= s.tally.sent);
    assert!(
        s.results
            .values()
            .flatten()
            .all(|v| *v != SynAnswer::NoAnswer)
    );
    // nothing goes out after the interrupt
    let last = s.link.sent.last().unwrap().0;
    assert!(last <= T0 + ms(201), "{:?}", last.saturating_sub(T0));
}

#[test]
fn scan_shards_in_small_blocks_cover_every_pair_once_between_them() {
    // two shards, blocks of 4 probes: 3 hosts × 5 ports in 2 + 2 blocks
    let mut all = Verdicts::new();
    let mut sent = 0;
    for index in 0..2 {
        let mut cfg = scan_config("198.18.0.2-4", FIVE_PORTS);
        cfg.shard = Shard { index, count: 2 };
        cfg.block_size = Some(4);
        let s = run_scan(
            cfg,
            three_hosts(),
            random_path(index, ms(1), ms(2), 0.1, 0.1),
            None,
        );
        assert_eq!(s.tally.probes, if index == 0 { 8 } else { 7 });
        sent += s.tally.sent;
        for (pair, v) in s.results {
            all.entry(pair).or_default().extend(v);
        }
    }
    assert_three_hosts(&all);
    assert!(sent >= 15);
}

#[allow(dead_code)]
#[path = "../../tests/common/schema.rs"]
mod schema;

/// The command's settings for a simulated scan of 198.18.0.2.
fn scan_settings(ports: &str, rate: u64) -> crate::cli::ScanSettings {
    let cfg = scan_config(THEM, ports);
    crate::cli::ScanSettings {
        targets: vec![cfg.matcher.targets.clone()],
        ports: cfg.matcher.ports.clone(),
        rate,
        auto_rate: None,
        retries: 1,
        wait: Duration::from_secs(1),
        open_only: false,
        shard: Shard::WHOLE,
        seed: cfg.seed,
        ttl: 64,
        discovery: false,
        format: OutputFormat::Ndjson,
        progress: false,
        pcap: None,
        verbose: false,
        block_size: None,
        verify: false,
        canaries: true,
        send: crate::cli::SendSettings {
            source_port: None,
            interface: None,
            syn_options: true,
        },
    }
}

/// The command's session of one family over the simulated link: its NDJSON
/// lines (checked against docs/schema) and summary.
fn scan_command(
    settings: &crate::cli::ScanSettings,
    peer: Hosts,
    interrupt_after: Option<Duration>,
) -> (Vec<serde_json::Value>, crate::report::scan::ScanSummary) {
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, peer, clean_path(ms(1)), 5);
    let matcher = scan_config(THEM, FIVE_PORTS).matcher;
    let matcher = ScanMatcher {
        ports: settings.ports.clone(),
        ..matcher
    };
    let mut machine = ScanMachine::new(crate::cmd::scan::config(settings, matcher));
    let mut output = crate::report::scan::ScanOutput::new(Vec::new(), settings.format, false);
    let mut interrupt = ctrl_c_after(&clock, interrupt_after);
    let (ended, checks) = rt()
        .block_on(crate::cmd::scan::session(
            &mut machine,
            &mut link,
            &clock,
            &mut output,
            false,
            QUIET,
            &mut interrupt,
        ))
        .unwrap();
    let mut tally = crate::cmd::scan::Tally::default();
    tally.add_scan(machine.tally(), checks, ended);
    let summary = crate::cmd::scan::summary(settings, &mut tally, &output, clock.elapsed());
    let out = output.finish(&summary).unwrap();
    let lines = schema::check_lines("scan", &String::from_utf8(out).unwrap());
    (lines, summary)
}

#[test]
fn scan_command_writes_each_verdict_and_a_summary_that_validate() {
    let (lines, summary) = scan_command(&scan_settings(FIVE_PORTS, 10_000), three_hosts(), None);
    let verdicts: BTreeMap<u64, &str> = lines
        .iter()
        .filter(|l| l["kind"] == "result")
        .map(|l| (l["port"].as_u64().unwrap(), l["verdict"].as_str().unwrap()))
        .collect();
    let want: BTreeMap<u64, &str> = [
        (22, "open"),
        (80, "open"),
        (81, "closed"),
        (443, "filtered"),
        (8080, "no_response"),
    ]
    .into_iter()
    .collect();
    assert_eq!(verdicts, want);
    assert_eq!(lines.last().unwrap()["kind"], "summary");
    assert_eq!(
        (
            summary.open,
            summary.closed,
            summary.filtered,
            summary.no_response
        ),
        (2, 1, 1, 1)
    );
    assert!(!summary.interrupted);
    // .2 got canaries (its SYN-ACKs), and they came back closed
    assert_eq!(summary.verify.canary_hosts, 1);
    assert_eq!(summary.verify.answers_every_port_hosts, 0);
}

#[test]
fn scan_command_ctrl_c_gives_a_summary_with_interrupted_true() {
    // every port at 1000/s: a minute of sending, interrupted at 300 ms
    let (lines, summary) = scan_command(
        &scan_settings("1-65535", 1000),
        three_hosts(),
        Some(ms(300)),
    );
    assert!(summary.interrupted);
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["kind"], &last["interrupted"]),
        (&"summary".into(), &true.into())
    );
    let results = lines.iter().filter(|l| l["kind"] == "result").count() as u64;
    assert!(results > 0 && results < 400, "{results} results");
    // every probe is a result, cut short (sent, unanswered) or not probed
    assert_eq!(summary.probes, 65535);
    assert_eq!(results + summary.cut_short + summary.not_probed, 65535);
    assert!(
        summary.cut_short > 0 && summary.not_probed > 60_000,
        "{summary:?}"
    );
}

#[test]
fn scan_with_a_sender_lagging_behind_the_loop_keeps_rtts_and_verdicts_right() {
    // 64 hosts × 64 ports at --rate auto; from 60 ms on every SYN leaves
    // 20 ms (four rate slices) after the loop hands it over
    let mut hosts = Hosts::default();
    for n in 10..74 {
        hosts
            .hosts
            .insert(host(n), SynPeer::new(&[(1000, PortIs::Open)]));
    }
    let mut cfg = scan_config("198.18.0.10-73", "1000-1063");
    cfg.auto_rate = Some((100, 200_000));
    let s = run_scan_lagging(cfg, hosts, clean_path(ms(1)), None, ms(20));
    let hosts: Vec<u8> = (10..74).collect();
    let ports: Vec<u16> = (1000..1064).collect();
    assert_verdicts(&s.results, &hosts, &ports, |p, _| {
        if p == 1000 { "open" } else { "closed" }
    });
    // the RTT is the path's (2 ms and the host's 20 µs), not the lag's
    assert!(!s.rtts.is_empty());
    assert!(
        s.rtts.iter().all(|r| *r >= ms(2) && *r < ms(3)),
        "{:?}",
        s.rtts.iter().max()
    );
    // no loss where there was none (a cut for the lag would be undone by
    // the late replies: the rate control's own guard), so no retries
    let c = &s.tally.coverage;
    assert_eq!((c.peak_loss, s.tally.sent), (0.0, 64 * 64), "{c:?}");
}

/// How a [`Resolver`] server treats queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    /// Answers each A query with this address, after `think`.
    Answer([u8; 4]),
    /// An ICMP port-unreachable for every query (nothing listens on 53).
    PortClosed,
    /// Never answers.
    Silent,
}

/// DNS servers by address, answering A queries with one record each.
struct Resolver {
    servers: std::collections::BTreeMap<IpAddr, Serves>,
    think: Duration,
    /// Queries that reached each server.
    seen: std::collections::BTreeMap<IpAddr, u64>,
}

impl Resolver {
    fn new(servers: &[(IpAddr, Serves)]) -> Resolver {
        Resolver {
            servers: servers.iter().copied().collect(),
            think: Duration::from_micros(30),
            seen: Default::default(),
        }
    }
}

impl super::sim::Peer for Resolver {
    fn on_datagram(&mut self, _at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let Ok(p) = crate::wire::Datagram::parse(d) else {
            return Vec::new();
        };
        let crate::wire::Transport::Udp(u) = p.transport else {
            return Vec::new();
        };
        *self.seen.entry(p.ip.dst).or_default() += 1;
        let serves = self
            .servers
            .get(&p.ip.dst)
            .copied()
            .unwrap_or(Serves::Silent);
        let addr = match serves {
            Serves::Silent => return Vec::new(),
            Serves::PortClosed => {
                return vec![(
                    self.think,
                    super::sim::icmp_datagram(p.ip.dst, p.ip.src, 3, 3, d),
                )];
            }
            Serves::Answer(a) => a,
        };
        if u.payload.len() < 12 {
            return Vec::new();
        }
        // the query with QR set, one answer: NAME (a pointer to the
        // question's), A, IN, TTL 300, the address
        let mut msg = u.payload.clone();
        msg[2] |= 0x80;
        msg[6..8].copy_from_slice(&1u16.to_be_bytes());
        msg.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4]);
        msg.extend_from_slice(&addr);
        let udp = crate::wire::UdpRepr {
            src_port: u.dst_port,
            dst_port: u.src_port,
            payload: msg,
        };
        vec![(
            self.think,
            super::sim::udp_datagram(p.ip.dst, p.ip.src, &udp),
        )]
    }
}

fn server(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::from([198, 18, 0, last]), 53)
}

/// Bulk settings: `servers`, NDJSON out, no EDNS (the simulated server
/// appends its answer after the question).
fn bulk_settings(
    servers: &[SocketAddr],
    timeout: Duration,
    retries: u32,
) -> crate::cli::DnsSettings {
    crate::cli::DnsSettings {
        display_name: String::new(),
        name: None,
        types: vec![hickory_proto::rr::RecordType::A],
        servers: servers.to_vec(),
        default_server: false,
        edns: None,
        recursion_desired: true,
        tcp_fallback: true,
        no_raw: false,
        pcap: None,
        retries,
        timeout,
        format: crate::cli::DnsFormat::Ndjson,
        checks: Default::default(),
        bulk: Some(crate::cli::BulkSource::Stdin),
        rate: None,
        concurrency: 20,
        spread: false,
        progress: false,
        verbose: false,
    }
}

/// What a simulated bulk run printed: its answer lines, its summary, its
/// exit status, and the link (what was sent when).
struct Bulked {
    answers: Vec<serde_json::Value>,
    summary: serde_json::Value,
    status: u8,
    link: SimLink<Resolver>,
    clock: SimClock,
}

fn bulk_over(
    s: &crate::cli::DnsSettings,
    input: &str,
    peer: Resolver,
    path: super::sim::Path,
    interrupt_at: Option<Duration>,
) -> Bulked {
    use crate::cmd::dns::bulk;
    let clock = SimClock::starting_at(T0);
    let mut link = SimLink::new(&clock, peer, path, 5);
    let src: IpAddr = US.parse().unwrap();
    let paths = vec![crate::probe::dns_bulk::BulkPath {
        config: bulk::probe_config(src, s),
        ports: (40000..40008).collect(),
    }];
    let servers = s.servers.iter().map(|sv| (*sv, 0)).collect();
    let cfg = bulk::bulk_config(s, paths, servers);
    let feed = bulk::Feed::new(std::io::Cursor::new(input.as_bytes().to_vec()), |_| Some(0));
    let mut interrupt = ctrl_c_after(&clock, interrupt_at);
    let mut out = Vec::new();
    let status = rt()
        .block_on(bulk::run(
            s,
            cfg,
            feed,
            &mut link,
            &clock,
            &mut interrupt,
            &mut out,
            ("kernel", crate::report::dns::TimedBy::RawCapture),
        ))
        .unwrap();
    let mut answers: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = answers.pop().expect("a summary");
    assert_eq!(summary["kind"], "summary");
    Bulked {
        answers,
        summary,
        status,
        link,
        clock,
    }
}

fn names(n: usize) -> String {
    (0..n).map(|i| format!("n{i}.lab.test\n")).collect()
}

#[test]
fn bulk_answers_out_of_order_are_each_matched_to_their_line() {
    let s = bulk_settings(&[server(2)], ms(500), 0);
    let peer = Resolver::new(&[(server(2).ip(), Serves::Answer([198, 18, 0, 10]))]);
    // up to 5 ms of jitter on 1 ms: queries sent together come back shuffled
    let b = bulk_over(
        &s,
        &names(200),
        peer,
        random_path(3, ms(1), ms(5), 0.0, 0.0),
        None,
    );
    assert_eq!(b.status, status::OK, "{}", b.summary);
    assert_eq!(b.answers.len(), 200);
    let lines: Vec<u64> = b
        .answers
        .iter()
        .map(|a| a["line"].as_u64().unwrap())
        .collect();
    assert!(
        lines.windows(2).any(|w| w[0] > w[1]),
        "answers came in order"
    );
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=200).collect::<Vec<u64>>());
    for a in &b.answers {
        assert_eq!(a["status"], "NOERROR");
        assert_eq!(a["answers"][0], "198.18.0.10");
        assert_eq!(a["rtt_source"], "kernel", "{a}");
        // 1 ms there and back, up to 5 ms of jitter each way, and the think time
        let t = a["time_us"].as_f64().unwrap();
        assert!((2_030.0..=12_031.0).contains(&t), "{a}");
    }
    // never more than the window in flight: 20
    assert_eq!(b.summary["answered"], 200);
    assert_eq!(b.summary["timing"], "kernel");
    assert_eq!(b.summary["packets_sent"], 200);
}

#[test]
fn bulk_retries_lost_queries_and_answers_every_line() {
    let s = bulk_settings(&[server(2)], ms(200), 4);
    let peer = Resolver::new(&[(server(2).ip(), Serves::Answer([198, 18, 0, 10]))]);
    // 15 % lost each way
    let b = bulk_over(
        &s,
        &names(300),
        peer,
        random_path(9, ms(1), ms(1), 0.15, 0.05),
        None,
    );
    let retried = b
        .answers
        .iter()
        .filter(|a| a["attempts"].as_u64().unwrap() > 1)
        .count();
    assert!(retried > 30, "{retried} retried");
    let answered = b.summary["answered"].as_u64().unwrap();
    let lost = b.summary["no_response"].as_u64().unwrap();
    assert_eq!(answered + lost, 300);
    // five attempts each at 28 % loss: a line going unanswered is rare
    assert!(lost <= 2, "{}", b.summary);
    assert_eq!(
        b.summary["packets_sent"].as_u64().unwrap(),
        b.link.sent.len() as u64
    );
    // a retried answer is timed from its last attempt
    for a in b.answers.iter().filter(|a| !a["time_us"].is_null()) {
        assert!(a["time_us"].as_f64().unwrap() < 200_000.0, "{a}");
    }
}

#[test]
fn bulk_a_server_answering_port_unreachable_ends_its_lines_at_once() {
    let s = bulk_settings(&[server(2), server(3)], Duration::from_secs(5), 3);
    let peer = Resolver::new(&[
        (server(2).ip(), Serves::Answer([198, 18, 0, 10])),
        (server(3).ip(), Serves::PortClosed),
    ]);
    let b = bulk_over(&s, &names(100), peer, clean_path(ms(1)), None);
    assert_eq!(b.status, status::NO_ANSWER);
    // no waiting for 5 s timeouts, nor retries: over within a few round trips
    assert!(b.clock.elapsed() < ms(100), "{:?}", b.clock.elapsed());
    let refused: Vec<&serde_json::Value> = b
        .answers
        .iter()
        .filter(|a| a["server"] == "198.18.0.3:53")
        .collect();
    assert_eq!(refused.len(), 100);
    for a in &refused {
        assert!(a["status"].is_null());
        let e = a["error"].as_str().unwrap();
        assert!(e.starts_with("port-unreachable from 198.18.0.3"), "{a}");
        assert!(a["attempts"].as_u64().unwrap() <= 1, "{a}");
    }
    // the first window went out; the lines after the refusal were not sent
    let to_3 = b.link.peer.seen[&server(3).ip()];
    assert!(to_3 <= 20, "{to_3} queries reached the closed port");
    assert!(refused.iter().any(|a| {
        a["error"]
            .as_str()
            .unwrap()
            .ends_with("(refused before: not sent)")
    }));
    assert_eq!(b.summary["answered"], 100);
    assert_eq!(b.summary["refused"][0]["count"], 100, "{}", b.summary);
}

#[test]
fn bulk_a_silent_server_times_out_after_every_attempt() {
    let s = bulk_settings(&[server(2)], ms(300), 2);
    let peer = Resolver::new(&[(server(2).ip(), Serves::Silent)]);
    let b = bulk_over(&s, &names(30), peer, clean_path(ms(1)), None);
    assert_eq!(b.status, status::NO_ANSWER);
    assert_eq!(b.summary["no_response"], 30);
    assert_eq!(b.summary["answered"], 0);
    for a in &b.answers {
        assert_eq!(a["attempts"], 3);
        assert!(a["time_us"].is_null());
    }
    // 30 lines in a window of 20: two rounds of three 300 ms attempts
    assert_eq!(b.link.sent.len(), 90);
    assert!(
        b.clock.elapsed() >= ms(1800) && b.clock.elapsed() < ms(1900),
        "{:?}",
        b.clock.elapsed()
    );
}

#[test]
fn bulk_interrupted_counts_the_queries_in_flight() {
    let s = bulk_settings(&[server(2)], Duration::from_secs(5), 0);
    let peer = Resolver::new(&[(server(2).ip(), Serves::Silent)]);
    let b = bulk_over(&s, &names(100), peer, clean_path(ms(1)), Some(ms(700)));
    assert_eq!(b.status, status::INTERRUPTED);
    assert_eq!(b.summary["interrupted"], true);
    assert_eq!(b.summary["in_flight"], 20);
    assert!(b.answers.is_empty());
    assert!(b.clock.elapsed() < Duration::from_secs(1));
}

#[test]
fn bulk_two_servers_that_differ_are_listed_by_line() {
    let s = bulk_settings(&[server(2), server(3)], ms(500), 0);
    let peer = Resolver::new(&[
        (server(2).ip(), Serves::Answer([198, 18, 0, 10])),
        (server(3).ip(), Serves::Answer([198, 18, 0, 11])),
    ]);
    let b = bulk_over(
        &s,
        &names(5),
        peer,
        random_path(4, ms(1), ms(3), 0.0, 0.0),
        None,
    );
    assert_eq!(b.status, status::OK);
    assert_eq!(b.answers.len(), 10);
    assert_eq!(b.summary["differing_lines"], 5, "{}", b.summary);
    let d = &b.summary["differences"][0];
    let answers = d["answers"].as_object().unwrap();
    assert_eq!(answers["198.18.0.2:53"], "NOERROR [198.18.0.10]");
    assert_eq!(answers["198.18.0.3:53"], "NOERROR [198.18.0.11]");
    // spread: each line to one server in turn, nothing compared
    let mut spread = bulk_settings(&[server(2), server(3)], ms(500), 0);
    spread.spread = true;
    let peer = Resolver::new(&[
        (server(2).ip(), Serves::Answer([198, 18, 0, 10])),
        (server(3).ip(), Serves::Answer([198, 18, 0, 11])),
    ]);
    let b = bulk_over(&spread, &names(6), peer, clean_path(ms(1)), None);
    assert_eq!(b.answers.len(), 6);
    assert_eq!(b.link.peer.seen[&server(2).ip()], 3);
    assert_eq!(b.link.peer.seen[&server(3).ip()], 3);
    assert!(b.summary["differing_lines"].is_null(), "{}", b.summary);
}

// ---- scan: on-link host discovery (ARP) over the simulated link ----

use crate::probe::machine::Machine;
use crate::scan::discovery::{DiscoveryMachine, Neighbour, OnLinkGroup};
use crate::wire::{ArpOp, ArpRepr, MacAddr};
use std::net::Ipv4Addr;

const OUR_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

/// Neighbours that answer ARP: each listed address answers the request
/// numbered as given (0: the first; 1: only a retry), after 0.2 ms.
struct ArpHosts {
    answer_from: BTreeMap<Ipv4Addr, u32>,
    asked: BTreeMap<Ipv4Addr, u32>,
}

impl super::sim::Peer for ArpHosts {
    fn on_datagram(&mut self, _at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let Ok(a) = ArpRepr::parse(d) else {
            return Vec::new();
        };
        if a.op != ArpOp::Request {
            return Vec::new();
        }
        let n = self.asked.entry(a.target_ip).or_insert(0);
        *n += 1;
        match self.answer_from.get(&a.target_ip) {
            Some(&from) if *n > from => {
                let o = a.target_ip.octets();
                let reply = ArpRepr {
                    op: ArpOp::Reply,
                    sender_mac: MacAddr([2, 0, 0, 0, 1, o[3]]),
                    sender_ip: a.target_ip,
                    target_mac: a.sender_mac,
                    target_ip: a.sender_ip,
                };
                vec![(Duration::from_micros(200), reply.emit())]
            }
            _ => Vec::new(),
        }
    }
}

struct Discovered {
    up: Vec<Neighbour>,
    down: Vec<IpAddr>,
    reported: Vec<Neighbour>,
    requests: u64,
    asked: BTreeMap<Ipv4Addr, u32>,
    took: Duration,
    ended: crate::drive::Ended,
}

fn discover(
    targets: &str,
    answer_from: &[(&str, u32)],
    interrupt_after: Option<Duration>,
) -> Discovered {
    let clock = SimClock::starting_at(T0);
    let peer = ArpHosts {
        answer_from: answer_from
            .iter()
            .map(|(a, n)| (a.parse().unwrap(), *n))
            .collect(),
        asked: BTreeMap::new(),
    };
    let mut link = SimLink::new(&clock, peer, clean_path(Duration::from_micros(50)), 3);
    let no = |_: &str| Err("none".to_string());
    let set = crate::scan::TargetSet::build(&[parse_target(targets, &no).unwrap()], &[]).unwrap();
    let group = OnLinkGroup {
        ifindex: 2,
        src: US.parse().unwrap(),
        mac: OUR_MAC,
        set,
    };
    let wait = Duration::from_millis(200);
    let mut machine = DiscoveryMachine::new(vec![group], 1000, 1, wait);
    let mut reported = Vec::new();
    let mut reporter = |n: Neighbour| {
        reported.push(n);
        Ok(())
    };
    let mut interrupt = ctrl_c_after(&clock, interrupt_after);
    let ended = rt()
        .block_on(super::drive(
            &mut machine,
            &mut link,
            &clock,
            &mut reporter,
            &mut interrupt,
        ))
        .unwrap();
    assert!(machine.is_done());
    let d = machine.results().next().unwrap();
    Discovered {
        up: d.up().to_vec(),
        down: d.down().collect(),
        reported,
        requests: d.requests(),
        asked: link.peer.asked.clone(),
        took: clock.elapsed(),
        ended,
    }
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn discovery_finds_the_prompt_the_retried_and_the_silent() {
    // .2 and .3 answer at once, .4 only the retry, .5 and .6 never
    let d = discover(
        "198.18.0.2-6",
        &[("198.18.0.2", 0), ("198.18.0.3", 0), ("198.18.0.4", 1)],
        None,
    );
    assert!(
        !d.ended.interrupted && !d.ended.out_of_time,
        "{:?}",
        d.ended
    );
    let mut up: Vec<IpAddr> = d.up.iter().map(|n| n.addr).collect();
    up.sort();
    assert_eq!(up, [v4("198.18.0.2"), v4("198.18.0.3"), v4("198.18.0.4")]);
    assert_eq!(d.down, [v4("198.18.0.5"), v4("198.18.0.6")]);
    // each host reported once, as it answered, with its MAC and the kernel-stamped RTT
    assert_eq!(d.reported, d.up);
    for n in &d.up {
        let IpAddr::V4(a) = n.addr else { panic!() };
        assert_eq!(n.mac, MacAddr([2, 0, 0, 0, 1, a.octets()[3]]));
        // out 50 µs + 200 µs thinking + back 50 µs, from the send stamp
        assert_eq!(n.rtt_ns, Some(300_000), "{n:?}");
    }
    // five asked, then the three silent once more; nobody a third time
    assert_eq!(d.requests, 8);
    assert_eq!(d.asked.values().copied().max(), Some(2));
    assert_eq!(d.asked[&"198.18.0.2".parse().unwrap()], 1);
    // within its waits: two rounds of at most 200 ms each
    assert!(d.took <= Duration::from_millis(500), "{:?}", d.took);
}

#[test]
fn discovery_where_everyone_answers_ends_without_waiting() {
    let d = discover(
        "198.18.0.2-3",
        &[("198.18.0.2", 0), ("198.18.0.3", 0)],
        None,
    );
    assert_eq!(d.up.len(), 2);
    assert!(d.down.is_empty());
    assert_eq!(d.requests, 2);
    assert!(d.took < Duration::from_millis(20), "{:?}", d.took);
}

#[test]
fn discovery_where_nobody_answers_waits_its_longest_each_round() {
    let d = discover("198.18.0.2-4", &[], None);
    assert!(d.up.is_empty());
    assert_eq!(d.down.len(), 3);
    assert_eq!(d.requests, 6);
    // two rounds of the full 200 ms wait, and not much more
    assert!(d.took >= Duration::from_millis(400), "{:?}", d.took);
    assert!(d.took <= Duration::from_millis(450), "{:?}", d.took);
}

#[test]
fn ctrl_c_ends_discovery_with_what_it_knows() {
    // 100 addresses at 1000/s: interrupted after about 30 were asked
    let d = discover(
        "198.18.0.0/25",
        &[("198.18.0.2", 0)],
        Some(Duration::from_millis(30)),
    );
    assert!(d.ended.interrupted);
    assert!(d.took < Duration::from_millis(40), "{:?}", d.took);
    assert_eq!(d.up.len(), 1);
    // only the addresses asked are down; those never asked are unknown
    assert!(d.requests < 40, "{}", d.requests);
    assert_eq!(d.down.len() as u64, d.requests - 1);
}
