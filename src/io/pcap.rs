//! A pcap file writer: nanosecond timestamps (magic 0xa1b23c4d) and
//! LINKTYPE_RAW (101), so IPv4 and IPv6 datagrams share one file; `tcpdump -r`
//! and Wireshark read it.

use super::IoError;
use crate::event::Timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file magic of nanosecond-resolution pcap.
pub const MAGIC_NANO: u32 = 0xa1b2_3c4d;
/// Link type: raw IPv4 or IPv6, no link-layer header.
pub const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 65535;

/// The 24-byte file header.
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC_NANO.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
    h
}

/// One record: 16-byte header then the datagram (cut at the snap length).
pub fn record(at: Timestamp, datagram: &[u8]) -> Vec<u8> {
    let incl = datagram.len().min(SNAPLEN as usize);
    let mut r = Vec::with_capacity(16 + incl);
    r.extend_from_slice(&((at.0 / 1_000_000_000) as u32).to_le_bytes());
    r.extend_from_slice(&((at.0 % 1_000_000_000) as u32).to_le_bytes());
    r.extend_from_slice(&(incl as u32).to_le_bytes());
    r.extend_from_slice(&(datagram.len() as u32).to_le_bytes());
    r.extend_from_slice(&datagram[..incl]);
    r
}

/// Writes packets to a file as they are captured.
pub struct PcapWriter {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl PcapWriter {
    /// Creates (truncates) `path` and writes the file header.
    pub fn create(path: &Path) -> Result<PcapWriter, IoError> {
        let e = |source| IoError::File {
            op: "create pcap",
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::create(path).map_err(e)?;
        let mut out = std::io::BufWriter::new(f);
        out.write_all(&file_header()).map_err(e)?;
        Ok(PcapWriter {
            out,
            path: path.to_path_buf(),
        })
    }

    /// Appends one datagram (from its IP header) stamped `at` (buffered).
    pub fn write(&mut self, at: Timestamp, datagram: &[u8]) -> Result<(), IoError> {
        self.out
            .write_all(&record(at, datagram))
            .map_err(|source| IoError::File {
                op: "write pcap",
                path: self.path.clone(),
                source,
            })
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> Result<(), IoError> {
        self.out.flush().map_err(|source| IoError::File {
            op: "write pcap",
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_bytes() {
        let h = file_header();
        assert_eq!(h[..4], [0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(h[20], 101);
        let r = record(Timestamp(5_000_000_123), &[0x45, 0, 0, 20]);
        assert_eq!(r[..16], [5, 0, 0, 0, 123, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(r[16..], [0x45, 0, 0, 20]);
    }
}
