"""Training signal beyond the labels: pseudo-labelled test videos (`pseudo=`) and a teacher ensemble's soft
targets (`teacher=`), both as per-video columns of the training table.

Columns: `target:<class>` is a label distribution that replaces the one-hot label (soft pseudo-labels),
`teacher:<class>` the teacher's probabilities, `weight` the video's loss weight. A missing value (NaN) means
"none": a labelled video without a teacher trains on its label alone. Pseudo-labelled and unlabelled test videos
sit in fold PSEUDO, which is never a validation fold, so they never reach oof.csv.

Multi-label (`task: multilabel`): a test video is pseudo-labelled when every class is decided, present
(p >= threshold) or absent (p <= 1 - threshold); its labels are the present classes (soft: its per-class
sigmoids as the multi-hot target); with `pseudo_thresholds=ENSEMBLE_YAML`, every test video joins, labelled with
the classes at or above that ensemble's per-class thresholds (the labels a `labels` submission writes). The loss is BCE against the targets and, for distillation, BCE against the
teacher's per-class sigmoids, both at temperature T on each class's logit (x T^2, as Hinton et al.).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.config import Competition, Config
from vidkit.data.labels import is_multilabel, split_labels
from vidkit.data.media import VIDEO_EXTS
from vidkit.errors import VidkitError
from vidkit.files import read_csv
from vidkit.rundir import oof_file

log = logging.getLogger(__name__)
PSEUDO = -2


def read_probs(path: str | Path, comp: Competition, classes: list[str]) -> pd.DataFrame:
    """Per-video class probabilities (index: video id) from a probabilities CSV: `submit`'s `<out>_probs.csv`,
    a `probabilities`-format submission, or a run's oof.csv. A label-only submission points at its `_probs.csv`."""
    from vidkit.formats import class_columns
    path = Path(path)
    table = read_csv(path, dtype=str, what="probabilities file")
    id_col = next((c for c in ("video_id", comp.id_column) if c in table.columns), None)
    candidates = [c for c in table.columns if c not in (id_col, "prior", "fold", "label")]
    try:
        by_class = {cls: col for col, cls in class_columns(candidates, classes).items()} if candidates else {}
    except VidkitError:
        by_class = {}
    if set(by_class) != set(classes):
        sibling = path.with_name(f"{path.stem}_probs.csv")
        if sibling.is_file() and sibling != path:
            return read_probs(sibling, comp, classes)
        raise VidkitError(f"{path}: no probability column per class ({', '.join(classes)}); pass the "
                          f"`{path.stem}_probs.csv` that submit writes beside it")
    if id_col is None:
        raise VidkitError(f"{path}: no id column (video_id or {comp.id_column})")
    probs = table[[by_class[c] for c in classes]].astype(float).set_axis(classes, axis=1)
    probs.index = table[id_col].map(lambda v: Path(v).stem if Path(v).suffix.lower() in VIDEO_EXTS else v)
    if "prior" in table.columns:  # ids submit filled with the training prior carry no prediction
        probs = probs[~table["prior"].str.lower().isin(("true", "1")).to_numpy()]
    return probs[np.isfinite(probs.to_numpy()).all(1)]




def pseudo_rows(cfg: Config, comp: Competition, classes: list[str]) -> pd.DataFrame | None:
    """Test videos whose top-class probability is at least `cfg.threshold`, labelled with that class (soft: the
    probabilities themselves), weighted `cfg.pseudo_weight`, in fold PSEUDO."""
    if not cfg.pseudo:
        return None
    from vidkit.data import index_test
    probs = read_probs(cfg.pseudo, comp, classes)
    test = index_test(comp)
    test = test[test["path"].notna() & test["video_id"].isin(probs.index)].reset_index(drop=True)
    p = probs.loc[test["video_id"]].to_numpy()
    if cfg.pseudo_thresholds and is_multilabel(comp):
        keep, labels = np.ones(len(p), dtype=bool), labels_at_thresholds(p, cfg.pseudo_thresholds, classes, comp)
    else:
        keep, labels = pseudo_labels(p, cfg.threshold, classes, comp)
    if not keep.any():
        log.warning("pseudo: no test video reaches threshold %.3f in %s", cfg.threshold, cfg.pseudo)
        return None
    rows = test[keep].assign(label=labels, group=lambda t: "pseudo:" + t["video_id"],
                             fold=PSEUDO, weight=cfg.pseudo_weight)
    if cfg.pseudo_soft:
        rows = pd.concat([rows.reset_index(drop=True),
                          pd.DataFrame(p[keep], columns=[f"target:{c}" for c in classes])], axis=1)
    return rows.reset_index(drop=True)


