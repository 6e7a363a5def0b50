//! `synscope dns` against a real NSD in a namespace lab, every answer compared
//! with kdig's for the same query. Needs root, `ip`, `nft`, `nsd`, `kdig`
//! (scripts/setup.sh installs them); each test builds and removes its own lab.

use std::process::{Command, Output, Stdio};
use synscope::lab::{Lab, LabSpec, VETH, in_netns};
use synscope::lab_dns::LabDns;

fn lab() -> (LabDns, Lab) {
    let lab = Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)");
    let dns = LabDns::start(&lab).expect("nsd in the lab (apt-get install nsd)");
    (dns, lab)
}

/// Regenerates `src/wire/fixtures/nsd_a_v4.bin`: NSD's answer to `a.lab.test A`
/// with id 0xbeef and EDNS 1232, as captured on the client's veth.
#[test]
#[ignore]
fn capture_nsd_fixture() {
    let (_dns, lab) = lab();
    let pcap = std::env::temp_dir().join(format!("{}-fixture.pcap", lab.client_ns));
    let mut tcpdump = lab
        .client_command("tcpdump")
        .args(["-i", VETH, "-U", "-c", "2", "-w"])
        .arg(&pcap)
        .args(["udp", "port", "53"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let q = b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x01a\x03lab\x04test\x00\x00\x01\x00\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
    in_netns(&lab.client_ns, move || {
        let s = std::net::UdpSocket::bind("198.18.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        s.send_to(q, "198.18.0.2:53").unwrap();
        let mut b = [0u8; 512];
        s.recv_from(&mut b).unwrap();
    })
    .unwrap();
    let _ = tcpdump.wait();
    let raw = std::fs::read(&pcap).unwrap();
    let _ = std::fs::remove_file(&pcap);
    // pcap: 24-byte file header, then (16-byte record header, frame)*
    let mut off = 24;
    let mut frames = Vec::new();
    while off + 16 <= raw.len() {
        let len = u32::from_le_bytes(raw[off + 8..off + 12].try_into().unwrap()) as usize;
        frames.push(raw[off + 16..off + 16 + len].to_vec());
        off += 16 + len;
    }
    let reply = &frames[1][14..]; // strip Ethernet
    std::fs::write(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/wire/fixtures/nsd_a_v4.bin"
        ),
        reply,
    )
    .unwrap();
}
