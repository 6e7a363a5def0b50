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
        caps::clear(None, set).map_err(|e| IoError::Socket {
            op: "drop capabilities",
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(())
}

/// The effective capabilities left (for `-v` and tests).
pub fn effective() -> usize {
    caps::read(None, CapSet::Effective)
        .map(|s| s.len())
        .unwrap_or(0)
}
