//! The exporter's configuration: a TOML file listing probes, turned into
//! validated [`ProbeSpec`]s in one place (nothing later re-parses strings).
//!
//! ```toml
//! listen = "127.0.0.1:9799"          # optional; --listen wins
//!
//! [[probe]]
//! name = "web"                      # the `probe` label, and the /probe module name
//! kind = "syn"                      # syn | handshake | dns
//! target = "198.18.0.2:80"
//! interval = "1s"
//! timeout = "500ms"                 # at most the interval
//! ```

use crate::cli::{DnsChecks, parse_duration, resolve, split_host_port, unescape};
use crate::probe::tcp_client::CloseMode;
use hickory_proto::rr::{Name, RecordType};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The default listen address: loopback, port 9799 (free in Prometheus'
/// list of exporter default ports when this was written).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9799";

/// A config that cannot be used: one line, naming the file and where.
#[derive(Debug, thiserror::Error)]
#[error("config {path}: {msg}")]
pub struct ConfigError {
    /// The config file.
    pub path: String,
    /// What is wrong, and where in it.
    pub msg: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    #[serde(default)]
    probe: Vec<RawProbe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: String,
    kind: String,
    target: String,
    interval: String,
    timeout: String,
    // syn and handshake
    bare_syn: Option<bool>,
    // handshake
    request: Option<String>,
    close: Option<String>,
    // dns
    query: Option<String>,
    #[serde(rename = "type")]
    qtype: Option<String>,
    recursion_desired: Option<bool>,
    expect: Option<Vec<String>>,
    expect_contains: Option<Vec<String>>,
    expect_rcode: Option<String>,
    expect_regex: Option<String>,
    max_time: Option<String>,
}

/// What one probe does.
#[derive(Debug, Clone)]
pub enum Kind {
    /// One SYN: verdict and SYN → SYN-ACK.
    Syn {
        /// Linux-like SYN options (else a bare SYN).
        syn_options: bool,
    },
    /// A whole connection played with raw segments, every stage timed.
    Handshake {
        /// Linux-like SYN options (else a bare SYN).
        syn_options: bool,
        /// Bytes sent once connected (escapes already undone); may be empty.
        request: Vec<u8>,
        /// How we close: FIN or RST.
        close: CloseMode,
    },
    /// One DNS query with the checks of `synscope dns`.
    Dns {
        /// The name asked for.
        name: Name,
        /// The record type asked for.
        qtype: RecordType,
        /// The RD bit.
        recursion_desired: bool,
        /// What the answer must satisfy to count as a success.
        checks: DnsChecks,
    },
}

impl Kind {
    /// `syn`, `handshake` or `dns`, as in the config and the `kind` label.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Syn { .. } => "syn",
            Kind::Handshake { .. } => "handshake",
            Kind::Dns { .. } => "dns",
        }
    }
    /// The port a `/probe?target=HOST` without a port gets.
    pub fn default_port(&self) -> Option<u16> {
        match self {
            Kind::Dns { .. } => Some(53),
            _ => None,
        }
    }
}

/// One validated probe.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// The `probe` label and the `/probe` module name; unique in a config.
    pub name: String,
    /// As written, for the info metric.
    pub target_text: String,
    /// The address and port probed (resolved once, at load).
    pub target: SocketAddr,
    /// Time between the starts of two runs (at least 100 ms).
    pub interval: Duration,
    /// Longest a run may take (at most `interval`).
    pub timeout: Duration,
    /// What the probe does.
    pub kind: Kind,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP listen address; None: `--listen` or [`DEFAULT_LISTEN`].
    pub listen: Option<SocketAddr>,
    /// The probes, in file order.
    pub probes: Vec<ProbeSpec>,
}

