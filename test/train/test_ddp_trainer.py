"""Two gloo ranks on CPU: same result as one process, NaN on one rank skipped by both."""

from __future__ import annotations

import pytest
import torch
from train_fakes import FakeLoader, TinyModel

from espnet2.train.distributed import (
    destroy,
    detect_launcher,
    first_slurm_host,
    init_distributed,
    spawn_workers,
)
from espnet2.train.optim import build_optimizer
from espnet2.train.options import TrainerOptions
from espnet2.train.trainer import Trainer, TrainingDiverged


def _train(out_dir, rank: int, world_size: int, nan_at, max_skips: int, info=None) -> dict:
    torch.manual_seed(0)
    model = TinyModel()
    opt = build_optimizer("adam", model.parameters(), {"lr": 1e-2})
    train = FakeLoader(6, global_batch=4, rank=rank, world_size=world_size, nan_at=nan_at)
    valid = FakeLoader(2, global_batch=4, rank=rank, world_size=world_size, seed=1)
    options = TrainerOptions(output_dir=out_dir, max_epoch=2, accum_grad=2,
                             max_consecutive_skips=max_skips, use_tensorboard=False,
                             use_matplotlib=False)
    trainer = Trainer(model, opt, None, train, valid, options, info)
    result = {"error": None}
    try:
        trainer.run()
    except TrainingDiverged as e:
        result["error"] = str(e)
    result.update(params=[p.detach().clone() for p in model.parameters()], step=trainer.step,
                  skipped=trainer.skipped, history=trainer.reporter.history, steps=model.steps)
    return result


SCENARIOS = {
    "match": ({(1, 3)}, 20),  # global utterance 1 of batch 3 -> only rank 1 sees the NaN
    "stop": ({(1, i) for i in range(2, 6)}, 2),  # windows [2,3] and [4,5] on rank 1
}


def _worker(out_dir):
    torch.set_num_threads(1)
    info = init_distributed(ngpu=0, timeout_s=60)
    try:  # both scenarios in one process group: spawning costs more than training here
        for name, (nan_at, max_skips) in SCENARIOS.items():
            result = _train(f"{out_dir}/{name}", info.rank, info.world_size, nan_at, max_skips,
                            info)
            torch.save(result, f"{out_dir}/{name}/result{info.rank}.pt")
    finally:
        destroy()


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    spawn_workers(_worker, 2, str(out))
    return out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_ranks_match_one_process_and_skip_nan_together(ddp_runs, tmp_path):
    ranks = [torch.load(ddp_runs / "match" / f"result{r}.pt", weights_only=False) for r in (0, 1)]
    single = _train(tmp_path, 0, 1, *SCENARIOS["match"])
    assert single["skipped"] == 1 and single["step"] == 5  # 2 epochs x 3 windows - 1 skipped
    for r in ranks:
        assert r["skipped"] == 1 and r["step"] == 5 and r["error"] is None
        assert r["steps"] == single["steps"] == [1, 2, 3, 4, 5]
        for a, b in zip(r["params"], single["params"]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for phase in ("train", "valid"):
        for key, v in single["history"][2][phase].items():
            if key != "lr":
                assert ranks[0]["history"][2][phase][key] == pytest.approx(v, rel=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_nan_on_one_rank_stops_both_after_max_skips(ddp_runs):
    for r in (0, 1):
        res = torch.load(ddp_runs / "stop" / f"result{r}.pt", weights_only=False)
        assert "2 consecutive updates skipped" in res["error"]
        assert res["step"] == 1 and res["skipped"] == 2
    assert (ddp_runs / "stop" / "checkpoint.pth").is_file()


def test_torchrun_env_detection_and_errors():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
           "MASTER_PORT": "1234"}
    info = detect_launcher(env)
    assert (info["rank"], info["world_size"], info["local_rank"]) == (1, 2, 1)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        detect_launcher({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="RANK and WORLD_SIZE"):
        detect_launcher({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="outside"):
        detect_launcher({**env, "RANK": "2"})
    assert detect_launcher({}) is None
    assert init_distributed(0, env={"RANK": "0", "WORLD_SIZE": "1"}).world_size == 1


def test_slurm_env_detection():
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
           "SLURM_NODELIST": "gpu[03-06],cpu1", "SLURM_NTASKS_PER_NODE": "2",
           "SLURM_JOB_ID": "4242"}
    info = detect_launcher(env)
    assert info["launcher"] == "slurm" and info["rank"] == 5 and info["world_size"] == 8
    assert info["local_world_size"] == 2 and info["master_port"] == 29500 + 4242
    assert info["master_addr"] in ("gpu03",)  # scontrol absent here: parsed
    assert detect_launcher({**env, "SLURM_NTASKS": "1"}) is None  # single task: no group
    assert detect_launcher({k: v for k, v in env.items() if k != "SLURM_STEP_ID"}) is None


@pytest.mark.parametrize("nodelist,first", [("node1", "node1"), ("a[1-3]", "a1"),
                                            ("x[07,09-11]y,z2", "x07y"), ("n1,n2", "n1")])
def test_first_slurm_host(nodelist, first):
    assert first_slurm_host(nodelist) == first


def test_destroy_frees_cyclic_ddp_garbage_before_the_process_group(tmp_path):
    """A DDP module that only a reference cycle keeps alive (as torch's lazy ``torch._dynamo``
    import in the first optimizer does to the trainer) must be freed while its process group
    exists: freed after it, the rank aborts at exit ("terminate called without an active
    exception", the old flake of the two-rank tests above)."""
    import gc
    import weakref

    from torch.nn.parallel import DistributedDataParallel

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}",
                                         rank=0, world_size=1)
    gc.disable()  # only destroy() may collect the cycle
    try:
        holder = {"ddp": DistributedDataParallel(torch.nn.Linear(2, 2))}
        holder["self"] = holder
        ref = weakref.ref(holder["ddp"])
        del holder
        assert ref() is not None  # garbage, not yet collected
        destroy()
        assert ref() is None and not torch.distributed.is_initialized()
    finally:
        gc.enable()
        destroy()
