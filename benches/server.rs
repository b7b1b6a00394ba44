//! The SDK's server against a bare hyper server, under the same daemon-like
//! load on Unix sockets.
//!
//! Two endpoints are measured: `POST /VolumeDriver.Get` (answered by a
//! trivial in-memory driver) and `POST /Plugin.Activate`, each at 1 and at 64
//! concurrent keep-alive connections with one request in flight per
//! connection. Two servers answer them:
//!
//! - `sdk`: `Plugin::new().volume(driver)` served by `Plugin::serve`;
//! - `bare`: a hyper 1.x HTTP/1.1 server that reads the request and answers
//!   with the very bytes the SDK answered (captured once at start-up) and
//!   the same `Content-Type`. It is the floor: the least any correct server
//!   of this protocol does.
//!
//! Both servers run on one Tokio runtime (multi-thread, one worker by
//! default); the load generator runs on its own current-thread runtime on
//! the main thread and writes the bytes the daemon's Go client writes. Every
//! answer is checked (status 200, content type, body) and errors are counted.
//!
//! Each run warms up, then measures. A round is one bare and one sdk run,
//! back to back, in alternating order (bare, sdk, sdk, bare, ...) so that
//! drift hits both alike. Other processes skew the numbers, so the CPU time
//! of everything else on the machine is read from `/proc` (Linux only)
//! during each run; a round in which it exceeded a quarter of a core is
//! disturbed and run again, at most twice per case. The tables show
//! medians over the undisturbed rounds (over all rounds if none was):
//! requests per second, p50 and p99 latency, the server threads' CPU time
//! per request and the CPU use of server, load generator and the rest;
//! then the sdk/bare ratios against the targets (throughput >= 0.90, p99
//! <= 1.20). A miss is reported, not failed; only wrong answers make the
//! run exit non-zero.
//!
//! Run it with `cargo bench --bench server`: about a minute after the
//! build, at most 100 s when rounds are repeated. Environment variables
//! tune it: `BENCH_SECS` (measured seconds per run, default 2),
//! `BENCH_WARMUP_MS` (500), `BENCH_ROUNDS` (undisturbed rounds wanted per
//! case, 3), `BENCH_RETRIES` (extra rounds allowed per case, 2),
//! `BENCH_MAX_OTHER` (percent of a core, 25), `BENCH_CONCURRENCY`
//! (`1,64`), `BENCH_SERVER_THREADS` (1) and `BENCH_LOG` (unset: no
//! `tracing` subscriber; `info` installs one with that filter, writing to
//! a sink). Under `cargo test --benches` it makes one short pass instead,
//! as a smoke test.

use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use docker_plugin_sdk::handshake::MEDIA_TYPE;
use docker_plugin_sdk::volume::{
    CreateRequest, GetRequest, MountRequest, PathRequest, RemoveRequest, UnmountRequest, Volume,
    VolumeDriver,
};
use docker_plugin_sdk::{DriverError, Plugin, async_trait};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// Lowest acceptable sdk/bare throughput ratio.
const THROUGHPUT_TARGET: f64 = 0.90;

/// Highest acceptable sdk/bare p99 latency ratio.
const P99_TARGET: f64 = 1.20;

