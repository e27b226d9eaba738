"""Times c10d's Gloo all-reduce of one gradient-sized float32 tensor between 2 processes on
127.0.0.1 (the same Gloo the torch wheel ships and mlm-train links): the communication a
data-parallel step adds, without the compute it overlaps with. Prints the median in ms.

    python scripts/bench_allreduce.py PARAMETERS [REPEATS]
"""
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, port, numel, repeats, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    tensor = torch.ones(numel)
    times = []
    for _ in range(repeats + 2):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        times.append(time.perf_counter() - start)
    if rank == 0:
        out.put(statistics.median(times[2:]) * 1e3)
    dist.destroy_process_group()


def main():
    numel = int(float(sys.argv[1]))
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(worker, args=(port, numel, repeats, queue), nprocs=2, start_method="spawn")
    print(f"{queue.get():.2f}")


if __name__ == "__main__":
    main()
