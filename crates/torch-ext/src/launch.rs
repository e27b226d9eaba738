//! Where a process stands in a data-parallel job, from the environment the launchers people
//! already use give it: torchrun (and Kubernetes' PyTorchJob, which sets the same variables),
//! Slurm's `srun`, and mlm-train's own `--nproc-per-node` (which sets torchrun's variables).
//! Pure functions of the environment, so every launcher is tested without one.

use std::collections::HashMap;

/// The launcher a process was started by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `RANK` and `WORLD_SIZE` set: torchrun, PyTorchJob, or `mlm-train --nproc-per-node`.
    Torchrun,
    /// `SLURM_PROCID` and `SLURM_NTASKS` (> 1) set: one task of `srun`.
    Slurm,
}

/// Who hosts the c10d TCPStore the ranks meet through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRole {
    /// This process hosts it (rank 0 when no agent does).
    Server,
    /// Another process does (rank 0, or torchrun's agent).
    Client,
}

/// One process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    pub launcher: Launcher,
    pub rank: u32,
    pub world_size: u32,
    /// The process's index on its machine: its GPU.
    pub local_rank: u32,
    pub master_addr: String,
    pub master_port: u16,
    pub store_role: StoreRole,
    /// Keys under this prefix (torchrun's agent store: `/worker/attempt_<restart count>`).
    pub store_prefix: String,
    /// `GLOO_SOCKET_IFNAME`: the network interfaces Gloo binds, comma-separated.
    pub gloo_interfaces: String,
}

/// A launcher's environment that cannot be used, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {problem}")]
pub struct LaunchError {
    pub variable: &'static str,
    pub value: String,
    pub problem: String,
}

/// The port used under Slurm when `MASTER_PORT` is not set: derived from the job id, so two
/// jobs sharing a node do not collide (the convention of Lightning and others).
pub fn slurm_default_port(job_id: u64) -> u16 {
    (20_000 + job_id % 10_000) as u16
}

/// The job's place from `vars` (the process environment in production). `None`: a single
/// process (no launcher variables, or a Slurm allocation of one task).
pub fn from_vars(vars: &HashMap<String, String>) -> Result<Option<LaunchEnv>, LaunchError> {
    let get = |name: &str| vars.get(name).map(String::as_str).filter(|v| !v.is_empty());
    if get("RANK").is_some() && get("WORLD_SIZE").is_some() {
        return torchrun(&get).map(Some);
    }
    if let (Some(_), Some(tasks)) = (get("SLURM_PROCID"), get("SLURM_NTASKS"))
        && number::<u32>("SLURM_NTASKS", tasks)? > 1
    {
        return slurm(&get).map(Some);
    }
    Ok(None)
}

/// The process environment's place (see [`from_vars`]).
pub fn from_env() -> Result<Option<LaunchEnv>, LaunchError> {
    from_vars(&std::env::vars().collect())
}

fn torchrun<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<LaunchEnv, LaunchError> {
    let rank = required(get, "RANK")?;
    let world_size = required(get, "WORLD_SIZE")?;
    check_rank("RANK", rank, world_size)?;
    let local_rank = get("LOCAL_RANK").map_or(Ok(0), |v| number("LOCAL_RANK", v))?;
    let agent_store = get("TORCHELASTIC_USE_AGENT_STORE") == Some("True");
    let attempt = get("TORCHELASTIC_RESTART_COUNT").unwrap_or("0");
    Ok(LaunchEnv {
        launcher: Launcher::Torchrun,
        rank,
        world_size,
        local_rank,
        master_addr: get("MASTER_ADDR").unwrap_or("127.0.0.1").to_owned(),
        master_port: get("MASTER_PORT").map_or(Ok(29_500), |v| number("MASTER_PORT", v))?,
        store_role: if !agent_store && rank == 0 {
            StoreRole::Server
        } else {
            StoreRole::Client
        },
        store_prefix: if agent_store {
            format!("/worker/attempt_{attempt}")
        } else {
            String::new()
        },
        gloo_interfaces: get("GLOO_SOCKET_IFNAME").unwrap_or("").to_owned(),
    })
}

fn slurm<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<LaunchEnv, LaunchError> {
    let rank = required(get, "SLURM_PROCID")?;
    let world_size = required(get, "SLURM_NTASKS")?;
    check_rank("SLURM_PROCID", rank, world_size)?;
    let local_rank = get("SLURM_LOCALID").map_or(Ok(0), |v| number("SLURM_LOCALID", v))?;
    let master_addr = match get("MASTER_ADDR") {
        Some(addr) => addr.to_owned(),
        None => {
            let (variable, nodes) = get("SLURM_JOB_NODELIST")
                .map(|v| ("SLURM_JOB_NODELIST", v))
                .or_else(|| get("SLURM_NODELIST").map(|v| ("SLURM_NODELIST", v)))
                .ok_or_else(|| LaunchError {
                    variable: "SLURM_JOB_NODELIST",
                    value: String::new(),
                    problem: "unset, and MASTER_ADDR is unset: no host to meet at".into(),
                })?;
            first_host(nodes).ok_or_else(|| LaunchError {
                variable,
                value: nodes.to_owned(),
                problem: "not a Slurm host list".into(),
            })?
        }
    };
    let master_port = match get("MASTER_PORT") {
        Some(port) => number("MASTER_PORT", port)?,
        None => {
            slurm_default_port(get("SLURM_JOB_ID").map_or(Ok(0), |v| number("SLURM_JOB_ID", v))?)
        }
    };
    Ok(LaunchEnv {
        launcher: Launcher::Slurm,
        rank,
        world_size,
        local_rank,
        master_addr,
        master_port,
        store_role: if rank == 0 {
            StoreRole::Server
        } else {
            StoreRole::Client
        },
        store_prefix: String::new(),
        gloo_interfaces: get("GLOO_SOCKET_IFNAME").unwrap_or("").to_owned(),
    })
}

