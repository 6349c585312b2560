"""The batch budget follows the device: a share of a GPU's memory or of RAM, never below what a small CPU machine
gets, settable in the config; the feature-visualization chunks, projections and attributions all read it."""

from __future__ import annotations

import pytest

from reportgen.inputs.config import load_config
from reportgen.methods import budget
from reportgen.util.errors import ReportgenError

RESNET50_224 = 37_000_000  # activation values per image


@pytest.fixture
def device(monkeypatch):
    """Pretend to run on a device of the given kind and memory."""
    def use(kind: str, gib: float) -> None:
        monkeypatch.setattr(budget, "_device_memory", lambda: (kind, int(gib * 2**30)))
    yield use
    budget.set_batch_memory_share(None)


def test_a_cpu_keeps_the_small_machine_budget_and_a_gpu_gets_its_share(device):
    device("cpu", 24)
    assert budget.batch_budget().activation_values == budget.ACTIVATION_BUDGET  # what this machine computed before
    assert budget.batch_rows((224, 224, 3), RESNET50_224) == 1
    device("cpu", 256)  # a large CPU node: 1% of its RAM
    assert budget.batch_rows((224, 224, 3), RESNET50_224) == int(0.01 * 256 * 2**30 / 4) // RESNET50_224
    device("gpu", 80)
    rows = budget.batch_rows((224, 224, 3), RESNET50_224)
    assert rows == int(budget.GPU_SHARE * 80 * 2**30 / 4) // RESNET50_224 and 140 <= rows <= 150
    record = budget.batch_budget().record()
    assert record["device"] == "gpu" and record["device_memory_gib"] == 80.0 and record["share"] == budget.GPU_SHARE


def test_the_share_is_settable_and_checked(device, tmp_path):
    device("gpu", 80)
    budget.set_batch_memory_share(0.05)
    assert budget.batch_rows((224, 224, 3), RESNET50_224) == int(0.05 * 80 * 2**30 / 4) // RESNET50_224
    with pytest.raises(ValueError):
        budget.set_batch_memory_share(1.5)
    path = tmp_path / "reportgen.toml"
    path.write_text("[build]\nbatch_memory_share = 0.1\nexecutor = \"ray\"\ngranularity = \"chunk\"\n")
    config = load_config(path)
    assert (config.batch_memory_share, config.executor, config.granularity) == (0.1, "ray", "chunk")
    for line, message in [("batch_memory_share = 0", "above 0 and at most 1"), ('executor = "dask"', "local, ray"),
                          ('granularity = "layer"', "model, chunk"), ("gpus_per_model = -1", "at least 0")]:
        path.write_text(f"[build]\n{line}\n")
        with pytest.raises(ReportgenError, match=message):
            load_config(path)
