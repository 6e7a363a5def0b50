//! Port lists: `22,80,1000-2000`, `-` (all of 1-65535), or the most common ports.

/// Commonly open TCP ports, most common first: synscope's own list, drawn from
/// the services found on servers, routers, databases and desktops.
pub const TOP_PORTS: &[u16] = &[
    80, 443, 22, 21, 25, 23, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995, 993,
    5900, 1025, 587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179, 1026, 2000,
    8443, 8000, 32768, 554, 26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666, 646, 5000, 5631,
    631, 49153, 8081, 2049, 88, 79, 5800, 106, 2121, 1110, 49155, 6000, 513, 990, 5357, 427, 49156,
    543, 544, 5101, 144, 7, 389, 8009, 3128, 444, 9999, 5009, 7070, 5190, 3000, 5432, 1900, 3986,
    13, 1029, 9, 5051, 6646, 49157, 1028, 873, 1755, 2717, 4899, 9100, 119, 37, 1000, 3001, 5001,
    82, 10010, 1030, 9090, 2107, 1024, 2103, 6004, 1801, 5050, 19, 8031, 1041, 255, 2967, 1049,
    1048, 6379, 27017, 9200, 11211, 5672, 2375, 2376, 6443, 10250, 9092, 2181, 8500, 8086, 9000,
    9418, 50000, 1521, 1883, 8883, 5222,
];

/// A port list that cannot be read, with the message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PortError(pub String);

/// A sorted list of distinct ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortList(Vec<u16>);

impl PortList {
    /// Parses `22,80,1000-2000`; `-` or `1-65535` means every port.
    pub fn parse(s: &str) -> Result<PortList, PortError> {
        let bad = |part: &str, why: &str| {
            // name the whole list only when the bad item is a part of it
            let whole = if part.trim() == s.trim() {
                String::new()
            } else {
                format!(" in '{s}'")
            };
            PortError(format!("bad port '{}'{whole}: {why}", part.trim()))
        };
        let num = |part: &str, t: &str| -> Result<u16, PortError> {
            match t.trim().parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                _ => Err(bad(part, "ports are 1-65535")),
            }
        };
        if s.trim() == "-" {
            return Ok(PortList((1..=65535).collect()));
        }
        let mut v = Vec::new();
        for part in s.split(',') {
            if part.trim().is_empty() {
                return Err(bad(part, "empty item"));
            }
            match part.split_once('-') {
                Some((a, b)) => {
                    let lo = if a.trim().is_empty() {
                        1
                    } else {
                        num(part, a)?
                    };
                    let hi = if b.trim().is_empty() {
                        65535
                    } else {
                        num(part, b)?
                    };
                    if hi < lo {
                        return Err(bad(part, "range end is below its start"));
                    }
                    v.extend(lo..=hi);
                }
                None => v.push(num(part, part)?),
            }
        }
        Ok(PortList::from_ports(v))
    }

    /// The `n` most common ports.
    pub fn top(n: usize) -> Result<PortList, PortError> {
        if n == 0 || n > TOP_PORTS.len() {
            return Err(PortError(format!(
                "--top-ports takes 1-{}",
                TOP_PORTS.len()
            )));
        }
        Ok(PortList::from_ports(TOP_PORTS[..n].to_vec()))
    }

    /// The ports of `v`, sorted, duplicates dropped.
    pub fn from_ports(mut v: Vec<u16>) -> PortList {
        v.sort_unstable();
        v.dedup();
        PortList(v)
    }

    /// Merges another list into this one.
    pub fn union(&self, other: &PortList) -> PortList {
        PortList::from_ports(self.0.iter().chain(&other.0).copied().collect())
    }

    /// Number of ports.
    pub fn len(&self) -> u64 {
        self.0.len() as u64
    }

    /// No ports.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `i`-th port in ascending order; None past the end.
    pub fn get(&self, i: u64) -> Option<u16> {
        self.0.get(i as usize).copied()
    }

    /// Where port `p` is in the list (the inverse of [`PortList::get`]); None if absent.
    pub fn index_of(&self, p: u16) -> Option<u64> {
        self.0.binary_search(&p).ok().map(|i| i as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_errors() {
        let l = PortList::parse("80,22,1000-1002,80").unwrap();
        assert_eq!(l.0, vec![22, 80, 1000, 1001, 1002]);
        assert_eq!(l.index_of(1001), Some(3));
        assert_eq!(l.index_of(23), None);
        assert_eq!(PortList::parse("-").unwrap().len(), 65535);
        assert_eq!(PortList::parse("60000-").unwrap().len(), 5536);
        for bad in ["0", "65536", "a", "10-5", "", "1,,2"] {
            assert!(PortList::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PortList::parse("0").unwrap_err().0,
            "bad port '0': ports are 1-65535"
        );
        assert_eq!(
            PortList::parse("80,0").unwrap_err().0,
            "bad port '0' in '80,0': ports are 1-65535"
        );
        assert_eq!(PortList::parse("1-").unwrap().len(), 65535);
        assert_eq!(PortList::top(3).unwrap().0, vec![22, 80, 443]);
        assert!(PortList::top(0).is_err());
        assert!(PortList::top(TOP_PORTS.len() + 1).is_err());
    }

    #[test]
    fn top_list_has_no_duplicates() {
        assert_eq!(
            PortList::from_ports(TOP_PORTS.to_vec()).len() as usize,
            TOP_PORTS.len()
        );
    }
}
