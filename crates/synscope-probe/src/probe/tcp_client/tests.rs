//! Unit tests of the client, each one written as the exchange it checks:
//! `recv!(c, t, segment => [answer])` feeds the peer's segment at `t` µs and
//! asserts what we send back; `poll!(c, t => [segments])` runs our timers at
//! `t` µs and asserts what they send. Segments we send are written
//! `(flags, seq, ack, payload length)`; ours start at ISN 1000, the peer's at
//! IRS 5000.

use super::*;
use crate::wire::TcpOptions;
use TcpState::*;

const ISN: SeqNumber = SeqNumber(1000);
const IRS: SeqNumber = SeqNumber(5000);
const T0: Timestamp = Timestamp(1_000_000_000_000);

const SYN: TcpFlags = TcpFlags::SYN;
const RST: TcpFlags = TcpFlags::RST;
const A: TcpFlags = TcpFlags::ACK;
const SA: TcpFlags = TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0);
const FA: TcpFlags = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);
const RA: TcpFlags = TcpFlags(TcpFlags::RST.0 | TcpFlags::ACK.0);
const PA: TcpFlags = TcpFlags(TcpFlags::PSH.0 | TcpFlags::ACK.0);

/// One segment we sent: (flags, seq, ack, payload length).
type Brief = (TcpFlags, u32, u32, usize);

/// The peer's segment `$seg` reaches us at `$t` µs; evaluates to what we send
/// in answer. With `=> [..]` it also asserts that answer (`=> []`: silence).
macro_rules! recv {
    ($c:expr, $t:expr, $seg:expr => [$($out:expr),* $(,)?]) => {{
        let seg: TcpRepr = $seg;
        let out = $c.on_segment(&seg, at($t));
        let want: Vec<Brief> = vec![$($out),*];
        assert_eq!(
            brief(&out),
            want,
            "our answer to [{}] seq {} ack {} len {} at {} µs",
            seg.flags,
            seg.seq.0,
            seg.ack.0,
            seg.payload.len(),
            $t
        );
        out
    }};
    ($c:expr, $t:expr, $seg:expr) => {
        $c.on_segment(&$seg, at($t))
    };
}

/// Our timers run at `$t` µs; evaluates to what they send. With `=> [..]` it
/// also asserts it (`=> []`: nothing).
macro_rules! poll {
    ($c:expr, $t:expr => [$($out:expr),* $(,)?]) => {{
        let out = $c.poll(at($t));
        let want: Vec<Brief> = vec![$($out),*];
        assert_eq!(brief(&out), want, "what we send at {} µs", $t);
        out
    }};
    ($c:expr, $t:expr) => {
        $c.poll(at($t))
    };
}

fn at(us: u64) -> Timestamp {
    T0 + Duration::from_micros(us)
}

fn cfg() -> TcpClientConfig {
    TcpClientConfig {
        src: "198.18.0.1:40000".parse().unwrap(),
        dst: "198.18.0.2:80".parse().unwrap(),
        isn: ISN,
        ttl: 64,
        mss: 1460,
        syn_options: false,
        payload: Vec::new(),
        close: CloseMode::Fin,
        half_open: false,
        rto: Duration::from_millis(200),
        max_retries: 3,
        idle: Duration::from_millis(50),
        time_wait: Duration::from_millis(500),
        max_wait: Duration::from_secs(10),
    }
}

/// A segment from the peer (port 80 → 40000) without data; a SYN carries MSS 1460.
fn peer(flags: TcpFlags, seq: SeqNumber, ack: SeqNumber) -> TcpRepr {
    TcpRepr {
        src_port: 80,
        dst_port: 40000,
        seq,
        ack,
        flags,
        window: 65160,
        options: if flags.contains(TcpFlags::SYN) {
            TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            }
        } else {
            TcpOptions::default()
        },
        ..TcpRepr::default()
    }
}

/// A segment from the peer carrying `payload`.
fn data(flags: TcpFlags, seq: SeqNumber, ack: SeqNumber, payload: &[u8]) -> TcpRepr {
    TcpRepr {
        payload: payload.to_vec(),
        ..peer(flags, seq, ack)
    }
}

