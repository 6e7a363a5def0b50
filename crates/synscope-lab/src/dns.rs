//! A real authoritative DNS server (NSD) inside a [`Lab`]'s server namespace,
//! serving `lab.test.` (A, AAAA, a CNAME chain, MX, NS, SOA, TXT that needs TCP
//! without EDNS, TXT that needs TCP even with EDNS, SRV, CAA, an IDN name, a
//! NODATA name, a 3.4 KB TXT record (16 strings) that arrives IP-fragmented over UDP when
//! the query allows 4,096 bytes (NSD's EDNS sizes are raised to 4,096 for it);
//! any other name is NXDOMAIN) and the reverse zone of
//! 198.18.0.0/24. Its config and zones live in a temporary directory; dropping
//! the server kills NSD (and its children) and removes the directory.
//!
//! [`LabDns::start_signed`] also serves `signed.test.`, signed with keys made
//! at start (ldns-keygen, ldns-signzone), and [`LabUnbound`] runs a validating
//! resolver (unbound) beside it whose only trust anchor is that zone's DS.
//!
//! Needs the `nsd` Debian package (and `ldnsutils`, `unbound` for DNSSEC).

use crate::{Lab, LabError, SERVER_V4, SERVER_V6, in_netns};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The plain zone NSD serves (names of the lab's hosts).
pub const ZONE: &str = "lab.test.";
/// The DNSSEC-signed zone of [`LabDns::start_signed`].
pub const SIGNED_ZONE: &str = "signed.test.";
/// The port [`LabUnbound`] listens on, at the server's addresses (NSD has 53).
pub const UNBOUND_PORT: u16 = 8053;

/// A running NSD.
pub struct LabDns {
    child: Option<Child>,
    /// NSD's temporary directory: config, zones, keys, its output
    /// (`nsd.stdout`); removed on drop.
    pub dir: PathBuf,
    /// The DS record of `signed.test.`'s key-signing key (presentation
    /// format), when started with [`LabDns::start_signed`].
    pub ds: Option<String>,
}

/// `signed.test.` before signing: an address, a CNAME to it, a name with two
/// types; anything else is NXDOMAIN with a signed NSEC denial.
const SIGNED_ZONE_TEXT: &str = "$ORIGIN signed.test.
$TTL 300
@     IN SOA   ns1.signed.test. hostmaster.signed.test. ( 1 3600 600 86400 300 )
@     IN NS    ns1.signed.test.
ns1   IN A     198.18.0.2
www   IN A     198.18.0.40
www   IN AAAA  2001:db8::40
alias IN CNAME www
";

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

fn nsd_conf(dir: &std::path::Path, signed: bool) -> String {
    let d = dir.display();
    let signed_zone = if signed {
        "zone:\n  name: \"signed.test.\"\n  zonefile: \"signed.test.zone.signed\"\n"
    } else {
        ""
    };
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
{signed_zone}"
    )
}

/// A minimal `a.lab.test A` query (id 0x5151).
const PROBE: &[u8] =
    b"\x51\x51\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x03lab\x04test\x00\x00\x01\x00\x01";

/// `www.signed.test A` with RD (id 0x5152): how [`LabUnbound`] is seen up.
const RESOLVER_PROBE: &[u8] = b"\x51\x52\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x06signed\x04test\x00\x00\x01\x00\x01";

