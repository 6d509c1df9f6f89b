"""Shared fixtures: the real DAVIS clips, a tiny demo data set, Hydra composition, and hygiene."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
CONF_DIR = ROOT / "conf"

# Under pytest-xdist (`pytest -n N`) the N workers share the cores: each worker and the runs it starts get its share
# of OpenMP threads, since N workers spinning a thread per core each wait on one another. Set before torch loads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(autouse=True)
def _hygiene(monkeypatch):
    """Keep every test from touching the network or leaking env vars, signal handlers, a process group or
    determinism flags into the next one."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    env = dict(os.environ)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    yield
    for s, h in handlers.items():
        signal.signal(s, h)
    for k in set(os.environ) - set(env):
        del os.environ[k]
    import torch

    # a test that failed inside a collective must not leave its process group to the next test
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    torch.use_deterministic_algorithms(False)


def _shared(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.is_dir():
        pytest.skip(f"shared data {name} not found at {p}")
    return p


@pytest.fixture(scope="session")
def davis_root() -> Path:
    return _shared("davis2016")


@pytest.fixture(scope="session")
def demo_videos_root() -> Path:
    return _shared("demo_videos")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A written demo data set: 2 videos x 8 frames x 64x80."""
    from s2d.data.demo import DemoConfig, write_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(num_videos=2, num_frames=8, height=64, width=80, min_objects=2, max_objects=3, seed=3)
    write_demo_dataset(root, cfg)
    return root


@pytest.fixture(scope="module")
def sparse_data(tmp_path_factory):
    """Two demo videos (8 frames, 64x48) and a sparse labelset from their ground truth with 40 % of masks
    removed: the training and fault-tolerance tests' data."""
    import numpy as np

    from s2d.data.demo import DemoConfig, write_demo_dataset
    from s2d.data.sources import open_dataset

    root = tmp_path_factory.mktemp("train_demo")
    write_demo_dataset(root, DemoConfig(num_videos=2, num_frames=8, height=48, width=64, seed=5))
    ds = open_dataset("ytvis", root)
    gt = ds.gt_labelset()
    rng = np.random.default_rng(0)
    for v in gt:
        for inst in v.instances:
            inst.segmentations = [s if rng.random() > 0.4 else None for s in inst.segmentations]
    return ds, gt


@pytest.fixture
def compose(tmp_path):
    """compose(*overrides) -> the resolved config, as `s2d` would build it, with outputs under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from s2d.config import register_configs

    register_configs()

    def _compose(*overrides: str, stage: str = "run"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="s2d", overrides=[f"paths.output_root={tmp_path}/outputs",
                                                                f"stage={stage}", *overrides])

    yield _compose
    GlobalHydra.instance().clear()


def pytest_configure(config):
    # pytest-xdist's load scheduler first hands each worker a quarter of its share in one block, which would give
    # one worker every slow test (they come first, below); one test at a time balances the workers instead
    if hasattr(config.option, "maxschedchunk") and config.option.maxschedchunk is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
    """Start the slow tests first (stable otherwise): under `pytest -n N` the long whole-pipeline and DDP runs
    then spread over the workers instead of finishing on one worker after the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
