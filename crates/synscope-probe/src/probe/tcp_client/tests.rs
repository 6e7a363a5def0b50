//! Unit tests of the client: each one an exchange with a scripted peer.

use super::*;
use crate::wire::TcpOptions;
use TcpState::*;

const ISN: SeqNumber = SeqNumber(1000);
const IRS: SeqNumber = SeqNumber(5000);
const T0: Timestamp = Timestamp(1_000_000_000_000);

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

/// A segment from the peer (port 80 → 40000).
fn peer(flags: TcpFlags, seq: SeqNumber, ack: SeqNumber, payload: &[u8]) -> TcpRepr {
    TcpRepr {
        src_port: 80,
        dst_port: 40000,
        seq,
        ack,
        flags,
        window: 65160,
        payload: payload.to_vec(),
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

const A: TcpFlags = TcpFlags::ACK;
fn fa() -> TcpFlags {
    TcpFlags::FIN.union(TcpFlags::ACK)
}
fn sa() -> TcpFlags {
    TcpFlags::SYN.union(TcpFlags::ACK)
}

/// What we sent, as (flags, seq, ack, payload length).
fn brief(segs: &[TcpRepr]) -> Vec<(TcpFlags, u32, u32, usize)> {
    segs.iter()
        .map(|s| (s.flags, s.seq.0, s.ack.0, s.payload.len()))
        .collect()
}

fn states(c: &TcpClient, side: Side) -> Vec<&'static str> {
    c.states()
        .iter()
        .filter(|s| s.side == side)
        .map(|s| s.state.name())
        .collect()
}

/// SYN at 0, SYN-ACK at 100 µs: returns the client in ESTABLISHED.
fn established(cfg: TcpClientConfig) -> TcpClient {
    let mut c = TcpClient::new(cfg);
    let syn = c.start(at(0));
    assert_eq!(brief(&syn), [(TcpFlags::SYN, 1000, 0, 0)]);
    assert_eq!(c.state(), SynSent);
    let out = c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
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
    assert!(c.poll(at(50_000)).is_empty());
    let fin = c.poll(at(50_100));
    assert_eq!(brief(&fin), [(fa(), 1001, 5001, 0)]);
    assert_eq!((c.state(), c.server_state()), (FinWait1, CloseWait));
    // the peer ACKs our FIN, then closes too
    assert!(
        c.on_segment(&peer(A, IRS + 1, ISN + 2, b""), at(50_150))
            .is_empty()
    );
    assert_eq!(c.state(), FinWait2);
    let last = c.on_segment(&peer(fa(), IRS + 1, ISN + 2, b""), at(50_400));
    assert_eq!(brief(&last), [(A, 1002, 5002, 0)]);
    assert_eq!((c.state(), c.server_state()), (TimeWait, Closed));
    // a retransmitted FIN in TIME_WAIT is answered again
    let again = c.on_segment(&peer(fa(), IRS + 1, ISN + 2, b""), at(60_000));
    assert_eq!(brief(&again), [(A, 1002, 5002, 0)]);
    assert_eq!(c.events().last().unwrap().note, None);
    assert_eq!(c.events()[c.events().len() - 2].note, Some(Note::Duplicate));
    assert_eq!(c.poll_at(), Some(at(50_400 + 500_000)));
    assert!(c.poll(at(550_400)).is_empty());
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
    c.poll(at(50_100));
    let last = c.on_segment(&peer(fa(), IRS + 1, ISN + 2, b""), at(50_300));
    assert_eq!(brief(&last), [(A, 1002, 5002, 0)]);
    assert_eq!(c.state(), TimeWait);
    c.poll(at(550_300));
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
    let out = c.on_segment(&peer(fa(), IRS + 1, ISN + 1, b"SSH-2.0\r\n"), at(300));
    assert_eq!(
        brief(&out),
        [(A, 1001, 5000 + 1 + 9 + 1, 0), (fa(), 1001, 5011, 0)]
    );
    assert_eq!(c.state(), LastAck);
    assert_eq!(c.received_bytes(), 9);
    assert!(
        c.on_segment(&peer(A, IRS + 11, ISN + 2, b""), at(400))
            .is_empty()
    );
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
    c.poll(at(50_100));
    // the peer's FIN left before ours arrived: it acks only the handshake
    let out = c.on_segment(&peer(fa(), IRS + 1, ISN + 1, b""), at(50_120));
    assert_eq!(brief(&out), [(A, 1002, 5002, 0)]);
    assert_eq!(c.state(), Closing);
    assert!(
        c.on_segment(&peer(A, IRS + 2, ISN + 2, b""), at(50_200))
            .is_empty()
    );
    assert_eq!(c.state(), TimeWait);
    c.poll(at(550_200));
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
    let mut c = TcpClient::new(cf);
    c.start(at(0));
    let out = c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
    let psh = TcpFlags::ACK.union(TcpFlags::PSH);
    assert_eq!(brief(&out), [(A, 1001, 5001, 0), (psh, 1001, 5001, 18)]);
    // out of order: bytes 6.. before 1..5 → duplicate ACK, nothing taken
    let out = c.on_segment(&peer(A, IRS + 6, ISN + 19, b"world"), at(300));
    assert_eq!(brief(&out), [(A, 1019, 5001, 0)]);
    assert_eq!(c.events().last().unwrap().note, None);
    assert_eq!(
        c.events()[c.events().len() - 2].note,
        Some(Note::OutOfOrder)
    );
    let out = c.on_segment(&peer(A, IRS + 1, ISN + 19, b"hello"), at(310));
    assert_eq!(brief(&out), [(A, 1019, 5006, 0)]);
    // the peer retransmits what we have: duplicate, ACKed again
    let out = c.on_segment(&peer(A, IRS + 1, ISN + 19, b"hello"), at(320));
    assert_eq!(brief(&out), [(A, 1019, 5006, 0)]);
    assert_eq!(c.events()[c.events().len() - 2].note, Some(Note::Duplicate));
    // partly old, partly new: the new part is taken
    let out = c.on_segment(&peer(A, IRS + 4, ISN + 19, b"loworld"), at(330));
    assert_eq!(brief(&out), [(A, 1019, 5011, 0)]);
    assert_eq!(c.received_bytes(), 10);
    // the request was acknowledged: no retransmission pending, idle close later
    assert_eq!(c.poll_at(), Some(at(330 + 50_000)));
}

#[test]
fn unacknowledged_segments_are_retransmitted_with_backoff() {
    let mut c = TcpClient::new(cfg());
    c.start(at(0));
    assert_eq!(c.poll_at(), Some(at(200_000)));
    assert!(c.poll(at(199_999)).is_empty());
    let r1 = c.poll(at(200_000));
    assert_eq!(brief(&r1), [(TcpFlags::SYN, 1000, 0, 0)]);
    assert_eq!(c.events().last().unwrap().note, Some(Note::Retransmission));
    assert_eq!(c.poll_at(), Some(at(600_000)));
    assert_eq!(c.poll(at(600_000)).len(), 1);
    assert_eq!(c.poll_at(), Some(at(1_400_000)));
    assert_eq!(c.poll(at(1_400_000)).len(), 1);
    // three retries spent: the fourth deadline gives up
    assert!(c.poll(at(3_000_000)).is_empty());
    assert_eq!(c.teardown(), Some(Teardown::NoAnswer));
    assert!(c.is_done());

    // a lost request is sent again from the oldest unacknowledged byte
    let mut cf = cfg();
    cf.payload = vec![b'x'; 3000];
    let mut c = TcpClient::new(cf);
    c.start(at(0));
    let out = c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
    assert_eq!(
        brief(&out)[1..],
        [
            (A, 1001, 5001, 1460),
            (A, 1001 + 1460, 5001, 1460),
            (TcpFlags::ACK.union(TcpFlags::PSH), 1001 + 2920, 5001, 80)
        ]
    );
    c.on_segment(&peer(A, IRS + 1, ISN + 1461, b""), at(200));
    let r = c.poll(at(200 + 200_000));
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].seq, r[0].payload.len()), (ISN + 1461, 1460));
}

