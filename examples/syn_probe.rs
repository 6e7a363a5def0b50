//! Three SYN probes through the library API, without the CLI: route lookup,
//! raw sender, kernel-timestamped capture and the sans-IO SYN state machine.
//!
//!     cargo run --example syn_probe -- 198.18.0.2:80      (as root, e.g. in the lab)

use std::net::SocketAddr;
use std::time::Duration;
use synscope::event::Timestamp;
use synscope::io::bpf::FlowFilter;
use synscope::io::{Capture, PortReservation, RawSender, Route};
use synscope::probe::{SynPinger, SynProbeConfig};
use synscope::wire::{Protocol, SeqNumber};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target: SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: syn_probe IP:PORT")?
        .parse()?;
    let route = Route::lookup(target.ip(), None)?;
    let sender = RawSender::open(route.src, None)?;
    let filter = FlowFilter {
        local: route.src,
        remote: Some(target.ip()),
        remote_port: Some(target.port()),
        local_ports: None,
        protocol: Protocol::TCP,
        outbound: true,
    };
    let mut capture = Capture::open(0, &filter)?;
    let mut pinger = SynPinger::new(SynProbeConfig {
        src: route.src,
        dst: target,
        ttl: 64,
        syn_options: true,
        mss: route.mss(),
        window: 64240,
        timeout: Duration::from_secs(1),
    });
    for _ in 0..3 {
        let port = PortReservation::reserve(route.src, 0)?;
        let (_, bytes) = pinger.probe(Timestamp::now(), port.port, SeqNumber(rand::random()), 1, 1);
        sender.send(target.ip(), &bytes)?;
        // wait for this probe's answer, at most its timeout
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let finished = tokio::select! {
                p = capture.recv() => {
                    let p = p?;
                    pinger.on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded).into_iter().collect()
                }
                _ = tokio::time::sleep_until(deadline) => pinger.on_time(Timestamp::now() + Duration::from_secs(1)),
            };
            if let Some(r) = finished.first() {
                println!("{} {:?} rtt={:?}", target, r.verdict, r.rtt);
                break;
            }
        }
    }
    Ok(())
}
