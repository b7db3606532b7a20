"""`vidkit init DATA_DIR`: look at a downloaded competition folder and write `competition/<name>.yaml`.

Each guess is a `Guess(key, value, why)`; the yaml carries `why` as a comment on its line, and `init` prints
them. What cannot be decided (no training data, two candidate tables, no label column) is a one-line
VidkitError naming the file or folder. Recognised: a training table (train*.csv, its id / path / label / group
columns mapped), class folders (train/{class}/{video}), DFDC's metadata.json (`train_json`), a folder of
per-video feature files (`features_dir`, YouTube-8M style); the test media; the sample submission and its format.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from vidkit.data.layouts import read_metadata
from vidkit.data.media import IMAGE_EXTS, VIDEO_EXTS, natural_key
from vidkit.errors import VidkitError

from vidkit.files import read_csv, write_text

FEATURE_EXTS = {".npy", ".npz", ".pt", ".safetensors"}
ID_NAMES = ("video_id", "id", "clip_name", "filename", "file_name", "video", "name", "youtube_id", "vid")
PATH_NAMES = ("path", "clip_path", "video_path", "filepath", "file_path", "relative_path")
LABEL_NAMES = ("label", "labels", "class", "category", "action", "tags", "target", "classes")
GROUP_NAMES = ("group", "subject", "actor", "scene", "original", "source", "participant", "person")
SEPARATORS = ("|", ";", ",", " ")
POSITIVE = ("fake", "positive", "pos", "1", "true", "yes")


@dataclass
class Guess:
    key: str
    value: object
    why: str


def _media(p: Path) -> bool:
    return (p.is_file() and p.suffix.lower() in VIDEO_EXTS) or (
        p.is_dir() and any(f.suffix.lower() in IMAGE_EXTS for f in p.iterdir()))


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def find_sample(root: Path) -> Path | None:
    found = sorted(p for p in root.rglob("*.csv") if "sample" in p.name.lower())
    if len(found) > 1:
        raise VidkitError(f"{root}: several sample submissions ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


def find_test_dir(root: Path) -> Path | None:
    for p in sorted(root.rglob("*"), key=lambda p: (len(p.parts), p.name)):
        if p.is_dir() and p.name.lower().startswith("test") and any(_media(c) for c in p.iterdir()):
            return p
    return None


def pick_column(df: pd.DataFrame, names: tuple, csv: Path, what: str, need: bool = True) -> str | None:
    by_lower = {c.lower(): c for c in df.columns}
    for name in names:
        if name in by_lower:
            return by_lower[name]
    if need:
        raise VidkitError(f"{csv}: cannot tell which column is the {what} (have: {', '.join(df.columns)}; "
                          f"expected one of {', '.join(names)})")
    return None


def media_root(df: pd.DataFrame, column: str, root: Path) -> Path | None:
    """The folder under which the first rows' paths (or ids) exist: root, or a sub-folder of it."""
    values = [str(v).lstrip("/") for v in df[column].head(5)]
    candidates = [root] + sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))
    from vidkit.data.layouts import find_media
    for folder in candidates[:200]:
        if all(find_media(folder, v) is not None or _media(folder / v) for v in values):
            return folder
    return None


def feature_root(ids: pd.Series, root: Path) -> Path | None:
    """The folder holding `{id}.npy|npz|pt|safetensors` for the first ids."""
    values = [str(v) for v in ids.head(5)]
    for folder in [root] + sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))[:200]:
        if all(any((folder / f"{v}{ext}").is_file() for ext in FEATURE_EXTS) for v in values):
            return folder
    return None


def label_sep(labels: pd.Series) -> str | None:
    """The separator of multi-label cells, or None (single-label). A separator counts when it splits cells into
    tokens that are label ids (numbers, YouTube-8M) or that also stand alone as a cell ("dog ball" beside
    "dog"); a class name with spaces ("playing guitar") splits into words that never stand alone."""
    cells = [str(v).strip() for v in labels if str(v).strip()]
    alone = set(cells)
    for sep in SEPARATORS:
        split = [[t.strip() for t in c.split(sep) if t.strip()] for c in cells]
        multi = [t for s in split if len(s) > 1 for t in s]
        if not multi:
            continue
        if all(t.isdigit() for t in multi) or sum(t in alone for t in multi) >= 0.5 * len(multi):
            return sep
    return None


def group_rule(ids: list[str]) -> Guess | None:
    """UCF101-style `_g08_` in (nearly) every id: that part is the group."""
    pattern = r"_(g\d+)_"
    if ids and sum(bool(re.search(pattern, i)) for i in ids) >= 0.95 * len(ids):
        return Guess("group_regex", pattern, "ids share a `_gNN_` part (UCF101's groups): videos of one group "
                     "never straddle folds")
    return None