/// Runs a DNSSEC tool in `dir`; its stdout, trimmed.
fn ldns(dir: &std::path::Path, tool: &str, args: &[&str]) -> Result<String, LabError> {
    let out = std::process::Command::new(tool)
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| {
            LabError(format!(
                "cannot run {tool}: {e} (apt-get install ldnsutils)"
            ))
        })?;
    if !out.status.success() {
        return Err(LabError(format!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Signs `signed.test.` in `dir` with a fresh KSK and ZSK (ECDSA P-256,
/// NSEC); returns the KSK's DS record.
fn sign_zone(dir: &std::path::Path) -> Result<String, LabError> {
    let p = dir.join("signed.test.zone");
    std::fs::write(&p, SIGNED_ZONE_TEXT)
        .map_err(|e| LabError(format!("write {}: {e}", p.display())))?;
    let alg = ["-a", "ECDSAP256SHA256"];
    let ksk = ldns(dir, "ldns-keygen", &[alg[0], alg[1], "-k", "signed.test"])?;
    let zsk = ldns(dir, "ldns-keygen", &[alg[0], alg[1], "signed.test"])?;
    ldns(
        dir,
        "ldns-signzone",
        &[
            "-f",
            "signed.test.zone.signed",
            "signed.test.zone",
            &ksk,
            &zsk,
        ],
    )?;
    let ds = dir.join(format!("{ksk}.ds"));
    std::fs::read_to_string(&ds)
        .map(|t| t.trim().to_string())
        .map_err(|e| LabError(format!("read {}: {e}", ds.display())))
}

/// Sends `probe` to `server` from the client namespace until an answer with
/// its id comes (at most 5 s).
fn answers(client_ns: &str, server: SocketAddr, probe: &'static [u8]) -> Result<bool, LabError> {
    in_netns(client_ns, move || {
        let Ok(sock) = UdpSocket::bind("198.18.0.1:0") else {
            return false;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let until = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 512];
        while Instant::now() < until {
            let _ = sock.send_to(probe, server);
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && n > 2
                && buf[..2] == probe[..2]
            {
                return true;
            }
        }
        false
    })
}

/// Ends a server: SIGTERM (NSD stops its children), then SIGKILL after 3 s.
fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
}

impl LabDns {
    /// Starts NSD in the lab's server namespace and waits (at most 5 s) until it answers.
    pub fn start(lab: &Lab) -> Result<LabDns, LabError> {
        Self::start_with(lab, false)
    }

    /// As [`start`](Self::start), also serving `signed.test.` signed with
    /// keys made now in its directory; [`ds`](Self::ds) holds the trust anchor.
    pub fn start_signed(lab: &Lab) -> Result<LabDns, LabError> {
        Self::start_with(lab, true)
    }

    fn start_with(lab: &Lab, signed: bool) -> Result<LabDns, LabError> {
        let dir = std::env::temp_dir().join(format!("{}-nsd", lab.server_ns));
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError(format!("create {}: {e}", dir.display())))?;
        let mut me = LabDns {
            child: None,
            dir,
            ds: None,
        };
        let write = |name: &str, text: &str| {
            let p = me.dir.join(name);
            std::fs::write(&p, text).map_err(|e| LabError(format!("write {}: {e}", p.display())))
        };
        write("lab.test.zone", &zone_text())?;
        write("reverse.zone", REVERSE_ZONE)?;
        write("nsd.conf", &nsd_conf(&me.dir, signed))?;
        if signed {
            me.ds = Some(sign_zone(&me.dir)?);
        }
        me.run_nsd(&lab.client_ns, &lab.server_ns)?;
        Ok(me)
    }
}

impl LabDns {
    /// Runs NSD again from the directory a [`LabDns::keep_config`] left, in
    /// namespace `server_ns` (of a kept lab), and waits (at most 5 s) until it
    /// answers from `client_ns`. Dropping it stops NSD and removes DIR.
    pub fn resume(client_ns: &str, server_ns: &str, dir: PathBuf) -> Result<LabDns, LabError> {
        let mut me = LabDns {
            child: None,
            dir,
            ds: None,
        };
        me.run_nsd(client_ns, server_ns)?;
        Ok(me)
    }

    /// Starts NSD with the config in `self.dir`, in `server_ns`, and waits
    /// until it answers a query from `client_ns`.
    fn run_nsd(&mut self, client_ns: &str, server_ns: &str) -> Result<(), LabError> {
        let conf = self.dir.join("nsd.conf");
        let log = std::fs::File::create(self.dir.join("nsd.stdout"))
            .map_err(|e| LabError(format!("create nsd log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError(format!("nsd log: {e}")))?;
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", server_ns, "nsd", "-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| LabError(format!("cannot run nsd: {e} (apt-get install nsd)")))?;
        self.child = Some(child);
        if !answers(client_ns, SocketAddr::new(SERVER_V4.into(), 53), PROBE)? {
            let log = std::fs::read_to_string(self.dir.join("nsd.stdout")).unwrap_or_default();
            return Err(LabError(format!(
                "nsd did not answer within 5 s: {}",
                log.lines().last().unwrap_or("no log")
            )));
        }
        Ok(())
    }

    /// Stops NSD but leaves its directory, for a keeper of the lab to run it
    /// again in the server namespace: `nsd -d -c DIR/nsd.conf`. Returns DIR.
    pub fn keep_config(mut self) -> PathBuf {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
        std::mem::take(&mut self.dir)
    }
}

impl Drop for LabDns {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running validating resolver (unbound) in the lab's server namespace, at
/// [`UNBOUND_PORT`] of the server's addresses: `signed.test.` and `lab.test.`
/// are stub zones served by the lab's NSD, and the DS of `signed.test.` is its
/// only trust anchor, so answers from `signed.test.` come validated (AD) and
/// those from `lab.test.` insecure. Dropping it kills unbound and removes its
/// directory.
pub struct LabUnbound {
    child: Option<Child>,
    /// unbound's temporary directory (config, its log); removed on drop.
    pub dir: PathBuf,
}

fn unbound_conf(dir: &std::path::Path, ds: &str) -> String {
    let d = dir.display();
    format!(
        "server:
  interface: {SERVER_V4}@{UNBOUND_PORT}
  interface: {SERVER_V6}@{UNBOUND_PORT}
  port: {UNBOUND_PORT}
  do-daemonize: no
  num-threads: 1
  username: \"\"
  chroot: \"\"
  directory: \"{d}\"
  pidfile: \"{d}/unbound.pid\"
  logfile: \"{d}/unbound.log\"
  use-syslog: no
  verbosity: 1
  access-control: 198.18.0.0/15 allow
  access-control: 2001:db8::/32 allow
  module-config: \"validator iterator\"
  trust-anchor: \"{ds}\"
  local-zone: \"test.\" nodefault
  qname-minimisation: no
  prefetch: no
remote-control:
  control-enable: no
stub-zone:
  name: \"signed.test.\"
  stub-addr: {SERVER_V4}@53
stub-zone:
  name: \"lab.test.\"
  stub-addr: {SERVER_V4}@53
"
    )
}

impl LabUnbound {
    /// Starts unbound beside `nsd` (started with [`LabDns::start_signed`]) and
    /// waits (at most 5 s) until it answers.
    pub fn start(lab: &Lab, nsd: &LabDns) -> Result<LabUnbound, LabError> {
        let ds = nsd.ds.as_deref().ok_or_else(|| {
            LabError("unbound needs the signed zone: start NSD with LabDns::start_signed".into())
        })?;
        let dir = std::env::temp_dir().join(format!("{}-unbound", lab.server_ns));
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError(format!("create {}: {e}", dir.display())))?;
        let mut me = LabUnbound { child: None, dir };
        let conf = me.dir.join("unbound.conf");
        std::fs::write(&conf, unbound_conf(&me.dir, ds))
            .map_err(|e| LabError(format!("write {}: {e}", conf.display())))?;
        let log = std::fs::File::create(me.dir.join("unbound.stdout"))
            .map_err(|e| LabError(format!("create unbound log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError(format!("unbound log: {e}")))?;
        let child = lab
            .server_command("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| LabError(format!("cannot run unbound: {e} (apt-get install unbound)")))?;
        me.child = Some(child);
        let server = SocketAddr::new(SERVER_V4.into(), UNBOUND_PORT);
        if !answers(&lab.client_ns, server, RESOLVER_PROBE)? {
            let log = std::fs::read_to_string(me.dir.join("unbound.log"))
                .or_else(|_| std::fs::read_to_string(me.dir.join("unbound.stdout")))
                .unwrap_or_default();
            return Err(LabError(format!(
                "unbound did not answer within 5 s: {}",
                log.lines().last().unwrap_or("no log")
            )));
        }
        Ok(me)
    }
}

impl Drop for LabUnbound {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