fn main() {
    let settings = Settings::from_env();
    settings.print();
    install_log_subscriber();
    let dir = tempfile::tempdir().expect("a temporary directory for the sockets");

    // Both servers share one runtime, so they get the same configuration;
    // the load generator gets its own runtime on this thread.
    let server_threads = ThreadSet::default();
    let server_rt = {
        let threads = server_threads.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.server_threads)
            .thread_name("bench-server")
            .enable_all()
            .on_thread_start(move || threads.add_current())
            .build()
            .expect("the server runtime")
    };
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the load generator runtime");
    let client_threads = ThreadSet::default();
    client_threads.add_current();

    // The SDK server, stopped through its shutdown future at the end.
    let sdk_socket = dir.path().join("sdk.sock");
    let (stop_sdk, sdk_stop) = oneshot::channel::<()>();
    let sdk_task = {
        let _context = server_rt.enter();
        let listener = UnixListener::bind(&sdk_socket).expect("binding the SDK socket");
        let plugin = Plugin::new()
            .volume(InMemory::new())
            .shutdown_grace(Duration::from_secs(1));
        server_rt.spawn(plugin.serve(listener, async {
            let _ = sdk_stop.await;
        }))
    };

    // What the SDK answers is what the bare server will answer, byte for byte.
    let expected: Vec<Bytes> = ENDPOINTS
        .iter()
        .map(|endpoint| capture(&client_rt, &sdk_socket, endpoint))
        .collect();
    for (endpoint, body) in ENDPOINTS.iter().zip(&expected) {
        println!("{}: {}", endpoint.name, String::from_utf8_lossy(body));
    }
    println!();

    // The bare server, on the same runtime.
    let bare_socket = dir.path().join("bare.sock");
    let (stop_bare, bare_stop) = oneshot::channel::<()>();
    let bare_task = {
        let _context = server_rt.enter();
        let listener = UnixListener::bind(&bare_socket).expect("binding the bare socket");
        let answers = ENDPOINTS
            .iter()
            .zip(&expected)
            .map(|(endpoint, body)| (format!("/{}", endpoint.name), body.clone()))
            .collect();
        server_rt.spawn(serve_bare(listener, Arc::new(answers), bare_stop))
    };

    // Every (endpoint, concurrency) case, bare and sdk runs interleaved.
    let bench = Bench {
        client_rt,
        bare_socket,
        sdk_socket,
        clocks: Clocks {
            server: server_threads,
            client: client_threads,
        },
        settings,
    };
    let mut cases = Vec::new();
    for (endpoint, body) in ENDPOINTS.iter().zip(&expected) {
        for &concurrency in &bench.settings.concurrency {
            cases.push(bench.measure(endpoint, body, concurrency));
        }
    }

    // Stop both servers and wait for them.
    let _ = stop_sdk.send(());
    let _ = stop_bare.send(());
    server_rt.block_on(async {
        let sdk = sdk_task.await.expect("the SDK server task panicked");
        sdk.expect("the SDK server failed");
        bare_task.await.expect("the bare server task panicked");
    });
    server_rt.shutdown_timeout(Duration::from_secs(1));

    let errors = report(&cases);
    if errors > 0 {
        eprintln!("{errors} requests got a wrong answer or failed: the numbers are not valid");
        std::process::exit(1);
    }
}

/// With `BENCH_LOG` set (e.g. `info`), installs a `tracing` subscriber with
/// that filter, as a plugin would, writing to nowhere: its cost shows in the
/// SDK's numbers.
fn install_log_subscriber() {
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(&filter))
            .with_writer(io::sink)
            .init();
        println!("tracing subscriber installed with filter {filter:?}, writing to a sink");
    }
}

/// How long and how hard to run.
struct Settings {
    warmup: Duration,
    measure: Duration,
    /// Undisturbed rounds (one bare and one sdk run each) wanted per case.
    rounds: usize,
    /// Extra rounds allowed per case to replace disturbed ones.
    retries: usize,
    /// Other processes' CPU use (share of one core) above which a run is
    /// disturbed.
    max_other: f64,
    concurrency: Vec<usize>,
    server_threads: usize,
    smoke: bool,
}

