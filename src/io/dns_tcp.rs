//! DNS over the kernel's TCP (RFC 7766): after a truncated UDP answer the same
//! query is repeated over a TCP connection, with the 2-byte length prefix.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What failed, and with whom.
#[derive(Debug, thiserror::Error)]
#[error("DNS over TCP with {addr}: {op}: {source}")]
pub struct DnsTcpError {
    /// The step that failed (`connect`, `send query`, `read answer`, ...).
    pub op: &'static str,
    /// The server.
    pub addr: SocketAddr,
    /// The system's error.
    pub source: std::io::Error,
}

/// A TCP exchange's answer and timings (user-space clock).
#[derive(Debug, Clone)]
pub struct TcpAnswer {
    /// The DNS message, without its two-byte length prefix.
    pub message: Vec<u8>,
    /// Connect (handshake) time.
    pub connect: Duration,
    /// From the start of the connect to the last byte of the answer.
    pub total: Duration,
    /// From writing the query to the last byte of the answer.
    pub exchange: Duration,
}

/// Sends `query` (a whole DNS message) over a new TCP connection and reads one answer.
pub async fn exchange(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> Result<TcpAnswer, DnsTcpError> {
    let err = |op| {
        move |source| DnsTcpError {
            op,
            addr: server,
            source,
        }
    };
    let timed_out = |op| DnsTcpError {
        op,
        addr: server,
        source: std::io::Error::from(std::io::ErrorKind::TimedOut),
    };
    let start = Instant::now();
    let mut s = tokio::time::timeout(timeout, TcpStream::connect(server))
        .await
        .map_err(|_| timed_out("connect"))?
        .map_err(err("connect"))?;
    let connect = start.elapsed();
    let _ = s.set_nodelay(true);
    let mut msg = Vec::with_capacity(query.len() + 2);
    msg.extend_from_slice(&(query.len().min(u16::MAX as usize) as u16).to_be_bytes());
    msg.extend_from_slice(query);
    let sent = Instant::now();
    let io = async {
        s.write_all(&msg).await.map_err(err("send query"))?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)
            .await
            .map_err(err("read answer length"))?;
        let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut answer)
            .await
            .map_err(err("read answer"))?;
        Ok::<_, DnsTcpError>(answer)
    };
    let remaining = timeout.saturating_sub(connect);
    let message = tokio::time::timeout(remaining, io)
        .await
        .map_err(|_| timed_out("read answer"))??;
    Ok(TcpAnswer {
        message,
        connect,
        total: start.elapsed(),
        exchange: sent.elapsed(),
    })
}
