//! Huge target sets, interrupts, memory bounds and names (issue 9, sections 3
//! and 7), against the real binary in namespace labs. Every packet stays in a
//! lab namespace: the client namespace has no route out of the lab.

use std::process::{Command, Stdio};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_synscope");

/// Deletes a namespace this test made, also when the test fails.
struct Netns(String);

impl Netns {
    fn add(name: &str) -> Netns {
        let st = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Netns(name.to_string())
    }
    fn exists(&self) -> bool {
        std::path::Path::new(&format!("/run/netns/{}", self.0)).exists()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_file(format!("/run/synscope/{}", self.0));
    }
}

/// A pid no process has: past the kernel's pid_max.
fn absent_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    max + 1
}

#[test]
fn demo_removes_only_namespaces_it_can_prove_are_its_own() {
    let gone = absent_pid();
    // someone else's: named like ours, its pid absent here, but no owner marker
    let foreign = Netns::add(&format!("synscope-{gone}-0-cli"));
    // ours, provably: the marker names a process of this PID namespace that is gone
    let stale = Netns::add(&format!("synscope-{gone}-1-cli"));
    let me = synscope::lab::Owner::me().unwrap();
    let dead = synscope::lab::Owner { pid: gone, ..me };
    std::fs::create_dir_all("/run/synscope").unwrap();
    std::fs::write(format!("/run/synscope/{}", stale.0), dead.to_text()).unwrap();
    let out = Command::new(BIN)
        .args(["demo", "-c", "1"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    common::assert_status(&out, 0);
    assert!(
        foreign.exists(),
        "the demo removed a namespace it did not make"
    );
    assert!(!stale.exists(), "the demo left a namespace of a killed lab");
}
