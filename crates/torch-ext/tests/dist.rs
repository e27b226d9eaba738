//! c10d through the shim, two ranks in one process (threads), Gloo on 127.0.0.1: the
//! collectives and the Reducer average gradients as DistributedDataParallel does.

use std::net::TcpListener;
use std::sync::Once;
use std::thread;
use std::time::Duration;

use mlm_torch_ext::dist::{Backend, BucketCaps, ProcessGroup, ReduceOp, Reducer, Store};
use tch::{Kind, Tensor};

const TIMEOUT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Both ranks live in this one process, which c10d's flight recorder does not expect: its
/// first record for a process group writes a map shared by all groups before it takes its
/// lock (`FlightRecorder::recordWithResetEnabled`, torch 2.11), and two ranks recording at
/// once crashed this binary (SIGSEGV in `std::_Rb_tree_insert_and_rebalance` under
/// `verify_params_across_processes`, 1 run in 24 with another copy running beside it). A
/// job has one rank a process. Off here (a buffer of 0 entries), before any group exists.
fn one_process_many_ranks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test calls this before it starts a thread or touches c10d, and the
        // others wait in `call_once` meanwhile: no thread reads the environment as it changes.
        unsafe { std::env::set_var("TORCH_FR_BUFFER_SIZE", "0") };
    });
}

fn on_two_ranks<T: Send + 'static>(body: fn(ProcessGroup) -> T) -> Vec<T> {
    one_process_many_ranks();
    let port = free_port();
    let server = Store::open("127.0.0.1", port, true, "", TIMEOUT).unwrap();
    let handles: Vec<_> = (0..2u32)
        .map(|rank| {
            thread::spawn(move || {
                let store = Store::open("127.0.0.1", port, false, "test", TIMEOUT).unwrap();
                let group =
                    ProcessGroup::new(&store, rank, 2, Backend::Gloo, TIMEOUT, "lo").unwrap();
                body(group)
            })
        })
        .collect();
    let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
    drop(server);
    results
}

#[test]
fn all_reduce_broadcast_and_barrier() {
    let results = on_two_ranks(|group| {
        let rank = f64::from(group.rank());
        let sum = Tensor::from_slice(&[rank + 1.0, 10.0 * rank]);
        group.all_reduce(&[&sum], ReduceOp::Sum).unwrap();
        let max = Tensor::from_slice(&[rank]);
        group.all_reduce(&[&max], ReduceOp::Max).unwrap();
        let from_zero = Tensor::from_slice(&[rank + 7.0]);
        group.broadcast(&[&from_zero], 0).unwrap();
        group.barrier().unwrap();
        (
            Vec::<f64>::try_from(&sum).unwrap(),
            max.double_value(&[0]),
            from_zero.double_value(&[0]),
        )
    });
    for (sum, max, from_zero) in results {
        assert_eq!(sum, vec![3.0, 10.0]);
        assert_eq!(max, 1.0);
        assert_eq!(from_zero, 7.0);
    }
}

/// y = w . x on rank-specific x: after one synced backward both ranks hold the mean of the
/// two ranks' gradients; a backward without prepare_for_backward (no_sync) only accumulates.
#[test]
fn reducer_averages_gradients_and_no_sync_accumulates() {
    let results = on_two_ranks(|group| {
        let weight = Tensor::zeros([3], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
        let reducer = Reducer::new(
            &group,
            &[("w".to_string(), weight.shallow_clone())],
            BucketCaps::default(),
            true,
        )
        .unwrap();
        let rank = f64::from(group.rank());
        // no_sync micro-batch: gradient x1 stays local.
        let x1 = Tensor::from_slice(&[1.0 + rank, 0.0, 0.0]);
        (&weight * &x1).sum(Kind::Double).backward();
        // synced micro-batch: (x1 + x2) averaged over ranks.
        let x2 = Tensor::from_slice(&[0.0, 2.0 * rank, 1.0]);
        reducer.prepare_for_forward().unwrap();
        let y = (&weight * &x2).sum(Kind::Double);
        reducer.prepare_for_backward().unwrap();
        y.backward();
        Vec::<f64>::try_from(&weight.grad()).unwrap()
    });
    // rank 0: x1 = [1,0,0], x2 = [0,0,1]; rank 1: x1 = [2,0,0], x2 = [0,2,1].
    for grad in results {
        assert_eq!(grad, vec![1.5, 1.0, 1.0]);
    }
}

#[test]
fn a_rank_that_never_joins_times_out() {
    one_process_many_ranks();
    let port = free_port();
    let _server = Store::open("127.0.0.1", port, true, "", TIMEOUT).unwrap();
    let store = Store::open("127.0.0.1", port, false, "", TIMEOUT).unwrap();
    let keys = vec!["joined/0".to_string(), "joined/1".to_string()];
    store.set("joined/0", b"1").unwrap();
    assert!(!store.check(&keys).unwrap());
    let err = store.wait(&keys, Duration::from_millis(300)).unwrap_err();
    assert!(err.to_string().contains("store wait"), "{err}");
}