/// What we sent, each segment as a [`Brief`].
fn brief(segs: &[TcpRepr]) -> Vec<Brief> {
    segs.iter()
        .map(|s| (s.flags, s.seq.0, s.ack.0, s.payload.len()))
        .collect()
}

/// The note of the `back`-th segment from the end of the log (1: the last).
fn note(c: &TcpClient, back: usize) -> Option<Note> {
    c.events()[c.events().len() - back].note
}

fn states(c: &TcpClient, side: Side) -> Vec<&'static str> {
    c.states()
        .iter()
        .filter(|s| s.side == side)
        .map(|s| s.state.name())
        .collect()
}

/// A client that sent its SYN at 0 µs.
fn started(cfg: TcpClientConfig) -> TcpClient {
    let mut c = TcpClient::new(cfg);
    c.start(at(0));
    c
}

/// SYN at 0, SYN-ACK at 100 µs: returns the client in ESTABLISHED.
fn established(cfg: TcpClientConfig) -> TcpClient {
    let mut c = TcpClient::new(cfg);
    let syn = c.start(at(0));
    assert_eq!(brief(&syn), [(SYN, 1000, 0, 0)]);
    assert_eq!(c.state(), SynSent);
    let out = recv!(c, 100, peer(SA, IRS, ISN + 1));
    assert_eq!(out[0].flags, A);
    assert_eq!((out[0].seq, out[0].ack), (ISN + 1, IRS + 1));
    assert_eq!(c.state(), Established);
    assert_eq!(c.server_state(), Established);
    c
}

#[test]
fn syn_sent_syn_ack_established_and_we_close_first_in_four_segments() {
    let mut c = established(cfg());
    // idle for 50 ms: we close
    assert_eq!(c.poll_at(), Some(at(100 + 50_000)));
    poll!(c, 50_000 => []);
    poll!(c, 50_100 => [(FA, 1001, 5001, 0)]);
    assert_eq!((c.state(), c.server_state()), (FinWait1, CloseWait));
    // the peer ACKs our FIN, then closes too
    recv!(c, 50_150, peer(A, IRS + 1, ISN + 2) => []);
    assert_eq!(c.state(), FinWait2);
    recv!(c, 50_400, peer(FA, IRS + 1, ISN + 2) => [(A, 1002, 5002, 0)]);
    assert_eq!((c.state(), c.server_state()), (TimeWait, Closed));
    // a retransmitted FIN in TIME_WAIT is answered again
    recv!(c, 60_000, peer(FA, IRS + 1, ISN + 2) => [(A, 1002, 5002, 0)]);
    assert_eq!(note(&c, 1), None);
    assert_eq!(note(&c, 2), Some(Note::Duplicate));
    assert_eq!(c.poll_at(), Some(at(50_400 + 500_000)));
    poll!(c, 550_400 => []);
    assert!(c.is_done());
    assert_eq!(c.teardown(), Some(Teardown::WeClosedFirst));
    assert_eq!(
        states(&c, Side::Client),
        [
            "SYN_SENT",
            "ESTABLISHED",
            "FIN_WAIT_1",
            "FIN_WAIT_2",
            "TIME_WAIT",
            "CLOSED"
        ]
    );
    assert_eq!(
        states(&c, Side::Server),
        [
            "SYN_RECV",
            "ESTABLISHED",
            "CLOSE_WAIT",
            "LAST_ACK",
            "CLOSED"
        ]
    );
    let t = |s: TcpState| {
        let e = c
            .states()
            .iter()
            .find(|e| e.side == Side::Client && e.state == s);
        e.unwrap().at
    };
    assert_eq!(t(TimeWait), at(50_400));
    assert_eq!(t(Closed), at(550_400));
    // relative numbers like tcpdump's: the peer's FIN is seq 1 ack 2
    let e = &c.events()[5];
    assert_eq!((e.dir, e.rel_seq, e.rel_ack), (Dir::Received, 1, 2));
}

#[test]
fn merged_fin_ack_is_a_three_segment_close() {
    let mut c = established(cfg());
    poll!(c, 50_100);
    recv!(c, 50_300, peer(FA, IRS + 1, ISN + 2) => [(A, 1002, 5002, 0)]);
    assert_eq!(c.state(), TimeWait);
    poll!(c, 550_300);
    assert_eq!(c.teardown(), Some(Teardown::ThreeSegmentClose));
    assert_eq!(
        states(&c, Side::Client),
        [
            "SYN_SENT",
            "ESTABLISHED",
            "FIN_WAIT_1",
            "TIME_WAIT",
            "CLOSED"
        ]
    );
}