#[test]
fn our_fin_is_retransmitted_and_a_late_ack_still_counts() {
    let mut c = established(cfg());
    c.poll(at(50_100));
    let r = c.poll(at(250_100));
    assert_eq!(brief(&r), [(fa(), 1001, 5001, 0)]);
    assert!(
        c.on_segment(&peer(A, IRS + 1, ISN + 2, b""), at(250_200))
            .is_empty()
    );
    assert_eq!(c.state(), FinWait2);
}

#[test]
fn rst_variants() {
    // refused: RST+ACK to our SYN
    let mut c = TcpClient::new(cfg());
    c.start(at(0));
    let rst_ack = TcpFlags::RST.union(TcpFlags::ACK);
    assert!(
        c.on_segment(&peer(rst_ack, SeqNumber(0), ISN + 1, b""), at(50))
            .is_empty()
    );
    assert_eq!(c.teardown(), Some(Teardown::Refused));
    // an RST with a wrong ACK is not ours to believe
    let mut c = TcpClient::new(cfg());
    c.start(at(0));
    c.on_segment(&peer(rst_ack, SeqNumber(0), ISN + 7, b""), at(50));
    assert_eq!(c.state(), SynSent);

    // reset by peer in ESTABLISHED: in-window accepted, out-of-window ignored
    let mut c = established(cfg());
    c.on_segment(
        &peer(TcpFlags::RST, IRS + 100_000, SeqNumber(0), b""),
        at(200),
    );
    assert_eq!(c.state(), Established);
    assert_eq!(c.events().last().unwrap().note, Some(Note::Ignored));
    c.on_segment(&peer(TcpFlags::RST, IRS + 1, SeqNumber(0), b""), at(300));
    assert_eq!(c.teardown(), Some(Teardown::ResetByPeer));
    assert_eq!(c.state(), Closed);

    // --close rst: RST+ACK instead of FIN
    let mut cf = cfg();
    cf.close = CloseMode::Rst;
    let mut c = established(cf);
    let out = c.poll(at(50_100));
    assert_eq!(brief(&out), [(rst_ack, 1001, 5001, 0)]);
    assert_eq!(c.teardown(), Some(Teardown::AbortedByUs));
    assert_eq!(c.server_state(), Closed);
    assert!(c.is_done());
}

