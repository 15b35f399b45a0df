//! Callback sender benchmark (issue 13): the manager's sender of one callback
//! URL (`manager::events::CallbackSender` on its own HTTP/1.1 client,
//! `events/http1.rs`: one kept-alive connection, one POST at a time, the
//! response read before the next) against two `hyper` 1.x clients with the
//! same keep-alive, POSTing the same bodies to the same kind of local
//! receiver in the same run: hyper's client connection API (one connection
//! of its own, its connection task spawned, as a sender built on hyper
//! would be) and `hyper-util`'s legacy pooled `Client` (the raw baseline).
//!
//! `--senders K` runs K URLs at once (each its own receiver and connection),
//! as the manager does for K subscribed URLs. Rounds of `--round` POSTs
//! alternate between the clients, so the machine's load falls on both alike.
//! Latency of one POST = request written to response read; throughput = POSTs
//! per second of the wall time of a client's rounds.
//!
//! ```text
//! cargo build --release -p bench --bin callback_bench
//! target/release/callback_bench --posts 20000 --senders 1
//! target/release/callback_bench --posts 20000 --senders 10
//! ```

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bench::{report, report_latency, Stats};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use manager::events::{CallbackSender, EventsConfig};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// POSTs per sender and client.
    #[arg(long, default_value_t = 20_000)]
    posts: usize,
    /// URLs delivered to at once.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// POSTs per round (clients alternate round by round).
    #[arg(long, default_value_t = 1_000)]
    round: usize,
}

/// A `status_update_event` as the manager POSTs it.
const BODY: &str = r#"{"appId":"/bench-events/app-07","eventType":"status_update_event","host":"127.0.0.1","ipAddresses":[{"ipAddress":"127.0.0.1","protocol":"IPv4"}],"message":"","ports":[31001],"slaveId":"node-1","taskId":"bench-events_app-07.marathon-4f0c2a1e-9b7d-4c1e-8a55-0d6f1b2c3d4e._app.1","taskStatus":"TASK_RUNNING","timestamp":"2026-12-06T15:00:00.123Z","version":"2026-12-06T14:59:59.000Z"}"#;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// The manager's sender (`events/http1.rs`).
    Manager,
    /// hyper's client connection API, one connection.
    HyperConn,
    /// Raw baseline: hyper-util's legacy pooled client.
    Legacy,
}

enum Client {
    Manager(CallbackSender),
    HyperConn {
        addr: String,
        url: hyper::Uri,
        send: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    },
    Legacy {
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            Full<Bytes>,
        >,
        url: hyper::Uri,
    },
}

