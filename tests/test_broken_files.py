"""Every file a verb reads, broken every way: exit code 2, one `error:` line on stderr naming the file, no
traceback, no output file left behind (README "Reliability").

The table is FILES: one row per (verb, file it reads). A row names the file inside a private copy of a template
(`Case`): the session's tiny competition and run, or a new file kind's own small folder (TEMPLATES: a feature
store and a head run on it, a features_dir competition, DFDC, init's download, spotting, a pretrained folder); the
verb's arguments, the outputs that must not appear, and the breakages that apply to that file kind. To add a file
kind: give it one loader in `vidkit.files` (or built on it), then add its row here with the breakages that apply
(ALL, or ARRAY for arrays, less `missing` where a missing file is legitimately created, e.g. folds drawn on first
use, or a documented fallback) and `schema` texts: valid syntax, wrong columns, keys or types.
`python tests/test_broken_files.py` prints the table's size (the README's count).
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


def read_array(p: Path):
    from vidkit.files import read_arrays
    return next(iter(read_arrays(p).values()))


def write_array(p: Path, array):
    """`array` in the file kind `p`'s suffix names (.npy .npz .pt .safetensors)."""
    import numpy as np
    if p.suffix == ".pt":
        import torch
        torch.save(torch.from_numpy(np.ascontiguousarray(array)), p)
    elif p.suffix == ".safetensors":
        from safetensors.numpy import save_file
        save_file({"x": np.ascontiguousarray(array)}, str(p))
    else:
        with open(p, "wb") as f:  # np.save/np.savez to a file object: no suffix added
            if p.suffix == ".npy":
                np.save(f, array)
            else:
                np.savez(f, x=array)


def with_nan(p: Path):
    array = read_array(p).astype("float32")
    array.flat[0] = float("nan")
    write_array(p, array)


BREAKS = {"missing": Path.unlink, "zero_bytes": lambda p: p.write_bytes(b""), "truncated": truncate,
          "garbage": lambda p: p.write_bytes(GARBAGE), "folder": folder, "unreadable": unreadable,
          "schema": None,  # schema: the row's own text (valid syntax, wrong columns/keys/types)
          # arrays (feature files): valid files of the wrong shape (two more axes), dtype (integers), with a NaN
          "shape": lambda p: write_array(p, read_array(p)[None, None]),
          "dtype": lambda p: write_array(p, read_array(p).astype("int32")), "nan": with_nan}
ALL = ("missing", "zero_bytes", "truncated", "garbage", "folder", "unreadable", "schema")
ARRAY = ("zero_bytes", "truncated", "garbage", "folder", "unreadable", "shape", "dtype")  # missing: documented
# (a training video without stored features is left out with a warning, a test video gets the prior)


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
                "video": self.root / "clip.mp4", "tune": self.root / "tune.yaml",
                "boxes": self.root / "boxes.csv"}.get(name) or (
            self.root / name if (self.root / name).exists() else self.run / name)


@dataclass
class Row:
    verb: str
    file: str          # Case.path name: a run-folder file (`oof.csv`, `fold0/model.safetensors`) or a named one
    args: tuple        # {comp}, {run}, {root}, {sample}, ... filled from the case
    breaks: tuple = ALL
    schema: str | tuple = ""  # valid syntax, wrong schema (several: one case each)
    outputs: tuple = ()  # files (relative to the case root) that must not be written
    kind: str = "tiny"  # the template copied (TEMPLATES): tiny (competition + run), or a new file kind's own

    def schemas(self) -> tuple:
        return self.schema if isinstance(self.schema, tuple) else (self.schema,) if self.schema else ()


