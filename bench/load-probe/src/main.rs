//! A closed-loop HTTP/1.1 load generator that keeps going through a server restart and
//! counts answers per time bucket (`scripts/bench/cold-start.sh`).
//!
//! Each of `--connections` keep-alive connections sends `GET <path>` with the given headers,
//! waits for the whole answer, and sends the next. When the server goes away (connection
//! refused, reset or closed) the connection is opened again every `--retry-ms` until the
//! server is back or the time is up. Every answer is counted in the bucket (`--bucket-ms`,
//! default 100 ms) in which it completed: 2xx as `ok`, any other status as `other`; failed
//! connects and broken connections as `errors`.
//!
//! ```sh
//! load-probe --url http://127.0.0.1:8080/v1/profile --header 'authorization: Bearer …' \
//!   --connections 64 --seconds 20 --out buckets.csv
//! ```
//!
//! `--stop-file PATH` ends the run early, at the first bucket boundary after PATH exists.
//!
//! Output (`--out`, else standard output): CSV `start_unix_s,ok,other,errors`, one row per
//! bucket from the probe's start; the bucket's start is wall-clock time (Unix seconds, µs
//! precision) so that it can be compared with timestamps taken by the calling script.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    addr: String,
    request: Vec<u8>,
    connections: usize,
    seconds: u64,
    bucket_ms: u64,
    retry_ms: u64,
    threads: usize,
    out: Option<String>,
    stop_file: Option<String>,
}

fn usage(message: &str) -> ! {
    eprintln!("load-probe: {message}");
    eprintln!(
        "usage: load-probe --url http://HOST:PORT/PATH [--header 'name: value']... [--connections 64] \
         [--seconds 20] [--bucket-ms 100] [--retry-ms 5] [--threads 1] [--out FILE] [--stop-file FILE]"
    );
    std::process::exit(2);
}

fn parse_options() -> Options {
    let mut args = std::env::args().skip(1);
    let (mut url, mut headers, mut out, mut stop_file) = (None, Vec::new(), None, None);
    let (mut connections, mut seconds, mut bucket_ms, mut retry_ms, mut threads) = (64, 20, 100, 5, 1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| v.parse::<u64>().unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")));
        match flag.as_str() {
            "--url" => url = Some(value),
            "--header" => headers.push(value),
            "--connections" => connections = number(&value) as usize,
            "--seconds" => seconds = number(&value),
            "--bucket-ms" => bucket_ms = number(&value).max(1),
            "--retry-ms" => retry_ms = number(&value),
            "--threads" => threads = number(&value).max(1) as usize,
            "--out" => out = Some(value),
            "--stop-file" => stop_file = Some(value),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    let url = url.unwrap_or_else(|| usage("--url is required"));
    let rest = url.strip_prefix("http://").unwrap_or_else(|| usage("only http:// URLs"));
    let (addr, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for header in &headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    Options {
        addr: addr.to_owned(),
        request: request.into_bytes(),
        connections: connections.max(1),
        seconds,
        bucket_ms,
        retry_ms,
        threads,
        out,
        stop_file,
    }
}

/// Per-bucket counters.
struct Counts {
    start: Instant,
    bucket: Duration,
    ok: Vec<AtomicU64>,
    other: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
}

impl Counts {
    fn new(buckets: usize, bucket: Duration) -> Self {
        let zeros = || (0..buckets).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self { start: Instant::now(), bucket, ok: zeros(), other: zeros(), errors: zeros() }
    }

    fn add(&self, which: &[AtomicU64]) {
        let i = (self.start.elapsed().as_nanos() / self.bucket.as_nanos()) as usize;
        if let Some(slot) = which.get(i) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where the header block ends (the index just past `\r\n\r\n`).
fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// One answer read from `stream`: its status, and whether the server will close the connection.
/// `buf` keeps whatever was read past the answer.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let broken = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = header_end(buf) {
            break end;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| broken("no status"))?;
    let header = |name: &str| {
        head.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_owned()))
    };
    let close = header("connection").is_some_and(|v| v == "close");
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Enough for small answers: read until the last chunk.
        loop {
            if let Some(i) = buf[end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                buf.drain(..end + i + 5);
                return Ok((status, close));
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..end + length);
    Ok((status, close))
}

async fn connection(options: Arc<Options>, counts: Arc<Counts>) {
    let retry = Duration::from_millis(options.retry_ms);
    loop {
        let Ok(mut stream) = TcpStream::connect(&options.addr).await else {
            counts.add(&counts.errors);
            tokio::time::sleep(retry).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut buf = Vec::with_capacity(4096);
        loop {
            if stream.write_all(&options.request).await.is_err() {
                counts.add(&counts.errors);
                break;
            }
            match read_answer(&mut stream, &mut buf).await {
                Ok((status, close)) => {
                    counts.add(if (200..300).contains(&status) { &counts.ok } else { &counts.other });
                    if close {
                        break;
                    }
                }
                Err(_) => {
                    counts.add(&counts.errors);
                    break;
                }
            }
        }
        tokio::time::sleep(retry).await;
    }
}

fn main() {
    let options = Arc::new(parse_options());
    let bucket = Duration::from_millis(options.bucket_ms);
    let buckets = (options.seconds * 1000).div_ceil(options.bucket_ms) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("runtime: {e}")));
    let wall_start = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let counts = Arc::new(Counts::new(buckets, bucket));
    runtime.block_on(async {
        for _ in 0..options.connections {
            tokio::spawn(connection(Arc::clone(&options), Arc::clone(&counts)));
        }
        let deadline = counts.start + Duration::from_secs(options.seconds);
        while Instant::now() < deadline {
            if options.stop_file.as_deref().is_some_and(|path| std::path::Path::new(path).exists()) {
                break;
            }
            tokio::time::sleep(bucket.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    });
    // Only the buckets that were run.
    let buckets = (counts.start.elapsed().as_millis() as u64).div_ceil(options.bucket_ms).min(buckets as u64) as usize;
    runtime.shutdown_background();

    let mut text = String::from("start_unix_s,ok,other,errors\n");
    for i in 0..buckets {
        let at = wall_start + (i as f64) * bucket.as_secs_f64();
        let get = |v: &[AtomicU64]| v[i].load(Ordering::Relaxed);
        text.push_str(&format!("{at:.6},{},{},{}\n", get(&counts.ok), get(&counts.other), get(&counts.errors)));
    }
    let written = match &options.out {
        Some(path) => std::fs::write(path, text),
        None => std::io::stdout().write_all(text.as_bytes()),
    };
    if let Err(error) = written {
        eprintln!("load-probe: cannot write the counts: {error}");
        std::process::exit(1);
    }
}
