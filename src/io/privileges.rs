//! Dropping privileges: once its sockets are open a probe needs no capability
//! at all (raw and packet sockets keep working), so it gives them all up and a
//! bug in a parser fed by hostile hosts cannot be turned into root's powers.

use super::IoError;
use caps::CapSet;

/// Clears the effective, permitted, inheritable and ambient capability sets of
/// this thread (threads started later inherit the empty sets). Call it from the
/// main thread after every socket is open and before any other thread starts.
pub fn drop_all() -> Result<(), IoError> {
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| fail(&e))?;
    }
    Ok(())
}

/// Keeps only CAP_NET_RAW and CAP_NET_ADMIN (for commands that open new raw
/// sockets or nftables rules as they go: trace, several DNS servers at once).
pub fn keep_only_network() -> Result<(), IoError> {
    use caps::Capability::{CAP_NET_ADMIN, CAP_NET_RAW};
    let keep: caps::CapsHashSet = [CAP_NET_RAW, CAP_NET_ADMIN].into_iter().collect();
    for set in [CapSet::Ambient, CapSet::Inheritable] {
        caps::clear(None, set).map_err(|e| fail(&e))?;
    }
    for set in [CapSet::Effective, CapSet::Permitted] {
        let now = caps::read(None, set).map_err(|e| fail(&e))?;
        let kept: caps::CapsHashSet = now.intersection(&keep).copied().collect();
        caps::set(None, set, &kept).map_err(|e| fail(&e))?;
    }
    Ok(())
}

fn fail(e: &caps::errors::CapsError) -> IoError {
    IoError::Socket {
        op: "drop capabilities",
        source: std::io::Error::other(e.to_string()),
    }
}

/// The effective capabilities left (for `-v` and tests).
pub fn effective() -> usize {
    caps::read(None, CapSet::Effective)
        .map(|s| s.len())
        .unwrap_or(0)
}

/// Is CAP_NET_RAW in the effective set (raw and packet sockets can be opened)?
pub fn has_net_raw() -> bool {
    caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_NET_RAW).unwrap_or(false)
}