fn request(url: &hyper::Uri, body: &Bytes) -> Result<hyper::Request<Full<Bytes>>> {
    Ok(hyper::Request::post(url.clone())
        .header(
            hyper::header::HOST,
            url.authority().map_or("", |a| a.as_str()),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json")
        .body(Full::new(body.clone()))?)
}

/// The status of a response, its body read to the end.
async fn read(resp: hyper::Response<hyper::body::Incoming>) -> Result<()> {
    let status = resp.status();
    resp.into_body().collect().await?;
    if !status.is_success() {
        bail!("status {status}");
    }
    Ok(())
}

impl Client {
    fn new(kind: Kind, url: &str) -> Result<Client> {
        let cfg = EventsConfig::default();
        Ok(match kind {
            Kind::Manager => Client::Manager(CallbackSender::new(url, &cfg)),
            Kind::HyperConn => {
                let url: hyper::Uri = url.parse()?;
                Client::HyperConn {
                    addr: url.authority().map_or("", |a| a.as_str()).to_string(),
                    url,
                    send: None,
                }
            }
            Kind::Legacy => {
                let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
                http.set_nodelay(true);
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build(http);
                Client::Legacy {
                    client,
                    url: url.parse()?,
                }
            }
        })
    }

    async fn post(&mut self, body: &Bytes) -> Result<()> {
        match self {
            Client::Manager(s) => s.post(body).await.map_err(anyhow::Error::msg),
            Client::HyperConn { addr, url, send } => {
                if send.as_ref().is_none_or(|s| s.is_closed()) {
                    let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
                    stream.set_nodelay(true)?;
                    let (s, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await?;
                    tokio::spawn(conn);
                    *send = Some(s);
                }
                let s = send.as_mut().expect("connected");
                s.ready().await?;
                let resp = tokio::time::timeout(
                    Duration::from_secs(10),
                    s.send_request(request(url, body)?),
                )
                .await??;
                read(resp).await
            }
            Client::Legacy { client, url } => {
                let resp = tokio::time::timeout(
                    Duration::from_secs(10),
                    client.request(request(url, body)?),
                )
                .await??;
                read(resp).await
            }
        }
    }
}

/// One round of `n` POSTs on each sender at once: (latencies, wall time).
async fn round(
    clients: &mut [Client],
    n: usize,
    body: &Bytes,
) -> Result<(Vec<Duration>, Duration)> {
    let t0 = Instant::now();
    let runs = clients.iter_mut().map(|c| async move {
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            c.post(body).await?;
            lat.push(t.elapsed());
        }
        anyhow::Ok(lat)
    });
    let mut all = Vec::new();
    for lat in futures::future::join_all(runs).await {
        all.extend(lat?);
    }
    Ok((all, t0.elapsed()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let kinds = [Kind::Manager, Kind::HyperConn, Kind::Legacy];
    let mut urls = Vec::new();
    for _ in 0..args.senders {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        urls.push(format!(
            "http://127.0.0.1:{}/callback",
            listener.local_addr()?.port()
        ));
        tokio::spawn(bench::receiver::serve(listener, None));
    }
    let mut clients: Vec<Vec<Client>> = Vec::new();
    for kind in kinds {
        clients.push(
            urls.iter()
                .map(|u| Client::new(kind, u))
                .collect::<Result<_>>()?,
        );
    }
    let body = Bytes::from_static(BODY.as_bytes());
    // Warm-up: connections open, allocators warm.
    for c in &mut clients {
        round(c, 100, &body).await?;
    }
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let mut wall = vec![Duration::ZERO; kinds.len()];
    let mut done = 0;
    while done < args.posts {
        let n = args.round.min(args.posts - done);
        for (i, c) in clients.iter_mut().enumerate() {
            let (l, w) = round(c, n, &body).await?;
            lat[i].extend(l);
            wall[i] += w;
        }
        done += n;
    }
    let stats: Vec<Stats> = lat.iter().map(|l| Stats::of(l)).collect();
    let rate = |i: usize| (args.posts * args.senders) as f64 / wall[i].as_secs_f64();
    println!(
        "{} POSTs of {} bytes per client on each of {} URL(s), rounds of {}; raw = hyper-util legacy Client",
        args.posts,
        BODY.len(),
        args.senders,
        args.round
    );
    for (i, kind) in kinds.iter().enumerate() {
        println!(
            "  {kind:?}: p50 {} p99 {} max {} mean {}, {:.0} POSTs/s",
            bench::ms(stats[i].p50),
            bench::ms(stats[i].p99),
            bench::ms(stats[i].max),
            bench::ms(stats[i].mean),
            rate(i)
        );
    }
    let k = args.senders;
    report_latency(
        &format!("POST, {k} URL(s), manager http1.rs (raw: hyper legacy)"),
        &stats[0],
        &stats[2],
    );
    report_latency(
        &format!("POST, {k} URL(s), manager http1.rs (raw: hyper conn)"),
        &stats[0],
        &stats[1],
    );
    report(
        &format!("POSTs/s, {k} URL(s), manager http1.rs (raw: hyper legacy)"),
        rate(0),
        rate(2),
        "/s",
    );
    report(
        &format!("POSTs/s, {k} URL(s), manager http1.rs (raw: hyper conn)"),
        rate(0),
        rate(1),
        "/s",
    );
    Ok(())
}
