"""Every file a verb reads, broken every way: exit code 2, one `error:` line on stderr naming the file, no
traceback, no output file left behind (README "Reliability").

The table is FILES: one row per (verb, file it reads). A row names the file inside a private copy of the
session's tiny competition and run (`Case`), the verb's arguments, the outputs that must not appear, and the
breakages that apply to that file kind. To add a file kind: give it one loader in `vidkit.files` (or built on
it), then add its row here with the breakages that apply (all of BREAKS, less `missing` where a missing file is
legitimately created, e.g. folds drawn on first use) and a `schema` text: valid syntax, wrong columns or keys.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import SHARED, copy_run
from vidkit import cli

GARBAGE = bytes(range(256)) * 8 + b"\x00\xff\xfe" * 100  # not UTF-8, NUL bytes, no header


def truncate(p: Path):
    data = p.read_bytes()
    p.write_bytes(data[: max(1, int(len(data) * 0.6))])


def folder(p: Path):
    p.unlink()
    p.mkdir()


def unreadable(p: Path):
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not bind root")
    p.chmod(0)


BREAKS = {"missing": Path.unlink, "zero_bytes": lambda p: p.write_bytes(b""), "truncated": truncate,
          "garbage": lambda p: p.write_bytes(GARBAGE), "folder": folder, "unreadable": unreadable,
          "schema": None}  # schema: the row's own text (valid syntax, wrong columns/keys/types)
ALL = tuple(BREAKS)


@dataclass
class Case:
    """A private copy: the competition yaml (absolute paths to the session's data), its folds, the sample, a run."""
    root: Path
    comp: Path
    run: Path

    def path(self, name: str) -> Path:
        return {"comp": self.comp, "comp_folds": self.comp.with_name(f"{self.comp.stem}.folds.csv"),
                "sample": self.root / "sample.csv", "train_csv": self.root / "train.csv",
                "submission": self.root / "submission.csv", "ensemble": self.root / "ensemble.yaml",
                "video": self.root / "clip.mp4"}.get(name) or self.run / name


@dataclass
class Row:
    verb: str
    file: str          # Case.path name: a run-folder file (`oof.csv`, `fold0/model.safetensors`) or a named one
    args: tuple        # {comp}, {run}, {root}, {sample}, ... filled from the case
    breaks: tuple = ALL
    schema: str = ""   # valid syntax, wrong schema
    outputs: tuple = ()  # files (relative to the case root) that must not be written


RUN_ARGS = ("runs={run}",)
FILES = [
    Row("validate", "submission", ("{submission}", "sample={sample}"), schema="video,guess\na,b\n"),
    Row("validate", "sample", ("{submission}", "sample={sample}"), schema="video,guess\na,b\n"),
    Row("folds", "comp", ("comp={comp}",), schema="name: [1, 2]\ntrain_dir: 3\nbogus: true\n"),
    Row("folds", "comp_folds", ("comp={comp}",), tuple(b for b in ALL if b != "missing"),  # missing: drawn
        schema="video_id,fold\nx,abc\n"),
    Row("folds", "train_csv", ("comp={comp}",), schema="id,class\na,b\n"),
    Row("report", "cv_report.json", ("comp={comp}", *RUN_ARGS, "out={root}/report"),
        schema='{"metric": "accuracy", "score": "high", "fold_scores": 1}', outputs=("report/runs.md",)),
    Row("report", "fold0/model.safetensors", ("comp={comp}", *RUN_ARGS, "out={root}/report"),
        tuple(b for b in ALL if b != "missing"), outputs=("report/runs.md",)),
    Row("ensemble", "oof.csv", ("comp={comp}", *RUN_ARGS, "out={root}/ens.yaml"),
        schema="video_id,fold,label,down\nv1,0,down,lots\n", outputs=("ens.yaml",)),
    Row("ensemble", "folds.csv", ("comp={comp}", *RUN_ARGS, "out={root}/ens.yaml"), tuple(b for b in ALL if b != "missing"),
        schema="video_id,fold\nv1,zero\n", outputs=("ens.yaml",)),
    Row("ensemble", "run.json", RUN_ARGS + ("out={root}/ens.yaml",), tuple(b for b in ALL if b != "missing"),
        schema="[1, 2, 3]", outputs=("ens.yaml",)),  # missing: the classes come from oof.csv's columns
    Row("gallery", "oof.csv", ("run={run}",), schema="video_id,label\nv1,down\n"),
    Row("gallery", "config.yaml", ("run={run}",), schema="epochs: many\n"),
    Row("submit", "fold0/model.safetensors", ("comp={comp}", *RUN_ARGS, "out={root}/sub/submission.csv"),
        schema="", outputs=("sub/submission.csv",)),
    Row("submit", "ensemble", ("comp={comp}", "ensemble={ensemble}", "out={root}/sub/submission.csv"),
        schema="members: 3\nweights: {a: b}\n", outputs=("sub/submission.csv",)),
    Row("submit", "sample", ("comp={comp}", *RUN_ARGS, "out={root}/sub/submission.csv"),
        schema="video,guess\na,b\n", outputs=("sub/submission.csv",)),
    Row("predict", "video", ("run={run}", "video={video}"), ("missing", "zero_bytes", "truncated", "garbage")),
    Row("predict", "run.json", ("run={run}", "video={video}"), schema='{"classes": 3}'),
    Row("cv", "config.yaml", ("{run}/config.yaml", "comp={comp}", "out_dir={root}/cv", "epochs=1"),
        schema="epochs: many\nnot_a_key: 1\n", outputs=("cv/oof.csv",)),
]
SCHEMA_FOR_CHECKPOINT = b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"w": {"dtype":' + b" " * 8  # a header cut inside


@pytest.fixture(scope="module")
def template(tiny_comp, tiny_run, tmp_path_factory):
    """What every case copies: the tiny competition's yaml (absolute paths), sample, a train csv, a run, a video."""
    root = tmp_path_factory.mktemp("broken_template")
    spec = yaml.safe_load(tiny_comp.read_text())
    for k in ("train_dir", "test_dir"):
        spec[k] = str((tiny_comp.parent / spec[k]).resolve())
    sample = (tiny_comp.parent / spec["sample_submission"]).resolve()
    shutil.copyfile(sample, root / "sample.csv")
    shutil.copyfile(sample, root / "submission.csv")
    spec["sample_submission"] = str(root / "sample.csv")
    (root / "comp.yaml").write_text(yaml.safe_dump(spec))
    shutil.copyfile(tiny_comp.with_name(f"{tiny_comp.stem}.folds.csv"), root / "comp.folds.csv")
    write_video(root / "clip.mp4")
    copy_run(tiny_run, root / "run")
    (root / "ensemble.yaml").write_text(yaml.safe_dump({"metric": "accuracy", "method": "mean",
                                                        "members": {str(root / "run"): 1.0}}))
    return root


def write_video(path: Path):
    """A real H.264 clip from the shared data, else a few frames written here."""
    if (SHARED / "videos" / "sample_a.mp4").is_file():
        shutil.copyfile(SHARED / "videos" / "sample_a.mp4", path)
        return
    import cv2
    import numpy as np
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), i * 10, np.uint8))
    writer.release()


