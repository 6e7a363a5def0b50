//! Where each probe leaves: on-link hosts whose Ethernet address discovery
//! learned get their frames at the link layer (no kernel neighbour entry
//! needed), every other target through the raw IP socket, routed by the
//! kernel from the source address its route gives.

use super::link::{ETH_P_IP, ETH_P_IPV6, LinkSender, SendOutcome};
use super::{IoError, RawSender};
use crate::wire::MacAddr;
use std::collections::HashMap;
use std::net::IpAddr;

/// The raw IP sender and one link-layer sender per interface with on-link targets.
pub struct Egress {
    raw: RawSender,
    links: Vec<LinkSender>,
    /// Discovered on-link hosts: (index into `links`, Ethernet address).
    next_hop: HashMap<IpAddr, (usize, MacAddr)>,
}

impl Egress {
    /// Sends through `raw` until on-link hosts are learnt on `links`.
    pub fn new(raw: RawSender, links: Vec<LinkSender>) -> Egress {
        Egress {
            raw,
            links,
            next_hop: HashMap::new(),
        }
    }

    /// The link senders (for discovery's requests).
    pub fn links(&self) -> &[LinkSender] {
        &self.links
    }

    /// From now on, send to `host` as a frame to `mac` on link `link`.
    pub fn add_neighbour(&mut self, host: IpAddr, link: usize, mac: MacAddr) {
        if link < self.links.len() {
            self.next_hop.insert(host, (link, mac));
        }
    }

    /// Sends datagrams (IP header included), each the way its host is reached.
    pub fn send_many(&self, packets: &[(IpAddr, &[u8])]) -> SendOutcome {
        if self.next_hop.is_empty() {
            return self.raw.send_many(packets);
        }
        let mut raw: Vec<(IpAddr, &[u8])> = Vec::new();
        let mut framed: Vec<Vec<(MacAddr, &[u8])>> = vec![Vec::new(); self.links.len()];
        let mut hosts: Vec<Vec<IpAddr>> = vec![Vec::new(); self.links.len()];
        for &(host, bytes) in packets {
            match self.next_hop.get(&host) {
                Some(&(l, mac)) => {
                    framed[l].push((mac, bytes));
                    hosts[l].push(host);
                }
                None => raw.push((host, bytes)),
            }
        }
        let mut out = if raw.is_empty() {
            SendOutcome::default()
        } else {
            self.raw.send_many(&raw)
        };
        for (l, frames) in framed.iter().enumerate() {
            if frames.is_empty() {
                continue;
            }
            let proto = if hosts[l][0].is_ipv4() {
                ETH_P_IP
            } else {
                ETH_P_IPV6
            };
            let o = self.links[l].send_batch(proto, frames, &hosts[l]);
            out.refused += o.refused;
            out.stalls += o.stalls;
            if out.first_error.is_none() {
                out.first_error = o.first_error;
            }
        }
        out
    }

    /// Sends one datagram (e.g. the RST that closes a half-open connection).
    pub fn send(&self, host: IpAddr, datagram: &[u8]) -> Result<(), IoError> {
        let o = self.send_many(&[(host, datagram)]);
        match o.first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
