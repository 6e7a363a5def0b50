//! The commands: each wires settings, a probe state machine, the I/O layer and a report.

/// A diagnostic on stderr (a note or a warning: not an error, not a result),
/// as `eprintln!`; `--quiet` silences it. Errors that explain an exit status
/// stay `eprintln!`.
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::cmd::quiet() {
            eprintln!($($arg)*);
        }
    };
}

#[cfg(feature = "demo")]
pub mod demo;
pub mod dns;
pub mod exporter;
pub mod path;
pub mod ping;
mod progress;
pub mod scan;
mod scan_net;
pub mod status;
pub mod trace;

use crate::cli::UsageError;
use crate::io::IoError;

/// Why a command could not run (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Arguments that cannot be used together or resolved.
    #[error("{0}")]
    Usage(#[from] UsageError),
    /// A socket, route, capture or file operation failed.
    #[error("{0}")]
    Io(#[from] IoError),
    /// stdout could not be written.
    #[error("write output: {0}")]
    Output(#[from] std::io::Error),
    /// Anything else that stops a command before it starts (the lab, a config).
    #[error("{0}")]
    Setup(String),
}

impl CmdError {
    /// The one line printed on stderr, with the fix when privileges are missing.
    pub fn line(&self) -> String {
        match self {
            CmdError::Io(e) if e.is_permission() => format!(
                "{e} (raw sockets need CAP_NET_RAW and CAP_NET_ADMIN: run as root, or \
                 `setcap cap_net_raw,cap_net_admin+ep` on the synscope binary)"
            ),
            e => e.to_string(),
        }
    }
}

/// The async runtime a command runs on: one thread (a scan's sender
/// threads and bulk DNS's readers are their links' own).
pub fn runtime() -> Result<tokio::runtime::Runtime, CmdError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CmdError::Setup(format!("start runtime: {e}")))
}

/// Resolves once SIGINT or SIGTERM arrives (see [`crate::io::signals`]: the
/// same handlers as [`catch_signals`], so a second signal ends the process).
pub(crate) async fn interrupted() {
    crate::io::signals::catch(status::INTERRUPTED);
    crate::io::signals::wait().await
}

/// The user's request to stop (SIGINT or SIGTERM) for the async commands,
/// awaited by the drive loop and between runs; it stays fired once fired.
pub struct Interrupt<'a> {
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>,
    fired: bool,
}

impl<'a> Interrupt<'a> {
    /// SIGINT or SIGTERM (the handlers are installed now).
    pub fn signals() -> Interrupt<'static> {
        crate::io::signals::catch(status::INTERRUPTED);
        Interrupt::when(crate::io::signals::wait())
    }
    /// When `f` resolves (a caller's own stop; tests: a simulated Ctrl-C).
    pub fn when(f: impl std::future::Future<Output = ()> + Send + 'a) -> Interrupt<'a> {
        Interrupt {
            wait: Box::pin(f),
            fired: false,
        }
    }
    /// Never.
    pub fn never() -> Interrupt<'static> {
        Interrupt::when(std::future::pending())
    }
    /// The interrupt has come (seen by [`Interrupt::wait`]).
    pub fn fired(&self) -> bool {
        self.fired
    }
    /// Resolves when the interrupt comes (at once if it came before).
    pub async fn wait(&mut self) {
        if !self.fired {
            self.wait.as_mut().await;
            self.fired = true;
        }
    }
}

/// For set-up before a drive loop (bulk DNS): the first SIGINT or SIGTERM
/// sets a flag the loops check (see [`signalled`]); a second one ends the
/// process at once with status 1, the documented status of an interrupted run.
pub(crate) fn catch_signals() {
    crate::io::signals::catch(status::INTERRUPTED);
}

