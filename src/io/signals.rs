//! SIGINT and SIGTERM, caught the same way for every command: the first sets
//! a flag (read by the blocking scan loops, [`caught`]) and wakes every async
//! waiter through a self-pipe ([`wait`], the drive loop's interrupt); a second
//! one ends the process at once with the status of an interrupted run.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use tokio::io::unix::AsyncFd;

static COUNT: AtomicU32 = AtomicU32::new(0);
static PIPE_READ: AtomicI32 = AtomicI32::new(-1);
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static INSTALL: Once = Once::new();
/// The exit status of a run ended by a second signal (cmd::status::INTERRUPTED).
static EXIT_STATUS: AtomicI32 = AtomicI32::new(1);

extern "C" fn on_signal(_: libc::c_int) {
    // a second SIGINT/SIGTERM: the user wants out now, not the summary
    if COUNT.fetch_add(1, Ordering::SeqCst) >= 1 {
        // SAFETY: _exit is async-signal-safe; nothing is unwound or flushed
        unsafe { libc::_exit(EXIT_STATUS.load(Ordering::Relaxed)) };
    }
    let fd = PIPE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write is async-signal-safe; one byte from a live local.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
}

/// Installs the handlers (once per process); `exit_status` is what a second
/// signal exits with.
pub fn catch(exit_status: u8) {
    EXIT_STATUS.store(i32::from(exit_status), Ordering::Relaxed);
    INSTALL.call_once(|| {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 fills a live two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } == 0 {
            PIPE_READ.store(fds[0], Ordering::SeqCst);
            PIPE_WRITE.store(fds[1], Ordering::SeqCst);
        }
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler touches atomics and calls write and _exit,
            // all async-signal-safe.
            let _ = unsafe { sigaction(sig, &action) };
        }
    });
}

/// Has a SIGINT or SIGTERM arrived since [`catch`]?
pub fn caught() -> bool {
    COUNT.load(Ordering::Relaxed) > 0
}

struct Fd(OwnedFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Resolves once a SIGINT or SIGTERM has arrived (handlers installed by
/// [`catch`], which must have run). Any number of tasks may wait at once.
pub async fn wait() {
    if caught() {
        return;
    }
    let read = PIPE_READ.load(Ordering::SeqCst);
    // each waiter registers its own duplicate of the pipe's read end (one fd
    // cannot be registered twice); nobody reads the byte, so it stays readable
    // SAFETY: dup of a pipe fd this module keeps open for the process' life.
    let fd = if read >= 0 {
        unsafe { libc::fcntl(read, libc::F_DUPFD_CLOEXEC, 0) }
    } else {
        -1
    };
    if fd < 0 {
        return poll_flag().await;
    }
    // SAFETY: fd is a fresh duplicate this function owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the OwnedFd inside stays open for as long as the AsyncFd holds it.
    let Ok(afd) = (unsafe { AsyncFd::register(Fd(owned)) }) else {
        return poll_flag().await;
    };
    while !caught() {
        match afd.readable().await {
            Ok(mut g) => g.retain_ready(),
            Err(_) => return poll_flag().await,
        }
    }
}

/// Without a pipe: look at the flag every 50 ms.
async fn poll_flag() {
    while !caught() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