def make_case(template: Path, dst: Path, row: Row) -> Case:
    shutil.copytree(template, dst, symlinks=True)
    case = Case(dst, dst / "comp.yaml", dst / "run")
    spec = yaml.safe_load(case.comp.read_text())
    spec["sample_submission"] = str(dst / "sample.csv")
    if row.file == "train_csv":  # a CSV layout over the same frame folders: train_dir/{class}/{video_id}/
        ids = sorted(p.relative_to(spec["train_dir"]) for p in Path(spec["train_dir"]).glob("*/*") if p.is_dir())
        (dst / "train.csv").write_text("video_id,label\n" + "".join(f"{i},{i.parent}\n" for i in ids))
        spec["train_csv"] = str(dst / "train.csv")
        case.path("comp_folds").unlink()
    case.comp.write_text(yaml.safe_dump(spec))
    ens = yaml.safe_load((dst / "ensemble.yaml").read_text())
    (dst / "ensemble.yaml").write_text(yaml.safe_dump({**ens, "members": {str(case.run): 1.0}}))
    return case


def break_file(path: Path, how: str, row: Row):
    if how == "schema":
        path.write_bytes(SCHEMA_FOR_CHECKPOINT if path.suffix == ".safetensors" else row.schema.encode())
    else:
        BREAKS[how](path)


CASES = [pytest.param(row, how, id=f"{row.verb}-{row.file}-{how}") for row in FILES for how in row.breaks
         if how != "schema" or row.schema or row.file.endswith(".safetensors")]


@pytest.mark.parametrize("row,how", CASES)
def test_broken_file_is_one_line(row, how, template, tmp_path, capsys):
    case = make_case(template, tmp_path / "case", row)
    path = case.path(row.file)
    break_file(path, how, row)
    names = {"comp": case.comp, "run": case.run, "root": case.root, "sample": case.path("sample"),
             "submission": case.path("submission"), "ensemble": case.path("ensemble"), "video": case.path("video")}
    args = [a.format(**names) for a in row.args]
    rc = cli.main([row.verb, *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1, f"rc={rc}\n{err}"
    assert path.name in errors[0] or str(path) in errors[0], errors[0]
    for out in row.outputs:
        assert not (case.root / out).exists(), f"{out} was written"
    leftovers = [p for p in case.root.rglob(".*.tmp")]
    assert not leftovers, leftovers
