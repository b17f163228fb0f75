//! Live-update latency over server-sent events, and what many open streams cost: a real `amigo serve`
//! process (the release binary) over fresh databases, SSE clients on loopback sockets, and progress writes
//! (`Store::record_position`) timed until each client has read the event that carries them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use demo::migrations::events_sort_key::NAME;
use engine::accounts::Accounts;
use engine::EngineConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::databases::Databases;
use crate::error::{Error, Result};
use crate::fixture::{self, ACTOR};
use crate::report::{self, Table};

/// The runner identity the benchmark claims the migration under, so that its progress writes apply.
const RUNNER_ID: &str = "amigo-bench-runner";
/// Pause between changes with one client, so that each is timed alone.
const PAUSE_ONE_CLIENT: Duration = Duration::from_millis(10);
/// Pause between changes with every client connected.
const PAUSE_ALL_CLIENTS: Duration = Duration::from_millis(100);
/// Changes timed with every client connected.
const CHANGES_ALL_CLIENTS: usize = 50;
/// Streams opened at once while connecting the clients, the way a crowd of browsers reconnects.
const CONNECT_BATCH: usize = 50;
/// How long one change may take to reach every client before the case fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The text before a migration's query id in an event's JSON.
const QUERY_ID_FIELD: &[u8] = b"\"current_query_id\":\"";
/// Bytes a client keeps unread between reads: more than a query id field and its value.
const UNREAD_TAIL: usize = 256;

pub struct LiveUpdates {
    /// One client: from the call to `record_position` to the event read from the socket.
    pub one_client: Vec<Duration>,
    pub clients: usize,
    /// Opening every stream and reading every snapshot, in batches of [`CONNECT_BATCH`].
    pub connect_all: Duration,
    /// Every client connected, per change: until the median client, and until the last client, has it.
    pub median_client: Vec<Duration>,
    pub last_client: Vec<Duration>,
    /// The server's resident memory: idle after start, then with every client connected, then its peak.
    pub memory: ServerMemory,
}

pub struct ServerMemory {
    pub idle: u64,
    pub connected: u64,
    pub peak: u64,
}

/// What a client task reports: its snapshot arrived, or an event naming a query id did.
enum Arrival {
    Snapshot,
    Change(String, Instant),
}

/// Starts `amigo serve` on fresh databases, claims a queued 0001 as a pretend runner (nothing executes it),
/// and times progress writes to one client, then to `clients` clients.
pub async fn measure(databases: &Databases, amigo: &Path, changes: usize, clients: usize) -> Result<LiveUpdates> {
    let config = databases.fresh().await?;
    let engine = fixture::connect(&config).await?;
    engine.start(NAME, ACTOR, &serde_json::Map::new()).await?;
    if engine.store().claim_request(RUNNER_ID, &engine.definition_names()).await?.is_none() {
        return Err(Error::Unexpected(format!("the queued {NAME} could not be claimed")));
    }
    let accounts = Accounts::of(&engine);
    let staff = accounts.create_user("bench@example.com", "bench-password-not-secret", true).await?;
    let token = accounts.create_session(&staff).await?.token;
    let mut server = Server::start(amigo, &config).await?;
    let outcome = measure_against(&engine, &server, &token, changes, clients).await;
    server.stop().await;
    fixture::disconnect(&engine).await;
    outcome
}

async fn measure_against(engine: &engine::Engine, server: &Server, token: &str, changes: usize, clients: usize) -> Result<LiveUpdates> {
    let (arrivals, mut arrived) = mpsc::unbounded_channel();
    let idle = server.resident_bytes()?;
    let mut readers = vec![open_client(server.address, token.to_string(), arrivals.clone()).await?];
    wait_for_snapshots(&mut arrived, 1).await?;
    let mut sequence = 0;
    let mut one_client = Vec::new();
    for _ in 0..changes {
        let (to_client, _) = change_once(engine, &mut arrived, &mut sequence, 1).await?;
        one_client.push(to_client);
        tokio::time::sleep(PAUSE_ONE_CLIENT).await;
    }

    let connecting = Instant::now();
    while readers.len() < clients {
        let batch = CONNECT_BATCH.min(clients - readers.len());
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..batch {
            opening.spawn(open_client(server.address, token.to_string(), arrivals.clone()));
        }
        while let Some(opened) = opening.join_next().await {
            readers.push(opened.map_err(|error| Error::Unexpected(format!("an SSE client task failed: {error}")))??);
        }
        wait_for_snapshots(&mut arrived, batch).await?;
    }
    let connect_all = connecting.elapsed();
    let connected = server.resident_bytes()?;
    let (mut median_client, mut last_client) = (Vec::new(), Vec::new());
    for _ in 0..CHANGES_ALL_CLIENTS {
        let (last, median) = change_once(engine, &mut arrived, &mut sequence, clients).await?;
        last_client.push(last);
        median_client.push(median);
        tokio::time::sleep(PAUSE_ALL_CLIENTS).await;
    }
    let peak = server.peak_resident_bytes()?;
    for reader in readers {
        reader.abort();
    }
    Ok(LiveUpdates { one_client, clients, connect_all, median_client, last_client, memory: ServerMemory { idle, connected, peak } })
}

