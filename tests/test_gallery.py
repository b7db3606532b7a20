"""The error gallery: picks from oof.csv, errors.png and errors.html (animated clips), written by `cv` too."""
import base64
import re
import subprocess
import sys

import numpy as np
import pandas as pd
from PIL import Image

from vidkit.analysis.gallery import pick

PNG = b"\x89PNG\r\n\x1a\n"


def test_pick_most_confident_wrong_then_least_confident_right():
    classes = ["a", "b"]
    oof = pd.DataFrame({"video_id": list("pqrstu"), "fold": 0, "label": ["a", "a", "b", "b", "a", "b"],
                        "a": [0.3, 0.9, 0.6, 0.2, 0.55, np.nan], "b": [0.7, 0.1, 0.4, 0.8, 0.45, np.nan]})
    picks = pick(oof, classes, n=4)
    # wrong: p (b 0.7), r (a 0.6), most confident first; right: least confident per class, t (a 0.55), s (b 0.8)
    assert list(picks["video_id"]) == ["p", "r", "t", "s"]
    assert list(picks["wrong"]) == [True, True, False, False]
    assert picks.loc[0, "p_true"] == 0.3 and picks.loc[0, "pred"] == "b"
    assert "u" not in set(pick(oof, classes, n=10)["video_id"])  # an unreadable (NaN) row is never shown
    assert len(pick(oof, classes, n=3)) == 3


def test_cv_writes_errors_png_and_animated_html(tiny_run):
    png, page = tiny_run / "errors.png", (tiny_run / "errors.html").read_text()
    assert png.read_bytes()[:8] == PNG
    oof = pd.read_csv(tiny_run / "oof.csv", dtype={"video_id": str})
    picks = pick(oof, ["down", "left", "right", "up"])
    for video_id in picks["video_id"]:
        assert video_id in page
    gifs = re.findall(r'src="data:image/gif;base64,([^"]+)"', page)
    assert len(gifs) == len(picks)
    import io
    clip = Image.open(io.BytesIO(base64.b64decode(gifs[0])))
    assert clip.n_frames == 4 and clip.size[1] == 96  # every sampled frame (TINY: 4), animated
    width, height = Image.open(png).size
    assert height > 100 * len(picks) * 0.8  # one strip per picked video


def test_gallery_verb_rewrites_it(tiny_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "errors.png").unlink()
    proc = subprocess.run([sys.executable, "-m", "vidkit", "gallery", f"run={run}", "n=3"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "errors.png").read_bytes()[:8] == PNG
    assert len(re.findall("data:image/gif", (run / "errors.html").read_text())) == 3
    bad = subprocess.run([sys.executable, "-m", "vidkit", "gallery", f"run={tmp_path}"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "no config.yaml" in bad.stderr