/// The first host of a Slurm host list: `node[01-04,07],gpu5` -> `node01`,
/// `rack[1-2]-n[08-09]` -> `rack1-n08`.
pub fn first_host(list: &str) -> Option<String> {
    let mut host = String::new();
    let mut depth = 0;
    let mut in_range_tail = false;
    for c in list.trim().chars() {
        match (c, depth) {
            (',', 0) => break,
            ('[', 0) => {
                depth = 1;
                in_range_tail = false;
            }
            (']', 1) => depth = 0,
            (',' | '-', 1) => in_range_tail = true,
            (_, 0) => host.push(c),
            (_, _) if !in_range_tail => host.push(c),
            _ => {}
        }
    }
    (depth == 0 && !host.is_empty()).then_some(host)
}

fn required<'a, T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<&'a str>,
    variable: &'static str,
) -> Result<T, LaunchError> {
    let value = get(variable).ok_or_else(|| LaunchError {
        variable,
        value: String::new(),
        problem: "unset".into(),
    })?;
    number(variable, value)
}

fn number<T: std::str::FromStr>(variable: &'static str, value: &str) -> Result<T, LaunchError> {
    value.trim().parse().map_err(|_| LaunchError {
        variable,
        value: value.to_owned(),
        problem: "not a non-negative integer in range".into(),
    })
}

fn check_rank(variable: &'static str, rank: u32, world_size: u32) -> Result<(), LaunchError> {
    if world_size == 0 || rank >= world_size {
        return Err(LaunchError {
            variable,
            value: rank.to_string(),
            problem: format!("must be below the world size {world_size} (and that above 0)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_launcher_is_one_process() {
        assert_eq!(from_vars(&vars(&[("HOME", "/root")])), Ok(None));
        let one_task = vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]);
        assert_eq!(from_vars(&one_task), Ok(None));
    }

    #[test]
    fn torchrun_with_rank_zero_hosting_the_store() {
        let env = from_vars(&vars(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "0"),
            ("MASTER_ADDR", "10.0.0.5"),
            ("MASTER_PORT", "29511"),
            ("TORCHELASTIC_USE_AGENT_STORE", "False"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(env.launcher, Launcher::Torchrun);
        assert_eq!((env.rank, env.world_size, env.master_port), (0, 2, 29511));
        assert_eq!(env.store_role, StoreRole::Server);
        assert_eq!(env.store_prefix, "");
    }

    #[test]
    fn torchrun_agent_store_is_a_prefixed_client_for_every_rank() {
        let env = from_vars(&vars(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "0"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(env.store_role, StoreRole::Client);
        assert_eq!(env.store_prefix, "/worker/attempt_2");
    }

    #[test]
    fn slurm_meets_at_the_first_host_on_a_job_derived_port() {
        let env = from_vars(&vars(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_ID", "123456"),
            ("SLURM_JOB_NODELIST", "gpu[07-10],login1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(env.launcher, Launcher::Slurm);
        assert_eq!((env.rank, env.world_size, env.local_rank), (5, 8, 1));
        assert_eq!(env.master_addr, "gpu07");
        assert_eq!(env.master_port, 23456);
        assert_eq!(env.store_role, StoreRole::Client);
    }

    #[test]
    fn slurm_master_addr_overrides_the_host_list() {
        let env = from_vars(&vars(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29999"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (env.master_addr.as_str(), env.master_port),
            ("127.0.0.1", 29999)
        );
        assert_eq!(env.store_role, StoreRole::Server);
    }

    #[test]
    fn host_lists() {
        assert_eq!(first_host("node[01-04,07],gpu5").as_deref(), Some("node01"));
        assert_eq!(first_host("a1,a2").as_deref(), Some("a1"));
        assert_eq!(first_host("node[3]").as_deref(), Some("node3"));
        assert_eq!(
            first_host("rack[1-2]-n[08-09]").as_deref(),
            Some("rack1-n08")
        );
        assert_eq!(first_host("node[1-2").as_deref(), None);
        assert_eq!(first_host("").as_deref(), None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = from_vars(&vars(&[("RANK", "2"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert_eq!(err.variable, "RANK");
        let err = from_vars(&vars(&[("RANK", "x"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert_eq!(err.variable, "RANK");
        let err = from_vars(&vars(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_PORT", "70000"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "MASTER_PORT");
        let err = from_vars(&vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")])).unwrap_err();
        assert_eq!(err.variable, "SLURM_JOB_NODELIST");
    }
}