#[test]
fn half_open_records_synack_retransmissions_then_resets() {
    let mut cf = cfg();
    cf.half_open = true;
    cf.max_wait = Duration::from_secs(4);
    let mut c = TcpClient::new(cf);
    c.start(at(0));
    assert!(
        c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100))
            .is_empty()
    );
    assert_eq!((c.state(), c.server_state()), (SynSent, SynReceived));
    // no SYN retransmission once the SYN-ACK came
    assert_eq!(c.poll_at(), Some(at(4_000_000)));
    assert!(
        c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(1_000_100))
            .is_empty()
    );
    assert!(
        c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(3_000_100))
            .is_empty()
    );
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
    let rst = c.poll(at(4_000_000));
    let rst_ack = TcpFlags::RST.union(TcpFlags::ACK);
    assert_eq!(brief(&rst), [(rst_ack, 1001, 5001, 0)]);
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
    let ack = c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
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
    let mut sa_seg = peer(sa(), IRS, ISN + 1, b"");
    sa_seg.options.timestamps = Some((777, (at(0).0 / 1_000_000) as u32));
    sa_seg.options.window_scale = Some(7);
    let ack = c.on_segment(&sa_seg, at(100));
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
    let mut c = TcpClient::new(cf.clone());
    c.start(at(0));
    c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
    c.on_segment(&peer(A, IRS + 1, ISN + 3, b""), at(200));
    c.poll(at(50_200));
    c.on_segment(&peer(fa(), IRS + 1, ISN + 4, b""), at(50_300));
    c.poll(at(550_300));
    assert_eq!(c.teardown(), Some(Teardown::ThreeSegmentClose));
    assert!(c.shortfalls().is_empty(), "{:?}", c.shortfalls());

    // the peer resets instead of closing: not the FIN close asked for
    let mut c = established(cfg());
    c.on_segment(&peer(TcpFlags::RST, IRS + 1, SeqNumber(0), b""), at(300));
    assert_eq!(
        c.shortfalls(),
        ["no orderly close with FINs (--close fin): reset by peer (RST instead of FIN)"]
    );
    // --close rst asked and done
    let mut cf = cfg();
    cf.close = CloseMode::Rst;
    let mut c = established(cf);
    c.poll(at(50_100));
    assert!(c.shortfalls().is_empty());
    // refused: no handshake, nothing else said
    let mut c = TcpClient::new(cfg());
    c.start(at(0));
    let rst_ack = TcpFlags::RST.union(TcpFlags::ACK);
    c.on_segment(&peer(rst_ack, SeqNumber(0), ISN + 1, b""), at(50));
    assert_eq!(c.shortfalls(), ["no handshake: refused (RST to our SYN)"]);
}

