//! Data parallelism: the ranks of a job meet through c10d's TCPStore, form a process group
//! (Gloo on CPU, NCCL on CUDA) and train as DistributedDataParallel does, with c10d's own
//! Reducer. Per DESIGN.md's data contract each rank reads its slice of every global batch,
//! the loss normaliser is the step's masked-token count over all ranks, and rank 0 writes.
//!
//! A collective that fails (a peer died, or hung past the timeout) becomes
//! [`RunError::Distributed`], naming the ranks that stopped answering: each surviving rank
//! leaves a mark in the store, and the ranks without one are the ones that are gone.

use std::time::{Duration, Instant};

use mlm_torch_ext::dist::{
    Backend, BucketCaps, ProcessGroup, ReduceOp, Reducer, Store, quiet_c10_warnings,
};
use mlm_torch_ext::launch::{LaunchEnv, StoreRole};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::RunError;

/// `[distributed]`: how the ranks of a data-parallel job talk (ignored by a single process).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedConfig {
    /// `backend = "auto"` (NCCL on CUDA, Gloo on CPU) | `"nccl"` | `"gloo"`
    /// (TrainingArguments' `ddp_backend`).
    pub backend: BackendChoice,
    /// Seconds a rank waits for the others (joining, each collective) before it gives up and
    /// names the ranks that did not answer. `timeout_seconds = 1800` (PyTorch's default).
    pub timeout_seconds: u64,
    /// Gradient bucket size of the Reducer. `bucket_cap_mb = 25` (DDP's default).
    pub bucket_cap_mb: f64,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            timeout_seconds: 1800,
            bucket_cap_mb: 25.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Auto,
    Nccl,
    Gloo,
}

impl DistributedConfig {
    pub fn validate(&self) -> Result<(), RunError> {
        if self.timeout_seconds == 0 {
            return Err(RunError::InvalidConfig(
                "distributed.timeout_seconds = 0 must be >= 1".into(),
            ));
        }
        if !(self.bucket_cap_mb > 0.0 && self.bucket_cap_mb.is_finite()) {
            return Err(RunError::InvalidConfig(format!(
                "distributed.bucket_cap_mb = {} must be above 0",
                self.bucket_cap_mb
            )));
        }
        Ok(())
    }