#[test]
fn banner_then_close_peer_closes_first() {
    let mut c = established(cfg());
    // "SSH-2.0\r\n" and FIN in one segment
    recv!(c, 300, data(FA, IRS + 1, ISN + 1, b"SSH-2.0\r\n")
        => [(A, 1001, 5000 + 1 + 9 + 1, 0), (FA, 1001, 5011, 0)]);
    assert_eq!(c.state(), LastAck);
    assert_eq!(c.received_bytes(), 9);
    recv!(c, 400, peer(A, IRS + 11, ISN + 2) => []);
    assert!(c.is_done());
    assert_eq!(c.teardown(), Some(Teardown::PeerClosedFirst));
    assert_eq!(
        states(&c, Side::Client),
        [
            "SYN_SENT",
            "ESTABLISHED",
            "CLOSE_WAIT",
            "LAST_ACK",
            "CLOSED"
        ]
    );
    assert_eq!(
        states(&c, Side::Server),
        [
            "SYN_RECV",
            "ESTABLISHED",
            "FIN_WAIT_1",
            "FIN_WAIT_2",
            "TIME_WAIT"
        ]
    );
}

#[test]
fn crossing_fins_are_a_simultaneous_close() {
    let mut c = established(cfg());
    poll!(c, 50_100);
    // the peer's FIN left before ours arrived: it acks only the handshake
    recv!(c, 50_120, peer(FA, IRS + 1, ISN + 1) => [(A, 1002, 5002, 0)]);
    assert_eq!(c.state(), Closing);
    recv!(c, 50_200, peer(A, IRS + 2, ISN + 2) => []);
    assert_eq!(c.state(), TimeWait);
    poll!(c, 550_200);
    assert_eq!(c.teardown(), Some(Teardown::SimultaneousClose));
    assert_eq!(
        states(&c, Side::Server),
        [
            "SYN_RECV",
            "ESTABLISHED",
            "CLOSE_WAIT",
            "CLOSING",
            "TIME_WAIT"
        ]
    );
}

#[test]
fn request_response_with_duplicate_and_out_of_order_segments() {
    let mut cf = cfg();
    cf.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    let mut c = started(cf);
    recv!(c, 100, peer(SA, IRS, ISN + 1) => [(A, 1001, 5001, 0), (PA, 1001, 5001, 18)]);
    // out of order: bytes 6.. before 1..5 → duplicate ACK, nothing taken
    recv!(c, 300, data(A, IRS + 6, ISN + 19, b"world") => [(A, 1019, 5001, 0)]);
    assert_eq!(note(&c, 1), None);
    assert_eq!(note(&c, 2), Some(Note::OutOfOrder));
    recv!(c, 310, data(A, IRS + 1, ISN + 19, b"hello") => [(A, 1019, 5006, 0)]);
    // the peer retransmits what we have: duplicate, ACKed again
    recv!(c, 320, data(A, IRS + 1, ISN + 19, b"hello") => [(A, 1019, 5006, 0)]);
    assert_eq!(note(&c, 2), Some(Note::Duplicate));
    // partly old, partly new: the new part is taken
    recv!(c, 330, data(A, IRS + 4, ISN + 19, b"loworld") => [(A, 1019, 5011, 0)]);
    assert_eq!(c.received_bytes(), 10);
    // the request was acknowledged: no retransmission pending, idle close later
    assert_eq!(c.poll_at(), Some(at(330 + 50_000)));
}