impl Settings {
    fn from_env() -> Self {
        // `cargo bench` passes `--bench`; `cargo test` does not.
        let smoke = !std::env::args().any(|arg| arg == "--bench");
        let concurrency = std::env::var("BENCH_CONCURRENCY")
            .ok()
            .map(|list| {
                list.split(',')
                    .map(|n| n.trim().parse().expect("BENCH_CONCURRENCY: numbers"))
                    .filter(|&n| n > 0)
                    .collect()
            })
            .unwrap_or_else(|| vec![1, 64]);
        let server_threads = env_or("BENCH_SERVER_THREADS", 1).max(1);
        let max_other = env_or("BENCH_MAX_OTHER", 25.0) / 100.0;
        if smoke {
            return Self {
                warmup: Duration::from_millis(50),
                measure: Duration::from_millis(200),
                rounds: 1,
                retries: 0,
                max_other,
                concurrency,
                server_threads,
                smoke,
            };
        }
        Self {
            warmup: Duration::from_millis(env_or("BENCH_WARMUP_MS", 500)),
            measure: Duration::from_secs_f64(env_or("BENCH_SECS", 2.0)),
            rounds: env_or("BENCH_ROUNDS", 3).max(1),
            retries: env_or("BENCH_RETRIES", 2),
            max_other,
            concurrency,
            server_threads,
            smoke,
        }
    }

    fn print(&self) {
        println!(
            "{}server runtime: multi-thread, {} worker(s); load generator: current-thread \
             runtime on its own thread",
            if self.smoke { "smoke pass; " } else { "" },
            self.server_threads
        );
        println!(
            "per run: {} ms warm-up, {:.1} s measured; {} round(s) of bare/sdk runs per \
             case, up to {} more",
            self.warmup.as_millis(),
            self.measure.as_secs_f64(),
            self.rounds,
            self.retries
        );
        println!(
            "a round is disturbed, and replaced while retries last, when other processes \
             use > {:.0}% of a core",
            self.max_other * 100.0
        );
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: cannot parse {value:?}")),
        Err(_) => default,
    }
}

/// One endpoint and the body the daemon sends to it.
struct Endpoint {
    name: &'static str,
    body: &'static [u8],
}

const ENDPOINTS: [Endpoint; 2] = [
    Endpoint {
        name: "VolumeDriver.Get",
        body: b"{\"Name\":\"v1\"}\n",
    },
    Endpoint {
        name: "Plugin.Activate",
        body: b"",
    },
];

impl Endpoint {
    /// The request as the daemon's Go client writes it.
    fn request(&self) -> Vec<u8> {
        let mut request = format!(
            "POST /{} HTTP/1.1\r\n\
             Host: plugin.moby.localhost\r\n\
             User-Agent: Go-http-client/1.1\r\n\
             Content-Length: {}\r\n\
             Accept: {MEDIA_TYPE}\r\n\
             \r\n",
            self.name,
            self.body.len()
        )
        .into_bytes();
        request.extend_from_slice(self.body);
        request
    }
}

/// A volume driver that knows one volume, kept in memory.
struct InMemory {
    volume: Volume,
}

impl InMemory {
    fn new() -> Self {
        let mut status = serde_json::Map::new();
        status.insert("backend".into(), "memory".into());
        status.insert("size_bytes".into(), 1_048_576.into());
        let volume = Volume {
            name: "v1".into(),
            mountpoint: Some("/var/lib/bench-plugin/volumes/v1".into()),
            created_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045)),
            status: Some(status),
        };
        Self { volume }
    }

    fn known(&self, name: &str) -> Result<&Volume, DriverError> {
        if name == self.volume.name {
            Ok(&self.volume)
        } else {
            Err(DriverError::not_found(format!("no volume {name:?}")))
        }
    }
}

#[async_trait]
impl VolumeDriver for InMemory {
    async fn create(&self, _: CreateRequest) -> Result<(), DriverError> {
        Ok(())
    }

    async fn remove(&self, req: RemoveRequest) -> Result<(), DriverError> {
        self.known(&req.name).map(drop)
    }

    async fn mount(&self, req: MountRequest) -> Result<PathBuf, DriverError> {
        let volume = self.known(&req.name)?;
        Ok(volume.mountpoint.clone().unwrap_or_default())
    }

    async fn unmount(&self, req: UnmountRequest) -> Result<(), DriverError> {
        self.known(&req.name).map(drop)
    }

