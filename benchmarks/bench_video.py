"""Raw video: decoding only a clip's sampled frames (grab/seek, vidkit's read_video) vs decoding every frame
and picking the clip's frames, on the real H.264 videos in shared/data/videos (340x256, 280-300 frames).
One core; 16-frame clips at stride 2 (dense) and TSN-uniform over the whole video (sparse).

    .venv/bin/python benchmarks/bench_video.py [--smoke]
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
from common import VIDEOS, add_smoke, one_core, race, require, table

from vidkit.data.media import probe, read_video
from vidkit.data.sampling import multi_indices, uniform_indices


def decode_all(path, indices):
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return np.stack([frames[min(i, len(frames) - 1)][..., ::-1] for i in indices])


def main():
    smoke = add_smoke(argparse.ArgumentParser()).parse_args().smoke
    require(VIDEOS)
    one_core()
    rows = []
    for path in sorted(VIDEOS.glob("*.mp4"))[:1 if smoke else None]:
        n = probe(path)[0]
        for name, clips in (("16 frames, stride 2, 3 clips", [multi_indices(n, 16, 2, k, 3) for k in range(3)]),
                            ("16 frames uniform (TSN)", [uniform_indices(n, 16)])):
            assert all(np.abs(read_video(path, c).astype(int) - decode_all(path, c)).mean() < 1 for c in clips[:1])
            speed = race({"sampled": lambda: [read_video(path, c) for c in clips],
                          "all": lambda: [decode_all(path, c) for c in clips]}, len(clips), rounds=1 if smoke else 3)
            rows.append((path.name, n, name, f"{speed['sampled']:.1f}", f"{speed['all']:.1f}",
                         f"{speed['sampled'] / speed['all']:.1f}x"))
    print("clips/s on one core\n")
    table(rows, ("video", "frames", "clip", "decode sampled frames", "decode all frames", "ratio"))


if __name__ == "__main__":
    main()
