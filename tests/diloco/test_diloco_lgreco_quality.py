"""L-GreCo in DiLoCo on the small transformer LM of
``benches.workloads.diloco_language_model``: 4 worker processes, each layer at its own level,
against the same run with the uniform default compressor."""

from __future__ import annotations

from typing import Any

import pytest
from collective_harness import World

torch = pytest.importorskip("torch")

WORLD = 4
H = 25  # as the quality tests' DiLoCo


def _compressors() -> dict[str, Any]:
    from thrifty.diloco.compressors import BlockQuantizer, LGreCo, TopK

    # Streaming DiLoCo's fp4 (one scale per 64 values) is the uniform default; L-GreCo may
    # also take top-5%, fp4 with one scale per 256, or int8, layer by layer.
    levels = [
        TopK(0.05),
        BlockQuantizer("fp4", block=256),
        BlockQuantizer("fp4"),
        BlockQuantizer("int8"),
    ]
    return {"uniform": levels[2], "lgreco": LGreCo(levels, default=2, every=4)}


def _worker(comm: Any) -> dict[str, Any]:
    torch.set_num_threads(1)
    from benches.workloads import diloco_language_model as workload
    from thrifty import diloco

    config = workload.WorkloadConfig()
    out: dict[str, Any] = {}
    for name, compressor in _compressors().items():
        model = workload.make_model(config)
        inner = workload.make_inner_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
        outer = diloco.DiLoCo(model, inner, transport=comm, sync_every=H, quantize=compressor)
        stream = workload.batches(comm.rank, WORLD, config=config)
        for _ in range(config.steps):
            workload.train_step(model, inner, next(stream))
            outer.step()
        outer.close()
        levels = outer.state_dict()["levels"]
        model.load_state_dict(outer.global_parameters(), strict=False)
        out[name] = {
            "eval": workload.evaluate(model, config=config),
            "bytes_sent": outer.stats.bytes_sent,
            "levels": levels,
        }
    return out


@pytest.fixture(scope="module")
def peers() -> list[dict[str, Any]]:
    with World() as world:
        for _ in range(WORLD):
            world.spawn(_worker, world=WORLD, timeout_s=60)
        return [r.value for r in world.results(WORLD, timeout_s=300)]


@pytest.mark.timeout(400)
def test_lgreco_converges_like_the_uniform_default_with_fewer_bytes(
    peers: list[dict[str, Any]],
) -> None:
    for name in ("uniform", "lgreco"):
        assert len({p[name]["eval"] for p in peers}) == 1  # one global model on every worker
    uniform, lgreco = peers[0]["uniform"], peers[0]["lgreco"]
    # Within the default's summed error every outer step, so the same quality.
    assert lgreco["eval"] <= 1.02 * uniform["eval"], (lgreco["eval"], uniform["eval"])
    assert max(p["lgreco"]["bytes_sent"] for p in peers) < min(
        p["uniform"]["bytes_sent"] for p in peers
    )
    # Every worker chose the same levels, and not the uniform ones.
    assert len({str(p["lgreco"]["levels"]) for p in peers}) == 1
    assert any(level != 2 for level in lgreco["levels"][0]), lgreco["levels"]