    async fn path(&self, req: PathRequest) -> Result<Option<PathBuf>, DriverError> {
        Ok(self.known(&req.name)?.mountpoint.clone())
    }

    async fn get(&self, req: GetRequest) -> Result<Volume, DriverError> {
        self.known(&req.name).cloned()
    }

    async fn list(&self) -> Result<Vec<Volume>, DriverError> {
        Ok(vec![self.volume.clone()])
    }
}

/// Asks the SDK server once and returns the body it answered with.
fn capture(client_rt: &Runtime, socket: &Path, endpoint: &Endpoint) -> Bytes {
    client_rt.block_on(async {
        let mut io = UnixStream::connect(socket)
            .await
            .expect("connecting to the SDK server");
        let mut buf = Vec::with_capacity(4096);
        io.write_all(&endpoint.request())
            .await
            .expect("sending to the SDK server");
        let head_len = read_response(&mut io, &mut buf)
            .await
            .expect("an answer from the SDK server");
        let (head, body) = buf.split_at(head_len);
        assert!(
            head.starts_with(b"HTTP/1.1 200 ") && content_type_is_ours(head),
            "{}: unexpected answer from the SDK:\n{}",
            endpoint.name,
            String::from_utf8_lossy(&buf)
        );
        Bytes::copy_from_slice(body)
    })
}

/// The fixed answers of the bare server: request path and body.
type Answers = Vec<(String, Bytes)>;

/// Serves HTTP/1.1 with hyper and nothing else until `stop` fires.
async fn serve_bare(
    listener: UnixListener,
    answers: Arc<Answers>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let io = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((io, _)) => io,
                Err(err) => {
                    eprintln!("bare server: accept failed: {err}");
                    continue;
                }
            },
        };

        let answers = Arc::clone(&answers);
        let service = hyper::service::service_fn(move |req| bare_answer(Arc::clone(&answers), req));
        tokio::spawn(async move {
            // A client closing its connection ends this; errors show up on
            // the client side, where they are counted.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}

async fn bare_answer(
    answers: Arc<Answers>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let (body, status) = match answers.iter().find(|(known, _)| known == path) {
        Some((_, body)) => (body.clone(), StatusCode::OK),
        None => (
            Bytes::from_static(b"{\"Err\":\"no such endpoint\"}"),
            StatusCode::NOT_FOUND,
        ),
    };

    // Any real server reads the request body, so this one does too.
    let _ = req.into_body().collect().await;

    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    Ok(response)
}

#[derive(Clone, Copy)]
enum Server {
    Bare,
    Sdk,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Sdk => "sdk",
        }
    }

    /// This server's run in `round`.
    fn of(self, round: &Round) -> &Run {
        match self {
            Self::Bare => &round.bare,
            Self::Sdk => &round.sdk,
        }
    }
}

/// Everything a run needs: where the servers listen, the load generator's
/// runtime, the clocks and the settings.
struct Bench {
    client_rt: Runtime,
    bare_socket: PathBuf,
    sdk_socket: PathBuf,
    clocks: Clocks,
    settings: Settings,
}