RUN_ARGS = ("runs={run}",)
HEAD_CV = ("configs/linear_probe.yaml", "comp={comp}", "features={root}/store", "out_dir={root}/cv", "epochs=1")
HEAD_SUBMIT = ("comp={comp}", "runs={root}/head", "out={root}/sub/submission.csv")
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
        tuple(b for b in ALL if b not in ("missing", "schema")), outputs=("report/runs.md",)),  # it only counts
    # parameters in the first checkpoint there: another model's is a valid count, a lost one leaves the next
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
    Row("report", "run.json", ("comp={comp}", *RUN_ARGS, "out={root}/report"), tuple(b for b in ALL if b != "missing"),
        schema='"just a string"', outputs=("report/runs.md",)),  # missing: a run without provenance is shown
    Row("submit", "comp", ("comp={comp}", *RUN_ARGS, "out={root}/sub/submission.csv"),
        schema="submission: nope\n", outputs=("sub/submission.csv",)),
    Row("predict", "config.yaml", ("run={run}", "video={video}"), schema="model: [r3d_18]\n"),
    Row("export", "fold0/model.safetensors", ("run={run}", "fold=0", "out={root}/export"), outputs=("export",)),
    Row("explain", "video", ("run={run}", "video={video}", "out={root}/x.png"),
        ("missing", "zero_bytes", "truncated", "garbage"), outputs=("x.png",)),
    Row("cv", "comp_folds", ("{run}/config.yaml", "comp={comp}", "out_dir={root}/cv", "epochs=1"),
        tuple(b for b in ALL if b != "missing"), schema="video_id,fold\nx,abc\n", outputs=("cv/oof.csv",)),
    Row("check", "comp", ("comp={comp}",), schema="n_folds: many\n"),
    Row("kernel", "comp", ("comp={comp}", *RUN_ARGS, "out={root}/kernels", "user=me", "competition=c"),
        schema="metric: nope\n", outputs=("kernels",)),
    Row("train", "config.yaml", ("{run}/config.yaml", "comp={comp}", "out_dir={root}/tr", "fold=0", "epochs=1"),
        schema="lr: fast\n", outputs=("tr/fold0/model.safetensors",)),
    Row("cv", "config.yaml", ("{run}/config.yaml", "comp={comp}", "out_dir={root}/cv", "epochs=1"),
        schema="epochs: many\nnot_a_key: 1\n", outputs=("cv/oof.csv",)),
    Row("tune", "tune", ("{run}/config.yaml", "comp={comp}", "trials=1", "space={root}/tune.yaml",
                         "out={root}/tuned.yaml"), schema=("lr: {log: 3}\n", "lr: [fast, slow]\n"),
        outputs=("tuned.yaml",)),
    Row("crop", "boxes", ("comp={comp}", "boxes={root}/boxes.csv", "out={root}/crops"),
        schema=("video_id,frame,x1,y1,x2\nv,0,1,2,3\n", "video_id,frame,x1,y1,x2,y2\nv,first,1,2,3,4\n"),
        outputs=("crops",)),
    # New file kinds join here (README "Reliability"): a template in TEMPLATES (or a name in Case.path), one Row
    # per verb that reads the file, its wrong-schema texts, the breakages that apply.
    # A feature store (`embed`'s manifest.json and arrays) read by `cv HEAD features=` and by `submit`:
    *[Row(verb, "store/manifest.json", args, schema=('{"competition": "tiny", "sources": {"all": null}}',
                                                     '{"competition": "tiny", "sources": {}, "positions": 4, '
                                                     '"dims": "8", "n_views": 2}'), outputs=(out,), kind="store")
      for verb, args, out in (("cv", HEAD_CV, "cv/oof.csv"), ("submit", HEAD_SUBMIT, "sub/submission.csv"))],
    Row("cv", "store/all/v_up_g05_c03.npy", HEAD_CV, ARRAY, outputs=("cv/oof.csv",), kind="store"),  # submit: the
    # prior (test_broken_test_features_get_the_prior)
    # A `features_dir:` competition's per-video files, each kind (a wrong width: test_features.py)
    *[Row("cv", f"feats/v0_a_0{ext}", ("configs/linear_probe.yaml", "comp={comp}", "out_dir={root}/cv", "epochs=1"),
          (*ARRAY, "nan"), outputs=("cv/oof.csv",), kind="fdir") for ext in (".npy", ".npz", ".pt", ".safetensors")],
    # DFDC's metadata.json (`train_json:`), read by the index (`folds`, `cv`, ...) and by `init`
    Row("folds", "part_0/metadata.json", ("comp={comp}",), schema=('{"a0.mp4": "REAL"}', '["a0.mp4"]'),
        outputs=("comp.folds.csv",), kind="dfdc"),
    Row("init", "part_0/metadata.json", ("{root}", "out={root}/init.yaml"), tuple(b for b in ALL if b != "missing"),
        schema='{"a0.mp4": {"split": "train"}}', outputs=("init.yaml",), kind="dfdc"),  # missing: not DFDC then
    # `init`'s tables (missing: then it is not that layout, or has no sample: guessed, said in the yaml)
    Row("init", "train.csv", ("{root}", "out={root}/init.yaml"), tuple(b for b in ALL if b != "missing"),
        schema="id,class_name_unknown\nv0,a\n", outputs=("init.yaml",), kind="init"),
    Row("init", "sample_submission.csv", ("{root}", "out={root}/init.yaml"), tuple(b for b in ALL if b != "missing"),
        schema="id\nt0\n", outputs=("init.yaml",), kind="init"),
    # spotting's events_csv: wrong columns, a frame that is not a number, no events
    Row("cv", "events.csv", ("configs/spot_demo.yaml", "comp={comp}", "out_dir={root}/cv", "epochs=1"),
        schema=("video_id,when,event\ng00,3,goal\n", "video_id,frame,event\ng00,three,goal\n",
                "video_id,frame,event\n"), outputs=("cv/oof.csv",), kind="spot"),
    # a `pretrain` folder given as pretrained= (weights of another architecture: test_pretrain.py)
    *[Row("train", f"pretrained/{name}", ("configs/videomae_demo.yaml", "comp={comp}", "pretrained={root}/pretrained",
                                          "out_dir={root}/tr", "fold=0", "epochs=1"), breaks,
          schema='{"model_type": 3}', outputs=("tr/fold0/model.safetensors",), kind="pretrained")
      for name, breaks in (("config.json", ALL), ("model.safetensors", tuple(b for b in ALL if b != "schema")))],
]


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
    (root / "tune.yaml").write_text("lr: {log: [1.0e-4, 1.0e-2]}\n")
    first = sorted(p.name for p in Path(spec["train_dir"]).glob("*/*"))[0]
    (root / "boxes.csv").write_text(f"video_id,frame,x1,y1,x2,y2\n{first},0,4,4,30,30\n")
    return root