    fn backend_for(&self, device: Device) -> Backend {
        match (self.backend, device) {
            (BackendChoice::Nccl, _) | (BackendChoice::Auto, Device::Cuda(_)) => Backend::Nccl,
            _ => Backend::Gloo,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

const JOINED: &str = "mlm-train/joined";
const FAILED: &str = "mlm-train/failed";
const STAGE: &str = "mlm-train/stage";

/// This process's membership of a data-parallel job.
pub struct DataParallel {
    // Field order is drop order: the group goes before the store it was built on.
    group: ProcessGroup,
    store: Store,
    env: LaunchEnv,
    config: DistributedConfig,
    heartbeat: Heartbeat,
}

impl DataParallel {
    /// Joins the job `env` describes: opens the store, waits (up to the timeout) for every
    /// rank to check in, naming those that did not, then forms the process group.
    pub fn join(
        env: LaunchEnv,
        config: &DistributedConfig,
        device: Device,
    ) -> Result<Self, RunError> {
        config.validate()?;
        let timeout = config.timeout();
        let store = Store::open(
            &env.master_addr,
            env.master_port,
            env.store_role == StoreRole::Server,
            &env.store_prefix,
            timeout,
        )
        .map_err(|source| RunError::Distributed {
            rank: env.rank,
            message: format!(
                "cannot reach the rendezvous store at {}:{}",
                env.master_addr, env.master_port
            ),
            source: Some(source),
        })?;
        let heartbeat = Heartbeat::start(&store, &env, timeout)?;
        wait_for_ranks(&store, &env, timeout)?;
        let backend = config.backend_for(device);
        let group = ProcessGroup::new(
            &store,
            env.rank,
            env.world_size,
            backend,
            timeout,
            &env.gloo_interfaces,
        )
        .map_err(|source| RunError::Distributed {
            rank: env.rank,
            message: format!("cannot form the {backend:?} process group"),
            source: Some(source),
        })?;
        Ok(Self {
            group,
            store,
            env,
            config: config.clone(),
            heartbeat,
        })
    }

    pub fn rank(&self) -> u32 {
        self.env.rank
    }

    pub fn world_size(&self) -> u32 {
        self.env.world_size
    }

    pub fn local_rank(&self) -> u32 {
        self.env.local_rank
    }

    /// Rank 0: the one that writes checkpoints, metrics and progress.
    pub fn is_main(&self) -> bool {
        self.env.rank == 0
    }

    /// Sums (or maxes) `values` over all ranks, in f64 on the host.
    pub fn all_reduce(&self, values: &mut [f64], op: ReduceOp) -> Result<(), RunError> {
        let tensor = Tensor::from_slice(values);
        self.group
            .all_reduce(&[&tensor], op)
            .map_err(|e| self.failure("an all-reduce", e))?;
        tensor.copy_data(values, values.len());
        Ok(())
    }

    /// Gives every rank rank 0's copy of `tensors` (parameters and buffers at the start, as
    /// DDP's `_sync_module_states`).
    pub fn broadcast_from_main(&self, tensors: &[Tensor]) -> Result<(), RunError> {
        let _no_grad = tch::no_grad_guard();
        let refs: Vec<&Tensor> = tensors.iter().collect();
        self.group
            .broadcast(&refs, 0)
            .map_err(|e| self.failure("the broadcast of rank 0's weights", e))
    }

    /// Returns once every rank got here: an all-reduce of a CPU scalar, which Gloo carries
    /// on every backend (NCCL's barrier has to guess each rank's GPU).
    pub fn barrier(&self, what: &str) -> Result<(), RunError> {
        let tensor = Tensor::from_slice(&[0.0f64]);
        self.group
            .all_reduce(&[&tensor], ReduceOp::Sum)
            .map_err(|e| self.failure(what, e))
    }

    /// Rank 0 says a stage it does alone (training the vocabulary, preparing the corpus) is
    /// over, and whether it succeeded.
    pub fn announce(&self, stage: &str, succeeded: bool) -> Result<(), RunError> {
        let outcome = if succeeded { "ok" } else { "failed" };
        self.store
            .set(&format!("{STAGE}/{stage}/{outcome}"), b"1")
            .map_err(|e| self.failure(&format!("announcing the end of {stage}"), e))
    }

    /// The other ranks wait for rank 0's stage, however long it takes (preparing a corpus
    /// can take hours, longer than any collective's timeout); an error when rank 0 reports
    /// a failure or its store goes away.
    pub fn wait_for_main(&self, stage: &str) -> Result<(), RunError> {
        let [ok, failed] =
            ["ok", "failed"].map(|outcome| vec![format!("{STAGE}/{stage}/{outcome}")]);
        loop {
            let done = |keys: &[String]| {
                self.store
                    .check(keys)
                    .map_err(|e| self.failure(&format!("waiting for rank 0's {stage}"), e))
            };
            if done(&ok)? {
                return Ok(());
            }
            if done(&failed)? {
                return Err(RunError::Distributed {
                    rank: self.env.rank,
                    message: format!("rank 0 failed in {stage}; see its error"),
                    source: None,
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Checks that every rank holds the same weights, bit for bit: a fingerprint of the
    /// tensors (sum, sum of magnitudes, sum of squares, in f64) is reduced with max and
    /// with min; they agree only when every rank's fingerprint is the same. Data-parallel
    /// replicas apply identical updates to identical weights, so any difference is a bug
    /// (or a non-deterministic kernel) worth stopping for.
    pub fn check_replicas_agree(&self, tensors: &[Tensor], step: u64) -> Result<(), RunError> {
        let _no_grad = tch::no_grad_guard();
        let mut fingerprint = [0.0f64; 3];
        for tensor in tensors {
            let values = tensor.to_kind(tch::Kind::Double);
            fingerprint[0] += values.sum(tch::Kind::Double).double_value(&[]);
            fingerprint[1] += values.abs().sum(tch::Kind::Double).double_value(&[]);
            fingerprint[2] += (&values * &values).sum(tch::Kind::Double).double_value(&[]);
        }
        let mut highest = fingerprint;
        let mut lowest = fingerprint.map(|v| -v);
        self.all_reduce(&mut highest, ReduceOp::Max)?;
        self.all_reduce(&mut lowest, ReduceOp::Max)?;
        if highest.iter().zip(&lowest).all(|(h, l)| *h == -*l) {
            return Ok(());
        }
        Err(RunError::Distributed {
            rank: self.env.rank,
            message: format!(
                "the ranks' weights differ at step {step} (fingerprints from {:?} to {:?}): \
                 data-parallel replicas must stay identical",
                lowest.map(|v| -v),
                highest
            ),
            source: None,
        })
    }

    /// c10d's Reducer over the trainable `params`, with DDP's defaults.
    pub fn reducer(&self, params: &[(String, Tensor)]) -> Result<Reducer, RunError> {
        let caps = BucketCaps {
            bucket_bytes: (self.config.bucket_cap_mb * 1024.0 * 1024.0) as i64,
            ..BucketCaps::default()
        };
        Reducer::new(&self.group, params, caps, true).map_err(|e| self.failure("the DDP set-up", e))
    }

    /// The error for a failed collective, naming the ranks that are gone. Every rank's
    /// heartbeat thread bumps a counter in the store twice a second, also while its training
    /// thread is blocked in a collective: a rank whose counter stopped is dead (killed, out
    /// of memory, its node lost). When every heartbeat goes on, the ranks that did not mark
    /// themselves failed within a grace period are the hung ones. When the store itself is
    /// gone, its host (rank 0 unless torchrun's agent hosts it) is the one that stopped.
    pub fn failure(&self, what: &str, cause: impl std::fmt::Display) -> RunError {
        quiet_c10_warnings();
        let rank = self.env.rank;
        let gone = self.stopped_ranks();
        if self.env.store_role == StoreRole::Server {
            // Keep the store up while the other survivors look at it.
            std::thread::sleep(2 * HEARTBEAT_WINDOW);
        }
        let message = match gone {
            Some(ranks) if ranks.is_empty() => format!("{what} failed on rank {rank}: {cause}"),
            Some(ranks) => format!(
                "{what} failed on rank {rank}: rank{} {} stopped answering (exited, was killed \
                 or hung). c10d: {cause}",
                if ranks.len() == 1 { "" } else { "s" },
                join(&ranks)
            ),
            None => format!(
                "{what} failed on rank {rank}, and the rendezvous store at {}:{} is gone: \
                 the process hosting it (rank 0) stopped. c10d: {cause}",
                self.env.master_addr, self.env.master_port
            ),
        };
        RunError::Distributed {
            rank,
            message,
            source: None,
        }
    }

    /// The ranks whose heartbeat stopped over one window, else those that did not mark
    /// themselves failed within the grace period (`None`: the store is gone).
    fn stopped_ranks(&self) -> Option<Vec<u32>> {
        self.store
            .set(&format!("{FAILED}/{}", self.env.rank), b"1")
            .ok()?;
        let world = self.env.world_size;
        let before = self.heartbeat.read_all(&self.store, world)?;
        std::thread::sleep(HEARTBEAT_WINDOW);
        let after = self
            .heartbeat
            .read_all(&self.store, world)
            .unwrap_or_else(|| before.clone());
        // A survivor marks itself failed before it looks, so one that has since exited (its
        // heartbeat stopped too) is not mistaken for the rank that died.
        let unmarked = missing_keys(&self.store, FAILED, world).unwrap_or_default();
        let dead: Vec<u32> = (0..world)
            .filter(|&r| r != self.env.rank && before[r as usize] == after[r as usize])
            .filter(|r| unmarked.contains(r))
            .collect();
        if !dead.is_empty() {
            return Some(dead);
        }
        let grace = FAILURE_GRACE.min(self.config.timeout());
        self.unmarked_ranks(grace)
    }

    /// Ranks that did not mark themselves failed within `grace`, from the store's last
    /// answer.
    fn unmarked_ranks(&self, grace: Duration) -> Option<Vec<u32>> {
        let deadline = Instant::now() + grace;
        let mut last_answer = None;
        loop {
            match missing_keys(&self.store, FAILED, self.env.world_size) {
                Some(missing) => {
                    let all_answered = missing.is_empty();
                    last_answer = Some(missing);
                    if all_answered {
                        return last_answer;
                    }
                }
                None => return last_answer,
            }
            if Instant::now() >= deadline {
                return last_answer;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A heartbeat counts over this window (four beats).
const HEARTBEAT_WINDOW: Duration = Duration::from_secs(2);
const HEARTBEAT: &str = "mlm-train/heartbeat";

/// A thread that bumps this rank's counter in the store every half second, through its
/// own store connection, until the job is left.
struct Heartbeat {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Heartbeat {
    fn start(store: &Store, env: &LaunchEnv, timeout: Duration) -> Result<Self, RunError> {
        let key = format!("{HEARTBEAT}/{}", env.rank);
        store
            .set(&key, &0u64.to_le_bytes())
            .map_err(|e| RunError::Distributed {
                rank: env.rank,
                message: "cannot write to the rendezvous store".into(),
                source: Some(e),
            })?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let env = env.clone();
        std::thread::spawn(move || {
            let Ok(own) = Store::open(
                &env.master_addr,
                env.master_port,
                false,
                &env.store_prefix,
                timeout,
            ) else {
                return;
            };
            let mut beat = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                beat += 1;
                if own.set(&key, &beat.to_le_bytes()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Ok(Self { stop })
    }

    /// Every rank's counter (`None`: the store is gone).
    fn read_all(&self, store: &Store, world: u32) -> Option<Vec<u64>> {
        (0..world)
            .map(|r| store.get_u64(&format!("{HEARTBEAT}/{r}")).ok())
            .collect()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long a rank that saw a collective fail waits for the other survivors to say so.
const FAILURE_GRACE: Duration = Duration::from_secs(10);

/// Every rank checks in; after the timeout, the ranks that never did are named.
fn wait_for_ranks(store: &Store, env: &LaunchEnv, timeout: Duration) -> Result<(), RunError> {
    let failed = |message: String, source| RunError::Distributed {
        rank: env.rank,
        message,
        source,
    };
    store
        .set(&format!("{JOINED}/{}", env.rank), b"1")
        .map_err(|e| failed("cannot check in at the rendezvous store".into(), Some(e)))?;
    let keys = rank_keys(JOINED, env.world_size);
    if store.wait(&keys, timeout).is_ok() {
        return Ok(());
    }
    quiet_c10_warnings();
    let missing = missing_keys(store, JOINED, env.world_size).unwrap_or_default();
    Err(failed(
        format!(
            "rank{} {} of {} did not join within distributed.timeout_seconds = {}",
            if missing.len() == 1 { "" } else { "s" },
            join(&missing),
            env.world_size,
            timeout.as_secs()
        ),
        None,
    ))
}

fn rank_keys(prefix: &str, world_size: u32) -> Vec<String> {
    (0..world_size).map(|r| format!("{prefix}/{r}")).collect()
}

fn missing_keys(store: &Store, prefix: &str, world_size: u32) -> Option<Vec<u32>> {
    let mut missing = Vec::new();
    for (rank, key) in rank_keys(prefix, world_size).into_iter().enumerate() {
        if !store.check(&[key]).ok()? {
            missing.push(rank as u32);
        }
    }
    Some(missing)
}

fn join(ranks: &[u32]) -> String {
    ranks
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sums of f64 values over ranks, or the values themselves in a single process.
pub(super) fn sum_over_ranks(
    parallel: Option<&DataParallel>,
    values: &mut [f64],
) -> Result<(), RunError> {
    match parallel {
        Some(p) => p.all_reduce(values, ReduceOp::Sum),
        None => Ok(()),
    }
}
