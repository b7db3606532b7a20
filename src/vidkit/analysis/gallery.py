"""Error gallery: the out-of-fold videos the model got most confidently wrong (and, per class, the least
confident right one), as strips of their sampled frames (`errors.png`) and animated clips (`errors.html`).

Multi-label runs: per class, its most confident false positive (highest probability without the label) and its
least confident positive (lowest probability with it), the worst of them first; red where the call at 0.5 is wrong.

Built from oof.csv and the media alone: no model, no training. `cv` writes it; `vidkit gallery run=RUN` redoes it.
"""
from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from vidkit.config import Config, load_competition
from vidkit.data import index_train, make_sampler
from vidkit.data.labels import multi_hot
from vidkit.data.media import read_clip
from vidkit.errors import VidkitError
from vidkit.files import numeric_columns, read_csv, save_figure, write_text
from vidkit.rundir import GALLERY_SIZE, RunDir

log = logging.getLogger(__name__)
HEIGHT = 96          # pixels per frame in the strip and the clip
STRIP_FRAMES = 8     # frames shown per strip (of the clip's frames, evenly spaced)


def pick(oof: pd.DataFrame, classes: list[str], n: int = GALLERY_SIZE) -> pd.DataFrame:
    """The videos to show: most confidently wrong first, then per class the least confident right one
    (at least a third of the places when there are enough, more when there are few errors)."""
    probs = oof[classes].to_numpy(dtype=float)
    ok = np.isfinite(probs).all(1) & oof["label"].isin(classes).to_numpy()
    probs, rows = probs[ok], oof[ok].reset_index(drop=True)
    y = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    pred = probs.argmax(1)
    table = pd.DataFrame({"video_id": rows["video_id"].astype(str), "fold": rows["fold"], "label": rows["label"],
                          "pred": [classes[i] for i in pred], "p_true": probs[np.arange(len(y)), y],
                          "p_pred": probs.max(1), "wrong": pred != y})
    wrong = table[table["wrong"]].sort_values("p_pred", ascending=False, kind="stable")
    right = table[~table["wrong"]].sort_values("p_true", kind="stable").groupby("label", sort=False).head(1)
    n_right = min(len(right), max(n - len(wrong), n // 3))
    return pd.concat([wrong.head(n - n_right), right.head(n_right)]).reset_index(drop=True)


def pick_multilabel(oof: pd.DataFrame, classes: list[str], label_sep: str, n: int = GALLERY_SIZE) -> pd.DataFrame:
    """Per class the worst false positive and the worst false negative candidate (see the module's docstring),
    ordered by how wrong they are (p for a false positive, 1 - p for a false negative); the first `n`."""
    probs = oof[classes].to_numpy(dtype=float)
    ok = np.isfinite(probs).all(1)
    probs, rows = probs[ok], oof[ok].reset_index(drop=True)
    y = multi_hot(rows["label"], classes, label_sep)
    picks = []
    for c, cls in enumerate(classes):
        for positive, kind in ((False, "false positive"), (True, "false negative")):
            idx = np.flatnonzero((y[:, c] > 0) == positive)
            if not len(idx):
                continue
            i = idx[probs[idx, c].argmin()] if positive else idx[probs[idx, c].argmax()]
            error = 1 - probs[i, c] if positive else probs[i, c]
            r = rows.iloc[i]
            text = (f"{r['video_id']} (fold {r['fold']}): {kind} of {cls} p={probs[i, c]:.2f}; "
                    f"labels: {r['label'] or '(none)'}")
            picks.append({"video_id": str(r["video_id"]), "fold": r["fold"], "label": r["label"], "pred": cls,
                          "p_true": probs[i, c], "p_pred": probs[i, c], "error": error, "wrong": error > 0.5,
                          "text": text})
    table = pd.DataFrame(picks, columns=["video_id", "fold", "label", "pred", "p_true", "p_pred", "error", "wrong",
                                         "text"])
    return table.sort_values("error", ascending=False, kind="stable").head(n).reset_index(drop=True)


def clip_frames(row: dict, num_frames: int, frame_stride: int, pad_mode: str) -> np.ndarray:
    """The centre clip the evaluation samples, (T, HEIGHT, W, 3) uint8 with the video's aspect ratio."""
    indices = make_sampler("multi", num_frames, frame_stride, 1, pad_mode)(int(row["n_frames"]), 0)
    frames = read_clip(row, indices, HEIGHT)
    width = max(1, round(frames.shape[2] * HEIGHT / frames.shape[1]))
    return np.stack([cv2.resize(np.ascontiguousarray(f), (width, HEIGHT), interpolation=cv2.INTER_AREA)
                     for f in frames])


def caption(r) -> str:
    if isinstance(getattr(r, "text", None), str):  # multi-label: written by pick_multilabel
        return r.text
    return (f"{r.video_id} (fold {r.fold}): true {r.label} p={r.p_true:.2f}, "
            f"predicted {r.pred} p={r.p_pred:.2f}")


def write_png(picks: pd.DataFrame, clips: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(picks), 1, figsize=(12, 1.45 * len(picks)), squeeze=False)
    for ax, r, clip in zip(axes[:, 0], picks.itertuples(), clips):
        ax.axis("off")
        ax.set_title(caption(r), fontsize=8, loc="left", color="tab:red" if r.wrong else "tab:green")
        if clip is None:
            ax.text(0.5, 0.5, "media unreadable", ha="center", va="center", transform=ax.transAxes)
            continue
        shown = clip[np.unique(np.linspace(0, len(clip) - 1, min(STRIP_FRAMES, len(clip))).round().astype(int))]
        ax.imshow(np.concatenate(list(shown), axis=1))
    fig.suptitle("out-of-fold errors (red: most confidently wrong; green: per class the least confident right)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def gif(clip: np.ndarray, fps: float = 8.0) -> str:
    """An animated GIF of the clip, base64 for an <img> data URL."""
    from PIL import Image
    # quantised here with the fast octree: left to the GIF writer, median cut costs 16 ms a frame
    frames = [Image.fromarray(f).quantize(256, Image.Quantize.FASTOCTREE) for f in clip]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return base64.b64encode(buf.getvalue()).decode()


def write_html(picks: pd.DataFrame, clips: list, path: Path, title: str) -> None:
    cells = []
    for r, clip in zip(picks.itertuples(), clips):
        media = f'<img src="data:image/gif;base64,{gif(clip)}">' if clip is not None else "<i>media unreadable</i>"
        color = "#c0392b" if r.wrong else "#27ae60"
        cells.append(f'<div class="v">{media}<p style="color:{color}">{html.escape(caption(r))}</p></div>')
    write_text(path, f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} .v{{display:inline-block;margin:6px;width:260px;vertical-align:top}}
.v img{{max-width:256px}} .v p{{font-size:12px;margin:2px}}</style>
<h2>{html.escape(title)}</h2><p>Red: most confidently wrong. Green: per class, the least confident right one.</p>
{"".join(cells)}
""")


def write_gallery(oof: pd.DataFrame, classes: list[str], table: pd.DataFrame, num_frames: int, cfg: Config,
                  out: Path, n: int = GALLERY_SIZE, label_sep: str | None = None) -> tuple[Path, Path]:
    """errors.png and errors.html in `out`, from the OOF table and the training index `table` (media rows);
    `label_sep` (a multi-label run's): per-class errors."""
    picks = pick(oof, classes, n) if label_sep is None else pick_multilabel(oof, classes, label_sep, n)
    if picks.empty:
        raise VidkitError(f"{out}: no out-of-fold predictions to show")
    rows = table.set_index(table["video_id"].astype(str))
    clips = []
    for video_id in picks["video_id"]:
        try:
            clips.append(clip_frames(rows.loc[video_id].to_dict(), num_frames, cfg.frame_stride, cfg.pad_mode))
        except Exception as e:  # noqa: BLE001 - a decoder failure: shown as unreadable, logged
            log.warning("gallery: %s cannot be read (%s)", video_id, str(e).splitlines()[0] if str(e) else e)
            clips.append(None)
    png, page = RunDir(out).gallery_png, RunDir(out).gallery_html
    write_png(picks, clips, png)
    write_html(picks, clips, page, f"{out.name}: out-of-fold errors")
    return png, page


def run_gallery(run: str | Path, n: int = GALLERY_SIZE) -> tuple[Path, Path]:
    """`vidkit gallery run=RUN [n=N]`: the gallery of a cross-validated run folder."""
    run = RunDir(run)
    for path in (run.config_yaml, run.meta_file, run.oof_csv):
        if not path.exists():
            raise VidkitError(f"{run}: no {path.name}; cross-validate it first (`make cv`)")
    cfg, info = run.read_config(), run.meta()
    label_sep = info.get("label_sep", " ") if info.get("task") == "multilabel" else None
    oof = read_csv(run.oof_csv, ("video_id", "label", *info["classes"]), dtype={"video_id": str, "label": str},
                   what="OOF file")
    oof["label"] = oof["label"].fillna("") if label_sep is not None else oof["label"]
    numeric_columns(oof, info["classes"], run.oof_csv, complete=True)
    table = index_train(load_competition(cfg.comp))
    paths = write_gallery(oof, info["classes"], table, info["input_spec"]["num_frames"], cfg, run.path, n, label_sep)
    for p in paths:
        print(p)
    return paths
