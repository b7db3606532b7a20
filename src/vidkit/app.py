"""A local web demo (Gradio): upload a video, or pick one of the competition's test videos, and see the top
classes with their probabilities, the sampled frames and the saliency map.

`python -m vidkit app run=RUN [port=7860] [host=127.0.0.1]` (or `runs=A,B`, or `comp=` alone: the competition's
ensemble.yaml blend, as `submit` uses it). It serves on 127.0.0.1 only
unless `host=` says otherwise. The prediction endpoint is `/predict` (gradio_client:
`Client(url).predict(handle_file("clip.mp4"), api_name="/predict")`); the probabilities are `predict`'s.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
EXAMPLES = 12  # test videos offered to pick from


def _test_videos(cfg) -> list[str]:
    """A few of the competition's test videos (none when the competition is not on this machine)."""
    from vidkit.config import load_competition
    from vidkit.data import index_test
    from vidkit.errors import VidkitError
    try:
        table = index_test(load_competition(cfg.comp))
    except (VidkitError, OSError) as e:
        log.warning("app: no test videos to pick from (%s)", e)
        return []
    return [p for p in table["path"].dropna().astype(str).tolist() if Path(p).is_file()][:EXAMPLES]


def make_predict(runs: list[str], topk: int, loaded, out_dir: Path, comp=None):
    """The /predict function: (top-k {class: probability}, sampled frames, saliency PNG path); bad input
    is a gr.Error with the one-line reason, and the server carries on."""
    import gradio as gr

    from vidkit.errors import VidkitError
    from vidkit.analysis.explain import explain_video
    from vidkit.flows.predict import predict_video

    def predict(video):
        if not video:
            raise gr.Error("upload a video file first")
        path = Path(video if isinstance(video, str) else video.get("path", ""))
        try:
            png, _, _, frames = explain_video(runs[0], path, loaded=loaded, out=out_dir / f"{path.stem}.png")
            probs = predict_video([] if comp is not None else runs, path, comp=comp)
        except VidkitError as e:
            raise gr.Error(f"{path.name}: {str(e).replace(str(path) + ': ', '')}") from None
        return {str(c): float(p) for c, p in probs.head(topk).items()}, list(frames), str(png)
    return predict


def build_app(runs: list[str], topk: int = 5, comp=None):
    """The gr.Blocks page for these runs, or for `comp`'s ensemble of them (the first run's fold 0 makes the
    saliency maps)."""
    import gradio as gr

    from vidkit.analysis.explain import load_fold_model
    loaded = load_fold_model(Path(runs[0]), 0)
    out_dir = Path(tempfile.mkdtemp(prefix="vidkit-app-"))
    predict = make_predict(runs, topk, loaded, out_dir, comp)
    names = ", ".join(Path(r).name for r in runs)
    with gr.Blocks(title=f"vidkit: {names}", analytics_enabled=False) as demo:
        gr.Markdown(f"## vidkit: {names}\nUpload a video (.mp4 .avi .mkv .webm .mov) or pick a test video.")
        with gr.Row():
            video = gr.File(label="video", type="filepath")
            label = gr.Label(num_top_classes=topk, label="top classes")
        frames = gr.Gallery(label="sampled frames (what the model sees)", columns=8, height="auto")
        heat = gr.Image(label="saliency", type="filepath")
        button = gr.Button("Predict", variant="primary")
        examples = _test_videos(loaded[2])
        if examples:
            gr.Examples([[p] for p in examples], inputs=[video], label="test videos")
        button.click(predict, inputs=[video], outputs=[label, frames, heat], api_name="predict")
    return demo


def run_app(runs: list[str], port: int, host: str, topk: int, comp=None) -> None:
    """The `app` verb (its keys' defaults: cli.App). `comp` (a loaded competition) and no runs: serve its ensemble.yaml blend (its members with weight > 0)."""
    from vidkit.errors import VidkitError
    if not runs and comp is not None:
        from vidkit.flows.infer import resolve_members
        runs = [str(m.run) for m in resolve_members(comp)[0]]
    else:
        comp = None  # runs given: their plain mean, as `predict run=` gives
    if not runs:
        raise VidkitError("app: run=RUN_DIR (or runs=A,B, or comp= with an ensemble) is required")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline machine
    demo = build_app(runs, topk, comp)
    print(f"serving {', '.join(runs)} on http://{host}:{port}/ (prediction endpoint /predict)", flush=True)
    demo.queue().launch(server_name=host, server_port=port, share=False, show_error=True, quiet=True)