def pseudo_labels(p: np.ndarray, threshold: float, classes: list[str], comp: Competition) -> tuple[np.ndarray, list]:
    """(which videos join, their label cells). Single-label: the top class at least `threshold` likely.
    Multi-label: every class present (p >= threshold) or absent (p <= 1 - threshold); the present ones, joined by
    the competition's label_sep (none present: an empty cell, a video with no label)."""
    if not is_multilabel(comp):
        keep = p.max(1) >= threshold
        return keep, [classes[i] for i in p[keep].argmax(1)]
    keep = ((p >= threshold) | (p <= 1 - threshold)).all(1)
    return keep, [comp.label_sep.join(c for c, on in zip(classes, row >= threshold) if on) for row in p[keep]]


def labels_at_thresholds(p: np.ndarray, ensemble_yaml: str, classes: list[str], comp: Competition) -> list[str]:
    """Multi-label: each video's classes at or above their thresholds in `ensemble_yaml` (`thresholds:`)."""
    from vidkit.config import load_ensemble
    thresholds = load_ensemble(ensemble_yaml).get("thresholds") or {}
    missing = [c for c in classes if c not in thresholds]
    if missing:
        raise VidkitError(f"{ensemble_yaml}: thresholds: no threshold for classes {missing} (pseudo_thresholds= "
                          f"needs a multi-label ensemble.yaml)")
    t = np.array([float(thresholds[c]) for c in classes])
    return [comp.label_sep.join(c for c, on in zip(classes, row >= t) if on) for row in p]


def teacher_probs(runs: list[str], classes: list[str]) -> pd.DataFrame:
    """The teachers' out-of-fold probabilities, averaged: each training video's came from teacher models that
    never trained on it."""
    parts = []
    for run in runs:
        oof = oof_file(run)
        if not oof.exists():
            raise VidkitError(f"{oof}: teacher run has no out-of-fold predictions (run `cv` on it first)")
        table = read_csv(oof, ("video_id",), dtype={"video_id": str}, what="teacher OOF file")
        missing = [c for c in classes if c not in table.columns]
        if missing:
            raise VidkitError(f"{oof}: teacher has no column for classes {missing}")
        parts.append(table.set_index("video_id")[classes].astype(float))
    common = parts[0].index
    for part in parts[1:]:
        common = common.intersection(part.index)
    return sum(part.loc[common] for part in parts) / len(parts)


def with_teacher(table: pd.DataFrame, cfg: Config, classes: list[str]) -> pd.DataFrame:
    """`teacher:<class>` columns for every training video (every one must have the teachers' OOF prediction)."""
    if not cfg.teacher:
        return table
    probs = teacher_probs(_runs(cfg.teacher), classes)
    missing = sorted(set(table["video_id"]) - set(probs.index))
    if missing:
        raise VidkitError(f"teacher: {len(missing)} training videos have no out-of-fold prediction in "
                          f"{cfg.teacher} (e.g. {missing[:3]}); the teachers must cover the same training set")
    soft = probs.loc[table["video_id"]].to_numpy()
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(soft, columns=[f"teacher:{c}" for c in classes])],
                     axis=1)


def teacher_test_rows(cfg: Config, comp: Competition, classes: list[str]) -> pd.DataFrame | None:
    """Unlabelled test videos with the teachers' test probabilities (`teacher_test=`, e.g. their submission's
    `_probs.csv`): distillation targets only, no label."""
    if not cfg.teacher_test:
        return None
    from vidkit.data import index_test
    probs = read_probs(cfg.teacher_test, comp, classes)
    test = index_test(comp)
    test = test[test["path"].notna() & test["video_id"].isin(probs.index)].reset_index(drop=True)
    soft = pd.DataFrame(probs.loc[test["video_id"]].to_numpy(), columns=[f"teacher:{c}" for c in classes])
    return pd.concat([test.assign(label=None, group="pseudo:" + test["video_id"], fold=PSEUDO), soft], axis=1)