def from_table(csv: Path, root: Path) -> tuple[list[Guess], list[str], bool]:
    """Guesses for a training table; (guesses, class names, multi-label)."""
    df = read_csv(csv, dtype=str, what="training table", keep_default_na=False)
    path_col = pick_column(df, PATH_NAMES, csv, "media path", need=False)
    id_col = pick_column(df, ID_NAMES, csv, "video id", need=path_col is None)
    label_col = pick_column(df, LABEL_NAMES, csv, "label")
    group_col = pick_column(df, GROUP_NAMES, csv, "group", need=False)
    train_dir = media_root(df, path_col or id_col, root)
    guesses = [Guess("train_csv", csv, f"the training table ({len(df)} rows)")]
    if train_dir is not None:
        guesses.append(Guess("train_dir", train_dir, "where its media are"))
    elif feature_root(df[id_col or path_col], root) is not None:
        guesses.append(Guess("features_dir", feature_root(df[id_col or path_col], root),
                             "one feature file per video id (YouTube-8M style)"))
    else:
        raise VidkitError(f"{csv}: cannot find the media of its first rows ({path_col or id_col!r}) under {root}")
    for key, col, default in (("train_id_column", id_col, "video_id"), ("train_path_column", path_col, None),
                              ("train_label_column", label_col, "label"), ("train_group_column", group_col, "group")):
        if col is not None and col != default:
            guesses.append(Guess(key, col, f"column {col!r}"))
    sep = label_sep(df[label_col])
    classes = sorted({t.strip() for v in df[label_col] for t in (v.split(sep) if sep else [v]) if t.strip()},
                     key=natural_key)
    if sep is not None:
        guesses += [Guess("task", "multilabel", f"cells of {label_col!r} hold several labels"),
                    Guess("label_sep", sep, "the separator in those cells")]
        if (df[label_col].str.strip() == "").any():
            guesses.append(Guess("allow_empty_labels", True, "some videos have no label"))
    ids = [Path(v).stem for v in df[path_col or id_col]]
    rule = None if group_col else group_rule(ids)
    return guesses + ([rule] if rule else []), classes, sep is not None


def from_folders(train: Path) -> tuple[list[Guess], list[str], bool]:
    classes = sorted((p.name for p in train.iterdir() if p.is_dir() and any(_media(c) for c in p.iterdir())),
                     key=natural_key)
    ids = [c.stem for d in train.iterdir() if d.is_dir() for c in d.iterdir() if _media(c)]
    rule = group_rule(ids)
    return ([Guess("train_dir", train, f"class folders: {len(classes)} classes, {len(ids)} videos")]
            + ([rule] if rule else [])), classes, False


def from_dfdc(meta: Path) -> tuple[list[Guess], list[str], bool]:
    data = read_metadata(meta)
    classes = sorted({str(v.get("label")) for v in data.values()})
    return [Guess("train_json", _glob(meta), "DFDC's metadata.json: labels, and groups from `original`"),
            Guess("train_dir", meta.parent, "its videos")], classes, False


def _glob(meta: Path) -> Path:
    parts = sorted(meta.parent.parent.glob(f"*/{meta.name}"))
    return meta.parent.parent / "*" / meta.name if len(parts) > 1 else meta


def find_training(root: Path) -> tuple[list[Guess], list[str], bool]:
    metas = sorted(root.rglob("metadata.json"))
    if metas:
        return from_dfdc(metas[0])
    tables = [p for p in sorted(root.rglob("*.csv")) if p.name.lower().startswith("train")]
    if not tables:  # any other table with a label column (e.g. meta.csv), the sample and test tables aside
        tables = [p for p in sorted(root.rglob("*.csv")) if not p.name.lower().startswith(("sample", "test"))
                  and pick_column(read_csv(p, what="table", nrows=1), LABEL_NAMES, p, "label", need=False)]
    if len(tables) > 1:
        raise VidkitError(f"{root}: several training tables ({', '.join(_rel(p, root) for p in tables)}); "
                          "keep one or write the yaml by hand")
    if tables:
        return from_table(tables[0], root)
    folders = [p for p in sorted(root.rglob("*"), key=lambda p: (not p.name.lower().startswith("train"),
                                                               len(p.parts), p.name))
               if p.is_dir() and not p.name.lower().startswith("test")
               and sum(d.is_dir() and any(_media(c) for c in d.iterdir()) for d in p.iterdir()) >= 2]
    if folders:
        return from_folders(folders[0])
    raise VidkitError(f"{root}: no training data found (a train*.csv, train/{{class}}/{{video}} folders, or "
                      "metadata.json)")