impl Bench {
    /// Runs one (endpoint, concurrency) case: rounds of a bare and an sdk
    /// run in alternating order (bare, sdk, sdk, bare, ...), so that slow
    /// drift in the machine's speed hits both alike, until enough rounds
    /// were undisturbed or the retries for this case are used up.
    fn measure(&self, endpoint: &Endpoint, expected: &Bytes, concurrency: usize) -> Case {
        let load = Load {
            request: endpoint.request().into(),
            expected: expected.to_vec().into(),
            concurrency,
        };
        let max_other = self.settings.max_other;
        let mut case = Case::new(endpoint.name, concurrency, max_other);

        for round in 0..self.settings.rounds + self.settings.retries {
            if case.clean_rounds().count() >= self.settings.rounds {
                break;
            }

            // Even rounds run bare first, odd rounds sdk first.
            let bare_first = round % 2 == 0;
            let order = if bare_first {
                [Server::Bare, Server::Sdk]
            } else {
                [Server::Sdk, Server::Bare]
            };
            let [first, second] = order.map(|server| self.run(server, &load));
            let (bare, sdk) = if bare_first {
                (first, second)
            } else {
                (second, first)
            };
            let round = Round { bare, sdk };
            let note = if round.is_clean(max_other) {
                ""
            } else {
                "  (disturbed)"
            };
            for (server, run) in round.runs() {
                println!(
                    "{:<16} c={:<3} {:<4} {:>7.0} req/s  p50 {:>6.1} µs  p99 {:>6.1} µs  \
                     other {:>4}  errors {}{note}",
                    endpoint.name,
                    concurrency,
                    server.label(),
                    run.rps,
                    run.p50_us,
                    run.p99_us,
                    percent(run.other_load),
                    run.errors
                );
            }
            case.rounds.push(round);
        }
        case
    }

    fn run(&self, server: Server, load: &Load) -> Run {
        let socket = match server {
            Server::Bare => &self.bare_socket,
            Server::Sdk => &self.sdk_socket,
        };
        self.client_rt
            .block_on(run_once(socket, load, &self.settings, &self.clocks))
    }
}

/// What the load generator sends, what it expects back, and how many
/// connections it keeps busy.
struct Load {
    request: Arc<[u8]>,
    expected: Arc<[u8]>,
    concurrency: usize,
}

/// The time span of one run whose requests are measured.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

/// The outcome of one run against one server.
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Server threads' CPU time per measured request.
    server_cpu_us: Option<f64>,
    /// Server threads' CPU time over the window's length (1.0 is one core).
    server_load: Option<f64>,
    /// The same for the load generator's thread.
    client_load: Option<f64>,
    /// The same for everything else on the machine: noise.
    other_load: Option<f64>,
    errors: u64,
    first_error: Option<String>,
}

/// Warms up, then measures, `load.concurrency` connections to `socket`.
async fn run_once(socket: &Path, load: &Load, settings: &Settings, clocks: &Clocks) -> Run {
    let mut connections = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        let io = UnixStream::connect(socket)
            .await
            .expect("connecting to the server under test");
        connections.push(io);
    }

    let measure_from = Instant::now() + settings.warmup;
    let window = Window {
        measure_from,
        end: measure_from + settings.measure,
    };
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|io| {
            let conn = Connection {
                socket: socket.to_owned(),
                request: Arc::clone(&load.request),
                expected: Arc::clone(&load.expected),
                window,
            };
            tokio::spawn(conn.drive(io))
        })
        .collect();

    tokio::time::sleep_until(window.measure_from.into()).await;
    let cpu_before = clocks.read();
    tokio::time::sleep_until(window.end.into()).await;
    let cpu_after = clocks.read();

    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let stats = task.await.expect("a load generator task panicked");
        latencies.extend_from_slice(&stats.latencies_ns);
        errors += stats.errors;
        first_error = first_error.or(stats.first_error);
    }
    latencies.sort_unstable();

    let secs = settings.measure.as_secs_f64();
    let requests = latencies.len() as f64;
    let used = |before: Option<Duration>, after: Option<Duration>| {
        Some(after?.checked_sub(before?)?.as_secs_f64())
    };
    let server_cpu = used(cpu_before.server, cpu_after.server);
    let client_cpu = used(cpu_before.client, cpu_after.client);
    let machine_cpu = used(cpu_before.machine, cpu_after.machine);
    let other_cpu = match (machine_cpu, server_cpu, client_cpu) {
        (Some(all), Some(server), Some(client)) => Some((all - server - client).max(0.0)),
        _ => None,
    };
    Run {
        rps: requests / secs,
        p50_us: percentile_us(&latencies, 0.50),
        p99_us: percentile_us(&latencies, 0.99),
        server_cpu_us: server_cpu
            .filter(|_| requests > 0.0)
            .map(|s| s * 1e6 / requests),
        server_load: server_cpu.map(|s| s / secs),
        client_load: client_cpu.map(|s| s / secs),
        other_load: other_cpu.map(|s| s / secs),
        errors,
        first_error,
    }
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile_us(sorted_ns: &[u32], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = (sorted_ns.len() as f64 * q).ceil() as usize;
    f64::from(sorted_ns[rank.saturating_sub(1)]) / 1000.0
}

