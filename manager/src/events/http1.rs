//! A lean HTTP/1.1 client for plain `http://` callback URLs: one kept-alive
//! connection per URL, owned by that URL's delivery task (no pool, no
//! connection task, no URL parsing per request).
//!
//! Requests are pipelined: the delivery task queues up to its window of
//! requests ([`Conn::queue_request`], written together, usually with one
//! `write`) and reads the responses in order ([`Conn::next_response`]); the
//! n-th response answers the n-th request. [`Conn::post`] is one request at a
//! time (the callback benchmark's sender).
//!
//! `https://` URLs and URLs with credentials go through `reqwest` instead.
//!
//! Why not hyper (issue 13): `callback_bench` (bench/src/bin) POSTs the same
//! event bodies to a local receiver through this client and through hyper
//! 1.x with the same keep-alive, interleaved in one run. On 2026-12-06
//! (loaded machine, load average ~17), one URL, 20,000 POSTs each: this
//! client p50 0.025 ms / p99 0.052 ms, 26,800 POSTs/s; hyper's client
//! connection API 0.045 / 0.091 ms, 14,500/s; hyper-util's legacy `Client`
//! 0.049 / 0.093 ms, 13,900/s. Ten URLs at once: 33,000 POSTs/s against
//! 29,000/s and 25,000/s (p50 0.15 against 0.20 and 0.24 ms). hyper's
//! spawned connection task adds a hand-over between tasks to every request;
//! here the delivery task itself writes and reads. A real difference (about
//! half the time per POST with one URL), so this client stays; BENCHMARKS.md
//! has the runs. (hyper's client does not pipeline either.)
//!
//! Every new connection goes to an address the callback policy permits,
//! resolved right then (a host name that now resolves somewhere refused gets
//! nothing). Redirects are answers like any other (not followed); at most
//! [`MAX_RESPONSE_BODY`] bytes of a body are read, beyond that the
//! connection is dropped.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::callbacks::MAX_RESPONSE_BODY;
use super::policy::CallbackPolicy;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One callback URL's connection.
pub(super) struct Conn {
    host: HostPort,
    /// Request line and fixed headers, up to (excluding) `Content-Length`.
    head: Bytes,
    stream: Option<TcpStream>,
    /// Set while [`Conn::post`] runs: a cancelled exchange (timeout) leaves
    /// the connection in an unknown state, so it is not reused.
    busy: bool,
    /// Queued request bytes not written yet.
    out: BytesMut,
    /// Response bytes read and not parsed yet.
    buf: Vec<u8>,
    /// Responses completed on the current connection.
    answered: u64,
    policy: Arc<CallbackPolicy>,
}

enum HostPort {
    Name(String, u16),
    Addr(std::net::SocketAddr),
}

/// Why an exchange failed.
#[derive(Debug)]
pub(super) enum PostError {
    /// A connection that had answered before ended exactly between two
    /// responses (the receiver closed it, idle or after an answer): the
    /// unanswered requests go again on a new connection, no backoff.
    Stale(String),
    Failed(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Stale(e) | PostError::Failed(e) => f.write_str(e),
        }
    }
}

/// One response read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answer {
    pub status: u16,
    /// False when the connection ends with this response (`Connection:
    /// close`, HTTP/1.0, a body up to the end, a body too long): it is then
    /// closed already, and requests queued after it were not answered.
    pub reusable: bool,
}

