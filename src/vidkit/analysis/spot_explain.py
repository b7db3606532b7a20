"""`explain` on a spotting run: which frames of the window drove one frame's score of one class.

Gradient x input over time: the window around the frame goes through one fold model once, the class's score at
that frame is backpropagated to the input, and |gradient x input| summed over each frame's pixels is that frame's
weight (also kept per pixel for the thumbnails). One backward pass, for any backbone and temporal head; occlusion
over time would take one forward pass per frame of the window and depend on what fills the hole. The PNG shows the
whole video's timeline (the fold model's scores per class, ground truth when the video is a training video, the
window shaded), the weight of each window frame, and the most weighted frames with their pixel map."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidkit.choices import check_choice
from vidkit.errors import VidkitError
from vidkit.files import load_checkpoint, read_csv, save_figure
from vidkit.rundir import RunDir

METHOD = "gradient x input over time"
THUMBS = 6


def load_spot_model(run: Path, fold: int = 0):
    """(model, classes, config, meta) of one fold checkpoint of a spotting run."""
    from vidkit.engine.runtime import build_model
    from vidkit.engine.spotting import num_outputs
    rd = RunDir(run)
    cfg, classes, _ = rd.trained()
    if cfg.features:
        raise VidkitError(f"{run}: explain needs a model on frames; this run's heads read a feature store")
    weights = rd.checkpoint(fold)
    if not weights.is_file():
        raise VidkitError(f"{run}: no {weights.relative_to(run)}")
    model = build_model(cfg, num_outputs(len(classes), cfg.spot_target))
    load_checkpoint(model, weights)
    return model.eval(), classes, cfg, rd.meta()


def window_saliency(model, clip: np.ndarray, at: int, k: int, target: str) -> tuple[np.ndarray, np.ndarray, float]:
    """|gradient x input| of the class-k score at window frame `at`: per frame (T,) and per pixel (T, H, W), each
    scaled to a maximum of 1; and the score."""
    from vidkit.engine.spotting import to_input, to_scores
    x = to_input(torch.from_numpy(clip[None]), model.input_spec).requires_grad_(True)
    score = to_scores(model(x).float(), target)[0, at, k]
    model.zero_grad()
    score.backward()
    pixels = (x.grad * x).abs().sum(2)[0].detach().numpy()  # (T, H, W)
    model.zero_grad()
    per_frame = pixels.sum((1, 2))
    if per_frame.max() <= 0:
        raise VidkitError(f"saliency: the {METHOD} is zero everywhere (the model ignores its input?)")
    return per_frame / per_frame.max(), pixels / max(pixels.max(), 1e-12), score.item()


def truth_of(meta: dict, video_id: str, fps: float) -> list[tuple[int, str]]:
    """The video's ground-truth events (frame, class) when it is in the run's events CSV, else none."""
    from vidkit.config import load_competition
    path = meta.get("competition_yaml")
    if not path or not Path(path).is_file():
        return []
    try:
        comp = load_competition(path)
        events = read_csv(comp.resolve(comp.events_csv), dtype={"video_id": str, "event": str}, what="events CSV")
    except (VidkitError, OSError, ValueError):
        return []
    mine = events[events["video_id"] == video_id]
    frames = mine["frame"] if "frame" in mine.columns else np.round(mine["time"] * fps)
    return [(int(f), str(e)) for f, e in zip(frames, mine["event"])]


def explain_spotting(run: str | Path, video: str | Path, class_name: str | None = None, fold: int = 0,
                     out: str | Path | None = None, frame: int | None = None, time: float | None = None):
    """The PNG (default <run>/explain/<video id>.png) for one frame (`frame=`, or `time=` in seconds; default: the
    highest score) and one class (default: the highest at that frame). Returns (png, per-frame weights (T,),
    method, the window's frames)."""
    from vidkit.data.events import iter_frames, read_window, video_fps
    from vidkit.data.index import media_row
    from vidkit.engine.spotting import model_predictor, sliding_scores
    run = Path(run)
    model, classes, cfg, meta = load_spot_model(run, fold)
    if class_name is not None:
        check_choice("class", class_name, classes)
    spec, row = model.input_spec, media_row(video)
    fps = video_fps(Path(video), trained_fps(meta))
    stride = cfg.spot_stride or max(1, spec.num_frames // 2)
    predict = model_predictor([model], spec, cfg.spot_target, torch.device("cpu"))
    scores = sliding_scores(predict, iter_frames(row, spec.size, cfg.video_backend), spec.num_frames, stride,
                            len(classes), cfg.eval_batch_size or 2 * cfg.batch_size, int(row["n_frames"]))
    if len(scores) == 0:
        raise VidkitError(f"{video}: no frames could be decoded")
    at = int(round(time * fps)) if time is not None else frame
    if at is None:
        at = int(scores.max(1).argmax())
    if not 0 <= at < len(scores):
        raise VidkitError(f"{video}: frame {at} is outside the video ({len(scores)} frames)")
    k = classes.index(class_name) if class_name is not None else int(scores[at].argmax())
    start = int(np.clip(at - spec.num_frames // 2, 0, max(0, len(scores) - spec.num_frames)))
    clip = read_window(row, start, spec.num_frames, spec.size, cfg.video_backend)
    weights, pixels, score = window_saliency(model, clip, at - start, k, cfg.spot_target)
    path = Path(out) if out else RunDir(run).explain_png(row["video_id"])
    render_spotting(scores, classes, truth_of(meta, row["video_id"], fps), clip, weights, pixels, start, at, k,
                    f"{row['video_id']}: {METHOD} of {classes[k]} at frame {at} ({at / fps:.2f} s), score {score:.3f} "
                    f"(fold {fold})", path)
    return path, weights, METHOD, clip


def trained_fps(meta: dict) -> float | None:
    """The `fps:` of the run's competition (frame folders), when its yaml is still there."""
    from vidkit.config import load_competition
    path = meta.get("competition_yaml")
    try:
        return load_competition(path).fps if path and Path(path).is_file() else None
    except VidkitError:
        return None


def render_spotting(scores: np.ndarray, classes: list[str], truth: list[tuple[int, str]], clip: np.ndarray,
                    weights: np.ndarray, pixels: np.ndarray, start: int, at: int, k: int, title: str,
                    path: Path) -> Path:
    """Timeline (all classes, ground truth green, the window shaded, the frame red), the window frames' weights,
    and the THUMBS most weighted frames with their pixel maps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(14, 7))
    grid = fig.add_gridspec(3, THUMBS, height_ratios=[1.2, 1, 1.1])
    line = fig.add_subplot(grid[0, :])
    for j, name in enumerate(classes):
        line.plot(scores[:, j], lw=0.9 if j == k else 0.6, label=name, alpha=1 if j == k else 0.5)
    for f, event in truth:
        line.axvline(f, color="tab:green", lw=1, alpha=0.6 if event == classes[k] else 0.25)
    line.axvspan(start, start + len(weights) - 1, color="grey", alpha=0.15)
    line.axvline(at, color="tab:red", lw=1.2)
    line.set_ylim(0, 1.05)
    line.legend(loc="upper right", fontsize=7)
    line.set_title(title, fontsize=9)
    bars = fig.add_subplot(grid[1, :])
    frames = np.arange(start, start + len(weights))
    bars.bar(frames, weights, color=["tab:red" if f == at else "tab:blue" for f in frames])
    bars.set_xlabel("frame of the window (red: the explained frame); bar: its share of the score's gradient x input")
    top = sorted(np.argsort(-weights)[:THUMBS])
    for i, t in enumerate(top):
        ax = fig.add_subplot(grid[2, i])
        ax.imshow(clip[t])
        ax.imshow(pixels[t], cmap="jet", alpha=0.45, vmin=0, vmax=max(pixels[top].max(), 1e-12))
        ax.set_title(f"frame {start + t}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path