/// One keep-alive connection of the load generator.
struct Connection {
    socket: PathBuf,
    request: Arc<[u8]>,
    expected: Arc<[u8]>,
    window: Window,
}

/// What one connection saw.
struct ConnStats {
    /// Latencies of the right answers inside the measured window.
    latencies_ns: Vec<u32>,
    /// Wrong answers and failed exchanges, warm-up included.
    errors: u64,
    first_error: Option<String>,
}

impl Connection {
    /// Sends requests one after the other until the window ends.
    async fn drive(mut self, mut io: UnixStream) -> ConnStats {
        let mut stats = ConnStats {
            latencies_ns: Vec::with_capacity(1 << 14),
            errors: 0,
            first_error: None,
        };
        let mut buf = Vec::with_capacity(4096);

        loop {
            let start = Instant::now();
            if start >= self.window.end {
                break;
            }

            let outcome = exchange(&mut io, &self.request, &mut buf).await;
            let done = Instant::now();

            let problem = match outcome {
                Ok(head_len) => {
                    let (head, body) = buf.split_at(head_len);
                    let right = head.starts_with(b"HTTP/1.1 200 ")
                        && content_type_is_ours(head)
                        && body == &self.expected[..];
                    if right {
                        let measured = start >= self.window.measure_from && done <= self.window.end;
                        if measured {
                            let ns = (done - start).as_nanos();
                            stats
                                .latencies_ns
                                .push(u32::try_from(ns).unwrap_or(u32::MAX));
                        }
                        None
                    } else {
                        Some(format!("wrong answer: {}", String::from_utf8_lossy(&buf)))
                    }
                }
                Err(err) => {
                    // The connection is unusable after a transport error.
                    match UnixStream::connect(&self.socket).await {
                        Ok(fresh) => io = fresh,
                        Err(_) => self.window.end = Instant::now(),
                    }
                    Some(format!("exchange failed: {err}"))
                }
            };

            if let Some(problem) = problem {
                stats.errors += 1;
                stats.first_error.get_or_insert(problem);
            }
        }
        stats
    }
}

/// Sends one request and reads its answer into `buf`; returns the length of
/// the answer's head.
async fn exchange(io: &mut UnixStream, request: &[u8], buf: &mut Vec<u8>) -> io::Result<usize> {
    io.write_all(request).await?;
    read_response(io, buf).await
}

/// Reads exactly one response into `buf` and returns the length of its head
/// (status line and headers up to and including the blank line).
async fn read_response(io: &mut UnixStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let head_len = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        read_more(io, buf).await?;
    };

    let body_len = header(&buf[..head_len], "content-length")
        .and_then(|value| std::str::from_utf8(value).ok()?.parse::<usize>().ok())
        .ok_or_else(|| invalid("an answer without a valid Content-Length"))?;
    while buf.len() < head_len + body_len {
        read_more(io, buf).await?;
    }
    if buf.len() > head_len + body_len {
        return Err(invalid("bytes after the answer"));
    }
    Ok(head_len)
}

async fn read_more(io: &mut UnixStream, buf: &mut Vec<u8>) -> io::Result<()> {
    if io.read_buf(buf).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The value of header `name` in a response head, if present.
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (key, value) = line.split_at(colon);
        key.eq_ignore_ascii_case(name.as_bytes())
            .then(|| value[1..].trim_ascii())
    })
}