#[test]
fn unacknowledged_segments_are_retransmitted_with_backoff() {
    let mut c = started(cfg());
    assert_eq!(c.poll_at(), Some(at(200_000)));
    poll!(c, 199_999 => []);
    poll!(c, 200_000 => [(SYN, 1000, 0, 0)]);
    assert_eq!(note(&c, 1), Some(Note::Retransmission));
    assert_eq!(c.poll_at(), Some(at(600_000)));
    assert_eq!(poll!(c, 600_000).len(), 1);
    assert_eq!(c.poll_at(), Some(at(1_400_000)));
    assert_eq!(poll!(c, 1_400_000).len(), 1);
    // three retries spent: the fourth deadline gives up
    poll!(c, 3_000_000 => []);
    assert_eq!(c.teardown(), Some(Teardown::NoAnswer));
    assert!(c.is_done());

    // a lost request is sent again from the oldest unacknowledged byte
    let mut cf = cfg();
    cf.payload = vec![b'x'; 3000];
    let mut c = started(cf);
    recv!(c, 100, peer(SA, IRS, ISN + 1) => [
        (A, 1001, 5001, 0),
        (A, 1001, 5001, 1460),
        (A, 1001 + 1460, 5001, 1460),
        (PA, 1001 + 2920, 5001, 80),
    ]);
    recv!(c, 200, peer(A, IRS + 1, ISN + 1461));
    let r = poll!(c, 200 + 200_000);
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].seq, r[0].payload.len()), (ISN + 1461, 1460));
}

#[test]
fn our_fin_is_retransmitted_and_a_late_ack_still_counts() {
    let mut c = established(cfg());
    poll!(c, 50_100);
    poll!(c, 250_100 => [(FA, 1001, 5001, 0)]);
    recv!(c, 250_200, peer(A, IRS + 1, ISN + 2) => []);
    assert_eq!(c.state(), FinWait2);
}

#[test]
fn rst_variants() {
    // refused: RST+ACK to our SYN
    let mut c = started(cfg());
    recv!(c, 50, peer(RA, SeqNumber(0), ISN + 1) => []);
    assert_eq!(c.teardown(), Some(Teardown::Refused));
    // an RST with a wrong ACK is not ours to believe
    let mut c = started(cfg());
    recv!(c, 50, peer(RA, SeqNumber(0), ISN + 7));
    assert_eq!(c.state(), SynSent);

    // reset by peer in ESTABLISHED: in-window accepted, out-of-window ignored
    let mut c = established(cfg());
    recv!(c, 200, peer(RST, IRS + 100_000, SeqNumber(0)));
    assert_eq!(c.state(), Established);
    assert_eq!(note(&c, 1), Some(Note::Ignored));
    recv!(c, 300, peer(RST, IRS + 1, SeqNumber(0)));
    assert_eq!(c.teardown(), Some(Teardown::ResetByPeer));
    assert_eq!(c.state(), Closed);

    // --close rst: RST+ACK instead of FIN
    let mut cf = cfg();
    cf.close = CloseMode::Rst;
    let mut c = established(cf);
    poll!(c, 50_100 => [(RA, 1001, 5001, 0)]);
    assert_eq!(c.teardown(), Some(Teardown::AbortedByUs));
    assert_eq!(c.server_state(), Closed);
    assert!(c.is_done());
}

#[test]
fn half_open_records_synack_retransmissions_then_resets() {
    let mut cf = cfg();
    cf.half_open = true;
    cf.max_wait = Duration::from_secs(4);
    let mut c = started(cf);
    recv!(c, 100, peer(SA, IRS, ISN + 1) => []);
    assert_eq!((c.state(), c.server_state()), (SynSent, SynReceived));
    // no SYN retransmission once the SYN-ACK came
    assert_eq!(c.poll_at(), Some(at(4_000_000)));
    recv!(c, 1_000_100, peer(SA, IRS, ISN + 1) => []);
    recv!(c, 3_000_100, peer(SA, IRS, ISN + 1) => []);
    let notes: Vec<_> = c.events().iter().map(|e| e.note).collect();
    assert_eq!(
        notes,
        [
            None,
            Some(Note::Unanswered),
            Some(Note::Duplicate),
            Some(Note::Duplicate)
        ]
    );
    poll!(c, 4_000_000 => [(RA, 1001, 5001, 0)]);
    assert_eq!(c.teardown(), Some(Teardown::HalfOpen));
}