/// Writes a position with a new query id and waits until `clients` clients have read it; returns the time
/// until the last one and until the median one had it.
async fn change_once(
    engine: &engine::Engine,
    arrived: &mut mpsc::UnboundedReceiver<Arrival>,
    sequence: &mut u64,
    clients: usize,
) -> Result<(Duration, Duration)> {
    *sequence += 1;
    let query_id = format!("bench-sse-{sequence}");
    let written_from = Instant::now();
    engine.store().record_position(NAME, RUNNER_ID, 1, (*sequence % 100) as u8, &query_id).await?;
    let mut delays = Vec::with_capacity(clients);
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    while delays.len() < clients {
        match tokio::time::timeout_at(deadline, arrived.recv()).await {
            Ok(Some(Arrival::Change(id, at))) if id == query_id => delays.push(at.duration_since(written_from)),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                return Err(Error::Unexpected(format!(
                    "{query_id} reached {} of {clients} SSE clients within {DELIVERY_TIMEOUT:?}",
                    delays.len()
                )))
            }
        }
    }
    delays.sort();
    Ok((delays[delays.len() - 1], delays[delays.len() / 2]))
}

async fn wait_for_snapshots(arrived: &mut mpsc::UnboundedReceiver<Arrival>, count: usize) -> Result<()> {
    let mut snapshots = 0;
    while snapshots < count {
        match tokio::time::timeout(DELIVERY_TIMEOUT, arrived.recv()).await {
            Ok(Some(Arrival::Snapshot)) => snapshots += 1,
            Ok(Some(Arrival::Change(..))) => {}
            Ok(None) | Err(_) => return Err(Error::Unexpected(format!("{snapshots} of {count} SSE snapshots arrived"))),
        }
    }
    Ok(())
}