impl Config {
    /// The probe named `name`.
    pub fn probe(&self, name: &str) -> Option<&ProbeSpec> {
        self.probes.iter().find(|p| p.name == name)
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |msg: String| ConfigError {
        path: path.display().to_string(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    parse(&text).map_err(fail)
}

/// `line N: message` for a TOML error (its own text spans several lines).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(s) => {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// Parses and validates config text; the error is one line.
pub fn parse(text: &str) -> Result<Config, String> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let listen =
        match &raw.listen {
            None => None,
            Some(l) => Some(l.parse::<SocketAddr>().map_err(|_| {
                format!("bad listen '{l}': expected ADDR:PORT, e.g. {DEFAULT_LISTEN}")
            })?),
        };
    if raw.probe.is_empty() {
        return Err("no [[probe]] entries".into());
    }
    let mut probes: Vec<ProbeSpec> = Vec::new();
    for p in &raw.probe {
        let spec = probe(p).map_err(|e| format!("probe '{}': {e}", p.name))?;
        if probes.iter().any(|q| q.name == spec.name) {
            return Err(format!("probe '{}': name used twice", spec.name));
        }
        probes.push(spec);
    }
    Ok(Config { listen, probes })
}

fn duration(field: &str, s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| format!("{field}: {e}"))
}

/// Resolves `HOST[:PORT]` (the port may be left out only where the kind has a default).
pub fn target(s: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    let (host, port) = split_host_port(s).map_err(|e| e.to_string())?;
    let port = port
        .or(default_port)
        .ok_or_else(|| format!("target '{s}' has no port: expected HOST:PORT"))?;
    resolve(&host, port, false, false).map_err(|e| e.to_string())
}

fn probe(p: &RawProbe) -> Result<ProbeSpec, String> {
    if p.name.is_empty()
        || p.name.len() > 64
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err("name: 1 to 64 characters of A-Z a-z 0-9 _ - .".into());
    }
    let only = |field: &str, set: bool, kinds: &str| {
        if set {
            Err(format!("'{field}' applies to {kinds} probes only"))
        } else {
            Ok(())
        }
    };
    let dns_fields = p.query.is_some()
        || p.qtype.is_some()
        || p.recursion_desired.is_some()
        || p.expect.is_some()
        || p.expect_contains.is_some()
        || p.expect_rcode.is_some()
        || p.expect_regex.is_some()
        || p.max_time.is_some();
    let syn_options = !p.bare_syn.unwrap_or(false);
    let kind = match p.kind.as_str() {
        "syn" => {
            only("request", p.request.is_some(), "handshake")?;
            only("close", p.close.is_some(), "handshake")?;
            only("query, type, expect*, max_time", dns_fields, "dns")?;
            Kind::Syn { syn_options }
        }
        "handshake" => {
            only("query, type, expect*, max_time", dns_fields, "dns")?;
            let close = match p.close.as_deref() {
                None | Some("fin") => CloseMode::Fin,
                Some("rst") => CloseMode::Rst,
                Some(c) => return Err(format!("bad close '{c}': expected fin or rst")),
            };
            Kind::Handshake {
                syn_options,
                request: p.request.as_deref().map(unescape).unwrap_or_default(),
                close,
            }
        }
        "dns" => {
            only("bare_syn", p.bare_syn.is_some(), "syn and handshake")?;
            only("request", p.request.is_some(), "handshake")?;
            only("close", p.close.is_some(), "handshake")?;
            let q = p.query.as_deref().ok_or("dns probes need 'query'")?;
            let name = crate::wire::dns::parse_name(q)?;
            let qtype = match p.qtype.as_deref() {
                None => RecordType::A,
                Some(t) => crate::wire::dns::parse_type(t)
                    .ok_or_else(|| format!("bad type '{t}': expected A, AAAA, MX, TXT, ..."))?,
            };
            let rcode = match &p.expect_rcode {
                None => None,
                Some(r) => Some(crate::wire::dns::parse_rcode(r).ok_or_else(|| {
                    format!("bad expect_rcode '{r}': expected NOERROR, NXDOMAIN, SERVFAIL, ...")
                })?),
            };
            let regex = match &p.expect_regex {
                None => None,
                Some(r) => Some(regex::Regex::new(r).map_err(|e| {
                    format!(
                        "bad expect_regex '{r}': {}",
                        e.to_string().lines().last().unwrap_or("")
                    )
                })?),
            };
            let max_time = match &p.max_time {
                None => None,
                Some(m) => Some(duration("max_time", m)?),
            };
            Kind::Dns {
                name,
                qtype,
                recursion_desired: p.recursion_desired.unwrap_or(true),
                checks: DnsChecks {
                    expect: p.expect.clone(),
                    contains: p.expect_contains.clone().unwrap_or_default(),
                    rcode,
                    regex,
                    max_time,
                    ad: false,
                    signed: false,
                },
            }
        }
        k => return Err(format!("bad kind '{k}': expected syn, handshake or dns")),
    };
    let interval = duration("interval", &p.interval)?;
    let timeout = duration("timeout", &p.timeout)?;
    if interval < Duration::from_millis(100) {
        return Err("interval: at least 100ms".into());
    }
    if timeout > interval {
        return Err(format!(
            "timeout {} is longer than the interval {}: one probe of a target at a time",
            p.timeout, p.interval
        ));
    }
    let target = target(&p.target, kind.default_port())?;
    Ok(ProbeSpec {
        name: p.name.clone(),
        target_text: p.target.clone(),
        target,
        interval,
        timeout,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:9799"
[[probe]]
name = "web"
kind = "syn"
target = "198.18.0.2:80"
interval = "1s"
timeout = "500ms"
[[probe]]
name = "web-full"
kind = "handshake"
target = "[2001:db8::2]:80"
interval = "5s"
timeout = "2s"
request = "GET / HTTP/1.0\r\n\r\n"
close = "rst"
[[probe]]
name = "ns"
kind = "dns"
target = "198.18.0.2"
interval = "10s"
timeout = "1s"
query = "www.lab.test"
type = "AAAA"
expect_rcode = "NOERROR"
max_time = "50ms"
"#;

    #[test]
    fn good_config() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9799".parse().unwrap()));
        assert_eq!(c.probes.len(), 3);
        assert_eq!(c.probes[0].target, "198.18.0.2:80".parse().unwrap());
        assert_eq!(c.probes[0].timeout, Duration::from_millis(500));
        match &c.probes[1].kind {
            Kind::Handshake { request, close, .. } => {
                assert_eq!(request, b"GET / HTTP/1.0\r\n\r\n");
                assert_eq!(*close, CloseMode::Rst);
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(c.probes[2].target.port(), 53);
        match &c.probes[2].kind {
            Kind::Dns { qtype, checks, .. } => {
                assert_eq!(*qtype, RecordType::AAAA);
                assert_eq!(checks.rcode, Some(0));
                assert_eq!(checks.max_time, Some(Duration::from_millis(50)));
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let c = parse(include_str!("../../../examples/exporter.toml")).unwrap();
        assert_eq!(c.probes.len(), 2);
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn bad_configs_one_line_each() {
        let base = "[[probe]]\nname = \"a\"\nkind = \"syn\"\ntarget = \"198.18.0.2:80\"\ninterval = \"1s\"\ntimeout = \"1s\"\n";
        assert!(err("").contains("no [[probe]]"));
        assert!(err("[[probe]]\nname = 1\n").starts_with("line 2:"));
        assert!(err(&base.replace("syn", "icmp")).contains("bad kind 'icmp'"));
        assert!(err(&base.replace("198.18.0.2:80", "198.18.0.2")).contains("no port"));
        assert!(err(&base.replace("timeout = \"1s\"", "timeout = \"2s\"")).contains("longer"));
        assert!(
            err(&base.replace("interval = \"1s\"", "interval = \"soon\"")).contains("interval")
        );
        assert!(err(&format!("{base}colour = \"red\"\n")).contains("colour"));
        assert!(err(&format!("{base}{base}")).contains("name used twice"));
        assert!(err(&format!("{base}query = \"x.test\"\n")).contains("dns probes only"));
        assert!(err(&base.replace("\"a\"", "\"a b\"")).contains("name:"));
        assert!(err(&base.replace("kind = \"syn\"", "kind = \"dns\"")).contains("need 'query'"));
    }
}