#[test]
fn kernel_stamps_replace_user_instants_of_segments_and_states() {
    let mut c = TcpClient::new(cfg());
    let syn = c.start(at(0));
    assert!(c.on_sent_stamp(&syn[0], at(7)));
    assert!(!c.on_sent_stamp(&syn[0], at(8)), "stamped once");
    assert_eq!(c.events()[0].at, at(7));
    assert_eq!(c.events()[0].stamp, StampSource::Kernel);
    assert_eq!(c.states()[0].at, at(7));
    let ack = recv!(c, 100, peer(SA, IRS, ISN + 1));
    c.on_sent_stamp(&ack[0], at(112));
    let est = c.states().iter().find(|s| s.state == Established).unwrap();
    assert_eq!(est.at, at(112));
}

#[test]
fn timestamps_and_window_scale_follow_the_syn_ack() {
    let mut cf = cfg();
    cf.syn_options = true;
    let mut c = TcpClient::new(cf);
    let syn = c.start(at(0));
    assert_eq!(syn[0].options.window_scale, Some(7));
    let mut synack = peer(SA, IRS, ISN + 1);
    synack.options.timestamps = Some((777, (at(0).0 / 1_000_000) as u32));
    synack.options.window_scale = Some(7);
    let ack = recv!(c, 100, synack);
    assert_eq!(ack[0].options.timestamps.unwrap().1, 777);
    assert_eq!(ack[0].window, (64240 >> 7) as u16);
}

#[test]
fn a_bare_syn_carries_no_option_at_all() {
    // --bare-syn means the same in trace as in ping, scan and path
    let syn = TcpClient::new(cfg()).start(at(0));
    assert_eq!(syn[0].options, TcpOptions::default());
}

fn icmp(v6: bool, icmp_type: u8, code: u8) -> IcmpError {
    IcmpError {
        v6,
        icmp_type,
        code,
    }
}

#[test]
fn a_complete_trace_has_no_shortfalls_and_resets_or_half_closes_do() {
    let mut cf = cfg();
    cf.payload = b"hi".to_vec();
    let mut c = started(cf.clone());
    recv!(c, 100, peer(SA, IRS, ISN + 1));
    recv!(c, 200, peer(A, IRS + 1, ISN + 3));
    poll!(c, 50_200);
    recv!(c, 50_300, peer(FA, IRS + 1, ISN + 4));
    poll!(c, 550_300);
    assert_eq!(c.teardown(), Some(Teardown::ThreeSegmentClose));
    assert!(c.shortfalls().is_empty(), "{:?}", c.shortfalls());

    // the peer resets instead of closing: not the FIN close asked for
    let mut c = established(cfg());
    recv!(c, 300, peer(RST, IRS + 1, SeqNumber(0)));
    assert_eq!(
        c.shortfalls(),
        ["no orderly close with FINs (--close fin): reset by peer (RST instead of FIN)"]
    );
    // --close rst asked and done
    let mut cf = cfg();
    cf.close = CloseMode::Rst;
    let mut c = established(cf);
    poll!(c, 50_100);
    assert!(c.shortfalls().is_empty());
    // refused: no handshake, nothing else said
    let mut c = started(cfg());
    recv!(c, 50, peer(RA, SeqNumber(0), ISN + 1));
    assert_eq!(c.shortfalls(), ["no handshake: refused (RST to our SYN)"]);
}

/// The peer's last ACK closes us, but the ACK we had just sent to its
/// retransmitted FIN leaves later on the wire: CLOSED follows it.
#[test]
fn closed_is_stamped_after_an_earlier_sent_segment_that_left_late() {
    let mut c = established(cfg());
    let out = recv!(c, 1_000, peer(FA, IRS + 1, ISN + 1)
        => [(A, 1001, 5002, 0), (FA, 1001, 5002, 0)]);
    let dup = recv!(c, 1_010, peer(FA, IRS + 1, ISN + 1) => [(A, 1002, 5002, 0)]);
    recv!(c, 1_020, peer(A, IRS + 2, ISN + 2));
    assert!(c.is_done());
    assert_eq!(c.states().last().unwrap().at, at(1_020));
    c.on_sent_stamp(&out[0], at(1_005));
    c.on_sent_stamp(&out[1], at(1_006));
    c.on_sent_stamp(&dup[0], at(1_030));
    let closed = c.states().last().unwrap();
    assert_eq!((closed.state, closed.at), (Closed, at(1_030)));
}