def _runs(value) -> list[str]:
    return value if isinstance(value, list) else [r for r in str(value).split(",") if r]


def extra_rows(cfg: Config, comp: Competition, classes: list[str]) -> pd.DataFrame | None:
    """Every extra training video of the run (pseudo-labelled, teacher-only); None when there are none."""
    parts = [p for p in (pseudo_rows(cfg, comp, classes), teacher_test_rows(cfg, comp, classes)) if p is not None]
    if not parts:
        return None
    extra = pd.concat(parts, ignore_index=True).drop_duplicates("video_id")
    if (cfg.mixup or cfg.cutmix or cfg.balanced_sampler) and extra["label"].isna().any():
        raise VidkitError("teacher_test: unlabelled test videos cannot be mixed up or class-balanced; "
                          "set mixup=0 cutmix=0 balanced_sampler=false")
    return extra


def summary(extra: pd.DataFrame | None, cfg: Config, label_sep: str | None = None) -> dict:
    """What run.json records: `pseudo` (source, threshold, which test ids joined training, their classes: with a
    multi-label `label_sep`, the videos carrying each class) and `teacher` (the runs, alpha, temperature, how many
    unlabelled test videos)."""
    out = {}
    labelled = extra[extra["label"].notna()] if extra is not None else None
    if cfg.pseudo:
        cells = [] if labelled is None else labelled["label"]
        per_class = pd.Series([c for cell in cells for c in split_labels(cell, label_sep)] if label_sep is not None
                              else list(cells), dtype=object).value_counts().to_dict()
        out["pseudo"] = {"source": cfg.pseudo, "threshold": cfg.threshold, "weight": cfg.pseudo_weight,
                         "soft": cfg.pseudo_soft, "thresholds_from": cfg.pseudo_thresholds,
                         "ids": [] if labelled is None else labelled["video_id"].tolist(),
                         "per_class": per_class}
    if cfg.teacher or cfg.teacher_test:
        out["teacher"] = {"runs": _runs(cfg.teacher or []), "alpha": cfg.alpha, "temperature": cfg.temperature,
                          "test_source": cfg.teacher_test,
                          "test_ids": 0 if extra is None else int(extra["label"].isna().sum())}
    return out


def item_signal(table: pd.DataFrame, labels: np.ndarray, classes: list[str]) -> dict[str, np.ndarray] | None:
    """Per training video: `target` (label distribution, or multi-hot row when `labels` are; NaN: unlabelled),
    `teacher` (NaN: none), `weight`."""
    cols = [c for c in table.columns if c.startswith(("target:", "teacher:"))]
    if not cols and "weight" not in table.columns:
        return None
    n, k = len(table), len(classes)
    target = np.full((n, k), np.nan, dtype=np.float32)
    if labels.ndim == 2:  # multi-hot rows; a teacher-only video (no label cell) stays NaN
        has = table["label"].notna().to_numpy()
        target[has] = labels[has]
    else:
        target[labels >= 0] = np.eye(k, dtype=np.float32)[labels[labels >= 0]]
    soft = _block(table, "target", classes)
    target[np.isfinite(soft).all(1)] = soft[np.isfinite(soft).all(1)]
    weight = table["weight"].fillna(1.0).to_numpy(np.float32).copy() if "weight" in table.columns else np.ones(n, np.float32)
    return {"target": target, "teacher": _block(table, "teacher", classes), "weight": weight}


def _block(table: pd.DataFrame, prefix: str, classes: list[str]) -> np.ndarray:
    cols = [f"{prefix}:{c}" for c in classes]
    if not all(c in table.columns for c in cols):
        return np.full((len(table), len(classes)), np.nan, dtype=np.float32)
    return table[cols].to_numpy(np.float32).copy()  # writable: collate makes tensors of it


