//! `synscope demo`: a new user's first run, with no network needed. Builds a
//! namespace lab (client, server, nftables rules, NSD), runs the real
//! commands inside it (ping of open, closed and filtered ports, a scan of the
//! server, a trace of one connection, a DNS check), prints their output and
//! removes everything.
//!
//! `--keep` leaves the lab up. What lives in the demo process has to move out
//! of it: the server's TCP listeners (sockets of this process), NSD (its
//! child) and the ownership of the namespaces (the lab's reaper and drop
//! delete them when this process ends, and a later lab removes namespaces
//! whose owner is gone). A keeper takes them over: this binary again,
//! `synscope demo --hold FILE`, started in its own session (so the terminal's
//! Ctrl-C and hang-up do not reach it) and in the host namespace (so it can
//! delete the namespaces at the end, as the lab's drop does). It becomes the
//! owner of the namespaces, listens on the open ports (answering and closing
//! connections, so `trace` sees a whole teardown), runs NSD from the same
//! config, and on SIGTERM (`synscope demo --remove`) or after 24 hours removes
//! everything. Our own binary needs no extra package (socat or nc would), and
//! the keeper is the lab crate's own code.

use super::CmdError;
use crate::cli::DemoArgs;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use synscope_lab::dns::LabDns;
use synscope_lab::{CLIENT_V4, CLIENT_V6, Lab, LabSpec, SERVER_V4, SERVER_V6};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM must not kill the demo before it removes its lab: note
/// them instead (the running command gets them too, prints its summary and
/// ends), then stop and clean up. A handler, unlike SIG_IGN, is reset in
/// children at exec.
fn catch_interrupts() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(note_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// The port of the lab's small answering server, the one the demo traces.
const TRACE_PORT: u16 = 8080;
/// What the answering server sends once it has read a request.
const ANSWER: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 28\r\n\r\nhello from the synscope lab\n";
/// How long a kept lab stays up at most.
const KEEP_MAX: Duration = Duration::from_secs(24 * 3600);
/// Where a kept lab is described (beside the lab's owner markers).
const STATE_DIR: &str = "/run/synscope";
const STATE_PREFIX: &str = "kept-demo-";

/// Runs the demo in a new lab (or, with `--remove` / `--hold`, removes or
/// keeps a kept one); says whether every step succeeded.
pub fn run(args: &DemoArgs) -> Result<bool, CmdError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(CmdError::Setup(
            "demo needs root: it creates network namespaces, a veth pair and nftables rules (try: sudo synscope demo)".into(),
        ));
    }
    if args.remove {
        return remove_kept();
    }
    if let Some(file) = &args.hold {
        return hold(file);
    }
    demo(args)
}

fn setup(what: &str) -> impl Fn(synscope_lab::LabError) -> CmdError + '_ {
    move |e| CmdError::Setup(format!("{what}: {e}"))
}

/// One command of the demo: a title, its arguments, and whether its exit
/// status must be 0.
struct Step {
    title: String,
    args: Vec<String>,
}