#[test]
fn zero_window_peer_gets_one_byte_probes_then_we_give_up_and_say_why() {
    let mut cf = cfg();
    cf.payload = b"hi".to_vec();
    cf.max_retries = 2;
    let mut c = started(cf);
    // the ACK, nothing into the closed window until the timer probes it
    let synack = TcpRepr {
        window: 0,
        ..peer(SA, IRS, ISN + 1)
    };
    recv!(c, 100, synack => [(A, 1001, 5001, 0)]);
    let zero_ack = TcpRepr {
        window: 0,
        ..peer(A, IRS + 1, ISN + 1)
    };
    poll!(c, 100 + 200_000 => [(A, 1001, 5001, 1)]);
    assert_eq!(note(&c, 1), Some(Note::WindowProbe));
    recv!(c, 200_200, zero_ack => []);
    poll!(c, 100 + 600_000 => [(A, 1001, 5001, 1)]);
    // two retries spent: we give up with RST+ACK, at the window's edge
    // (the peer never took the probe byte); no FIN was ever sent
    let r = poll!(c, 100 + 1_400_000 => [(RA, 1001, 5001, 0)]);
    assert_eq!(c.teardown(), Some(Teardown::GaveUp));
    assert_eq!(
        states(&c, Side::Client),
        ["SYN_SENT", "ESTABLISHED", "CLOSED"]
    );
    assert_eq!(
        c.shortfalls(),
        [
            "request not acknowledged: 0 of 2 bytes (the peer advertised a zero window)",
            "no orderly close with FINs (--close fin): gave up: our retransmissions went \
             unacknowledged, then reset by us"
        ]
    );
    // CLOSED takes the kernel's stamp of our RST: never before it
    assert!(c.on_sent_stamp(&r[0], at(100 + 1_400_009)));
    let closed = c.states().last().unwrap();
    assert_eq!((closed.state, closed.at), (Closed, at(100 + 1_400_009)));
}

/// A request larger than the peer's window goes out as the window opens;
/// when it closes, no FIN jumps ahead of the unsent bytes: the persist
/// timer probes with one byte. (Before, an ACK of all that was sent so far
/// let the idle timer send a FIN in the middle of the request.)
#[test]
fn window_limited_request_is_sent_as_the_window_opens_and_never_overtaken_by_fin() {
    let mut cf = cfg();
    cf.payload = vec![b'x'; 3000];
    let mut c = started(cf);
    let synack = TcpRepr {
        window: 1000,
        ..peer(SA, IRS, ISN + 1)
    };
    recv!(c, 100, synack => [(A, 1001, 5001, 0), (A, 1001, 5001, 1000)]);
    let mut ack = TcpRepr {
        window: 1000,
        ..peer(A, IRS + 1, ISN + 1001)
    };
    recv!(c, 200, ack.clone() => [(A, 2001, 5001, 1000)]);
    // the window closes with 1000 bytes unsent: nothing to send, and the
    // idle timer must not close
    ack.ack = ISN + 2001;
    ack.window = 0;
    recv!(c, 300, ack.clone() => []);
    assert!(
        poll!(c, 300 + 50_000).is_empty(),
        "the idle timer sends no FIN"
    );
    poll!(c, 300 + 100_000 => []);
    poll!(c, 300 + 200_000 => [(A, 3001, 5001, 1)]);
    // it opens again (the probe byte not taken yet): the rest after the
    // probe, with PSH, then the FIN once all is acknowledged
    ack.window = 2000;
    recv!(c, 200_400, ack.clone() => [(PA, 3002, 5001, 999)]);
    ack.ack = ISN + 3001;
    recv!(c, 200_500, ack.clone() => []);
    poll!(c, 200_500 + 50_000 => [(FA, 4001, 5001, 0)]);
}

#[test]
fn out_of_window_rst_is_ignored_and_the_unacknowledged_request_said() {
    let mut cf = cfg();
    cf.payload = b"hi".to_vec();
    cf.max_retries = 1;
    let mut c = started(cf);
    recv!(c, 100, peer(SA, IRS, ISN + 1));
    let rst = peer(RST, IRS + 1_000_000, SeqNumber(0));
    recv!(c, 150, rst.clone() => []);
    assert_eq!(note(&c, 1), Some(Note::Ignored));
    assert_eq!(c.state(), Established);
    poll!(c, 100 + 200_000 => [(PA, 1001, 5001, 2)]);
    recv!(c, 200_150, rst);
    poll!(c, 100 + 600_000);
    assert_eq!(c.teardown(), Some(Teardown::GaveUp));
    assert_eq!(c.shortfalls()[0], "request not acknowledged: 0 of 2 bytes");
    assert_eq!(c.shortfalls().len(), 2);
}

