//! Test support: a fresh Postgres database and a fresh ClickHouse database per test, on the servers that
//! `AMIGO_DATABASE_URL` and `AMIGO_CLICKHOUSE_URL` name (`scripts/services env` prints them), or on a private
//! pair of servers ([`PrivateServices`]) for tests that kill, pause or restart them.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::Connection;

use crate::clickhouse::quote_identifier;
use crate::store::Store;
use crate::EngineConfig;

const DEFAULT_DATABASE_URL: &str = "postgres://amigo@127.0.0.1:55432/amigo";
const DEFAULT_CLICKHOUSE_URL: &str = "http://127.0.0.1:58123";

/// Prefix of every database a test creates; `scripts/test` drops leftovers before a run.
pub const TEST_DATABASE_PREFIX: &str = "amigo_test_";

/// Creates a Postgres database (amigo's schema applied, the free-disk check off) and an empty ClickHouse
/// database with one fresh name, and returns the configuration that points the engine at them.
///
/// The free-disk check ([`crate::settings::RuntimeSettings::min_free_disk_percent`]) is set to 0: how full the
/// host's disk is is not what a test is about (a CI machine with 7% free paused every copy on a server that
/// reports disks); the tests of that check pass their own share.
pub async fn fresh_databases() -> EngineConfig {
    let server_url = std::env::var("AMIGO_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let clickhouse_url = std::env::var("AMIGO_CLICKHOUSE_URL").unwrap_or_else(|_| DEFAULT_CLICKHOUSE_URL.into());
    fresh_databases_on(&server_url, &clickhouse_url).await
}

/// [`fresh_databases`] on the Postgres server of `server_url` and the ClickHouse at `clickhouse_url`.
async fn fresh_databases_on(server_url: &str, clickhouse_url: &str) -> EngineConfig {
    fresh_databases_with(server_url, clickhouse_url, "").await
}

/// A fresh Postgres database on the server of `server_url`, and a ClickHouse database of the same name created
/// at `clickhouse_url` with `on_cluster` (empty, or ` ON CLUSTER name`), and the configuration naming both.
async fn fresh_databases_with(server_url: &str, clickhouse_url: &str, on_cluster: &str) -> EngineConfig {
    let name = format!("{TEST_DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(server_url)
        .await
        .unwrap_or_else(|error| panic!("tests need Postgres at {server_url} (run scripts/services start): {error}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await.expect("create test database");
    let mut database_url = url::Url::parse(server_url).expect("AMIGO_DATABASE_URL is a URL");
    database_url.set_path(&name);
    let store = Store::connect(database_url.as_str()).await.expect("connect to the test database");
    store.migrate().await.expect("apply amigo's schema");
    // The tests' setup, not a staff change: written without an audit row, which tests count.
    sqlx::query("INSERT INTO runtime_setting (key, value, updated_by) VALUES ('min_free_disk_percent', '0', 'amigo tests')")
        .execute(store.pool())
        .await
        .expect("turn the free-disk check off");
    store.pool().close().await;

    ::clickhouse::Client::default()
        .with_url(clickhouse_url)
        .query(&format!("CREATE DATABASE {}{on_cluster}", quote_identifier(&name)))
        .execute()
        .await
        .unwrap_or_else(|error| panic!("tests need ClickHouse at {clickhouse_url} (run scripts/services start): {error}"));

    EngineConfig::new(database_url.as_str(), clickhouse_url, &name)
}

/// The project's `scripts/services`, which owns the local servers.
const SERVICES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services");

/// A Postgres and a ClickHouse of one test's own, for faults that must not reach the servers other tests
/// share: started by `scripts/services` under a temporary data folder on free ports, stopped (and the folder
/// deleted) when dropped. One instance at a time on the machine (a file lock), so that two never compete
/// for the CPU.
pub struct PrivateServices {
    data_dir: PathBuf,
    postgres_port: u16,
    clickhouse_http_port: u16,
    clickhouse_tcp_port: u16,
    _one_at_a_time: std::fs::File,
}

impl PrivateServices {
    /// Waits for any other private instance on this machine to end, then starts both servers.
    pub async fn start() -> PrivateServices {
        let lock_path = std::env::temp_dir().join("amigo-private-services.lock");
        let lock = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&lock_path).unwrap_or_else(|error| panic!("create {}: {error}", lock_path.display()));
            file.lock().unwrap_or_else(|error| panic!("lock {}: {error}", lock_path.display()));
            file
        })
        .await
        .expect("wait for the private services lock");
        // Bound together, the three ports differ; they are free again once the listeners close.
        let listeners: Vec<std::net::TcpListener> =
            (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
        let ports: Vec<u16> = listeners.iter().map(|listener| listener.local_addr().expect("local address").port()).collect();
        drop(listeners);
        let services = PrivateServices {
            data_dir: std::env::temp_dir().join(format!("amigo-private-{}", uuid::Uuid::new_v4().simple())),
            postgres_port: ports[0],
            clickhouse_http_port: ports[1],
            clickhouse_tcp_port: ports[2],
            _one_at_a_time: lock,
        };
        // Not `start` alone, which starts chdb too: on its one port, where the shared chdb already answers.
        services.script(&["start", "postgres"]).await;
        services.script(&["start", "clickhouse"]).await;
        services
    }

    pub fn database_url(&self) -> String {
        format!("postgres://amigo@127.0.0.1:{}/amigo", self.postgres_port)
    }

    pub fn clickhouse_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.clickhouse_http_port)
    }

    /// A fresh pair of databases on these servers, like [`fresh_databases`].
    pub async fn fresh_databases(&self) -> EngineConfig {
        fresh_databases_on(&self.database_url(), &self.clickhouse_url()).await
    }

    /// SIGKILL to ClickHouse; returns once the process is gone.
    pub async fn kill_clickhouse(&self) {
        let pid = self.signal_clickhouse("KILL").await;
        let process = PathBuf::from(format!("/proc/{pid}"));
        while process.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts ClickHouse (after [`PrivateServices::kill_clickhouse`]); returns once it answers.
    pub async fn start_clickhouse(&self) {
        self.script(&["start", "clickhouse"]).await;
    }

    /// SIGSTOP to ClickHouse: it keeps its connections open and answers nothing.
    pub async fn pause_clickhouse(&self) {
        self.signal_clickhouse("STOP").await;
    }

    /// SIGCONT to ClickHouse, after [`PrivateServices::pause_clickhouse`].
    pub async fn resume_clickhouse(&self) {
        self.signal_clickhouse("CONT").await;
    }

    /// Stops Postgres (`pg_ctl stop -m fast`: every connection is closed), waits `down`, starts it again;
    /// returns once it answers.
    pub async fn restart_postgres(&self, down: Duration) {
        self.script(&["stop", "postgres"]).await;
        tokio::time::sleep(down).await;
        self.script(&["start", "postgres"]).await;
    }

    /// Sends `signal` to the ClickHouse server and returns its process id.
    async fn signal_clickhouse(&self, signal: &str) -> u32 {
        let output = self.script(&["pid", "clickhouse"]).await;
        let pid = output.trim().parse().unwrap_or_else(|_| panic!("scripts/services pid clickhouse printed {output:?}"));
        assert!(send_signal(pid, signal), "kill -{signal} {pid} (ClickHouse) failed");
        pid
    }

    fn environment(&self) -> [(&'static str, String); 4] {
        [
            ("AMIGO_DATA_DIR", self.data_dir.display().to_string()),
            ("AMIGO_PG_PORT", self.postgres_port.to_string()),
            ("AMIGO_CH_HTTP_PORT", self.clickhouse_http_port.to_string()),
            ("AMIGO_CH_TCP_PORT", self.clickhouse_tcp_port.to_string()),
        ]
    }

    /// Runs `scripts/services` for these servers and returns what it printed; panics when it fails.
    async fn script(&self, arguments: &[&str]) -> String {
        let output = tokio::process::Command::new(SERVICES_SCRIPT)
            .args(arguments)
            .envs(self.environment())
            .output()
            .await
            .expect("run scripts/services");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "scripts/services {} failed: {printed}{}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        printed
    }
}

impl Drop for PrivateServices {
    fn drop(&mut self) {
        if let Ok(output) = std::process::Command::new(SERVICES_SCRIPT).args(["pid", "clickhouse"]).envs(self.environment()).output() {
            if let Ok(pid) = String::from_utf8_lossy(&output.stdout).trim().parse() {
                send_signal(pid, "CONT"); // a paused server would not act on the SIGTERM that stops it
            }
        }
        let stopped = std::process::Command::new(SERVICES_SCRIPT).arg("stop").envs(self.environment()).output();
        if !stopped.is_ok_and(|output| output.status.success()) {
            eprintln!("scripts/services stop failed for {}; stop them by hand", self.data_dir.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The project's `scripts/cluster`, which owns the local ClickHouse cluster.
const CLUSTER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster");

/// The cluster `scripts/cluster` configures.
pub const CLUSTER_NAME: &str = "amigo_cluster";

/// The ZooKeeper session timeout of `scripts/cluster`'s nodes.
pub const ZOOKEEPER_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Nodes of `scripts/cluster`'s cluster serve HTTP on their TCP port plus this.
const CLUSTER_HTTP_PORT_OFFSET: i32 = -10;

/// A ClickHouse cluster of one test's own (two shards of two replicas, one ZooKeeper), started by
/// `scripts/cluster` under a temporary folder on free ports and stopped (the folder deleted) when dropped; its
/// tests keep their state on the shared Postgres. One instance at a time on the machine (a file lock): four
/// servers are enough for two cores.
pub struct PrivateCluster {
    data_dir: PathBuf,
    base_port: u16,
    _one_at_a_time: std::fs::File,
}

impl PrivateCluster {
    /// Waits for any other private cluster on this machine to end, then starts one.
    pub async fn start() -> PrivateCluster {
        let lock_path = std::env::temp_dir().join("amigo-private-cluster.lock");
        let lock = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&lock_path).unwrap_or_else(|error| panic!("create {}: {error}", lock_path.display()));
            file.lock().unwrap_or_else(|error| panic!("lock {}: {error}", lock_path.display()));
            file
        })
        .await
        .expect("wait for the private cluster lock");
        let cluster = PrivateCluster {
            data_dir: std::env::temp_dir().join(format!("amigo-cluster-{}", uuid::Uuid::new_v4().simple())),
            base_port: free_port_range(25),
            _one_at_a_time: lock,
        };
        let started = std::time::Instant::now();
        cluster.script(&["start"]).await;
        eprintln!("private cluster started in {:.1} s", started.elapsed().as_secs_f64());
        cluster
    }

    /// The HTTP URL of node `node` (1 to 4: shard 1 replicas 1 and 2, then shard 2's).
    pub fn node_url(&self, node: u16) -> String {
        format!("http://127.0.0.1:{}", self.base_port + node)
    }

    /// The node number (1 to 4) of the node at `address` (`host:tcp_port`, as shard records name it).
    pub fn node_at(&self, address: &str) -> u16 {
        let port: u16 = address.rsplit(':').next().and_then(|port| port.parse().ok()).unwrap_or_else(|| panic!("{address:?} has no port"));
        port - self.base_port - 10
    }

    /// A fresh Postgres database on the shared server and a ClickHouse database of the same name on every
    /// node, and the configuration that points the engine at them through node 1.
    pub async fn fresh_databases(&self) -> EngineConfig {
        let server_url = std::env::var("AMIGO_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let on_cluster = format!(" ON CLUSTER {CLUSTER_NAME}");
        let mut config = fresh_databases_with(&server_url, &self.node_url(1), &on_cluster).await;
        config.clickhouse_cluster = Some(CLUSTER_NAME.into());
        config.clickhouse_http_port_offset = Some(CLUSTER_HTTP_PORT_OFFSET);
        config
    }

    /// SIGKILL to node `node`; returns once the process is gone.
    pub async fn kill_node(&self, node: u16) {
        let pid = self.signal_node(node, "KILL").await;
        let process = PathBuf::from(format!("/proc/{pid}"));
        while process.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGSTOP to node `node`: it keeps its connections open and answers nothing.
    pub async fn pause_node(&self, node: u16) {
        self.signal_node(node, "STOP").await;
    }

    /// SIGCONT to node `node`, after [`PrivateCluster::pause_node`]; returns once the cluster has settled (see
    /// [`PrivateCluster::wait_until_settled`]).
    pub async fn resume_node(&self, node: u16) {
        self.signal_node(node, "CONT").await;
        self.wait_until_settled().await;
    }

    /// Waits until every node answers and every replicated table on it is writable with all its replicas
    /// active, once the session the node had before is over in ZooKeeper (until then, its old replica and
    /// leader entries linger and swap under the new ones): what an operator waits for after bringing a node
    /// back, before resuming.
    async fn wait_until_settled(&self) {
        let back = std::time::Instant::now();
        let deadline = back + Duration::from_secs(60);
        let unsettled = "SELECT count() FROM system.replicas WHERE is_readonly OR is_session_expired OR active_replicas < total_replicas";
        loop {
            let mut settled = true;
            for node in 1..=4 {
                let client = ::clickhouse::Client::default().with_url(self.node_url(node)).with_validation(false);
                settled &= matches!(client.query(unsettled).fetch_one::<u64>().await, Ok(0));
            }
            if settled && back.elapsed() > ZOOKEEPER_SESSION_TIMEOUT + Duration::from_secs(2) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the cluster did not settle within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends `signal` to node `node` and returns its process id.
    async fn signal_node(&self, node: u16, signal: &str) -> u32 {
        let output = self.script(&["pid", &node.to_string()]).await;
        let pid = output.trim().parse().unwrap_or_else(|_| panic!("scripts/cluster pid {node} printed {output:?}"));
        assert!(send_signal(pid, signal), "kill -{signal} {pid} (node {node}) failed");
        pid
    }

    /// Starts node `node` again (after [`PrivateCluster::kill_node`]); returns once the cluster has settled
    /// (see [`PrivateCluster::wait_until_settled`]).
    pub async fn start_node(&self, node: u16) {
        self.script(&["start-node", &node.to_string()]).await;
        self.wait_until_settled().await;
    }

    fn environment(&self) -> [(&'static str, String); 2] {
        [("AMIGO_CLUSTER_DIR", self.data_dir.display().to_string()), ("AMIGO_CLUSTER_BASE_PORT", self.base_port.to_string())]
    }

    /// Runs `scripts/cluster` for this cluster and returns what it printed; panics when it fails.
    async fn script(&self, arguments: &[&str]) -> String {
        let output = tokio::process::Command::new(CLUSTER_SCRIPT)
            .args(arguments)
            .envs(self.environment())
            .output()
            .await
            .expect("run scripts/cluster");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "scripts/cluster {} failed: {printed}{}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        printed
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for node in 1..=4 {
            let pid = std::process::Command::new(CLUSTER_SCRIPT).args(["pid", &node.to_string()]).envs(self.environment()).output();
            if let Some(pid) = pid.ok().and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok()) {
                send_signal(pid, "CONT"); // a paused node would not act on the SIGTERM that stops it
            }
        }
        let stopped = std::process::Command::new(CLUSTER_SCRIPT).arg("stop").envs(self.environment()).output();
        if !stopped.is_ok_and(|output| output.status.success()) {
            eprintln!("scripts/cluster stop failed for {}; stop it by hand", self.data_dir.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The first of `count` consecutive loopback ports that are free now (they may be taken again before use,
/// which the start then reports).
fn free_port_range(count: u16) -> u16 {
    for _ in 0..100 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let first = probe.local_addr().expect("local address").port();
        drop(probe);
        if first.checked_add(count).is_none() {
            continue;
        }
        if (first..first + count).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return first;
        }
    }
    panic!("no {count} consecutive free loopback ports");
}

/// Sends `kill -SIGNAL pid`; false when the process could not be signalled.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().is_ok_and(|status| status.success())
}

/// Waits up to `limit` for `condition` to hold of migration `name`, and returns it; panics with the record
/// when it never does.
pub async fn wait_for(
    engine: &crate::Engine,
    name: &str,
    limit: std::time::Duration,
    what: &str,
    condition: impl Fn(&crate::MigrationOverview) -> bool,
) -> crate::MigrationOverview {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let overview = engine.migration(name).await.expect("migration");
        if condition(&overview) {
            return overview;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never became {what}: {:#?}", overview.record);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// True when a migration's run has ended: no runner, nothing queued, not starting or running.
pub fn is_settled(overview: &crate::MigrationOverview) -> bool {
    let record = &overview.record;
    !record.status.is_active() && record.runner_id.is_none() && record.requested_action.is_none()
}

/// Runs a runner for `engine` in the background until the returned sender is dropped or sends `true`.
pub fn spawn_runner(engine: &crate::Engine) -> tokio::sync::watch::Sender<bool> {
    let (shutdown, signal) = tokio::sync::watch::channel(false);
    let runner = crate::runner::Runner::new(engine.clone());
    tokio::spawn(async move { runner.run(signal).await });
    shutdown
}

/// The tables of the engine's ClickHouse database, in name order.
pub async fn table_names(engine: &crate::Engine) -> Vec<String> {
    engine
        .clickhouse()
        .client()
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
        .fetch_all::<String>()
        .await
        .expect("list tables")
}

/// Runs `check` on every seed of fuzz target `target` (`fuzz/seeds/<target>/`), naming the seed that broke a
/// property; there must be at least five.
pub fn replay_fuzz_seeds(target: &str, check: fn(&[u8])) {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
    let mut seeds = 0;
    for entry in std::fs::read_dir(&folder).unwrap_or_else(|error| panic!("{}: {error}", folder.display())) {
        let path = entry.expect("a directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} broke a property of {target}", path.display());
        seeds += 1;
    }
    assert!(seeds >= 5, "{target} has only {seeds} seeds in {}", folder.display());
}
