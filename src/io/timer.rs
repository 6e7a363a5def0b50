//! A timer with nanosecond resolution for pacing probes: tokio's timer wheel
//! ticks in milliseconds (a 1 ms interval would become ~2 ms), a timerfd does not.

use super::IoError;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A one-shot CLOCK_MONOTONIC timerfd registered with tokio.
pub struct PreciseTimer {
    fd: AsyncFd<Fd>,
}

impl PreciseTimer {
    /// A disarmed timer.
    pub fn new() -> Result<PreciseTimer, IoError> {
        let e = |op: &'static str| {
            move |err: nix::Error| IoError::Socket {
                op,
                source: err.into(),
            }
        };
        let t = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(e("create timerfd"))?;
        // SAFETY: the TimerFd owns its fd for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register(Fd(t)) }.map_err(|err| IoError::Socket {
            op: "register timerfd",
            source: err.into_parts().1,
        })?;
        Ok(PreciseTimer { fd })
    }

    /// Waits until `at` (returns at once if it has passed).
    pub async fn sleep_until(&mut self, at: Instant) -> Result<(), IoError> {
        let delay = at.saturating_duration_since(Instant::now());
        if delay < Duration::from_micros(1) {
            return Ok(());
        }
        self.fd
            .get_ref()
            .0
            .set(
                Expiration::OneShot(TimeSpec::from_duration(delay)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(|err| IoError::Socket {
                op: "arm timerfd",
                source: err.into(),
            })?;
        loop {
            let mut guard = self.fd.readable().await.map_err(|source| IoError::Socket {
                op: "wait on timerfd",
                source,
            })?;
            let raw = guard.get_inner().as_raw_fd();
            let mut buf = [0u8; 8];
            match guard.try_io(|_| {
                // SAFETY: reads at most 8 bytes into a live 8-byte buffer.
                let n = unsafe { libc::read(raw, buf.as_mut_ptr() as *mut libc::c_void, 8) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(source)) => {
                    return Err(IoError::Socket {
                        op: "read timerfd",
                        source,
                    });
                }
                Err(_would_block) => continue,
            }
        }
    }
}