fn content_type_is_ours(head: &[u8]) -> bool {
    header(head, "content-type") == Some(MEDIA_TYPE.as_bytes())
}

/// The threads whose CPU time is read from `/proc` (Linux only).
#[derive(Clone, Default)]
struct ThreadSet(Arc<Mutex<Vec<PathBuf>>>);

impl ThreadSet {
    /// Adds the calling thread.
    fn add_current(&self) {
        if let Ok(link) = std::fs::read_link("/proc/thread-self") {
            let stat = Path::new("/proc").join(link).join("schedstat");
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(stat);
        }
    }

    /// Time the threads have run so far, if it can be read.
    fn cpu(&self) -> Option<Duration> {
        let files = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = None;
        for file in files.iter() {
            // The first field of `schedstat` is the time on CPU in ns.
            let text = std::fs::read_to_string(file).ok()?;
            let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
            total = Some(total.unwrap_or(Duration::ZERO) + Duration::from_nanos(ns));
        }
        total
    }
}

/// CPU clocks of the server runtime's threads and of the load generator.
struct Clocks {
    server: ThreadSet,
    client: ThreadSet,
}

struct CpuReading {
    server: Option<Duration>,
    client: Option<Duration>,
    machine: Option<Duration>,
}

impl Clocks {
    fn read(&self) -> CpuReading {
        CpuReading {
            server: self.server.cpu(),
            client: self.client.cpu(),
            machine: machine_busy(),
        }
    }
}

/// Time all CPUs of the machine have been busy so far, from `/proc/stat`
/// (in ticks of 10 ms: coarse, but enough to see other work).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user, nice, system, irq, softirq and steal: all but idle and iowait.
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    Some(Duration::from_millis(busy * 10))
}

/// One bare run and one sdk run, back to back.
struct Round {
    bare: Run,
    sdk: Run,
}

impl Round {
    /// Whether other processes stayed below `max_other` during both runs
    /// (or could not be measured).
    fn is_clean(&self, max_other: f64) -> bool {
        self.runs()
            .iter()
            .all(|(_, run)| run.other_load.is_none_or(|other| other <= max_other))
    }

    fn runs(&self) -> [(Server, &Run); 2] {
        [(Server::Bare, &self.bare), (Server::Sdk, &self.sdk)]
    }
}

/// All the rounds of one (endpoint, concurrency) pair.
struct Case {
    endpoint: &'static str,
    concurrency: usize,
    max_other: f64,
    rounds: Vec<Round>,
}

impl Case {
    fn new(endpoint: &'static str, concurrency: usize, max_other: f64) -> Self {
        Self {
            endpoint,
            concurrency,
            max_other,
            rounds: Vec::new(),
        }
    }

    fn clean_rounds(&self) -> impl Iterator<Item = &Round> {
        self.rounds.iter().filter(|r| r.is_clean(self.max_other))
    }

    /// The rounds the summary counts: the undisturbed ones, or all of them
    /// when none was.
    fn counted(&self) -> Vec<&Round> {
        let clean: Vec<_> = self.clean_rounds().collect();
        if clean.is_empty() {
            self.rounds.iter().collect()
        } else {
            clean
        }
    }

    fn errors(&self) -> u64 {
        self.rounds
            .iter()
            .map(|r| r.bare.errors + r.sdk.errors)
            .sum()
    }
}

/// Medians over the counted rounds of one server in one case.
struct Summary {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    server_cpu_us: Option<f64>,
    server_load: Option<f64>,
    client_load: Option<f64>,
    other_load: Option<f64>,
}

