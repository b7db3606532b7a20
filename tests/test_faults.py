"""Faults a long Kaggle run meets: NaN losses, kills, half-written checkpoints, full disks, untrusted pickles."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import TINY, tiny_overrides
from vidkit import files
from vidkit.engine import train
from vidkit.config import load_config
from vidkit.flows.cv import run_train
from vidkit.errors import VidkitError
from vidkit.models import create_model, registry
from vidkit.models.weights import read_state_dict, trusting_pickles


def _cfg(tiny_comp, out, **kw):
    overrides = tiny_overrides()
    overrides.update({"comp": str(tiny_comp), "out_dir": str(out), "fold": "0", "epochs": "2"})
    overrides.update({k: str(v) for k, v in kw.items()})
    return load_config("r3d18_demo", overrides)


def _nan_probe(bad_calls):
    """An r3d whose training forward returns NaN logits on the given call numbers (1-based)."""
    def build(num_classes, pretrained=None, num_frames=None, image_size=None, **kw):
        model = create_model("r3d_18", num_classes, num_frames=num_frames, image_size=image_size, **kw)
        forward, calls = model.forward, [0]

        def maybe_nan(x):
            out = forward(x)
            if model.training:
                calls[0] += 1
                if bad_calls(calls[0]):
                    return out * float("nan")
            return out
        model.forward = maybe_nan
        return model
    return build


def test_a_nan_step_is_skipped_and_counted(tiny_comp, tmp_path, monkeypatch):
    monkeypatch.setitem(registry._builders, "nan_probe", _nan_probe(lambda n: n == 2))
    run_train(_cfg(tiny_comp, tmp_path, model="nan_probe"))
    records = [json.loads(line) for line in (tmp_path / "fold0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["nonfinite_steps"] for r in records] == [1, 1]
    assert records[-1]["step"] == 3  # 4 batches, one skipped
    weights = load_file(str(tmp_path / "fold0" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_consecutive_nans_stop_with_the_last_good_checkpoint(tiny_comp, tmp_path, monkeypatch):
    monkeypatch.setitem(registry._builders, "nan_probe", _nan_probe(lambda n: n > 2))  # epoch 0 is clean
    with pytest.raises(VidkitError, match=r"2 consecutive NaN/inf losses at epoch 1 .* last good checkpoint is"):
        run_train(_cfg(tiny_comp, tmp_path, model="nan_probe", max_bad_steps=2, epochs=3))
    weights = load_file(str(tmp_path / "fold0" / "model.safetensors"))  # epoch 0's, whole and finite
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tiny_comp, tmp_path):
    args = [f"{k}={v}" for k, v in {"comp": tiny_comp, "fold": -1, "epochs": 3, "save_every": 1}.items()] + TINY
    run_train(_cfg(tiny_comp, tmp_path / "ref", fold=-1, epochs=3, save_every=1))
    cmd = [sys.executable, "-m", "vidkit", "train", "r3d18_demo", f"out_dir={tmp_path / 'run'}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "run" / "full" / "state" / "progress.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:  # state/ is swapped for state.tmp/ at every save: the file can vanish between the check and the read
            step = json.loads(progress.read_text())["step"]
        except (FileNotFoundError, json.JSONDecodeError):
            step = -1
        if step >= 4:  # epoch 1 (3 steps an epoch)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    done = subprocess.run(cmd + ["resume=true"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ref = load_file(str(tmp_path / "ref" / "full" / "model.safetensors"))
    got = load_file(str(tmp_path / "run" / "full" / "model.safetensors"))
    assert all(torch.allclose(ref[k].float(), got[k].float(), atol=1e-4) for k in ref)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "full" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]


def test_a_kill_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(3)}, str(path))

    class Killed(BaseException):
        pass

    def dies_halfway(fd):  # the new bytes are in the temporary file, not yet flushed to disk nor in place
        raise Killed

    monkeypatch.setattr(files.os, "fsync", dies_halfway)  # every write goes through vidkit.files.atomic_write
    acc = type("Acc", (), {"is_main_process": True, "get_state_dict": lambda self, m: m.state_dict(),
                           "unwrap_model": lambda self, m, **kw: m, "wait_for_everyone": lambda self: None})()
    with pytest.raises(Killed):
        train.save_weights(acc, torch.nn.Linear(3, 3), path)
    assert torch.equal(load_file(str(path))["w"], torch.ones(3))


def test_resume_survives_a_kill_during_the_state_swap(tiny_comp, tmp_path, monkeypatch):
    run_train(_cfg(tiny_comp, tmp_path, epochs=3, max_steps=3))  # leaves fold0/state
    state = tmp_path / "fold0" / "state"
    os.replace(state, state.with_name("state.old"))  # as if killed between the two renames
    run_train(_cfg(tiny_comp, tmp_path, epochs=3, resume=True))
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "fold0" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]


def test_unwritable_or_full_output_fails_before_training(tiny_comp, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(VidkitError, match="out_dir: cannot write to"):
        run_train(_cfg(tiny_comp, blocker / "run"))
    import vidkit.flows.cv
    monkeypatch.setattr(vidkit.flows.cv.shutil, "disk_usage", lambda p: type("U", (), {"free": 10_000_000})())
    with pytest.raises(VidkitError, match=r"GB free; this run needs about"):
        run_train(_cfg(tiny_comp, tmp_path / "run"))
    assert not (tmp_path / "run" / "fold0").exists()


def test_pickled_checkpoints_need_an_explicit_trust_flag(tmp_path):
    path = tmp_path / "full_pickle.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "optimizer_class": torch.optim.SGD}, path)
    with pytest.raises(VidkitError, match="pass trust_pickle=true if you trust the file"):
        read_state_dict(path)
    with trusting_pickles(True):
        assert torch.equal(read_state_dict(path)["w"], torch.zeros(2))
    with pytest.raises(VidkitError):  # and the trust does not outlive the block
        read_state_dict(path)
