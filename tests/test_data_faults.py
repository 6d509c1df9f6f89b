"""Bad data during training and changed upstream settings (I2): unreadable frames raise or are substituted and
quarantined; a changed masks setting gives new sets downstream."""
from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from s2d.lit.distillation import DistillationModule
from test_training import LOSS, OPTIM, TINY  # the tiny model and solver of the training tests
from _faults import _fit  # noqa: F401


def test_unreadable_frame_raises_or_is_substituted_and_quarantined(tmp_path):
    """I2: a PNG truncated after the data set was opened. on_error=raise: the run stops naming video and frame.
    on_error=substitute: the run finishes, quarantine.jsonl names video and frame, data/substituted is logged,
    and the substitute is the same clip every time (deterministic)."""
    from s2d.data.clips import AugmentConfig, ClipDataset
    from s2d.data.datamodules import ClipDataModule
    from s2d.data.demo import DemoConfig, write_demo_dataset
    from s2d.data.sources import open_dataset

    root = tmp_path / "data"
    write_demo_dataset(root, DemoConfig(num_videos=2, num_frames=6, height=48, width=64, seed=5))
    ds = open_dataset("ytvis", root)
    gt = ds.gt_labelset()
    png = root / "JPEGImages" / "demo_01" / "00002.png"
    png.write_bytes(png.read_bytes()[:200])
    bad = [i for i, (name, start) in enumerate(ClipDataset(ds, gt, length=3).items) if name == "demo_01"
           and start is not None and start <= 2 < start + 3]
    assert bad
    with pytest.raises(Exception, match=r"video 'demo_01', frame 2"):
        ClipDataset(ds, gt, length=3)[bad[0]]

    quarantine = tmp_path / "quarantine.jsonl"
    sub = ClipDataset(ds, gt, length=3, on_error="substitute", quarantine=quarantine, augment=AugmentConfig(size=(48, 64)))
    a, b = sub[bad[0]], sub[bad[0]]
    assert a["substituted"] == 1 and a["index"] != bad[0] and torch.equal(a["clip"], b["clip"])
    rec = json.loads(quarantine.read_text().splitlines()[0])
    assert rec["video"] == "demo_01" and rec["frame"] == 2 and rec["item"] == bad[0]

    class Logged(L.Callback):
        """What the module logged as data/substituted in the steps whose batch had a stand-in clip."""

        def __init__(self):
            self.pairs: list = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch["substituted"]:
                self.pairs.append((batch["substituted"], float(trainer.callback_metrics["data/substituted"])))

    torch.manual_seed(0)
    module = DistillationModule(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, distill_warmup=0, seed=0)
    data = ClipDataModule(ds, gt, "sparse", batch_size=2, seed=0, augment=AugmentConfig(size=(48, 64)),
                                   on_error="substitute", quarantine=str(tmp_path / "q2.jsonl"))
    logged = Logged()
    _fit(tmp_path / "fit", module, data, 6, [logged])
    assert logged.pairs and all(n == v for n, v in logged.pairs)
    assert all(json.loads(line)["video"] == "demo_01" for line in (tmp_path / "q2.jsonl").read_text().splitlines())


def test_a_changed_masks_setting_gives_new_sets_downstream_and_the_old_set_is_refused(compose):
    """A5: a different masks config -> a different masks set id, hence a different keymasks set; a reader asking
    for the new id refuses the old folder instead of reusing it."""
    from s2d.errors import IncompleteSetError
    from s2d.labelset.store import read_labelset
    from s2d.stages import keymasks as keymasks_stage
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    cfg_a = compose("debug=fast", "keymasks.overlays=false")
    cfg_b = compose("debug=fast", "keymasks.overlays=false", "masks.max_masks=3")
    ds = load_data(cfg_a)
    dfp = data_fingerprint(cfg_a, ds)
    masks_a, root_a, fp_a, _ = masks_stage.compute(cfg_a, ds, dfp)
    masks_b, root_b, fp_b, _ = masks_stage.compute(cfg_b, ds, dfp)
    assert fp_a != fp_b and root_a != root_b
    with pytest.raises(IncompleteSetError, match="fingerprint"):
        read_labelset(root_a, fp_b)
    km_a = keymasks_stage.compute(cfg_a, ds, masks_a, fp_a)
    km_b = keymasks_stage.compute(cfg_b, ds, masks_b, fp_b)
    assert km_a.folder != km_b.folder and km_a.fingerprint != km_b.fingerprint


def test_keymask_overlays_do_not_change_the_keymasks_and_are_drawn_when_missing(compose):
    """Overlays are pictures: turning them off must find the same keymask set (and so the same trained models
    downstream), a keymask setting must not; a later run with overlays on draws the gifs the set lacks."""
    from s2d.stages import keymasks as keymasks_stage
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    cfg_off = compose("debug=fast", "keymasks.overlays=false")
    cfg_on = compose("debug=fast", "keymasks.overlays=true")
    cfg_other = compose("debug=fast", "keymasks.overlays=false", "keymasks.lambda_j=0.6")
    ds = load_data(cfg_off)
    masks, _, mfp, _ = masks_stage.compute(cfg_off, ds, data_fingerprint(cfg_off, ds))
    off = keymasks_stage.compute(cfg_off, ds, masks, mfp)
    assert not list((off.folder / "overlays").glob("*.gif"))
    on = keymasks_stage.compute(cfg_on, ds, masks, mfp)
    assert on.fingerprint == off.fingerprint and on.folder == off.folder
    assert sorted(p.stem for p in (on.folder / "overlays").glob("*.gif")) == sorted(ds.names)
    assert keymasks_stage.compute(cfg_other, ds, masks, mfp).fingerprint != off.fingerprint


def test_the_keymask_window_names_the_keymasks_only_where_it_acts(compose):
    """keymasks.window enters the keymask set's fingerprint only when a video of the data is longer than it: data
    that fits in one window keeps the name (and the trained models downstream) it had before the key existed,
    and a window that splits a video names a new set. Checked on the settings (hand-made lengths) and on the
    smoke run's 8-frame videos."""
    from s2d.stages import keymasks as keymasks_stage
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    cfg = compose("debug=fast", "keymasks.overlays=false")
    assert "window" not in keymasks_stage.keymask_settings(cfg, 64)
    assert keymasks_stage.keymask_settings(cfg, 65)["window"] == 64
    assert "window" not in keymasks_stage.keymask_settings(compose("debug=fast", "keymasks.window=0"), 500)
    # keymasks.min_window, where windows can be halved to it: a video of twice its frames, a window of twice them
    assert "min_window" not in keymasks_stage.keymask_settings(cfg, 31)
    assert keymasks_stage.keymask_settings(cfg, 32)["min_window"] == 16
    assert keymasks_stage.keymask_settings(compose("debug=fast", "keymasks.window=0"), 32)["min_window"] == 16
    assert "min_window" not in keymasks_stage.keymask_settings(compose("debug=fast", "keymasks.window=24"), 500)
    assert "min_window" not in keymasks_stage.keymask_settings(compose("debug=fast", "keymasks.min_window=0"), 500)
    ds = load_data(cfg)
    masks, _, mfp, _ = masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))
    fps = [keymasks_stage.compute(compose("debug=fast", "keymasks.overlays=false", f"keymasks.window={w}"),
                                  ds, masks, mfp).fingerprint for w in (0, 8, 64)]
    assert fps[0] == fps[1] == fps[2]                                 # 8-frame videos: no window acts
