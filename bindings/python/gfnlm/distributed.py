"""Data-parallel training across processes and hosts: the library links no MPI; this module brings the all-reduce.

    import gfnlm, gfnlm.distributed
    dist = gfnlm.distributed.mpi()                # mpi4py's COMM_WORLD (run under mpirun -np K)
    tr = gfnlm.GFlowNetTrainer(model, lora, reward, prompts, batch_size=8, distributed=dist)
    tr.train(100)                                 # K ranks × 8 trajectories = one process × 8K
    tr.save("ckpt")                               # rank 0 writes; other ranks: no-op

Every rank samples its own share of each micro-batch; after the local backward the library hands one float32 buffer
(gradients, log Z gradients, statistics, a replica digest) to `allreduce_mean`, which must replace it in place with
the element-wise mean over the ranks. The first step compares every rank's configuration and refuses (GfnError
GFN_ERR_STATE naming the difference) if they differ. `mpi()` bounds every exchange: a rank that died or hangs makes
the others print a message and call MPI_Abort after `timeout` seconds instead of waiting forever.
"""
from __future__ import annotations

import ctypes
import sys
import time

import numpy as np

from . import _lib


class Exchange:
    """An all-reduce for the trainers: subclass and implement `allreduce_mean(buffer)` (a float32 numpy array to
    replace in place by its element-wise mean over all ranks, the same bytes on every rank). Counts calls, bytes and
    seconds spent (for benchmarks)."""

    def __init__(self, rank: int, world_size: int, exchange_replay: bool = False):
        self.rank, self.world_size = int(rank), int(world_size)
        self.exchange_replay = bool(exchange_replay)
        self.calls, self.bytes, self.seconds = 0, 0, 0.0
        self.error = None

    def allreduce_mean(self, buffer: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _callback(self):
        def fn(_user_data, ptr, count):
            try:
                buf = np.ctypeslib.as_array(ptr, shape=(int(count),))
                t0 = time.perf_counter()
                self.allreduce_mean(buf)
                self.seconds += time.perf_counter() - t0
                self.calls += 1
                self.bytes += 4 * int(count)
                return 0
            except BaseException as e:  # the step fails with GFN_ERR_CALLBACK; the cause is kept
                self.error = e
                return 1
        return _lib.ALLREDUCE_FN(fn)

    def attach(self, handle, setter) -> None:
        """Makes the trainer `handle` a replica (`setter`: gfn_gflownet_set_distributed or gfn_sft_set_distributed).
        The callback object is kept on this Exchange, which must outlive the trainer."""
        fn = self._callback()
        self._fns = getattr(self, "_fns", []) + [fn]  # alive as long as this Exchange (trainers may share it)
        p = _lib.gfn_distributed_default_params()
        p.rank, p.world_size = self.rank, self.world_size
        p.exchange_replay = 1 if self.exchange_replay else 0
        p.allreduce = ctypes.cast(fn, ctypes.c_void_p)
        _lib.check(setter(handle, ctypes.byref(p)))

    def raise_error(self, err):
        """Re-raises a trainer's GfnError with the exchange's own exception as its cause, if there was one."""
        if self.error is not None:
            e, self.error = self.error, None
            raise err from e
        raise err


class MPIExchange(Exchange):
    """mpi4py's all-reduce: MPI_Iallreduce(MPI_IN_PLACE, SUM) polled until done or `timeout` seconds (then a message
    on stderr and comm.Abort(1): MPI kills every rank, a checkpoint written before stays intact), then division by
    the world size — the same float operation on the same summed bytes on every rank."""

    def __init__(self, comm=None, timeout: float = 120.0, exchange_replay: bool = False):
        from mpi4py import MPI  # only the host needs MPI
        self._MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        super().__init__(self.comm.Get_rank(), self.comm.Get_size(), exchange_replay)
        self.timeout = float(timeout)

    def allreduce_mean(self, buffer: np.ndarray) -> None:
        MPI = self._MPI
        req = self.comm.Iallreduce(MPI.IN_PLACE, [buffer, MPI.FLOAT], op=MPI.SUM)
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not req.Test():
            if time.monotonic() > deadline:
                self.abort(f"gfnlm rank {self.rank}/{self.world_size}: the gradient exchange did not complete within "
                           f"{self.timeout:g} s (another rank died, hangs or stopped calling it): aborting every rank")
            if pause:
                time.sleep(pause)
            pause = min(1e-3, pause * 2 if pause else 2e-5)
        if self.world_size > 1:
            np.divide(buffer, np.float32(self.world_size), out=buffer)

    def abort(self, message: str, code: int = 1):
        """Prints `message` and stops every rank (MPI_Abort)."""
        print(message, file=sys.stderr, flush=True)
        self.comm.Abort(code)


class LocalExchange(Exchange):
    """A world of one (no MPI): the buffer is its own mean. The trainer still takes the distributed path (rank-sliced
    seeds, per-rank replay RNG) — for tests and for counting the bytes a step would exchange."""

    def __init__(self):
        super().__init__(0, 1)

    def allreduce_mean(self, buffer: np.ndarray) -> None:
        pass


def mpi(comm=None, timeout: float = 120.0, exchange_replay: bool = False) -> MPIExchange:
    """An MPI exchange over `comm` (default mpi4py's COMM_WORLD); needs mpi4py and a run under mpirun. `timeout`
    bounds each exchange (seconds; the first one includes the slowest rank's start-up and first rollout).
    `exchange_replay`: each rank's best fresh trajectory of a step goes to every rank's replay buffer (GFlowNet with
    p_replay > 0); otherwise replay buffers stay per rank."""
    return MPIExchange(comm, timeout, exchange_replay)
