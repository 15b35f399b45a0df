//! A minimal HTTP/1.1 callback receiver for the event benchmarks: no
//! framework, no JSON parsing; each POST is answered `200` as soon as it is
//! complete, and its body is recorded with its receive time (taken before
//! anything else). Keep-alive; pipelined requests are answered in order.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one consumer received: (body, wall-clock receive time in µs).
pub type Sink = Arc<Mutex<Vec<(String, i64)>>>;

/// Microseconds since the epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One complete HTTP/1.1 request at the start of `buf`: (body, bytes used).
/// `None` when more bytes are needed. Handles Content-Length and chunked.
pub fn parse_request(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut len = 0usize;
    let mut chunked = false;
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.contains("chunked"),
                _ => {}
            }
        }
    }
    if !chunked {
        return (buf.len() >= head_end + len)
            .then(|| (buf[head_end..head_end + len].to_vec(), head_end + len));
    }
    let mut body = Vec::new();
    let mut at = head_end;
    loop {
        let line_end = at + find(&buf[at..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&buf[at..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            let end = at + find(&buf[at..], b"\r\n")? + 2;
            return Some((body, end));
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// One keep-alive connection: answers 200 to each POST as soon as it is
/// complete, then records it in `sink` (when given).
pub async fn serve_conn(mut s: TcpStream, sink: Option<Sink>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((body, used)) = parse_request(&buf) {
            let at = now_us();
            buf.drain(..used);
            // Answer first: the sender waits for it before its next POST.
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            if let Some(sink) = &sink {
                sink.lock()
                    .expect("sink")
                    .push((String::from_utf8_lossy(&body).into_owned(), at));
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Serves every connection of `listener` with [`serve_conn`].
pub async fn serve(listener: TcpListener, sink: Option<Sink>) {
    while let Ok((s, _)) = listener.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(serve_conn(s, sink.clone()));
    }
}