/// Opens `GET /api/events` with the staff session over a plain socket and spawns the task that reads it,
/// reporting the snapshot and every query id it sees.
async fn open_client(address: SocketAddr, token: String, arrivals: mpsc::UnboundedSender<Arrival>) -> Result<tokio::task::JoinHandle<()>> {
    let mut stream = TcpStream::connect(address).await.map_err(|error| io_error("connecting an SSE client", error))?;
    let request =
        format!("GET /api/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\nCookie: amigo_session={token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|error| io_error("sending an SSE request", error))?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        let read = stream.read(&mut buffer).await.map_err(|error| io_error("reading an SSE response", error))?;
        if read == 0 {
            return Err(Error::Unexpected(format!(
                "the server closed an SSE stream before its headers: {}",
                String::from_utf8_lossy(&received)
            )));
        }
        received.extend_from_slice(&buffer[..read]);
        if let Some(end) = find(&received, b"\r\n\r\n") {
            break end + 4;
        }
    };
    if !received.starts_with(b"HTTP/1.1 200") {
        return Err(Error::Unexpected(format!(
            "GET /api/events answered {}",
            String::from_utf8_lossy(&received[..head_end]).lines().next().unwrap_or("")
        )));
    }
    received.drain(..head_end);
    Ok(tokio::spawn(async move {
        let mut snapshot_seen = false;
        loop {
            if !snapshot_seen {
                if let Some(start) = find(&received, b"event: snapshot") {
                    // The snapshot's rows carry query ids from before this client connected: skip them.
                    if let Some(end) = find(&received[start..], b"\n\n") {
                        received.drain(..start + end + 2);
                        snapshot_seen = true;
                        let _ = arrivals.send(Arrival::Snapshot);
                    }
                }
            }
            if snapshot_seen {
                let now = Instant::now();
                let mut consumed = 0;
                while let Some(start) = find(&received[consumed..], QUERY_ID_FIELD) {
                    let id_start = consumed + start + QUERY_ID_FIELD.len();
                    let Some(id_length) = received[id_start..].iter().position(|&byte| byte == b'"') else { break };
                    let id = String::from_utf8_lossy(&received[id_start..id_start + id_length]).into_owned();
                    let _ = arrivals.send(Arrival::Change(id, now));
                    consumed = id_start + id_length;
                }
                // Keep only what may hold the start of a query id the next read completes.
                received.drain(..consumed.max(received.len().saturating_sub(UNREAD_TAIL)));
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn io_error(what: &str, error: std::io::Error) -> Error {
    Error::Command { command: what.into(), message: error.to_string() }
}

/// An `amigo serve --no-runner` process on a free loopback port over the case's databases.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    async fn start(amigo: &Path, config: &EngineConfig) -> Result<Server> {
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| io_error("finding a free port", error))?;
        let child = Command::new(amigo)
            .args(["serve", "--no-runner"])
            .env("AMIGO_DATABASE_URL", &config.database_url)
            .env("AMIGO_CLICKHOUSE_URL", &config.clickhouse_url)
            .env("AMIGO_CLICKHOUSE_DATABASE", &config.clickhouse_database)
            .env("AMIGO_LISTEN", address.to_string())
            .env("AMIGO_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| Error::Command { command: amigo.display().to_string(), message: error.to_string() })?;
        let mut server = Server { child, address };
        server.wait_until_healthy().await?;
        Ok(server)
    }

    async fn wait_until_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Unexpected(format!("amigo serve exited ({status}) before answering /healthz")));
            }
            if let Ok(mut stream) = TcpStream::connect(self.address).await {
                let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.address);
                let mut answer = Vec::new();
                if stream.write_all(request.as_bytes()).await.is_ok()
                    && stream.read_to_end(&mut answer).await.is_ok()
                    && answer.starts_with(b"HTTP/1.1 200")
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Unexpected(format!("amigo serve did not answer /healthz on {} within 60 s", self.address)))
    }

    fn resident_bytes(&self) -> Result<u64> {
        self.status_kilobytes("VmRSS:").map(|kilobytes| kilobytes * 1024)
    }

    fn peak_resident_bytes(&self) -> Result<u64> {
        self.status_kilobytes("VmHWM:").map(|kilobytes| kilobytes * 1024)
    }

    /// A `kB` line of `/proc/<pid>/status`.
    fn status_kilobytes(&self, field: &str) -> Result<u64> {
        let pid = self.child.id().ok_or_else(|| Error::Unexpected("amigo serve has exited".into()))?;
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|error| io_error("reading the server's memory", error))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| Error::Unexpected(format!("no {field} in /proc/{pid}/status")))
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl LiveUpdates {
    /// Adds the live-update rows to the summary table.
    pub fn summarize(&self, summary: &mut Table) {
        let met = |samples: &[Duration]| if report::percentile(samples, 100.0) < Duration::from_millis(500) { "met" } else { "missed" };
        summary.push(vec![
            format!("live-update latency, 1 SSE client, {} progress writes", self.one_client.len()),
            "Store::record_position to the event read from the socket".into(),
            format!("{} ({})", report::median_p99_max(&self.one_client), met(&self.one_client)),
            "< 500 ms".into(),
        ]);
        summary.push(vec![
            format!("live-update latency, {} SSE clients, {} progress writes", self.clients, self.last_client.len()),
            "Store::record_position to the event on the last client (the median client)".into(),
            format!(
                "{} ({}); median client: {}",
                report::median_p99_max(&self.last_client),
                met(&self.last_client),
                report::median_p99_max(&self.median_client)
            ),
            "< 500 ms".into(),
        ]);
        let memory = &self.memory;
        let per_client = memory.connected.saturating_sub(memory.idle) / self.clients.max(1) as u64;
        summary.push(vec![
            format!("{} SSE clients on one amigo serve", self.clients),
            "server resident memory: idle, all connected, peak; time to connect all".into(),
            format!(
                "{} idle, {} connected ({} per client), {} peak; all connected with snapshots in {}",
                mebibytes(memory.idle),
                mebibytes(memory.connected),
                kibibytes(per_client),
                mebibytes(memory.peak),
                report::duration(self.connect_all)
            ),
            "reported".into(),
        ]);
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn kibibytes(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}
