//! A ClickHouse cluster: the nodes `system.clusters` lists under the configured name, a connection to each,
//! the replica of each shard that per-shard statements run on (the least lagging writable one), and what
//! every replica says of its replication.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clickhouse::ClickHouse;
use crate::{Error, Result};

/// How long a replica may take to answer before the next replica of its shard is asked.
pub(crate) const NODE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// One server of the cluster.
#[derive(Clone)]
pub struct ClusterNode {
    pub shard: u32,
    pub replica: u32,
    /// `host:port`, the TCP address `system.clusters` lists: how records and the page name the node.
    pub address: String,
    pub clickhouse: ClickHouse,
}

/// The nodes of the configured cluster, in shard then replica order.
#[derive(Clone)]
pub struct Cluster {
    name: String,
    nodes: Vec<ClusterNode>,
}

/// One row of `system.clusters`.
#[derive(clickhouse::Row, serde::Deserialize)]
struct ClusterRow {
    shard_num: u32,
    replica_num: u32,
    host_name: String,
    port: u16,
}

impl Cluster {
    /// Reads the nodes of cluster `name` from the `system.clusters` of `entry` (the server amigo connects to).
    /// A node's HTTP interface is at the host `system.clusters` names, on the entry URL's port, or, when
    /// `http_port_offset` is given (nodes sharing one host on different ports), on its TCP port plus the offset.
    pub async fn discover(entry: &ClickHouse, name: &str, http_port_offset: Option<i32>) -> Result<Cluster> {
        let rows: Vec<ClusterRow> = entry
            .client()
            .query(
                "SELECT toUInt32(shard_num) AS shard_num, toUInt32(replica_num) AS replica_num, host_name, toUInt16(port) AS port
                 FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num",
            )
            .bind(name)
            .fetch_all()
            .await?;
        if rows.is_empty() {
            return Err(Error::UnknownCluster { url: entry.url().to_string(), cluster: name.to_string() });
        }
        let entry_url = url::Url::parse(entry.url())
            .map_err(|error| Error::ClickHouseUnreachable { url: entry.url().to_string(), message: format!("not a URL: {error}") })?;
        let entry_port = entry_url.port_or_known_default().unwrap_or(8123);
        let mut nodes = Vec::with_capacity(rows.len());
        for row in rows {
            let http_port = http_port_offset.map_or(i32::from(entry_port), |offset| i32::from(row.port) + offset);
            let mut node_url = entry_url.clone();
            let port = u16::try_from(http_port).ok();
            if node_url.set_host(Some(&row.host_name)).is_err() || port.is_none() || node_url.set_port(port).is_err() {
                return Err(Error::NodeWithoutHttpAddress {
                    cluster: name.to_string(),
                    node: format!("{}:{}", row.host_name, row.port),
                    port: http_port,
                });
            }
            let url = node_url.as_str().trim_end_matches('/').to_string();
            nodes.push(ClusterNode {
                shard: row.shard_num,
                replica: row.replica_num,
                address: format!("{}:{}", row.host_name, row.port),
                clickhouse: entry.on_node(&url),
            });
        }
        Ok(Cluster { name: name.to_string(), nodes })
    }

    pub fn nodes(&self) -> &[ClusterNode] {
        &self.nodes
    }

    /// For each shard in order, the replica its per-shard statements run on (replication brings their result to
    /// the others), with what every other replica of the shard says now: among the replicas that answer with
    /// writable replicated tables (a node is read-only for a moment after a restart, until its ZooKeeper session
    /// is up), the least lagging one, the first in replica order among equals. Fails naming a shard none of
    /// whose replicas answers writable.
    pub async fn choose_replicas(&self) -> Result<Vec<ShardReplicas>> {
        let states = futures::future::join_all(self.nodes.iter().map(ReplicaState::of)).await;
        let mut shards: BTreeMap<u32, Vec<(&ClusterNode, ReplicaState)>> = BTreeMap::new();
        for (node, state) in self.nodes.iter().zip(states) {
            shards.entry(node.shard).or_default().push((node, state));
        }
        let mut chosen = Vec::with_capacity(shards.len());
        for (shard, mut replicas) in shards {
            let best = replicas
                .iter()
                .enumerate()
                .filter(|(_, (_, state))| state.writable())
                .min_by_key(|(_, (_, state))| state.lag_seconds)
                .map(|(index, _)| index);
            let Some(best) = best else {
                let replicas = replicas.iter().map(|(node, _)| node.address.as_str()).collect::<Vec<_>>().join(", ");
                return Err(Error::ShardUnreachable { cluster: self.name.clone(), shard, replicas });
            };
            let (node, _) = replicas.remove(best);
            chosen.push(ShardReplicas { node: node.clone(), others: replicas.into_iter().map(|(_, state)| state).collect() });
        }
        Ok(chosen)
    }