/// The peer's last ACK closes us, but the ACK we had just sent to its
/// retransmitted FIN leaves later on the wire: CLOSED follows it.
#[test]
fn closed_is_stamped_after_an_earlier_sent_segment_that_left_late() {
    let mut c = established(cfg());
    let out = c.on_segment(&peer(fa(), IRS + 1, ISN + 1, b""), at(1_000));
    assert_eq!(brief(&out), [(A, 1001, 5002, 0), (fa(), 1001, 5002, 0)]);
    let dup = c.on_segment(&peer(fa(), IRS + 1, ISN + 1, b""), at(1_010));
    assert_eq!(brief(&dup), [(A, 1002, 5002, 0)]);
    c.on_segment(&peer(A, IRS + 2, ISN + 2, b""), at(1_020));
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
    let mut c = TcpClient::new(cf);
    c.start(at(0));
    let mut synack = peer(sa(), IRS, ISN + 1, b"");
    synack.window = 0;
    let out = c.on_segment(&synack, at(100));
    // the ACK, nothing into the closed window until the timer probes it
    assert_eq!(brief(&out), [(A, 1001, 5001, 0)]);
    let mut zero_ack = peer(A, IRS + 1, ISN + 1, b"");
    zero_ack.window = 0;
    let r = c.poll(at(100 + 200_000));
    assert_eq!(brief(&r), [(A, 1001, 5001, 1)]);
    assert_eq!(c.events().last().unwrap().note, Some(Note::WindowProbe));
    assert!(c.on_segment(&zero_ack, at(200_200)).is_empty());
    let r = c.poll(at(100 + 600_000));
    assert_eq!(brief(&r), [(A, 1001, 5001, 1)]);
    // two retries spent: we give up with RST+ACK, at the window's edge
    // (the peer never took the probe byte); no FIN was ever sent
    let rst_ack = TcpFlags::RST.union(TcpFlags::ACK);
    let r = c.poll(at(100 + 1_400_000));
    assert_eq!(brief(&r), [(rst_ack, 1001, 5001, 0)]);
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
    let mut c = TcpClient::new(cf);
    c.start(at(0));
    let mut synack = peer(sa(), IRS, ISN + 1, b"");
    synack.window = 1000;
    let out = c.on_segment(&synack, at(100));
    assert_eq!(brief(&out)[1..], [(A, 1001, 5001, 1000)]);
    let mut ack = peer(A, IRS + 1, ISN + 1001, b"");
    ack.window = 1000;
    let out = c.on_segment(&ack, at(200));
    assert_eq!(brief(&out), [(A, 2001, 5001, 1000)]);
    // the window closes with 1000 bytes unsent: nothing to send, and the
    // idle timer must not close
    ack.ack = ISN + 2001;
    ack.window = 0;
    assert!(c.on_segment(&ack, at(300)).is_empty());
    assert!(
        c.poll(at(300 + 50_000)).is_empty(),
        "the idle timer sends no FIN"
    );
    assert!(c.poll(at(300 + 100_000)).is_empty());
    let probe = c.poll(at(300 + 200_000));
    assert_eq!(brief(&probe), [(A, 3001, 5001, 1)]);
    // it opens again (the probe byte not taken yet): the rest after the
    // probe, with PSH, then the FIN once all is acknowledged
    ack.window = 2000;
    let out = c.on_segment(&ack, at(200_400));
    let psh = A.union(TcpFlags::PSH);
    assert_eq!(brief(&out), [(psh, 3002, 5001, 999)]);
    ack.ack = ISN + 3001;
    assert!(c.on_segment(&ack, at(200_500)).is_empty());
    let fin = c.poll(at(200_500 + 50_000));
    assert_eq!(brief(&fin), [(fa(), 4001, 5001, 0)]);
}

#[test]
fn out_of_window_rst_is_ignored_and_the_unacknowledged_request_said() {
    let mut cf = cfg();
    cf.payload = b"hi".to_vec();
    cf.max_retries = 1;
    let mut c = TcpClient::new(cf);
    c.start(at(0));
    c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
    let rst = peer(TcpFlags::RST, IRS + 1_000_000, SeqNumber(0), b"");
    assert!(c.on_segment(&rst, at(150)).is_empty());
    assert_eq!(c.events().last().unwrap().note, Some(Note::Ignored));
    assert_eq!(c.state(), Established);
    assert_eq!(
        brief(&c.poll(at(100 + 200_000))),
        [(A.union(TcpFlags::PSH), 1001, 5001, 2)]
    );
    c.on_segment(&rst, at(200_150));
    c.poll(at(100 + 600_000));
    assert_eq!(c.teardown(), Some(Teardown::GaveUp));
    assert_eq!(c.shortfalls()[0], "request not acknowledged: 0 of 2 bytes");
    assert_eq!(c.shortfalls().len(), 2);
}

#[test]
fn icmp_errors_end_the_trace_at_once_with_their_reason() {
    let from: IpAddr = "198.18.0.2".parse().unwrap();
    // admin-prohibited quoting our SYN, in SYN_SENT: no retransmission
    let mut c = TcpClient::new(cfg());
    c.start(at(0));
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
    let mut c = TcpClient::new(cfg());
    c.start(at(0));
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
    assert_eq!(brief(&out), [(TcpFlags::RST.union(A), 1001, 5001, 0)]);
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
        let mut c = TcpClient::new(cf);
        c.start(at(0));
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
            c.on_segment(&seg, at(now));
            if r & 4 == 0 {
                c.poll(at(now));
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
