"""Drive the CLI as a user would (subprocesses), and check the files CONTRACT.md lists."""
import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest

from helpers import TINY


def vidkit(*args, cwd=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "vidkit", *args], capture_output=True, text=True, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_cv_then_submit_leaves_the_contract_files(tiny_comp, cli_run, tmp_path):
    out = cli_run  # `vidkit cv configs/r3d18_demo.yaml comp=... out_dir=... epochs=2 TINY` (conftest)
    stdout = (out.parent / "cli_stdout.txt").read_text()
    assert stdout.strip().splitlines()[-1] == str(out)  # the folder is printed last
    for name in ("config.yaml", "folds.csv", "oof.csv", "cv_report.json", "confusion_matrix.png", "per_class.png",
                 "curves.png", "run.json"):
        assert (out / name).is_file(), name
    for k in range(3):
        assert (out / f"fold{k}" / "model.safetensors").is_file()
        epochs = [json.loads(line) for line in (out / f"fold{k}" / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs] == [0, 1] and "val_score" in epochs[0]
    report = json.loads((out / "cv_report.json").read_text())
    assert report["metric"] == "accuracy" and len(report["fold_scores"]) == 3
    assert report["protocol"] == "4x2x1 video-level"
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    oof = pd.read_csv(out / "oof.csv")
    assert list(oof.columns) == ["video_id", "fold", "label", "down", "left", "right", "up"] and len(oof) == 24

    sub_path = tmp_path / "sub.csv"
    proc = vidkit("submit", f"comp={tiny_comp}", f"runs={out}", f"out={sub_path}", "tta_clips=3")
    sample = tiny_comp.parent.parent / "data" / "sample_submission.csv"
    sub = pd.read_csv(sub_path)
    assert sub["id"].tolist() == pd.read_csv(sample)["id"].tolist()
    assert set(sub["label"]) <= {"down", "left", "right", "up"}
    assert "valid" in vidkit("validate", str(sub_path), f"sample={sample}").stdout
    archived = [p for p in tmp_path.glob("*_run.csv")]
    assert len(archived) == 1 and archived[0].with_suffix(".json").is_file()


@pytest.mark.slow
def test_train_one_fold_and_all_data(tiny_comp, tmp_path):
    vidkit("train", "r3d18_demo", f"comp={tiny_comp}", f"out_dir={tmp_path}", "fold=1", "epochs=1", *TINY)
    assert (tmp_path / "fold1" / "model.safetensors").is_file() and (tmp_path / "fold1" / "oof.csv").is_file()
    vidkit("train", "r3d18_demo", f"comp={tiny_comp}", f"out_dir={tmp_path}", "fold=-1", "epochs=1", *TINY)
    assert (tmp_path / "full" / "model.safetensors").is_file()
    assert "val_score" not in (tmp_path / "full" / "metrics.jsonl").read_text()


def test_user_errors_are_one_line(tiny_comp, tmp_path):
    proc = vidkit("train", "r3d18_demo", f"comp={tiny_comp}", "epoch=1", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "unknown key 'epoch'" in proc.stderr
    proc = vidkit("submit", f"comp={tmp_path / 'nope.yaml'}", check=False)
    assert proc.returncode == 2 and "nope.yaml: file not found" in proc.stderr
    sample = tiny_comp.parent.parent / "data" / "sample_submission.csv"
    bad = tmp_path / "bad.csv"
    pd.read_csv(sample).iloc[1:].to_csv(bad, index=False)
    proc = vidkit("validate", str(bad), f"sample={sample}", check=False)
    assert proc.returncode == 2 and "1 ids missing" in proc.stderr


def test_help_and_not_yet_verbs():
    assert "submit" in vidkit("--help").stdout
    assert "keys:" in vidkit("cv", "--help").stdout
    assert "dry_run=true" in vidkit("kernel", "--help").stdout  # every verb is implemented now
    proc = vidkit("nosuchverb", check=False)
    assert proc.returncode == 2 and "unknown verb 'nosuchverb'" in proc.stderr


def test_every_declared_key_is_in_its_help_and_parsed(capsys):
    from vidkit import cli
    for name, cls in cli.VERBS.items():
        assert cli.main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert cls.__doc__.split()[0] in text
        for f in dataclasses.fields(cls):
            if f.metadata.get("config"):
                assert "epochs=10" in text and "mixed_precision=no" in text  # any Config key, with its default
            elif not f.metadata.get("positional"):
                assert f"  {cli.key_name(f)}=" in text and f.metadata["help"] in text, (name, f.name)
    submit = cli.parse("submit", ["runs=a,b", "tta_clips=2", "scale=1.5"])
    assert (submit.runs, submit.tta_clips, submit.scale, submit.out) == ("a,b", 2, 1.5, "submissions/submission.csv")
    assert cli.split_runs("a b,c") == ["a", "b", "c"] and cli.split_runs(None) is None
    train = cli.parse("train", ["r3d18_demo", "epochs=3", "model_args.width=8"])
    assert train.config == "r3d18_demo" and train.load().epochs == 3 and train.load().model_args["width"] == 8


def test_verb_key_errors_are_the_config_errors(capsys):
    from vidkit import cli
    cases = [(["frames", "videos=a", "out=b", "fps=fast"], "frames: fps: expected float, got 'fast'"),
             (["check", "num_frames=2.5"], "check: num_frames: expected int, got '2.5'"),
             (["report", "comp=x.yaml", "colour=red"], "report: unknown key 'colour' (known: comp, runs, out)"),
             (["kernel", "private=maybe"], "kernel: private: expected bool, got 'maybe'"),
             (["folds", "extra"], "folds: takes only key=value arguments, got 'extra'"),
             (["validate", "a.csv", "b.csv"], "expected one submission, got ['a.csv', 'b.csv']"),
             (["frames", "out=b"], "frames: videos=DIR is required"),
             (["cv", "r3d18_demo", "epochz=1"], "unknown key 'epochz'")]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)


def test_a_new_verb_is_one_declaration(capsys, monkeypatch):
    from vidkit import cli
    monkeypatch.setattr(cli, "VERBS", dict(cli.VERBS))  # the registration below is undone after the test

    @cli.verb("hello")
    class Hello:
        """greet someone"""
        who: str = cli.key(cli.REQUIRED, "whom to greet", "NAME")
        times: int = cli.key(1, "how often")

        def main(self):
            print(" ".join(["hello " + self.who] * self.times))
            return 3

    assert cli.main(["hello", "who=ann", "times=2"]) == 3
    assert capsys.readouterr().out.strip() == "hello ann hello ann"
    assert cli.main(["--help"]) == 0 and "hello     greet someone" in capsys.readouterr().out
    assert cli.main(["hello", "--help"]) == 0 and "times=1" in capsys.readouterr().out
    assert cli.main(["hello", "times=2"]) == 2 and "hello: who=NAME is required" in capsys.readouterr().err


LIGHT_VERBS = """
import json, sys
from vidkit.cli import main
HEAVY = ("torch", "timm", "transformers", "accelerate", "albumentations")
for argv in json.loads(sys.argv[1]):
    rc = main(argv)
    print("VERB", argv[0], rc, ",".join(m for m in HEAVY if m in sys.modules) or "none", flush=True)
"""


def test_verbs_that_need_no_model_never_import_torch(tiny_comp, tmp_path):
    """`python -m vidkit` validate/report/folds/check/frames/ensemble/--help start without torch, timm,
    transformers, accelerate or albumentations (seconds of imports): a module-level import of one of them in
    any module these verbs reach fails here, naming the first verb that pulled it in."""
    import cv2
    import numpy as np
    import yaml
    spec = yaml.safe_load(tiny_comp.read_text())
    for k in ("train_dir", "test_dir", "sample_submission"):
        spec[k] = str((tiny_comp.parent / spec[k]).resolve())
    comp = tmp_path / "light.yaml"
    comp.write_text(yaml.safe_dump({**spec, "name": "light"}))
    oof = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "fold": [0, 0, 1, 1], "label": ["up", "down"] * 2,
                        "up": [0.8, 0.3, 0.6, 0.1], "down": [0.2, 0.7, 0.4, 0.9]})
    for name in ("r1", "r2"):
        (tmp_path / "weights" / "light" / name).mkdir(parents=True)
        oof.to_csv(tmp_path / "weights" / "light" / name / "oof.csv", index=False)
        (tmp_path / "weights" / "light" / name / "cv_report.json").write_text(json.dumps(
            {"metric": "accuracy", "score": 1.0, "fold_scores": [1.0, 1.0], "protocol": "4x1x1 video-level"}))
    (tmp_path / "videos").mkdir()
    writer = cv2.VideoWriter(str(tmp_path / "videos" / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(6):
        writer.write(np.full((32, 32, 3), 40 * i, np.uint8))
    writer.release()
    sample = str(tiny_comp.parent / spec["sample_submission"])
    runs = f"runs={tmp_path / 'weights/light/r1'},{tmp_path / 'weights/light/r2'}"
    argvs = [["--help"], ["train", "--help"], ["validate", sample, f"sample={sample}"], ["folds", f"comp={comp}"],
             ["report", f"comp={comp}", f"out={tmp_path}"], ["check", f"comp={comp}", "num_frames=4"],
             ["frames", f"videos={tmp_path / 'videos'}", f"out={tmp_path / 'frames'}"],
             ["ensemble", f"comp={comp}", runs, f"out={tmp_path / 'ens.yaml'}"]]
    proc = subprocess.run([sys.executable, "-c", LIGHT_VERBS, json.dumps(argvs)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    verbs = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("VERB ")]
    assert verbs == [[argv[0], "0", "none"] for argv in argvs], f"verb, exit code, heavy modules: {verbs}"
    assert (tmp_path / "frames" / "v").is_dir() and (tmp_path / "light.folds.csv").is_file()
