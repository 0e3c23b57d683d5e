"""A converted model trained on two CPU processes (gloo), under
DistributedDataParallel (eager and torch.compile'd) and under FSDP2
(``fully_shard``), ends with the parameters of one process trained over the
whole batches: each rank's share of a batch and the averaging of the
gradients give the same update. Everything runs in float64, so the
comparison is the tolerance rule's float64 one (agreement to ~1e-10)."""

import pytest
import torch
import torch.distributed as dist

from conftest import assert_all_match
from distributed_harness import converted_tagger, setup, train, \
    train_distributed

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no torch.distributed with gloo")


def test_ddp_and_fsdp2_match_one_process(tmp_path):
    # One spawn runs every job: starting the processes is most of the time.
    jobs = [("ddp", "cpu"), ("ddp", "reference"), ("ddp_compiled", "cpu"),
            ("fsdp2", "cpu")]
    state, batches = setup()
    trained = train_distributed(jobs, state, batches, tmp_path)
    rows = []
    for wrapper, backend in jobs:
        one = converted_tagger(backend, state)
        train(one, batches)
        for name, p in one.state_dict().items():
            assert not torch.equal(p, state[name]), f"{name} did not train"
            rows.append((f"{wrapper} {backend} {name}",
                         trained[wrapper, backend][name], p, p))
    assert_all_match(rows, torch.float64)