impl Summary {
    fn of(runs: &[&Run]) -> Self {
        let all = |f: fn(&Run) -> f64| median(runs.iter().map(|r| f(r)).collect());
        let some = |f: fn(&Run) -> Option<f64>| {
            let values: Option<Vec<f64>> = runs.iter().map(|r| f(r)).collect();
            values.map(median)
        };
        Self {
            rps: all(|r| r.rps),
            p50_us: all(|r| r.p50_us),
            p99_us: all(|r| r.p99_us),
            server_cpu_us: some(|r| r.server_cpu_us),
            server_load: some(|r| r.server_load),
            client_load: some(|r| r.client_load),
            other_load: some(|r| r.other_load),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A share of one core as a percentage, or `-` when unknown.
fn percent(load: Option<f64>) -> String {
    load.map_or_else(|| "-".to_owned(), |l| format!("{:.0}%", l * 100.0))
}

/// Prints both tables; returns the number of errors seen.
fn report(cases: &[Case]) -> u64 {
    println!();
    println!("Medians over undisturbed rounds (over all rounds where none was).");
    println!("srv µs/req: the server threads' CPU time per request.");
    println!("srv, cli, other: share of one core used by server, load generator, the rest.");
    println!(
        "{:<16} {:>4} {:<4} {:>8} {:>8} {:>8} {:>10} {:>5} {:>5} {:>5} {:>6}",
        "endpoint",
        "conc",
        "srv",
        "req/s",
        "p50 µs",
        "p99 µs",
        "srv µs/req",
        "srv",
        "cli",
        "other",
        "errors"
    );
    for case in cases {
        let counted = case.counted();
        for server in [Server::Bare, Server::Sdk] {
            let runs: Vec<&Run> = counted.iter().map(|r| server.of(r)).collect();
            let s = Summary::of(&runs);
            let errors: u64 = case.rounds.iter().map(|r| server.of(r).errors).sum();
            let cpu_us = s
                .server_cpu_us
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}"));
            println!(
                "{:<16} {:>4} {:<4} {:>8.0} {:>8.1} {:>8.1} {:>10} {:>5} {:>5} {:>5} {:>6}",
                case.endpoint,
                case.concurrency,
                server.label(),
                s.rps,
                s.p50_us,
                s.p99_us,
                cpu_us,
                percent(s.server_load),
                percent(s.client_load),
                percent(s.other_load),
                errors
            );
        }
    }

    println!();
    println!(
        "sdk/bare (targets: throughput >= {THROUGHPUT_TARGET:.2}, p99 <= {P99_TARGET:.2}); \
         extra server CPU per request"
    );
    println!(
        "{:<16} {:>4} {:>10} {:<4} {:>10} {:<4} {:>14} {:>9}",
        "endpoint", "conc", "throughput", "", "p99", "", "srv µs/req +", "undisturbed"
    );
    for case in cases {
        let counted = case.counted();
        let summary = |server: Server| {
            let runs: Vec<&Run> = counted.iter().map(|r| server.of(r)).collect();
            Summary::of(&runs)
        };
        let (bare, sdk) = (summary(Server::Bare), summary(Server::Sdk));
        let throughput = sdk.rps / bare.rps;
        let p99 = sdk.p99_us / bare.p99_us;
        let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
        let extra = match (sdk.server_cpu_us, bare.server_cpu_us) {
            (Some(s), Some(b)) => format!("{:+.2}", s - b),
            _ => "-".to_owned(),
        };
        let clean = case.clean_rounds().count();
        println!(
            "{:<16} {:>4} {:>10.3} {:<4} {:>10.3} {:<4} {:>14} {:>6}/{}{}",
            case.endpoint,
            case.concurrency,
            throughput,
            verdict(throughput >= THROUGHPUT_TARGET),
            p99,
            verdict(p99 <= P99_TARGET),
            extra,
            clean,
            case.rounds.len(),
            if clean == 0 { " (all disturbed)" } else { "" }
        );
    }

    for case in cases {
        for round in &case.rounds {
            for (server, run) in round.runs() {
                if let Some(error) = &run.first_error {
                    println!(
                        "{} c={} {}: first error: {error}",
                        case.endpoint,
                        case.concurrency,
                        server.label()
                    );
                }
            }
        }
    }
    cases.iter().map(Case::errors).sum()
}