impl Conn {
    /// `None` unless `url` is plain `http` without credentials.
    pub fn for_url(url: &url::Url, policy: Arc<CallbackPolicy>) -> Option<Conn> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let port = url.port_or_known_default()?;
        let host = match url.host()? {
            url::Host::Domain(d) => HostPort::Name(d.to_string(), port),
            url::Host::Ipv4(a) => HostPort::Addr((a, port).into()),
            url::Host::Ipv6(a) => HostPort::Addr((a, port).into()),
        };
        let mut authority = url.host_str()?.to_string();
        if let Some(p) = url.port() {
            authority.push_str(&format!(":{p}"));
        }
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let target = if target.is_empty() { "/" } else { target };
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nAccept: application/json\r\nUser-Agent: mdo-manager\r\n"
        );
        Some(Conn {
            host,
            head: Bytes::from(head),
            stream: None,
            busy: false,
            out: BytesMut::new(),
            buf: Vec::new(),
            answered: 0,
            policy,
        })
    }

    /// Queues a POST of `body`, written by the next [`Conn::next_response`]
    /// together with the other queued ones.
    pub fn queue_request(&mut self, body: &[u8]) {
        self.out.put_slice(&self.head);
        self.out
            .put_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        self.out.put_slice(body);
    }

    /// Whether a connection is open (the next exchange does not connect).
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Drops the connection with everything queued or read on it.
    pub fn close(&mut self) {
        self.stream = None;
        self.out.clear();
        self.buf.clear();
        self.answered = 0;
    }

    /// POSTs `body` alone (nothing else in flight); the response status.
    /// Cancel-safe in the sense that a dropped call only costs the connection.
    pub async fn post(&mut self, body: &[u8]) -> Result<u16, PostError> {
        if self.busy || !self.out.is_empty() {
            self.close();
        }
        self.busy = true;
        self.queue_request(body);
        let mut result = self.next_response().await;
        if matches!(result, Err(PostError::Stale(_))) {
            self.close();
            self.queue_request(body);
            result = self.next_response().await;
        }
        self.busy = false;
        match result {
            Ok(answer) => {
                // Bytes nobody asked for: the connection is not trusted.
                if !self.buf.is_empty() {
                    self.close();
                }
                Ok(answer.status)
            }
            Err(e) => {
                self.close();
                Err(PostError::Failed(e.to_string()))
            }
        }
    }

    /// Connects when needed, writes what is queued and reads until the next
    /// response is complete. Cancel-safe: a dropped call loses no byte
    /// (what was not written stays queued, what was read stays buffered).
    /// After an error the caller closes the connection.
    pub async fn next_response(&mut self) -> Result<Answer, PostError> {
        loop {
            if let Some(answer) = self.parsed()? {
                return Ok(answer);
            }
            if self.stream.is_none() {
                self.connect().await?;
            }
            let Conn {
                stream, out, buf, ..
            } = self;
            let stream = stream.as_mut().expect("connected");
            let (mut rd, mut wr) = stream.split();
            buf.reserve(4096);
            let read = tokio::select! {
                r = rd.read_buf(buf) => r,
                w = wr.write_buf(out), if out.has_remaining() => match w {
                    Ok(_) => continue,
                    Err(e) => Err(e),
                },
            };
            let stale = self.answered > 0 && self.buf.is_empty();
            match read {
                Ok(0) => {
                    let msg = "connection closed before the response".to_string();
                    return Err(if stale {
                        PostError::Stale(msg)
                    } else {
                        PostError::Failed(msg)
                    });
                }
                Ok(_) => {}
                Err(e) if stale && is_disconnect(&e) => {
                    return Err(PostError::Stale(e.to_string()))
                }
                Err(e) => return Err(PostError::Failed(e.to_string())),
            }
        }
    }

    /// The next response if `buf` holds it whole (or enough of it).
    fn parsed(&mut self) -> Result<Option<Answer>, PostError> {
        loop {
            match parse_response(&self.buf).map_err(PostError::Failed)? {
                Parsed::Incomplete => break,
                Parsed::Informational(used) => {
                    self.buf.drain(..used);
                }
                Parsed::Done {
                    status,
                    keep_alive,
                    used,
                } => {
                    self.buf.drain(..used);
                    self.answered += 1;
                    if !keep_alive {
                        self.close();
                    }
                    return Ok(Some(Answer {
                        status,
                        reusable: keep_alive,
                    }));
                }
            }
        }
        if self.buf.len() > MAX_HEAD {
            match find(&self.buf, b"\r\n\r\n") {
                None => return Err(PostError::Failed("response head too large".into())),
                // The status is known; the rest of a long body is not read.
                Some(end) if self.buf.len() > end + 4 + MAX_RESPONSE_BODY => {
                    let status = status_of(&self.buf)?;
                    self.close();
                    return Ok(Some(Answer {
                        status,
                        reusable: false,
                    }));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// A new connection to an address the policy permits.
    async fn connect(&mut self) -> Result<(), PostError> {
        let addrs = match &self.host {
            HostPort::Name(h, p) => self.policy.resolve(h, *p).await,
            HostPort::Addr(a) => self.policy.check_addr(*a).await.map(|()| vec![*a]),
        }
        .map_err(PostError::Failed)?;
        let s = TcpStream::connect(&addrs[..])
            .await
            .map_err(|e| PostError::Failed(format!("connect: {e}")))?;
        let _ = s.set_nodelay(true);
        self.buf.clear();
        self.answered = 0;
        self.stream = Some(s);
        Ok(())
    }
}

/// The status of a response whose head is complete.
fn status_of(buf: &[u8]) -> Result<u16, PostError> {
    let line_end = find(buf, b"\r\n").unwrap_or(0);
    std::str::from_utf8(&buf[..line_end])
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| PostError::Failed("bad status line".into()))
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    Incomplete,
    /// A 1xx head of this many bytes (skipped).
    Informational(usize),
    /// A whole response of `used` bytes.
    Done {
        status: u16,
        keep_alive: bool,
        used: usize,
    },
}

/// Parses one response at the start of `buf` (Content-Length, chunked, or a
/// body up to the end of the connection, which is then not reused).
pub(super) fn parse_response(buf: &[u8]) -> Result<Parsed, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(Parsed::Incomplete);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(format!("bad status line {status_line:?}")),
    };
    if (100..200).contains(&status) {
        return Ok(Parsed::Informational(head_end));
    }
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?,
                )
            }
            "transfer-encoding" => {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
            }
            "connection" => {
                for token in value.split(',') {
                    let token = token.trim();
                    if token.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
            _ => {}
        }
    }
    if status == 204 || status == 304 {
        return Ok(Parsed::Done {
            status,
            keep_alive,
            used: head_end,
        });
    }
    if chunked {
        return Ok(match chunked_end(buf, head_end)? {
            Some(used) => Parsed::Done {
                status,
                keep_alive,
                used,
            },
            None => Parsed::Incomplete,
        });
    }
    match length {
        Some(len) if buf.len() >= head_end + len => Ok(Parsed::Done {
            status,
            keep_alive,
            used: head_end + len,
        }),
        Some(_) => Ok(Parsed::Incomplete),
        // The body lasts until the connection closes: the status is all we
        // need; the connection is dropped.
        None => Ok(Parsed::Done {
            status,
            keep_alive: false,
            used: buf.len(),
        }),
    }
}