def distill_kl(logits, teacher_probs, temperature: float):
    """Per-video KL(teacher_T || student_T) * T^2 (Hinton et al., 2015); teacher_T = softmax(log p / T)."""
    import torch.nn.functional as F
    t = F.softmax(teacher_probs.clamp_min(1e-8).log() / temperature, dim=1)
    return (t * (t.clamp_min(1e-12).log() - F.log_softmax(logits / temperature, dim=1))).sum(1) * temperature ** 2


def signal_loss(logits, batch: dict, class_weights, label_smoothing: float, alpha: float, temperature: float):
    """Each video: weight * ((1 - a) * CE(label distribution) + a * distillation KL), a = alpha with both a label
    and a teacher, 1 with a teacher alone, 0 with a label alone."""
    import torch
    import torch.nn.functional as F
    target, teacher, weight = batch["target"].float(), batch["teacher"].float(), batch["weight"].float()
    has_label, has_teacher = torch.isfinite(target).all(1), torch.isfinite(teacher).all(1)
    hard = F.cross_entropy(logits.float(), target.nan_to_num(0.0), weight=class_weights,
                           label_smoothing=label_smoothing, reduction="none")
    kd = distill_kl(logits.float(), teacher.nan_to_num(1.0), temperature)
    return mix_signal(hard, kd, weight, has_label, has_teacher, alpha)


def mix_signal(hard, kd, weight, has_label, has_teacher, alpha: float):
    """The mean over videos of weight * ((1 - a) * hard + a * kd): a = alpha with both a label and a teacher, 1
    with a teacher alone, 0 with a label alone; a missing term counts 0 (its NaN never reaches the sum)."""
    import torch
    a = torch.where(has_teacher, torch.where(has_label, torch.full_like(kd, alpha), torch.ones_like(kd)),
                    torch.zeros_like(kd))
    per_video = weight * ((1 - a) * torch.where(has_label, hard, torch.zeros_like(hard)) +
                          a * torch.where(has_teacher, kd, torch.zeros_like(kd)))
    return per_video.mean()


def distill_bce(logits, teacher_probs, temperature: float):
    """Per-video multi-label distillation: mean over classes of BCE(sigmoid(logit(p) / T), student logits / T)
    x T^2; each class's teacher probability softened on its own log-odds."""
    import torch
    import torch.nn.functional as F
    p = teacher_probs.clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid(torch.log(p / (1 - p)) / temperature)
    return F.binary_cross_entropy_with_logits(logits / temperature, soft, reduction="none").mean(1) * temperature ** 2


def multilabel_signal_loss(logits, batch: dict, pos_weight, label_smoothing: float, alpha: float,
                           temperature: float):
    """Multi-label `signal_loss`: weight * ((1 - a) * BCE(multi-hot or soft target) + a * `distill_bce`), a as
    there; targets smoothed towards 0.5, `pos_weight` per class."""
    import torch
    import torch.nn.functional as F
    target, teacher, weight = batch["target"].float(), batch["teacher"].float(), batch["weight"].float()
    has_label, has_teacher = torch.isfinite(target).all(1), torch.isfinite(teacher).all(1)
    smoothed = target.nan_to_num(0.0) * (1 - label_smoothing) + label_smoothing / 2
    hard = F.binary_cross_entropy_with_logits(logits.float(), smoothed, pos_weight=pos_weight,
                                              reduction="none").mean(1)
    kd = distill_bce(logits.float(), teacher.nan_to_num(0.5), temperature)
    return mix_signal(hard, kd, weight, has_label, has_teacher, alpha)


def prepare(cfg: Config, comp: Competition, table: pd.DataFrame, classes: list[str], out,
            is_main: bool) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The run's training table with teacher columns and its extra videos; the run's run.json (`out`: its
    RunDir) records them."""
    table = with_teacher(table, cfg, classes)
    extra = extra_rows(cfg, comp, classes)
    if extra is not None:
        extra = extra[~extra["video_id"].isin(table["video_id"])].reset_index(drop=True)
    record = summary(extra, cfg, comp.label_sep if is_multilabel(comp) else None)
    if record and is_main:
        out.update_meta(**record)
    if "pseudo" in record:
        log.info("pseudo: %d test videos join training %s", len(record["pseudo"]["ids"]), record["pseudo"]["per_class"])
    return table, extra