def tiny_spec(tiny_comp: Path, root: Path) -> Path:
    """root/comp.yaml: the tiny competition with absolute paths (its data read in place)."""
    spec = yaml.safe_load(tiny_comp.read_text())
    for k in ("train_dir", "test_dir", "sample_submission"):
        spec[k] = str((tiny_comp.parent / spec[k]).resolve())
    (root / "comp.yaml").write_text(yaml.safe_dump(spec))
    return root / "comp.yaml"


def store_template(root: Path, request):
    """A feature store written by hand (as `embed` writes one: manifest.json, all/<id>.npy (2 views, 4 positions,
    8 dims)) for the tiny competition, and a linear-probe run trained on it (`head`)."""
    import json
    import numpy as np
    from vidkit.config import load_competition, load_config
    from vidkit.data import index_train
    from vidkit.data.layouts import test_ids
    from vidkit.flows.cv import run_cv
    comp = load_competition(tiny_spec(request.getfixturevalue("tiny_comp"), root))
    rng = np.random.default_rng(0)
    (root / "store" / "all").mkdir(parents=True)
    for vid in [*index_train(comp)["video_id"], *test_ids(comp)]:
        np.save(root / "store" / "all" / f"{vid}.npy", rng.normal(size=(2, 4, 8)).astype(np.float16))
    (root / "store" / "manifest.json").write_text(json.dumps({
        "backbone": "by_hand", "config": "by_hand", "competition": comp.name, "sources": {"all": None},
        "positions": 4, "dims": 8, "n_views": 2, "complete": True, "views": {"protocol": "4x2x1 by hand"}}))
    run_cv(load_config("configs/linear_probe.yaml", {"comp": str(root / "comp.yaml"), "features": str(root / "store"),
                                                     "epochs": "1", "out_dir": str(root / "head")}))


