//! A real authoritative DNS server (NSD) inside a [`Lab`]'s server namespace,
//! serving `lab.test.` (A, AAAA, a CNAME chain, MX, NS, SOA, TXT that needs TCP
//! without EDNS, TXT that needs TCP even with EDNS, SRV, CAA, an IDN name, a
//! NODATA name, a 3.4 KB TXT record (16 strings) that arrives IP-fragmented over UDP when
//! the query allows 4,096 bytes (NSD's EDNS sizes are raised to 4,096 for it);
//! any other name is NXDOMAIN) and the reverse zone of
//! 198.18.0.0/24. Its config and zones live in a temporary directory; dropping
//! the server kills NSD (and its children) and removes the directory.
//!
//! Needs the `nsd` Debian package.

use crate::lab::{Lab, LabError, SERVER_V4, SERVER_V6, in_netns};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const ZONE: &str = "lab.test.";

/// A running NSD.
pub struct LabDns {
    child: Option<Child>,
    pub dir: PathBuf,
}

fn zone_text() -> String {
    let s200 = "x".repeat(200);
    let big: Vec<String> = (1..=4).map(|i| format!("\"big{i}-{s200}\"")).collect();
    let huge: Vec<String> = (1..=11).map(|i| format!("\"huge{i:02}-{s200}\"")).collect();
    let frag: Vec<String> = (1..=16).map(|i| format!("\"frag{i:02}-{s200}\"")).collect();
    format!(
        "$ORIGIN lab.test.
$TTL 300
@       IN SOA  ns1.lab.test. hostmaster.lab.test. ( 2024010101 3600 600 86400 300 )
@       IN NS   ns1.lab.test.
@       IN NS   ns2.lab.test.
@       IN MX   10 mail.lab.test.
@       IN MX   20 mail2.lab.test.
@       IN A    198.18.0.2
@       IN AAAA 2001:db8::2
@       IN TXT  \"v=spf1 -all\"
@       IN CAA  0 issue \"ca.lab.test\"
ns1     IN A    198.18.0.2
ns1     IN AAAA 2001:db8::2
ns2     IN A    198.18.0.2
a       IN A    198.18.0.10
a       IN AAAA 2001:db8::10
b       IN A    198.18.0.11
b       IN A    198.18.0.12
b       IN AAAA 2001:db8::11
mail    IN A    198.18.0.20
mail2   IN A    198.18.0.21
www     IN CNAME c1
c1      IN CNAME c2
c2      IN CNAME c3
c3      IN CNAME a
txt     IN TXT  \"hello synlab\"
_sip._udp IN SRV 10 5 5060 a.lab.test.
xn--bcher-kva IN A 198.18.0.30
big     IN TXT  {}
huge    IN TXT  {}
nodata  IN TXT  \"this name has no A record\"
frag    IN TXT  {}
",
        big.join(" "),
        huge.join(" "),
        frag.join(" ")
    )
}

const REVERSE_ZONE: &str = "$ORIGIN 0.18.198.in-addr.arpa.
$TTL 300
@   IN SOA ns1.lab.test. hostmaster.lab.test. ( 1 3600 600 86400 300 )
@   IN NS  ns1.lab.test.
2   IN PTR ns1.lab.test.
10  IN PTR a.lab.test.
";

fn nsd_conf(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "server:
  ip-address: {SERVER_V4}
  ip-address: {SERVER_V6}
  port: 53
  server-count: 1
  username: \"\"
  chroot: \"\"
  database: \"\"
  zonesdir: \"{d}\"
  zonelistfile: \"{d}/zone.list\"
  xfrdfile: \"{d}/xfrd.state\"
  xfrdir: \"{d}\"
  pidfile: \"{d}/nsd.pid\"
  logfile: \"{d}/nsd.log\"
  verbosity: 1
  minimal-responses: no
  refuse-any: no
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  # answers up to 4096 bytes over UDP (IP-fragmented), when the query allows it
  ipv4-edns-size: 4096
  ipv6-edns-size: 4096
remote-control:
  control-enable: no
zone:
  name: \"lab.test.\"
  zonefile: \"lab.test.zone\"
zone:
  name: \"0.18.198.in-addr.arpa.\"
  zonefile: \"reverse.zone\"
"
    )
}

/// A minimal `a.lab.test A` query (id 0x5151).
const PROBE: &[u8] =
    b"\x51\x51\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x03lab\x04test\x00\x00\x01\x00\x01";

impl LabDns {
    /// Starts NSD in the lab's server namespace and waits (at most 5 s) until it answers.
    pub fn start(lab: &Lab) -> Result<LabDns, LabError> {
        let dir = std::env::temp_dir().join(format!("{}-nsd", lab.server_ns));
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError(format!("create {}: {e}", dir.display())))?;
        let mut me = LabDns { child: None, dir };
        let write = |name: &str, text: &str| {
            let p = me.dir.join(name);
            std::fs::write(&p, text).map_err(|e| LabError(format!("write {}: {e}", p.display())))
        };
        write("lab.test.zone", &zone_text())?;
        write("reverse.zone", REVERSE_ZONE)?;
        write("nsd.conf", &nsd_conf(&me.dir))?;
        let conf = me.dir.join("nsd.conf");
        let log = std::fs::File::create(me.dir.join("nsd.stdout"))
            .map_err(|e| LabError(format!("create nsd log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError(format!("nsd log: {e}")))?;
        let child = lab
            .server_command("nsd")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| LabError(format!("cannot run nsd: {e} (apt-get install nsd)")))?;
        me.child = Some(child);
        // wait until it answers a query from the client namespace
        let answered = in_netns(&lab.client_ns, || {
            let Ok(sock) = UdpSocket::bind("198.18.0.1:0") else {
                return false;
            };
            let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
            let server = SocketAddr::new(SERVER_V4.into(), 53);
            let until = Instant::now() + Duration::from_secs(5);
            let mut buf = [0u8; 512];
            while Instant::now() < until {
                let _ = sock.send_to(PROBE, server);
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && n > 2
                    && buf[..2] == PROBE[..2]
                {
                    return true;
                }
            }
            false
        })?;
        if !answered {
            let log = std::fs::read_to_string(me.dir.join("nsd.stdout")).unwrap_or_default();
            return Err(LabError(format!(
                "nsd did not answer within 5 s: {}",
                log.lines().last().unwrap_or("no log")
            )));
        }
        Ok(me)
    }
}

impl Drop for LabDns {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            // SIGTERM lets NSD stop its server and xfrd children; then make sure
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let until = Instant::now() + Duration::from_secs(3);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