/// The end of a chunked body starting at `at`, if complete.
fn chunked_end(buf: &[u8], mut at: usize) -> Result<Option<usize>, String> {
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[at..at + eol]);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        at += eol + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(status: u16, keep_alive: bool, used: usize) -> Parsed {
        Parsed::Done {
            status,
            keep_alive,
            used,
        }
    }

    #[test]
    fn content_length_responses() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_response(r).unwrap(), done(200, true, r.len()));
        for cut in 0..r.len() {
            assert_eq!(parse_response(&r[..cut]).unwrap(), Parsed::Incomplete);
        }
        let r = b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), done(500, false, r.len()));
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), done(200, false, r.len()));
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), done(200, true, r.len()));
    }

    #[test]
    fn chunked_informational_and_unframed_responses() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), done(200, true, r.len()));
        for cut in 0..r.len() {
            assert_eq!(parse_response(&r[..cut]).unwrap(), Parsed::Incomplete);
        }
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert_eq!(parse_response(r).unwrap(), Parsed::Informational(25));
        let r = b"HTTP/1.1 200 OK\r\n\r\npartial";
        assert_eq!(parse_response(r).unwrap(), done(200, false, r.len()));
        let r = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), done(204, true, r.len()));
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn pipelined_responses_parse_one_after_another() {
        let answers: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n4\r\nnope\r\n0\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ];
        let all = answers.concat();
        let mut at = 0;
        let mut got = Vec::new();
        while at < all.len() {
            match parse_response(&all[at..]).unwrap() {
                Parsed::Informational(used) => at += used,
                Parsed::Done {
                    status,
                    keep_alive,
                    used,
                } => {
                    got.push((status, keep_alive));
                    at += used;
                }
                Parsed::Incomplete => panic!("incomplete at {at}"),
            }
        }
        assert_eq!(got, [(200, true), (204, true), (500, true), (201, false)]);
    }

    /// A listener that reads `n` requests before answering any, then writes
    /// `answers` in one go and closes: what it read, as text.
    async fn holding_server(
        n: usize,
        answers: &'static [u8],
    ) -> (url::Url, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cb", l.local_addr().unwrap())
            .parse()
            .unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            while String::from_utf8_lossy(&got).matches("POST /cb").count() < n
                || !got.ends_with(b"}")
            {
                let mut chunk = [0u8; 4096];
                let k = s.read(&mut chunk).await.unwrap();
                assert!(k > 0, "closed early");
                got.extend_from_slice(&chunk[..k]);
            }
            s.write_all(answers).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        (url, task)
    }

    fn conn(url: &url::Url) -> Conn {
        Conn::for_url(url, Arc::new(CallbackPolicy::default())).unwrap()
    }

    #[tokio::test]
    async fn requests_go_out_together_and_answers_come_in_order() {
        let (url, server) = holding_server(
            3,
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 503 No\r\ncontent-length: 0\r\n\r\nHTTP/1.1 202 OK\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let mut c = conn(&url);
        for body in [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#] {
            c.queue_request(body.as_bytes());
        }
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let a = c.next_response().await.unwrap();
            assert!(a.reusable);
            statuses.push(a.status);
        }
        assert_eq!(statuses, [200, 503, 202]);
        let sent = server.await.unwrap();
        let bodies: Vec<&str> = sent.split("\r\n\r\n").skip(1).map(|b| &b[..7]).collect();
        assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
        // The server closed between two responses: stale, not failed.
        c.queue_request(b"{}");
        assert!(matches!(c.next_response().await, Err(PostError::Stale(_))));
    }

    #[tokio::test]
    async fn a_closing_answer_ends_the_connection_and_a_fresh_one_that_breaks_fails() {
        let (url, server) = holding_server(
            2,
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        let mut c = conn(&url);
        c.queue_request(b"{}");
        c.queue_request(b"{}");
        let a = c.next_response().await.unwrap();
        assert_eq!((a.status, a.reusable), (200, false));
        assert!(c.stream.is_none() && c.out.is_empty());
        server.await.unwrap();
        // A new connection that ends before any answer is a failure.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: url::Url = format!("http://{}/cb", l.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = tokio::spawn(async move { drop(l.accept().await.unwrap()) });
        let mut c = conn(&url);
        c.queue_request(b"{}");
        assert!(matches!(c.next_response().await, Err(PostError::Failed(_))));
        server.await.unwrap();
    }

    #[test]
    fn request_head_per_url() {
        let p = Arc::new(CallbackPolicy::default());
        let c = Conn::for_url(
            &"http://h.example:8080/cb?a=1#frag".parse().unwrap(),
            p.clone(),
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&c.head).unwrap(),
            "POST /cb?a=1 HTTP/1.1\r\nHost: h.example:8080\r\nContent-Type: application/json\r\nAccept: application/json\r\nUser-Agent: mdo-manager\r\n"
        );
        let c = Conn::for_url(&"http://[::1]".parse().unwrap(), p.clone()).unwrap();
        assert!(std::str::from_utf8(&c.head)
            .unwrap()
            .starts_with("POST / HTTP/1.1\r\nHost: [::1]\r\n"));
        assert!(Conn::for_url(&"https://h/cb".parse().unwrap(), p.clone()).is_none());
        assert!(Conn::for_url(&"http://u:p@h/cb".parse().unwrap(), p).is_none());
    }
}