fn steps(count: u64) -> Vec<Step> {
    let ping = |target: String, expect: &str, why: &str| Step {
        title: format!("ping {target}: expect {expect} ({why})"),
        args: [
            "ping",
            &target,
            "-c",
            &count.to_string(),
            "-i",
            "200ms",
            "-W",
            "500ms",
            "--expect",
            expect,
        ]
        .map(String::from)
        .to_vec(),
    };
    let step = |title: &str, args: &[&str]| Step {
        title: title.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let v4 = SERVER_V4.to_string();
    let v6 = SERVER_V6.to_string();
    vec![
        ping(format!("{v4}:80"), "open", "a kernel TCP listener"),
        ping(
            format!("{v4}:81"),
            "closed",
            "nothing listens: the kernel answers RST",
        ),
        ping(
            format!("{v4}:21"),
            "filtered",
            "nftables drops the SYN silently",
        ),
        ping(
            format!("{v4}:111"),
            "filtered",
            "nftables rejects with ICMP admin-prohibited",
        ),
        ping(format!("[{v6}]:443"), "open", "the same over IPv6"),
        step(
            &format!("scan {v4} and {v6}: which ports answer, on both families"),
            &[
                "scan",
                &v4,
                &v6,
                "-p",
                "21,22,80,81,111,113,443,8080",
                "--rate",
                "1000",
                "--timeout",
                "300ms",
            ],
        ),
        step(
            &format!("trace {v4}:{TRACE_PORT}: one whole connection, request to TIME_WAIT"),
            &[
                "trace",
                &format!("{v4}:{TRACE_PORT}"),
                "--send",
                "GET / HTTP/1.0\\r\\n\\r\\n",
                "--time-wait",
                "200ms",
            ],
        ),
        step(
            &format!("dns a.lab.test @{v4}: the lab's DNS server (NSD), answer checked"),
            &[
                "dns",
                "a.lab.test",
                &format!("@{v4}"),
                "--expect",
                "198.18.0.10",
            ],
        ),
    ]
}

fn demo(args: &DemoArgs) -> Result<bool, CmdError> {
    let spec = LabSpec::standard();
    note!(
        "synscope demo: building a lab (namespaces, veth, nftables, server on {SERVER_V4} and {SERVER_V6}, NSD)..."
    );
    catch_interrupts();
    let lab = Lab::up(&spec).map_err(setup("build the lab"))?;
    let dns = LabDns::start(&lab).map_err(setup("start the lab's DNS server"))?;
    let server = Answering::start(&lab.server_ns, &[TRACE_PORT])?;
    // an interrupt while building removes the lab even with --keep
    let built = !INTERRUPTED.load(Ordering::SeqCst);
    let exe = std::env::current_exe()
        .map_err(|e| CmdError::Setup(format!("find own executable: {e}")))?;
    let mut all_ok = true;
    for step in steps(args.count) {
        if INTERRUPTED.load(Ordering::SeqCst) {
            eprintln!("synscope demo: interrupted");
            all_ok = false;
            break;
        }
        println!("\n### {}", step.title);
        std::io::stdout().flush()?;
        let status = lab
            .client_command(&exe)
            .args(&step.args)
            .args(super::quiet().then_some("--quiet")) // -q reaches every step
            .status()
            .map_err(|e| CmdError::Setup(format!("run {} in the lab: {e}", step.args[0])))?;
        all_ok &= status.success();
    }
    let verdict = if all_ok {
        "every command did what was expected"
    } else {
        "not every command did what was expected"
    };
    if args.keep && built {
        server.stop();
        let kept = Kept {
            client_ns: lab.client_ns.clone(),
            server_ns: lab.server_ns.clone(),
            nsd_dir: dns.keep_config(),
            namespaces: lab.keep(),
            open: spec.open.iter().copied().chain([TRACE_PORT]).collect(),
        };
        hand_over(&kept, &exe)?;
        note!("\nsynscope demo: {verdict}; the lab stays up");
        print_usage(&kept, &exe, &spec);
    } else {
        server.stop();
        drop(dns);
        drop(lab);
        note!("\nsynscope demo: lab removed; {verdict}");
    }
    Ok(all_ok)
}

/// A small server on the lab's open ports: it accepts every connection,
/// answers [`ANSWER`] once it has read a request, and closes after the
/// client's FIN (or 10 s), so a trace sees a whole orderly teardown. One
/// thread per port, blocked in accept until stopped.
struct Answering {
    stop: Arc<AtomicBool>,
    /// The listeners (duplicates of the threads' descriptors), to wake them.
    listeners: Vec<TcpListener>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Connections answered at once; more are closed at once.
const ANSWERING_MAX: usize = 64;

impl Answering {
    /// Listens on `ports` in namespace `ns` (both families) and serves them.
    fn start(ns: &str, ports: &[u16]) -> Result<Answering, CmdError> {
        let ports = ports.to_vec();
        let listeners = synscope_lab::in_netns(ns, move || -> std::io::Result<Vec<TcpListener>> {
            ports
                .iter()
                .map(|p| TcpListener::bind(("::", *p)))
                .collect()
        })
        .map_err(setup("enter the server namespace"))?
        .map_err(|e| CmdError::Setup(format!("listen in the lab: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let mut me = Answering {
            stop: stop.clone(),
            listeners: Vec::new(),
            threads: Vec::new(),
        };
        for l in listeners {
            me.listeners.push(
                l.try_clone()
                    .map_err(|e| CmdError::Setup(format!("listen in the lab: {e}")))?,
            );
            let (stop, active) = (stop.clone(), active.clone());
            me.threads.push(std::thread::spawn(move || {
                for conn in l.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else {
                        // out of descriptors or the like: let it pass
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    if active.fetch_add(1, Ordering::SeqCst) >= ANSWERING_MAX {
                        active.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let active = active.clone();
                    std::thread::spawn(move || {
                        answer(conn);
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }));
        }
        Ok(me)
    }

    /// Closes the listeners (connections being answered finish on their
    /// own): shutting a listening socket down wakes its accept (Linux).
    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for l in &self.listeners {
            let _ = socket2::SockRef::from(l).shutdown(std::net::Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One connection: the answer after the first bytes read, then read until
/// the client's FIN (at most 10 s), then close.
fn answer(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let until = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    let mut answered = false;
    while Instant::now() < until {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(_) if !answered => {
                answered = true;
                let _ = conn.write_all(ANSWER);
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
}

/// A lab left up by `--keep`, as its state file describes it.
struct Kept {
    client_ns: String,
    server_ns: String,
    /// Every namespace, in the order made.
    namespaces: Vec<String>,
    nsd_dir: PathBuf,
    /// The server's open ports (the keeper listens on them).
    open: Vec<u16>,
}

impl Kept {
    fn file(&self) -> PathBuf {
        Path::new(STATE_DIR).join(format!("{STATE_PREFIX}{}", self.server_ns))
    }

    fn to_text(&self) -> String {
        let mut t = format!(
            "client {}\nserver {}\nnsd {}\n",
            self.client_ns,
            self.server_ns,
            self.nsd_dir.display()
        );
        for ns in &self.namespaces {
            t += &format!("namespace {ns}\n");
        }
        for p in &self.open {
            t += &format!("open {p}\n");
        }
        t
    }

    fn parse(text: &str) -> Option<Kept> {
        let mut k = Kept {
            client_ns: String::new(),
            server_ns: String::new(),
            namespaces: Vec::new(),
            nsd_dir: PathBuf::new(),
            open: Vec::new(),
        };
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "client" => k.client_ns = value.into(),
                "server" => k.server_ns = value.into(),
                "nsd" => k.nsd_dir = value.into(),
                "namespace" => k.namespaces.push(value.into()),
                "open" => k.open.push(value.parse().ok()?),
                _ => return None,
            }
        }
        // only our own lab's namespaces are ever deleted
        let ours = |n: &String| n.starts_with("synscope-") && !n.contains('/');
        (k.namespaces.iter().all(ours) && ours(&k.server_ns) && ours(&k.client_ns)).then_some(k)
    }

    /// Removes what is left of the lab: whatever still runs in its
    /// namespaces (NSD, the keeper's listeners go with the keeper), the
    /// namespaces, NSD's directory and the state file.
    fn remove(&self) {
        for ns in &self.namespaces {
            let pids = std::process::Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        synscope_lab::delete_namespaces(&self.namespaces);
        if self.nsd_dir.starts_with(std::env::temp_dir()) {
            let _ = std::fs::remove_dir_all(&self.nsd_dir);
        }
        let _ = std::fs::remove_file(self.file());
    }
}

/// Writes the state file and starts the keeper; returns once it holds the lab.
fn hand_over(kept: &Kept, exe: &Path) -> Result<(), CmdError> {
    let file = kept.file();
    let fail = |why: String| {
        kept.remove();
        CmdError::Setup(format!("keep the lab: {why}; lab removed"))
    };
    if let Err(e) = std::fs::write(&file, kept.to_text()) {
        return Err(fail(format!("write {}: {e}", file.display())));
    }
    let mut child = match std::process::Command::new("setsid")
        .arg(exe)
        .args(["demo", "--hold"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(fail(format!("start the keeper: {e}"))),
    };
    // the keeper says `ready` once it owns the namespaces, listens and NSD answers
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(line) if line.trim() == "ready" => Ok(()),
        got => {
            let _ = child.kill();
            let _ = child.wait();
            Err(fail(format!(
                "the keeper did not take over ({})",
                got.map_or("no answer in 15 s".into(), |l| format!(
                    "said {:?}",
                    l.trim()
                ))
            )))
        }
    }
}

fn print_usage(k: &Kept, exe: &Path, spec: &LabSpec) {
    let list = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    let run = format!("ip netns exec {} {}", k.client_ns, exe.display());
    println!(
        "
### the lab stays up (at most 24 hours)

client namespace  {c:<24} {CLIENT_V4}  {CLIENT_V6}   run synscope here
server namespace  {s:<24} {SERVER_V4}  {SERVER_V6}

ports of the server (both addresses):
  {open:<18} open: the kernel's listener, a small server answers a request and closes after your FIN
  {dropped:<18} filtered: nftables drops the SYN
  {prohibited:<18} filtered: nftables rejects with ICMP admin-prohibited
  {unreach:<18} filtered: nftables rejects with ICMP port-unreachable
  {any:<18} closed: the kernel answers RST
  {dnsp:<18} DNS (NSD): lab.test. (a, b, www, mail, txt, big, ...) and 0.18.198.in-addr.arpa.

try:
  {run} ping {SERVER_V4}:80 -c 3
  {run} scan {SERVER_V4} -p 1-1024
  {run} trace [{SERVER_V6}]:{TRACE_PORT} --send 'GET / HTTP/1.0\\r\\n\\r\\n'
  {run} dns www.lab.test AAAA @{SERVER_V4}
  ip netns exec {c} bash        (a shell in the client namespace)

remove it:
  {exe} demo --remove",
        c = k.client_ns,
        s = k.server_ns,
        open = list(&k.open),
        dropped = list(&spec.dropped),
        prohibited = list(&spec.admin_prohibited),
        unreach = list(&spec.port_unreachable),
        any = "any other",
        dnsp = "53 UDP, TCP",
        exe = exe.display(),
    );
}

/// The keeper of a kept lab (`synscope demo --hold FILE`): see the module
/// documentation. Says `ready` on stdout once it holds everything.
fn hold(file: &Path) -> Result<bool, CmdError> {
    catch_interrupts();
    let text = std::fs::read_to_string(file)
        .map_err(|e| CmdError::Setup(format!("read {}: {e}", file.display())))?;
    let kept = Kept::parse(&text)
        .ok_or_else(|| CmdError::Setup(format!("{}: not a kept lab", file.display())))?;
    let held = (|| {
        synscope_lab::adopt(&kept.namespaces).map_err(setup("own the namespaces"))?;
        let server = Answering::start(&kept.server_ns, &kept.open)?;
        let nsd = LabDns::resume(&kept.client_ns, &kept.server_ns, kept.nsd_dir.clone())
            .map_err(setup("run the lab's DNS server"))?;
        Ok::<_, CmdError>((server, nsd))
    })();
    let (server, nsd) = match held {
        Ok(h) => h,
        Err(e) => {
            kept.remove();
            // the demo reads this line (the keeper's stderr goes nowhere)
            println!("{}", e.line());
            return Err(e);
        }
    };
    println!("ready");
    std::io::stdout().flush()?;
    let until = Instant::now() + KEEP_MAX;
    while !INTERRUPTED.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();
    drop(nsd);
    kept.remove();
    Ok(true)
}

/// `synscope demo --remove`: ends each kept lab's keeper (which removes its
/// lab), or removes the lab itself when the keeper is gone.
fn remove_kept() -> Result<bool, CmdError> {
    let mut found = 0;
    let entries = std::fs::read_dir(STATE_DIR).into_iter().flatten().flatten();
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(STATE_PREFIX) {
            continue;
        }
        let Some(kept) = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|t| Kept::parse(&t))
        else {
            continue;
        };
        found += 1;
        // the keeper owns the namespaces: its marker names it
        let keeper = std::fs::read_to_string(Path::new(STATE_DIR).join(&kept.server_ns))
            .ok()
            .and_then(|t| synscope_lab::Owner::parse(&t))
            .filter(|o| !o.is_gone() && o.pid != std::process::id());
        if let Some(o) = keeper {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(o.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let until = Instant::now() + Duration::from_secs(10);
            while kept.file().exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // the keeper is gone (or did not finish): remove what is left
        if kept.file().exists() {
            kept.remove();
        }
        note!(
            "synscope demo: removed the kept lab ({})",
            kept.namespaces.join(", ")
        );
    }
    if found == 0 {
        note!("synscope demo: no kept lab to remove");
    }
    Ok(true)
}
