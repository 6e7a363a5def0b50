//! Shared by the lab tests: tcpdump as the independent capture of the truth,
//! signals and exit-status checks. (Each test file uses part of it.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use synscope_lab::{Lab, VETH};

pub mod schema;

/// Reads a nanosecond pcap with Ethernet (tcpdump on veth) or raw-IP link type
/// into (timestamp ns, IP datagram) pairs.
pub fn read_pcap(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let d = std::fs::read(path).unwrap();
    assert_eq!(&d[..4], &0xa1b23c4du32.to_le_bytes(), "nanosecond pcap");
    let link = u32::from_le_bytes(d[20..24].try_into().unwrap());
    let skip = if link == 1 { 14 } else { 0 };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= d.len() {
        let w = |i: usize| u32::from_le_bytes(d[off + i..off + i + 4].try_into().unwrap()) as u64;
        let (sec, ns, incl) = (w(0), w(4), w(8) as usize);
        let pkt = &d[off + 16..(off + 16 + incl).min(d.len())];
        out.push((
            sec * 1_000_000_000 + ns,
            pkt.get(skip..).unwrap_or(&[]).to_vec(),
        ));
        off += 16 + incl;
    }
    out
}

/// tcpdump on the client's veth, with kernel timestamps in nanoseconds.
pub struct Tcpdump {
    child: Child,
    path: PathBuf,
}

impl Tcpdump {
    /// Starts capturing what `filter` matches and waits until tcpdump is up.
    pub fn start(lab: &Lab, name: &str, filter: &str) -> Tcpdump {
        let path =
            std::env::temp_dir().join(format!("synscope-{name}-{}.pcap", std::process::id()));
        let child = lab
            .client_command("tcpdump")
            .args([
                "-i",
                VETH,
                "-j",
                "host",
                "--time-stamp-precision=nano",
                // 64 MiB: fast pings must not overflow the truth's buffer
                "-B",
                "65536",
                "-U",
                "-w",
            ])
            .arg(&path)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
        std::thread::sleep(Duration::from_millis(1000));
        Tcpdump { child, path }
    }

    /// Stops it (after the 1 s tcpdump needs not to lose the tail) and returns
    /// what it captured; the file is removed.
    pub fn stop(mut self) -> Vec<(u64, Vec<u8>)> {
        std::thread::sleep(Duration::from_millis(1200));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let packets = read_pcap(&self.path);
        let _ = std::fs::remove_file(&self.path);
        packets
    }
}

/// Sends `sig` (`-INT`, `-TERM`, `-KILL`) to a child process.
pub fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// The process exited with `code`; if not, its stderr says why.
pub fn assert_status(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
