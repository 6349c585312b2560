"""Building on Ray (`reportgen build --ray`): one task per model, the same site as the serial build, a worker
killed mid-build is retried, a failure leaves the model's previous folder as it was, and without Ray `--ray` is
one `Error:` line.

Every build is `reportgen build --quick` of tiny saved models on a small `.npz` dataset, run in a new process as a
user runs it, against one local Ray instance (2 CPUs) started once for this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_cnn, tiny_dataset
from user_models import reportgen_process

MODELS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def ray_address() -> str:
    """One local Ray for these tests; the builds join it as a user joins a cluster (`--ray HOST:PORT`)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
                       object_store_memory=128 * 2**20, configure_logging=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """A project with three tiny saved models (other weights each) on one `.npz` test set."""
    folder = tmp_path_factory.mktemp("zoo")
    data = tiny_dataset()
    np.savez(folder / "data.npz", x_test=data.x_test, y_test=data.y_test, class_names=np.array(data.class_names))
    entries = []
    for seed, name in enumerate(MODELS):
        tiny_cnn(seed=seed).save(folder / f"{name}.keras")
        entries.append(f'[[models]]\nname = "{name}"\nmodel_file = "{name}.keras"\ndataset = "npz:data.npz"\n')
    (folder / "reportgen.toml").write_text('[build]\ncache_dir = ".cache"\n\n' + "\n".join(entries), encoding="utf-8")
    return folder


def build(project: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return reportgen_process("build", "--config", str(project / "reportgen.toml"), "--out", str(out), "--quick", "-q",
                             *extra, cwd=project, timeout=600)


def numbers(report: dict) -> dict:
    """A report without what differs between any two builds (when, how long, where)."""
    return {key: value for key, value in report.items() if key != "build"}


def files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*.png"))}


@pytest.fixture(scope="module")
def serial_site(zoo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "site"
    result = build(zoo, out)
    assert result.returncode == 0, result.stderr
    return out


def test_a_zoo_built_on_ray_is_the_serial_build(zoo, serial_site, ray_address, tmp_path):
    out = tmp_path / "site"
    result = build(zoo, out, "--ray", ray_address)
    assert result.returncode == 0, result.stderr
    for name in MODELS:
        serial = json.loads((serial_site / name / "report.json").read_text())
        on_ray = json.loads((out / name / "report.json").read_text())
        assert numbers(on_ray) == numbers(serial)
        assert serial["build"]["executor"] == "local" and on_ray["build"]["executor"] == "ray"
        assert on_ray["build"]["batch"]["device"] == "cpu"
    pictures = files(out)
    assert len(pictures) > 30 * len(MODELS) and pictures == files(serial_site)
    assert not list(out.glob(".staging-*"))
    index = (out / "index.html").read_text()
    assert all(name in index for name in MODELS)


def test_one_model_with_its_chunks_on_ray_actors_is_the_serial_build(zoo, serial_site, ray_address, tmp_path):
    project = _copy(zoo, tmp_path / "project")
    config = (project / "reportgen.toml").read_text()
    (project / "reportgen.toml").write_text(config.replace("[build]\n", '[build]\ngranularity = "chunk"\n', 1))
    out = tmp_path / "site"
    result = build(project, out, "--model", "alpha", "--ray", ray_address)
    assert result.returncode == 0, result.stderr
    serial = json.loads((serial_site / "alpha" / "report.json").read_text())
    on_actors = json.loads((out / "alpha" / "report.json").read_text())
    assert numbers(on_actors) == numbers(serial)
    assert files(out / "alpha") == files(serial_site / "alpha")


def test_a_worker_killed_mid_build_is_retried_and_the_site_is_whole(zoo, ray_address, tmp_path):
    out = tmp_path / "site"
    command = [sys.executable, "-m", "reportgen", "build", "--config", str(zoo / "reportgen.toml"), "--out", str(out),
               "--quick", "-q", "--ray", ray_address, "--model", "alpha"]
    process = subprocess.Popen(command, cwd=zoo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        if list(out.glob(".staging-alpha-*/*")):  # the worker is writing the model's files
            killed = next(iter(_workers("build_model_job")), None)
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=600)
    assert killed is not None, "the build finished before a worker could be killed"
    assert process.returncode == 0, stderr
    report = json.loads((out / "alpha" / "report.json").read_text())
    assert report["model"]["name"] == "alpha" and len(files(out / "alpha")) > 30
    assert not list(out.glob(".staging-*"))


def test_a_model_failing_on_ray_keeps_its_previous_folder(zoo, serial_site, ray_address, tmp_path):
    out = tmp_path / "site"
    project = _copy(zoo, tmp_path / "project")
    config = (project / "reportgen.toml").read_text()
    shutil.copytree(serial_site, out)  # the site as the serial build left it
    before = {p: p.read_bytes() for p in sorted((out / "beta").rglob("*")) if p.is_file()}
    four = tiny_dataset(num_classes=4)  # the model has 3 outputs: its build fails in the worker, after the checks
    np.savez(project / "four.npz", x_test=four.x_test, y_test=four.y_test, class_names=np.array(four.class_names))
    (project / "reportgen.toml").write_text(config.replace('name = "beta"\nmodel_file = "beta.keras"\n'
                                                           'dataset = "npz:data.npz"',
                                                           'name = "beta"\nmodel_file = "beta.keras"\n'
                                                           'dataset = "npz:four.npz"'))
    result = build(project, out, "--model", "beta", "--ray", ray_address, "--force")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "beta" in lines[0] and "4 classes" in lines[0]
    assert {p: p.read_bytes() for p in sorted((out / "beta").rglob("*")) if p.is_file()} == before
    assert not list(out.glob(".staging-*"))


def test_ray_without_ray_installed_is_one_error_line(zoo, tmp_path):
    hidden = tmp_path / "hidden"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text('raise ImportError("No module named \'ray\'")\n')
    path = os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])
    out = tmp_path / "site"
    result = reportgen_process("build", "--config", str(zoo / "reportgen.toml"), "--out", str(out), "--quick",
                               "--ray", "local", env={"PYTHONPATH": path}, cwd=zoo, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'Error: Ray is not installed: --ray and executor = "ray" need it: pip install "reportgen[ray]"']
    assert not out.exists()


def _copy(zoo: Path, project: Path) -> Path:
    """A project of its own with the zoo's models, data and config."""
    project.mkdir()
    for name in [*(f"{model}.keras" for model in MODELS), "data.npz", "reportgen.toml"]:
        (project / name).symlink_to(zoo / name) if name != "reportgen.toml" else \
            (project / name).write_text((zoo / name).read_text())
    return project


def _workers(task: str) -> list[int]:
    """Process ids of Ray workers running `task` now (Ray names a busy worker's process `ray::TASK`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace") == f"ray::{task}":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_an_unreachable_cluster_is_one_error_line_before_anything_is_written(zoo, tmp_path):
    out = tmp_path / "site"
    result = reportgen_process("build", "--config", str(zoo / "reportgen.toml"), "--out", str(out), "--quick",
                               "--ray", "127.0.0.1:1", cwd=zoo, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach the Ray cluster at 127.0.0.1:1")
    assert not out.exists()
