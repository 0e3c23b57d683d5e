"""Training a converted model under torch.distributed on the CPU (gloo): the
model, the training loop and the worker that the spawned processes run, so
that the workers and the one-process run they are compared with share them.

The workers do not import the tests' conftest (nor pytest): a spawned
process imports this module and seqkernels only.
"""

import datetime
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.tensor import DTensor

import seqkernels

WORLD_SIZE = 2
STEPS = 3
LR = 0.1


class Tagger(torch.nn.Module):
    """torch.nn modules of three op families: an LSTM encoder, self-attention
    over its outputs (the sdpa op), and a GRU cell over the last two steps'
    context, with a linear head."""

    def __init__(self):
        super().__init__()
        kw = dict(dtype=torch.float64)
        self.lstm = torch.nn.LSTM(3, 4, bidirectional=True, **kw)
        self.attn = torch.nn.MultiheadAttention(8, 2, **kw)
        self.cell = torch.nn.GRUCell(8, 5, **kw)
        self.head = torch.nn.Linear(5, 2, **kw)

    def forward(self, x):
        h, _ = self.lstm(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head(self.cell(a[-1], self.cell(a[-2])))


def converted_tagger(backend, state):
    """A :class:`Tagger` converted to seqkernels on ``backend``, holding
    ``state``."""
    model = seqkernels.convert(Tagger(), backend=backend)
    model.load_state_dict(state)
    return model


def setup(seed=0, T=5, B=4):
    """The initial parameters and the batches ``(x [T,B,3], target [B,2])``
    of every step; B splits evenly over :data:`WORLD_SIZE` ranks."""
    torch.manual_seed(seed)
    batches = [(torch.randn(T, B, 3, dtype=torch.float64),
                torch.randn(B, 2, dtype=torch.float64)) for _ in range(STEPS)]
    return Tagger().state_dict(), batches


def train(model, batches):
    """:data:`STEPS` SGD steps on the mean squared error, one batch each.

    The loss is a mean over the batch, so the mean of the ranks' gradients
    over equal shares of a batch (what DDP and FSDP2 compute) is the
    gradient of one process over the whole batch."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for x, target in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        opt.step()


def _share(batches, rank):
    # This rank's share of the batch dimension (x is [T, B, I]).
    n = batches[0][1].shape[0] // WORLD_SIZE
    rows = slice(rank * n, (rank + 1) * n)
    return [(x[:, rows], target[rows]) for x, target in batches]


def _wrapped(model, wrapper):
    if wrapper == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    if wrapper == "ddp_compiled":
        # aot_eager: dynamo and AOT autograd trace through DDP, without
        # inductor's C++ compile (seconds on two cores).
        return torch.compile(torch.nn.parallel.DistributedDataParallel(model),
                             backend="aot_eager")
    from torch.distributed.fsdp import fully_shard
    for child in (model.lstm, model.attn, model.cell):
        fully_shard(child)
    return fully_shard(model)


def _full_state(model):
    # FSDP2 holds each parameter as a DTensor sharded over the ranks.
    return {k: v.full_tensor() if isinstance(v, DTensor) else v
            for k, v in model.state_dict().items()}


def _worker(rank, store_file, job_file, out_file):
    # Ranks stuck in mismatched collectives fail after the timeout instead
    # of hanging the suite (gloo's default is 30 minutes); a rank that
    # raises is ended with the others by mp.spawn.
    dist.init_process_group("gloo", init_method=f"file://{store_file}",
                            rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=120))
    try:
        jobs, state, batches = torch.load(job_file)
        results = {}
        for wrapper, backend in jobs:
            model = converted_tagger(backend, state)
            train(_wrapped(model, wrapper), _share(batches, rank))
            results[wrapper, backend] = _full_state(model)
        if rank == 0:
            torch.save(results, out_file)
        # Both ranks leave together: a rank that tore its group down while
        # the other still had gloo work in flight aborted it (SIGABRT,
        # "terminate called without an active exception", seen once in CI
        # under load).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def train_distributed(jobs, state, batches, tmp_path):
    """Train :func:`converted_tagger` from ``state`` on :data:`WORLD_SIZE`
    spawned CPU processes (gloo), each on its share of every batch, once per
    job ``(wrapper, backend)`` with ``wrapper`` "ddp"
    (DistributedDataParallel), "ddp_compiled" (torch.compile of it) or
    "fsdp2" (``fully_shard`` on each module of ours and the root); return
    the trained parameters by job.

    The process group meets in a file under ``tmp_path`` (no port to pick,
    so parallel test workers cannot collide)."""
    job_file, out_file = tmp_path / "jobs.pt", tmp_path / "trained.pt"
    torch.save((jobs, state, batches), job_file)
    mp.spawn(_worker, nprocs=WORLD_SIZE,
             args=(os.fspath(tmp_path / "store"), job_file, out_file))
    return torch.load(out_file)
