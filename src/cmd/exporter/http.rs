//! A minimal HTTP/1.1 server for GET requests: one request per connection,
//! answered and closed (what Prometheus' scrapes need). Hand-rolled on tokio
//! rather than hyper: the exporter serves two read-only pages, and every new
//! crate costs build time on machines that build everything from source.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest request head read (Prometheus sends about 300 bytes).
const MAX_HEAD: usize = 8192;

/// A parsed request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The `Accept` header, if any.
    pub accept: Option<String>,
    /// Prometheus' `X-Prometheus-Scrape-Timeout-Seconds`, if given.
    pub scrape_timeout: Option<f64>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `%3A` → `:`, `+` → space; a bad escape is kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the request line of a request head (`GET /probe?target=a HTTP/1.1`).
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_string();
    let uri = parts.next()?;
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let header = |name: &str| {
        text.lines().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    Some(Request {
        accept: header("accept"),
        scrape_timeout: header("x-prometheus-scrape-timeout-seconds")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t > 0.0),
        method,
        path: percent_decode(path),
        query,
    })
}

/// A whole response with `Connection: close`.
pub fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}

/// Reads a request head (up to the blank line) within `limit`.
pub async fn read_head(
    stream: &mut tokio::net::TcpStream,
    limit: std::time::Duration,
) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(());
            }
            if buf.len() > MAX_HEAD {
                return None;
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()??;
    Some(buf)
}

/// Writes a response and closes the connection (errors: the client left).
pub async fn write(stream: &mut tokio::net::TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = parse_request(
            b"GET /probe?target=198.18.0.2%3A80&module=web HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/probe");
        assert_eq!(r.param("target"), Some("198.18.0.2:80"));
        assert_eq!(r.param("module"), Some("web"));
        assert_eq!(r.param("debug"), None);
        assert_eq!(r.accept, None);
        let r = parse_request(b"GET / HTTP/1.1\r\naccept: text/plain\r\n\r\n").unwrap();
        assert_eq!(r.accept.as_deref(), Some("text/plain"));
        assert_eq!(r.scrape_timeout, None);
        let r = parse_request(
            b"GET /probe HTTP/1.1\r\nX-Prometheus-Scrape-Timeout-Seconds: 0.9\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.scrape_timeout, Some(0.9));
        let r = parse_request(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(r.path, "/metrics");
        assert!(r.query.is_empty());
        assert_eq!(parse_request(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(parse_request(b"\xff\xfe"), None);
        assert_eq!(parse_request(b""), None);
    }

    #[test]
    fn hostile_requests_never_panic() {
        let alphabet = b"GET /?&=%+:[]\r\n HTTP/1.1 aA0\xff\xc3";
        for n in 0..20_000u32 {
            let len = (rand::random::<u32>() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if n % 2 == 0 {
                        rand::random()
                    } else {
                        alphabet[rand::random::<u32>() as usize % alphabet.len()]
                    }
                })
                .collect();
            if let Some(r) = parse_request(&bytes) {
                let _ = r.param("target");
            }
            let _ = percent_decode(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(
            percent_decode("%5B2001%3Adb8%3A%3A2%5D%3A443"),
            "[2001:db8::2]:443"
        );
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn responses() {
        let r = response(200, "text/plain", "hi");
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        );
    }
}