def fdir_template(root: Path, request):
    """A `features_dir:` competition: 3 groups x 2 classes x 2 videos, one (4, 8) .npy each; 2 test ids (named to
    sort after v0_a_0, the file broken: the first one read)."""
    import numpy as np
    import pandas as pd
    (root / "feats").mkdir()
    rng, rows = np.random.default_rng(0), []
    for vid in [f"v{g}_{c}_{j}" for g in range(3) for c in "ab" for j in range(2)] + ["w0", "w1"]:
        np.save(root / "feats" / f"{vid}.npy", rng.normal(size=(4, 8)).astype(np.float32))
        if not vid.startswith("w"):
            rows.append({"video_id": vid, "label": vid.split("_")[1], "group": vid.split("_")[0]})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ["w0", "w1"], "label": "a"}).to_csv(root / "sample.csv", index=False)
    (root / "comp.yaml").write_text(yaml.safe_dump({"name": "fdir", "train_csv": "train.csv", "features_dir": "feats",
                                                    "sample_submission": "sample.csv", "n_folds": 3}))


def write_frames(folder: Path, n: int = 3, size: int = 16):
    import cv2
    import numpy as np
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i + 1:05d}.jpg"), np.full((size, size, 3), 20 * i % 256, np.uint8))


def dfdc_template(root: Path, request):
    """DFDC's layout: part_0/metadata.json (label, original) beside frame-folder media."""
    import json
    meta = {"a0.mp4": {"label": "REAL", "split": "train"}, "f1.mp4": {"label": "FAKE", "original": "a0.mp4"},
            "b0.mp4": {"label": "REAL"}, "g1.mp4": {"label": "FAKE", "original": "b0.mp4"}}
    for name in meta:
        write_frames(root / "part_0" / Path(name).stem)
    (root / "part_0" / "metadata.json").write_text(json.dumps(meta))
    (root / "comp.yaml").write_text(yaml.safe_dump({"name": "dfdcmini", "train_json": "part_0/metadata.json",
                                                    "n_folds": 2}))


def init_template(root: Path, request):
    """A downloaded competition as `init` sees one: train.csv + train/<id>/, test/<id>/, sample_submission.csv."""
    for vid in ("v0", "v1", "v2", "v3"):
        write_frames(root / "train" / vid)
    write_frames(root / "test" / "t0")
    (root / "train.csv").write_text("video_id,label\nv0,a\nv1,b\nv2,a\nv3,b\n")
    (root / "sample_submission.csv").write_text("id,label\nt00,a\nt01,b\nt02,a\n")  # cut: mid-row


def spot_template(root: Path, request):
    """A spotting competition: 3 frame-folder videos of 12 frames, events.csv by frame."""
    for g in range(3):
        write_frames(root / "train" / f"g{g:02d}", n=12)
    (root / "events.csv").write_text("video_id,frame,event\ng00,3,goal\ng01,5,goal\ng02,4,goal\ng00,8,goal\n")
    # cut short, it ends "g01,5,g": an unknown event class
    (root / "comp.yaml").write_text(yaml.safe_dump({
        "name": "spotmini", "task": "spotting", "train_dir": "train", "events_csv": "events.csv",
        "classes": ["goal"], "tolerances": [2], "metric": "spotting_map", "n_folds": 3, "fps": 10}))


def pretrained_template(root: Path, request):
    """The tiny competition and a `pretrain`-style save_pretrained folder of videomae_demo's size."""
    from vidkit.config import load_config
    from vidkit.models import create_model
    tiny_spec(request.getfixturevalue("tiny_comp"), root)
    cfg = load_config("configs/videomae_demo.yaml")
    model = create_model("videomae", 4, num_frames=cfg.num_frames, image_size=cfg.image_size, **cfg.model_args)
    model.hf.save_pretrained(str(root / "pretrained"))


TEMPLATES = {"store": store_template, "fdir": fdir_template, "dfdc": dfdc_template, "init": init_template,
             "spot": spot_template, "pretrained": pretrained_template}


