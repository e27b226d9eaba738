//! `mlm-train --nproc-per-node N --config FILE`: the one-machine shorthand for
//! `torchrun --nproc-per-node N --no-python mlm-train --config FILE`. It starts N copies of
//! this binary with the environment torchrun gives its workers (rank 0 hosts the store, as
//! under `torchrun` without an agent store), forwards SIGINT/SIGTERM to them, and, like
//! torchrun, stops the others when one fails and exits with that rank's status.

use std::ffi::OsString;
use std::net::TcpListener;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long ranks get to exit after SIGTERM before they are killed (torchrun waits 30 s).
const GRACE: Duration = Duration::from_secs(30);

/// Runs `nproc` ranks of this command line (less `--nproc-per-node`) and waits for them.
pub fn run_ranks(nproc: u32, args: &[OsString]) -> Result<ExitCode> {
    if std::env::var_os("RANK").is_some() || std::env::var_os("WORLD_SIZE").is_some() {
        bail!(
            "--nproc-per-node starts its own ranks, but RANK / WORLD_SIZE are already set (a \
             launcher such as torchrun started this process): drop --nproc-per-node"
        );
    }
    let exe = std::env::current_exe().context("locating the mlm-train binary")?;
    let port = free_port()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the SIGINT/SIGTERM handler")?;
    let mut ranks = Vec::new();
    for rank in 0..nproc {
        let child = rank_command(&exe, args, rank, nproc, port)
            .spawn()
            .with_context(|| format!("starting rank {rank} ({})", exe.display()))?;
        ranks.push(Some(child));
    }
    let status = supervise(&mut ranks, &stop);
    Ok(exit_code(status))
}

/// The command of one rank: torchrun's worker environment (`RANK`, `LOCAL_RANK`,
/// `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `GROUP_RANK`, `MASTER_ADDR`, `MASTER_PORT`, ...).
fn rank_command(
    exe: &std::path::Path,
    args: &[OsString],
    rank: u32,
    nproc: u32,
    port: u16,
) -> Command {
    let mut command = Command::new(exe);
    command
        .args(args)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", nproc.to_string())
        .env("LOCAL_WORLD_SIZE", nproc.to_string())
        .env("GROUP_RANK", "0")
        .env("ROLE_RANK", rank.to_string())
        .env("ROLE_WORLD_SIZE", nproc.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("TORCHELASTIC_USE_AGENT_STORE", "False")
        .env("TORCHELASTIC_RESTART_COUNT", "0");
    // torchrun's rule: one OpenMP thread per worker unless told otherwise, so N ranks do not
    // oversubscribe the cores.
    if nproc > 1 && std::env::var_os("OMP_NUM_THREADS").is_none() {
        command.env("OMP_NUM_THREADS", "1");
    }
    command
}

/// A port free now on 127.0.0.1 for rank 0's store.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port for the store")?;
    Ok(listener.local_addr()?.port())
}

/// Waits for every rank. A signal is passed on to all of them; the first rank that fails
/// makes the others stop (SIGTERM, then SIGKILL after the grace period). Returns the first
/// failure's status, or success.
fn supervise(ranks: &mut [Option<Child>], stop: &AtomicBool) -> Option<ExitStatus> {
    let mut failure: Option<(usize, ExitStatus)> = None;
    let mut terminate_at: Option<Instant> = None;
    let mut forwarded = false;
    while ranks.iter().any(Option::is_some) {
        if stop.load(Ordering::SeqCst) && !forwarded {
            signal_all(ranks, libc::SIGTERM);
            forwarded = true;
        }
        for (rank, slot) in ranks.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                *slot = None;
                if !status.success() && failure.is_none() {
                    eprintln!("mlm-train: rank {rank} exited with {status}; stopping the others");
                    failure = Some((rank, status));
                }
            }
        }
        if failure.is_some() && terminate_at.is_none() {
            signal_all(ranks, libc::SIGTERM);
            terminate_at = Some(Instant::now() + GRACE);
        }
        if terminate_at.is_some_and(|at| Instant::now() >= at) {
            signal_all(ranks, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    failure.map(|(_, status)| status)
}

fn signal_all(ranks: &[Option<Child>], signal: libc::c_int) {
    for child in ranks.iter().flatten() {
        // SAFETY: kill(2) on the pid of a child we have not yet reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
    }
}

/// The launcher's exit status: 0, the failed rank's code, or 128 + its signal.
fn exit_code(failure: Option<ExitStatus>) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match failure {
        None => ExitCode::SUCCESS,
        Some(status) => {
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// The command line without `--nproc-per-node N` / `--nproc-per-node=N`.
pub fn without_nproc_flag(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut kept = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        let text = arg.to_string_lossy();
        if text == "--nproc-per-node" {
            skip_value = true;
        } else if !text.starts_with("--nproc-per-node=") {
            kept.push(arg);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_and_its_value_are_dropped_from_the_ranks_command_line() {
        let args = [
            "--nproc-per-node",
            "2",
            "--config",
            "a.toml",
            "--nproc-per-node=3",
            "--set",
            "x=1",
        ]
        .map(OsString::from);
        let kept = without_nproc_flag(args);
        assert_eq!(
            kept,
            ["--config", "a.toml", "--set", "x=1"].map(OsString::from)
        );
    }
}