#[test]
fn icmp_errors_end_the_trace_at_once_with_their_reason() {
    let from: IpAddr = "198.18.0.2".parse().unwrap();
    // admin-prohibited quoting our SYN, in SYN_SENT: no retransmission
    let mut c = started(cfg());
    assert!(
        c.on_icmp(icmp(false, 3, 13), from, Some(ISN), at(40))
            .is_empty()
    );
    assert!(c.is_done());
    assert_eq!(c.teardown(), Some(Teardown::Unreachable));
    assert_eq!(c.poll_at(), None);
    assert_eq!(
        c.icmp(),
        Some(&IcmpEnd {
            reason: "admin-prohibited".into(),
            from
        })
    );
    assert_eq!(
        c.shortfalls(),
        ["no handshake: ICMP admin-prohibited from 198.18.0.2"]
    );
    assert_eq!(
        c.events().last().unwrap().icmp.as_deref(),
        Some("ICMP admin-prohibited from 198.18.0.2")
    );
    assert_eq!(c.states().last().unwrap().at, at(40));

    // quoting a sequence number we never sent (even our next one), no
    // sequence number at all, or a path-MTU signal: no end
    let mut c = started(cfg());
    assert!(
        c.on_icmp(icmp(false, 3, 13), from, Some(ISN + 1), at(40))
            .is_empty()
    );
    assert!(c.on_icmp(icmp(false, 3, 13), from, None, at(40)).is_empty());
    assert!(
        c.on_icmp(icmp(false, 3, 13), from, Some(ISN + 5), at(40))
            .is_empty()
    );
    assert!(
        c.on_icmp(icmp(false, 3, 4), from, Some(ISN), at(41))
            .is_empty()
    );
    assert!(
        c.on_icmp(icmp(true, 2, 0), from, Some(ISN), at(42))
            .is_empty()
    );
    assert_eq!(c.state(), SynSent);

    // ICMPv6 port unreachable on an open connection: we reset and end
    let mut c = established(cfg());
    let out = c.on_icmp(icmp(true, 1, 4), from, Some(ISN + 1), at(500));
    assert_eq!(brief(&out), [(RA, 1001, 5001, 0)]);
    assert_eq!(c.teardown(), Some(Teardown::Unreachable));
    assert_eq!(
        c.shortfalls(),
        ["no orderly close with FINs (--close fin): ICMP port-unreachable from 198.18.0.2"]
    );
}

#[test]
fn never_panics_on_noise() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut cf = cfg();
        cf.half_open = round % 5 == 0;
        cf.payload = vec![1; (rnd() % 4000) as usize];
        let mut c = started(cf);
        let mut now = 0;
        for _ in 0..200 {
            now += rnd() % 100_000;
            let r = rnd();
            let near = |base: SeqNumber, r: u64| base + (r % 8) as u32;
            let seg = TcpRepr {
                src_port: 80,
                dst_port: 40000,
                seq: if r & 1 == 0 {
                    near(IRS, r >> 8)
                } else {
                    SeqNumber(rnd() as u32)
                },
                ack: if r & 2 == 0 {
                    near(ISN, r >> 16)
                } else {
                    SeqNumber(rnd() as u32)
                },
                flags: TcpFlags((rnd() & 0x3f) as u8),
                window: rnd() as u16,
                payload: vec![0; (rnd() % 3) as usize],
                ..TcpRepr::default()
            };
            recv!(c, now, seg);
            if r & 4 == 0 {
                poll!(c, now);
            }
        }
        // bounded: every trace ends by max_wait at the latest
        for _ in 0..100 {
            match c.poll_at() {
                Some(t) => {
                    c.poll(t);
                }
                None => break,
            }
        }
        assert!(c.is_done(), "round {round}: {:?}", c.state());
    }
}
