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

/// Resolves once SIGINT or SIGTERM arrives (installed when first polled).
pub(crate) async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

static SIGNALS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_signal(_: nix::libc::c_int) {
    // a second SIGINT/SIGTERM: the user wants out now, not the summary
    if SIGNALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1 {
        // SAFETY: _exit is async-signal-safe; nothing is unwound or flushed
        unsafe { nix::libc::_exit(1) };
    }
}

/// For the blocking commands (scan): the first SIGINT or SIGTERM sets a flag
/// the loops check (see [`signalled`]); a second one ends the process at once
/// with status 1, the documented status of an interrupted run.
pub(crate) fn catch_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(count_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Has a SIGINT or SIGTERM arrived since [`catch_signals`]?
pub(crate) fn signalled() -> bool {
    SIGNALS.load(std::sync::atomic::Ordering::Relaxed) > 0
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

/// What a SYN probe to `target` needs, opened before privileges are dropped:
/// the route, a raw sender on it, and a capture of our SYNs leaving, the
/// target's answers and ICMP errors about them (ping and path).
pub(crate) fn open_syn_path(
    target: std::net::SocketAddr,
    interface: Option<&str>,
    log: Log,
) -> Result<SynPath, CmdError> {
    let dst = target.ip();
    let route = crate::io::Route::lookup(dst, interface)?;
    log.debug(|| format!("route to {dst}: {route}"));
    let sender = crate::io::RawSender::open(route.src, interface)?;
    let filter = crate::io::bpf::FlowFilter {
        local: route.src,
        remote: Some(dst),
        remote_port: Some(target.port()),
        local_ports: None,
        protocol: crate::wire::Protocol::TCP,
        outbound: true,
    };
    let capture = crate::io::Capture::open(route.capture_ifindex(), &filter)?;
    Ok(SynPath {
        route,
        sender,
        capture,
        filter,
    })
}

/// See [`open_syn_path`]; `filter` is the capture's, for captures beside it.
pub(crate) struct SynPath {
    pub route: crate::io::Route,
    pub sender: crate::io::RawSender,
    pub capture: crate::io::Capture,
    pub filter: crate::io::bpf::FlowFilter,
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
