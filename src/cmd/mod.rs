//! The commands: each wires settings, a probe state machine, the I/O layer and a report.

pub mod demo;
pub mod dns;
pub mod ping;
pub mod scan;
mod scan_net;
pub mod trace;

use crate::cli::UsageError;
use crate::io::IoError;

/// Why a command could not run (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("{0}")]
    Usage(#[from] UsageError),
    #[error("{0}")]
    Io(#[from] IoError),
    #[error("write output: {0}")]
    Output(#[from] std::io::Error),
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

/// Debug logging to stderr, on with `-v`.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    pub verbose: bool,
}

impl Log {
    pub fn debug(&self, msg: impl FnOnce() -> String) {
        if self.verbose {
            eprintln!("synscope: {}", msg());
        }
    }
}