@pytest.fixture(scope="module")
def templates(request, tmp_path_factory):
    """kind -> its template folder, built on first use (the tiny kind: `template`)."""
    built = {}

    def get(kind: str) -> Path:
        if kind not in built:
            if kind == "tiny":
                built[kind] = request.getfixturevalue("template")
            else:
                root = tmp_path_factory.mktemp(f"broken_{kind}")
                TEMPLATES[kind](root, request)
                built[kind] = root
        return built[kind]
    return get


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
    if row.kind != "tiny":
        return other_case(case, row)
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


def other_case(case: Case, row: Row) -> Case:
    """A new kind's copy, pointed at itself: a head run at the copied store; a features_dir file in the row's kind."""
    if row.kind == "store":
        config = case.root / "head" / "config.yaml"
        spec = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**spec, "features": str(case.root / "store"), "comp": str(case.comp)}))
    target = case.root / row.file
    if row.kind == "fdir" and target.suffix != ".npy":
        npy = target.with_suffix(".npy")
        write_array(target, read_array(npy))
        npy.unlink()
    return case


def break_file(path: Path, how: str, row: Row):
    if how == "schema" and path.suffix == ".safetensors":  # a valid checkpoint of some other model
        import numpy as np
        from safetensors.numpy import save_file
        save_file({"not_a_layer.weight": np.zeros(3, np.float32)}, str(path))
    elif how.startswith("schema"):  # schema, schema2, ...: the row's texts in order
        path.write_bytes(row.schemas()[int(how[6:] or 1) - 1].encode())
    else:
        BREAKS[how](path)


def breaks_of(row: Row) -> list[str]:
    """The row's breakages, `schema` as one case per schema text (schema, schema2, ...)."""
    out = []
    for how in row.breaks:
        if how != "schema":
            out.append(how)
        elif row.schemas():
            out += ["schema" if i == 0 else f"schema{i + 1}" for i in range(len(row.schemas()))]
        elif row.file.endswith(".safetensors"):
            out.append("schema")
    return out


CASES = [pytest.param(row, how, id=f"{row.verb}-{row.file}-{how}") for row in FILES for how in breaks_of(row)]


def table_size() -> str:
    """The README's count, from the table: `python tests/test_broken_files.py` prints it."""
    cases = [(row, how) for row in FILES for how in breaks_of(row)]
    files = {(row.kind, row.file) for row in FILES}
    return (f"{len(FILES)} (verb, file) rows ({len({row.verb for row in FILES})} verbs) over {len(files)} files: "
            f"{len(cases)} cases, plus the bundle manifest x 4")


@pytest.mark.parametrize("row,how", CASES)
def test_broken_file_is_one_line(row, how, templates, tmp_path, capsys, monkeypatch):
    case = make_case(templates(row.kind), tmp_path / "case", row)
    path = case.path(row.file)
    if how == "unreadable" and os.geteuid() == 0:  # root reads anything: os.access says no for this file, as it
        from vidkit import files  # does for a user without permission (a reader not built on vidkit.files reads it)
        monkeypatch.setattr(files.os, "access", lambda p, mode, real=os.access: Path(p) != path and real(p, mode))
    else:
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
    assert how != "unreadable" or "permission denied" in errors[0], errors[0]
    for out in row.outputs:
        assert not (case.root / out).exists(), f"{out} was written"
    leftovers = [p for p in case.root.rglob(".*.tmp")]
    assert not leftovers, leftovers


# ---------------------------------------------------------------- the Kaggle kernel's bundle manifest

@pytest.mark.parametrize("how", ["zero_bytes", "truncated", "garbage", "schema"])
def test_broken_bundle_manifest_is_one_line(how, tmp_path):
    """The offline kernel (stand-alone code, no vidkit import) checks the manifest before using the bundle."""
    import json
    from vidkit.kaggle.template import kernel_code
    bundle = tmp_path / "input" / "datasets" / "me" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "a.txt").write_text("a")
    manifest = bundle / "manifest.json"
    manifest.write_text(json.dumps({"vidkit_bundle": kernel_code.BUNDLE, "files": {"a.txt": "0" * 64}}))
    row = Row("kernel", "manifest.json", (), schema=json.dumps({"vidkit_bundle": kernel_code.BUNDLE, "files": 3}))
    break_file(manifest, how, row)
    with pytest.raises(SystemExit) as stop:
        kernel_code.verify(*kernel_code.find_bundle(tmp_path / "input"))
    message = str(stop.value)
    assert "manifest.json" in message and "\n" not in message, message


