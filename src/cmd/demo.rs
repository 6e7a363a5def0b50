//! `synscope demo`: a new user's first run, with no network needed. Builds a
//! namespace lab, runs `synscope ping` inside it against an open, a closed and
//! a filtered port (both kinds), prints the results and removes everything.

use super::CmdError;
use crate::cli::DemoArgs;
use std::sync::atomic::{AtomicBool, Ordering};
use synscope_lab::{Lab, LabSpec, SERVER_V4, SERVER_V6};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM must not kill the demo before it removes its lab: note
/// them instead (the running ping gets them too, prints its summary and ends),
/// then stop and clean up. A handler, unlike SIG_IGN, is reset in children at exec.
fn catch_interrupts() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(note_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

pub fn run(args: &DemoArgs) -> Result<bool, CmdError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(CmdError::Setup(
            "demo needs root: it creates network namespaces, a veth pair and nftables rules (try: sudo synscope demo)".into(),
        ));
    }
    let spec = LabSpec::standard();
    note!(
        "synscope demo: building a lab (namespaces, veth, server on {SERVER_V4} and {SERVER_V6})..."
    );
    catch_interrupts();
    let lab = Lab::up(&spec).map_err(|e| CmdError::Setup(e.to_string()))?;
    let exe = std::env::current_exe()
        .map_err(|e| CmdError::Setup(format!("find own executable: {e}")))?;
    let cases = [
        (format!("{SERVER_V4}:80"), "open", "a kernel TCP listener"),
        (
            format!("{SERVER_V4}:81"),
            "closed",
            "nothing listens: the kernel answers RST",
        ),
        (
            format!("{SERVER_V4}:21"),
            "filtered",
            "nftables drops the SYN silently",
        ),
        (
            format!("{SERVER_V4}:111"),
            "filtered",
            "nftables rejects with ICMP admin-prohibited",
        ),
        (format!("[{SERVER_V6}]:443"), "open", "the same over IPv6"),
    ];
    let mut all_ok = true;
    for (target, expect, why) in &cases {
        println!("\n### {target}: expect {expect} ({why})");
        let status = lab
            .client_command(&exe)
            .args([
                "ping",
                target,
                "-c",
                &args.count.to_string(),
                "-i",
                "200ms",
                "-W",
                "500ms",
                "--expect",
                expect,
            ])
            .status()
            .map_err(|e| CmdError::Setup(format!("run ping in the lab: {e}")))?;
        all_ok &= status.success();
        if INTERRUPTED.load(Ordering::SeqCst) {
            eprintln!("synscope demo: interrupted");
            all_ok = false;
            break;
        }
    }
    drop(lab);
    note!(
        "\nsynscope demo: lab removed{}",
        if all_ok {
            "; every port answered as expected"
        } else {
            ""
        }
    );
    Ok(all_ok)
}
