"""InfoNCE under torch.distributed contrasts against every process's pairs: two gloo processes give the loss and
(DDP-averaged) gradient of one process on the concatenated batch."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from signt5.models.losses import gather_across_ranks, info_nce

ROWS = (3, 2)  # unequal: a last, shorter batch on one rank


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    generator = torch.Generator().manual_seed(0)
    pose, text = torch.randn(sum(ROWS), 6, generator=generator), torch.randn(sum(ROWS), 4, generator=generator)
    torch.manual_seed(1)
    return pose, text, torch.nn.Linear(6, 4)


def _rank(rank: int, store: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=len(ROWS))
    pose, text, projection = _batch()
    start = sum(ROWS[:rank])
    local = slice(start, start + ROWS[rank])
    loss = info_nce(projection(pose[local]), text[local], 2.0)
    loss.backward()
    grad = projection.weight.grad
    dist.all_reduce(grad)
    grad /= len(ROWS)  # what DDP does
    gathered = gather_across_ranks(pose[local])
    if rank == 0:
        torch.save({"loss": loss.detach(), "grad": grad, "gathered": gathered}, results)
    dist.barrier()  # both leave together: a rank tearing gloo down while the other still runs aborts it
    dist.destroy_process_group()
    # gloo's threads can still be joinable when the interpreter tears down, and std::terminate then aborts the
    # process (SIGABRT, about 1 run in 6 on this machine) after its work is done and saved: leave without teardown
    os._exit(0)


def test_two_processes_equal_one_on_the_concatenated_batch(tmp_path):
    results = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(str(tmp_path / "store"), str(results)), nprocs=len(ROWS), join=True)
    got = torch.load(results, weights_only=True)
    pose, text, projection = _batch()
    expected = info_nce(projection(pose), text, 2.0)
    expected.backward()
    torch.testing.assert_close(got["gathered"], pose)  # rank order, padding cut
    torch.testing.assert_close(got["loss"], expected.detach())
    torch.testing.assert_close(got["grad"], projection.weight.grad)
    local_only = info_nce(projection(pose[: ROWS[0]]), text[: ROWS[0]], 2.0)  # what rank 0 saw before: B negatives
    assert not torch.allclose(local_only, expected)