/// Has a SIGINT or SIGTERM arrived since [`catch_signals`]?
pub(crate) fn signalled() -> bool {
    crate::io::signals::caught()
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--quiet`: from now on `note!` prints nothing (set once, by main).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Was `--quiet` given?
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// Debug logging to stderr, on with `-v`.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    /// `-v` was given.
    pub verbose: bool,
}

impl Log {
    /// Prints `synscope: MSG` on stderr when verbose; `msg` is not built otherwise.
    pub fn debug(&self, msg: impl FnOnce() -> String) {
        if self.verbose {
            eprintln!("synscope: {}", msg());
        }
    }
}

/// Notes on stderr that `capture`'s buffer overflowed, if it did: answers
/// among the dropped packets count as loss (ping and path).
pub(crate) fn note_capture_drops(capture: &crate::io::Capture) {
    let drops = capture.drops();
    if drops > 0 {
        note!(
            "synscope: the capture buffer overflowed and dropped {drops} packet(s): \
             answers among them are counted as loss"
        );
    }
}

/// Logs (with `-v`) the packets a machine ignored, by reason (`name`d)
/// (ping and path).
pub(crate) fn log_ignored<K>(
    log: Log,
    ignored: &std::collections::BTreeMap<K, u64>,
    name: impl Fn(&K) -> &str,
) {
    if !ignored.is_empty() {
        log.debug(|| {
            let parts: Vec<String> = ignored
                .iter()
                .map(|(k, v)| format!("{v} {}", name(k)))
                .collect();
            format!("ignored packets: {}", parts.join(", "))
        });
    }
}

/// What a SYN probe to `target` needs, opened before privileges are dropped:
/// the route, a raw sender on it, a capture of our SYNs leaving, the
/// target's answers and ICMP errors about them, `--pcap`'s writer and
/// `--source-port`'s reservation (held for the run) (ping, path, the library).
pub(crate) fn open_syn_path(
    target: std::net::SocketAddr,
    send: &crate::cli::SendSettings,
    pcap: Option<&std::path::Path>,
    log: Log,
) -> Result<SynPath, CmdError> {
    let dst = target.ip();
    let interface = send.interface.as_deref();
    let route = crate::io::Route::lookup(dst, interface)?;
    log.debug(|| format!("route to {dst}: {route}"));
    let sender = crate::io::RawSender::open(route.src, interface)?;
    let filter = crate::io::bpf::FlowFilter::flow(
        std::net::SocketAddr::new(route.src, 0),
        target,
        crate::wire::Protocol::TCP,
    );
    let capture = crate::io::Capture::open(route.capture_ifindex(), &filter)?;
    let pcap = pcap.map(crate::io::pcap::PcapWriter::create).transpose()?;
    let fixed_port = send
        .source_port
        .map(|p| crate::io::PortReservation::reserve(route.src, p))
        .transpose()?;
    Ok(SynPath {
        route,
        sender,
        capture,
        filter,
        pcap,
        fixed_port,
    })
}

/// See [`open_syn_path`]; `filter` is the capture's, for captures beside it.
pub(crate) struct SynPath {
    pub route: crate::io::Route,
    pub sender: crate::io::RawSender,
    pub capture: crate::io::Capture,
    pub filter: crate::io::bpf::FlowFilter,
    /// `--pcap`'s writer.
    pub pcap: Option<crate::io::pcap::PcapWriter>,
    /// `--source-port`'s reservation; None: a port per probe.
    pub fixed_port: Option<crate::io::PortReservation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(e)
    }

    #[test]
    fn only_opening_a_socket_can_lack_privileges() {
        let open = CmdError::Io(IoError::Socket {
            op: "open raw socket",
            source: io(libc::EPERM),
        });
        assert!(open.line().contains("CAP_NET_RAW"), "{}", open.line());
        // a broadcast address (EACCES) or a firewall (EPERM) refusing a send,
        // and a route lookup to a broadcast address, are not about privileges
        for e in [
            IoError::Send {
                addr: "198.18.200.255".parse().unwrap(),
                source: io(libc::EACCES),
            },
            IoError::Send {
                addr: "198.18.200.7".parse().unwrap(),
                source: io(libc::EPERM),
            },
            IoError::Route {
                addr: "198.18.200.255".parse().unwrap(),
                source: io(libc::EACCES),
            },
        ] {
            let line = CmdError::Io(e).line();
            assert!(!line.contains("CAP_NET_RAW"), "{line}");
        }
    }
}