def sample_format(sample: Path, classes: list[str], multilabel: bool) -> list[Guess]:
    """id_column, target_column, submission, metric (and a binary positive_class) from the sample's columns
    and first row."""
    df = read_csv(sample, dtype=str, what="sample submission", keep_default_na=False)
    id_col = next((c for c in df.columns if c.lower() in ("id", "video_id", "filename", "clip_name")), df.columns[0])
    rest = [c for c in df.columns if c != id_col]
    out = [Guess("id_column", id_col, "the sample's id column" + (
        f" (ids carry {Path(df[id_col].iloc[0]).suffix}: media are found by stem)"
        if len(df) and Path(str(df[id_col].iloc[0])).suffix.lower() in VIDEO_EXTS else ""))]
    if not rest:
        raise VidkitError(f"{sample}: only an id column; cannot tell what to predict")
    if len(rest) > 1:
        from vidkit.formats import class_columns
        try:
            class_columns(rest, classes)
        except VidkitError as e:
            raise VidkitError(f"{sample}: {e}") from None
        return out + [Guess("submission", "probabilities", f"{len(rest)} columns, one per class"),
                      Guess("metric", "map" if multilabel else "logloss", "a guess: check the evaluation page")]
    target, first = rest[0], str(df[rest[0]].iloc[0]) if len(df) else ""
    out.append(Guess("target_column", target, "the sample's other column"))
    tokens = first.split()
    if _is_number(first) and len(classes) == 2:
        pos = next((c for c in classes if c.lower() in POSITIVE), classes[1])
        return out + [Guess("submission", "probability", "numbers in the sample: P(positive class)"),
                      Guess("positive_class", pos, "a guess from the class names: check"),
                      Guess("metric", "logloss", "a guess: check the evaluation page")]
    if _is_number(first):
        raise VidkitError(f"{sample}: one numeric column but {len(classes)} classes; cannot tell the format")
    if len(tokens) >= 2 and len(tokens) % 2 == 0 and all(_is_number(t) for t in tokens[1::2]):
        return out + [Guess("task", "multilabel", "the sample holds `label confidence` pairs"),
                      Guess("submission", "pairs", "`label confidence` pairs, as the sample shows"),
                      Guess("metric", "gap", "YouTube-8M's GAP: check the evaluation page")]
    if multilabel:
        return out + [Guess("submission", "labels", "space-separated labels (thresholds fitted on OOF)"),
                      Guess("metric", "f1_samples", "a guess: check the evaluation page")]
    if len(tokens) > 1:
        return out + [Guess("submission", "topk", f"{len(tokens)} labels in the sample's first row"),
                      Guess("metric", "top5", "a guess: check the evaluation page")]
    return out + [Guess("submission", "label", "one label per video"),
                  Guess("metric", "accuracy", "a guess: check the evaluation page")]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def discover(root: Path) -> list[Guess]:
    """Every guess for a downloaded competition folder, in the yaml's order."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise VidkitError(f"{root}: not a folder")
    guesses, classes, multilabel = find_training(root)
    test_dir, sample = find_test_dir(root), find_sample(root)
    guesses.append(Guess("test_dir", test_dir, "the test media") if test_dir else
                   Guess("test_dir", None, "no test media found: set it before `submit`"))
    if sample is None:
        guesses.append(Guess("sample_submission", None, "no sample submission found: `submit` needs one"))
    else:
        guesses.append(Guess("sample_submission", sample, "the sample submission"))
        guesses += sample_format(sample, classes, multilabel)
    if len(classes) <= 50:
        guesses.append(Guess("classes", classes, f"{len(classes)} classes in the training labels"))
    return _merged(guesses)


def _merged(guesses: list[Guess]) -> list[Guess]:
    """One guess per key (the first; a later multilabel task agrees with it)."""
    seen, out = set(), []
    for g in guesses:
        if g.key not in seen:
            seen.add(g.key)
            out.append(g)
    return out


def write_spec(name: str, guesses: list[Guess], path: Path) -> None:
    lines = [f"# written by `python -m vidkit init`: each line's comment says why; check the ones marked a guess",
             f"name: {name}"]
    for g in guesses:
        value = _rel(g.value, path.parent) if isinstance(g.value, Path) else g.value
        text = yaml.safe_dump({g.key: value}, default_flow_style=True, width=10_000).strip()[1:-1]
        lines.append(f"{text}  # {g.why}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "\n".join(lines) + "\n")


def run_init(data_dir: str, name: str | None = None, out: str | None = None, force: bool = False) -> Path:
    root = Path(data_dir)
    name = name or re.sub(r"[^a-z0-9_]+", "_", root.resolve().name.lower()).strip("_") or "competition"
    path = Path(out) if out else Path("competition") / f"{name}.yaml"
    if path.exists() and not force:
        raise VidkitError(f"{path}: exists; pass force=true to overwrite, or name=another")
    guesses = discover(root)
    write_spec(name, guesses, path)
    for g in guesses:
        shown = _rel(g.value, Path.cwd()) if isinstance(g.value, Path) else g.value
        print(f"  {g.key}: {shown}   ({g.why})")
    print(f"wrote {path}; check it, then `python -m vidkit check comp={path}`")
    return path