    /// The other replicas of `node`'s shard, as they answer now.
    pub async fn other_replicas(&self, node: &ClusterNode) -> Vec<ReplicaState> {
        let others = self.nodes.iter().filter(|other| other.shard == node.shard && other.address != node.address);
        futures::future::join_all(others.map(ReplicaState::of)).await
    }

    /// The node that answers first in `system.clusters` order, for statements any node can send (`ON CLUSTER`
    /// DDL, reads through a `Distributed` table) when the entry server does not answer.
    pub async fn answering_node(&self) -> Option<&ClusterNode> {
        for node in &self.nodes {
            if let Ok(Ok(_)) = tokio::time::timeout(NODE_ANSWER_TIMEOUT, node.clickhouse.server_version()).await {
                return Some(node);
            }
        }
        None
    }

    /// The most lagging replica of the cluster that answers, when its lag is over `bound_seconds`: the shard,
    /// the node and its lag. A node that does not answer is not lagging: its shard's watch reports it.
    pub async fn replica_lagging_over(&self, bound_seconds: u64) -> Option<(u32, ReplicaState)> {
        let states = futures::future::join_all(self.nodes.iter().map(ReplicaState::of)).await;
        self.nodes
            .iter()
            .zip(states)
            .filter(|(_, state)| state.answering && state.lag_seconds > bound_seconds)
            .max_by_key(|(_, state)| state.lag_seconds)
            .map(|(node, state)| (node.shard, state))
    }
}

/// The replica a shard's statements run on, and what the shard's other replicas say.
pub struct ShardReplicas {
    pub node: ClusterNode,
    pub others: Vec<ReplicaState>,
}

/// What one replica says of the replicated tables of the engine's database, as the page shows it beside its
/// shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaState {
    /// `host:port`, as [`ClusterNode::address`].
    pub node: String,
    /// False when it did not answer within 2 s; the other fields are then zero.
    pub answering: bool,
    /// Replicated tables that cannot be written there now (no ZooKeeper session).
    pub readonly_tables: u64,
    /// How far behind the freshest replica it is, in seconds: the most of its tables' `absolute_delay` and of
    /// the age of the oldest part it has still to fetch.
    pub lag_seconds: u64,
    /// Replication tasks waiting in its queue (fetches, merges), over its tables.
    pub queue_size: u64,
}

/// One row of the summary of `system.replicas`.
#[derive(clickhouse::Row, serde::Deserialize)]
struct ReplicasRow {
    readonly_tables: u64,
    lag_seconds: u64,
    queue_size: u64,
}

impl ReplicaState {
    async fn of(node: &ClusterNode) -> ReplicaState {
        ReplicaState::read(&node.clickhouse, &node.address).await
    }

    /// Asks the server behind `clickhouse` (the node at `address`) of the replicated tables of its database,
    /// waiting at most 2 s for its answer. Its lag is `absolute_delay` or, where that is larger, the age of the
    /// oldest part it has still to fetch: 18.16 reports an `absolute_delay` of 0 while fetches wait in its queue.
    pub async fn read(clickhouse: &ClickHouse, address: &str) -> ReplicaState {
        let client = clickhouse.client();
        let database = clickhouse.database();
        let replicas = client
            .query(
                "SELECT toUInt64(countIf(is_readonly OR is_session_expired)) AS readonly_tables,
                        toUInt64(max(absolute_delay)) AS lag_seconds, toUInt64(sum(queue_size)) AS queue_size
                 FROM system.replicas WHERE database = ?",
            )
            .bind(database)
            .fetch_one::<ReplicasRow>();
        let oldest_fetch = client
            .query(
                "SELECT toUInt64(if(count() = 0, 0, greatest(toInt64(now()) - toInt64(min(create_time)), 0)))
                 FROM system.replication_queue WHERE database = ? AND type = 'GET_PART'",
            )
            .bind(database)
            .fetch_one::<u64>();
        let answered = tokio::time::timeout(NODE_ANSWER_TIMEOUT, futures::future::try_join(replicas, oldest_fetch)).await;
        match answered {
            Ok(Ok((row, oldest_fetch))) => ReplicaState {
                node: address.to_string(),
                answering: true,
                readonly_tables: row.readonly_tables,
                lag_seconds: row.lag_seconds.max(oldest_fetch),
                queue_size: row.queue_size,
            },
            _ => ReplicaState { node: address.to_string(), answering: false, readonly_tables: 0, lag_seconds: 0, queue_size: 0 },
        }
    }

    /// Answers, with every replicated table writable.
    fn writable(&self) -> bool {
        self.answering && self.readonly_tables == 0
    }
}