# ---------------------------------------------------------------- the documented fallback: a test video

def test_undecodable_test_video_gets_the_prior(template, tmp_path, capsys, caplog):
    """Not exit 2: a test id whose media cannot be decoded gets the training prior, with a warning naming it."""
    import pandas as pd
    case = make_case(template, tmp_path / "case", FILES[0])
    spec = yaml.safe_load(case.comp.read_text())
    shutil.copytree(spec["test_dir"], case.root / "test")
    spec["test_dir"] = str(case.root / "test")
    case.comp.write_text(yaml.safe_dump(spec))
    broken = sorted(p for p in (case.root / "test").iterdir() if p.is_dir())[0]
    for frame in broken.iterdir():
        frame.write_bytes(GARBAGE)
    out = case.root / "sub" / "submission.csv"
    with caplog.at_level("WARNING"):
        rc = cli.main(["submit", f"comp={case.comp}", f"runs={case.run}", f"out={out}"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err, err
    assert broken.name in caplog.text, caplog.text
    probs = pd.read_csv(out.with_name("submission_probs.csv"), dtype={"video_id": str}).set_index("video_id")
    assert probs["prior"].tolist().count(True) == 1 and bool(probs.loc[broken.name, "prior"])
    assert len(pd.read_csv(out)) == len(pd.read_csv(case.path("sample")))


@pytest.mark.parametrize("how", ["truncated", "shape"])
def test_broken_test_features_get_the_prior(how, templates, tmp_path, caplog, capsys):
    """A head run's `submit`: a test video whose stored features are broken gets the prior, with a warning naming
    the file (as an undecodable test video does)."""
    import pandas as pd
    row = next(r for r in FILES if r.kind == "store" and r.verb == "submit")
    case = make_case(templates("store"), tmp_path / "case", row)
    test_id = sorted(pd.read_csv(yaml.safe_load(case.comp.read_text())["sample_submission"])["id"])[0]
    broken = case.root / "store" / "all" / f"{test_id}.npy"
    BREAKS[how](broken)
    out = case.root / "sub" / "submission.csv"
    with caplog.at_level("WARNING"):
        rc = cli.main(["submit", f"comp={case.comp}", f"runs={case.root / 'head'}", f"out={out}"])
    assert rc == 0, capsys.readouterr().err
    assert any(str(broken) in r.getMessage() and "prior" in r.getMessage() for r in caplog.records), caplog.text
    probs = pd.read_csv(out.with_name("submission_probs.csv"), dtype={"video_id": str}).set_index("video_id")
    assert probs["prior"].tolist().count(True) == 1 and bool(probs.loc[test_id, "prior"])


# ---------------------------------------------------------------- atomic writes

KILL_WRITER = """
import sys
import pandas as pd
from vidkit.files import write_csv
import numpy as np
big = pd.DataFrame({"video_id": np.arange(2_000_000), "p": np.linspace(0, 1, 2_000_000)})  # ~50 MB of CSV
print("writing", flush=True)
write_csv(big, sys.argv[1], index=False)
"""


def test_killed_mid_write_leaves_the_old_file(tmp_path):
    """SIGKILL a process while it writes a large CSV over an existing one: the old file stays whole."""
    import signal
    import subprocess
    import sys
    import time
    target = tmp_path / "oof.csv"
    target.write_text("video_id,p\nold,1.0\n")
    proc = subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.time() + 60
    while not any(p.stat().st_size > 100_000 for p in tmp_path.glob(".oof.csv.*.tmp")):
        assert proc.poll() is None and time.time() < deadline, "the writer finished before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "video_id,p\nold,1.0\n"


KILL_VERB = """
import os, sys, time
def stalled_fsync(fd):  # the new runs.md is complete in its temporary file: stop here, to be killed
    print("fsync", flush=True)
    time.sleep(120)
os.fsync = stalled_fsync
from vidkit.cli import main
main(sys.argv[1:])
"""


def test_verb_killed_mid_write_leaves_the_old_file(template, tmp_path):
    """`report` SIGKILLed while it writes runs.md (stalled inside the writer): the old runs.md stays."""
    import signal
    import subprocess
    import sys
    case = make_case(template, tmp_path / "case", FILES[0])
    out = case.root / "report"
    out.mkdir()
    (out / "runs.md").write_text("old table\n")
    proc = subprocess.Popen([sys.executable, "-c", KILL_VERB, "report", f"comp={case.comp}", f"runs={case.run}",
                             f"out={out}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = iter(proc.stdout.readline, "")  # until the stalled fsync, or the end if it never gets there
        assert any(line.strip() == "fsync" for line in lines), "report never reached the writer"
        temps = list(out.glob(".runs.md.*.tmp"))
        assert temps and temps[0].read_text().startswith("tiny: CV")  # the new table, not yet in place
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (out / "runs.md").read_text() == "old table\n"


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    """A fault inside the writer (here: fsync fails, as on a full disk): the old file, no temporary left."""
    import pandas as pd
    from vidkit import files
    target = tmp_path / "submission.csv"
    files.write_csv(pd.DataFrame({"id": ["a"], "label": ["old"]}), target, index=False)

    def full_disk(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError):
        files.write_csv(pd.DataFrame({"id": ["a"], "label": ["new"]}), target, index=False)
    assert pd.read_csv(target)["label"].tolist() == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


WRITES = {"write_text": r"\.write_text\(", "write_bytes": r"\.write_bytes\(", "to_csv": r"\.to_csv\([^)]",
          "savefig": r"\.savefig\(", "save_file": r"\bsave_file\(", "json.dump": r"json\.dump\(",
          "np.save": r"np\.save\(", "torch.save": r"torch\.save\(", "open_w": r"\bopen\([^)]*[\"'][wa]b?[\"']"}
ALLOWED = {"files.py": set(WRITES),
           "kaggle/sim.py": {"write_text", "open_w"},  # the fake /kaggle tree of a dry run, its guard log
           "flows/cv.py": {"write_bytes"},  # a probe that the run folder is writable, deleted at once
           "analysis/provenance.py": {"to_csv"},  # hashes a table in memory
           "data/cache.py": {"np.save", "open_w"},  # frame cache entries: their own temp file + os.replace
           "demo.py": {"to_csv"},  # the demo's synthetic data, rebuilt when missing
           "spot_demo.py": {"to_csv", "write_text"},  # the spotting demo's synthetic data, rebuilt when missing
           "data/features.py": {"np.save"},  # store arrays, saved into an atomic_write file object
           "flows/spotting.py": {"np.save"},  # OOF score arrays, saved into an atomic_write file object
           "engine/train.py": {"write_text", "save_file", "torch.save", "open_w"}}  # resumable state: a temp
# folder + os.replace; metrics.jsonl: appended one line per epoch


def test_every_output_goes_through_the_atomic_writer():
    """No module writes an output file itself (path.write_text, df.to_csv(path), fig.savefig(path), ...): each
    goes through vidkit.files (atomic_write and the writers built on it). A new exception needs a reason here."""
    import re
    src = Path(__file__).resolve().parents[1] / "src" / "vidkit"
    found = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{rel}:{n}: {line.strip()}" for name, pattern in WRITES.items()
                      if name not in ALLOWED.get(rel, ()) and re.search(pattern, line)]
    assert not found, "\n".join(found)


def test_unreadable_branch_as_root(template, tmp_path, capsys, monkeypatch):
    """Root reads any file, so the `unreadable` rows skip there; this runs the same branch by making
    os.access say no (as it does for a user without read permission)."""
    from vidkit import files
    case = make_case(template, tmp_path / "case", FILES[0])
    sample = case.path("sample")
    monkeypatch.setattr(files.os, "access", lambda path, mode: Path(path) != sample)
    rc = cli.main(["validate", str(case.path("submission")), f"sample={sample}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"error: {sample}: permission denied (cannot read the sample submission)", err


if __name__ == "__main__":
    print(table_size())
