"""The Gradio web demo, as a real client sees it: a server subprocess on a free local port, gradio_client."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from vidkit.flows.predict import predict_video  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on `port`."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                out.add(local.rsplit(":", 1)[0])
    return out


@pytest.fixture(scope="module")
def server(tiny_run):
    port = _free_port()
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    proc = subprocess.Popen([sys.executable, "-m", "vidkit", "app", f"run={tiny_run}", f"port={port}", "topk=3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            time.sleep(1)
    if proc.poll() is not None or time.time() >= deadline:
        proc.kill()
        pytest.fail(f"the app did not start: {proc.stdout.read()[-3000:]}")
    yield proc, port, url
    proc.terminate()
    proc.wait(30)


@pytest.mark.slow  # a Gradio server in its own process
def test_predict_endpoint_equals_predict_and_serves_localhost_only(server, tiny_run, shared_data):
    proc, port, url = server
    assert _listening(port) == {"0100007F"}  # 127.0.0.1 only, not 0.0.0.0
    video = sorted((shared_data / "videos").glob("*.mp4"))[0]
    label, frames, heat = Client(url, verbose=False).predict(handle_file(str(video)), api_name="/predict")
    expected = predict_video([tiny_run], video).head(3)
    got = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert label["label"] == expected.index[0] and list(got) == list(expected.index)
    assert all(abs(got[c] - p) < 1e-4 for c, p in expected.items())
    assert len(frames) == 4 and os.path.getsize(heat) > 1000  # TINY: 4 sampled frames; the saliency PNG


@pytest.mark.slow  # a Gradio server in its own process
def test_a_non_video_is_a_clear_error_and_the_server_stays_up(server, tmp_path, shared_data):
    proc, _, url = server
    client = Client(url, verbose=False)
    for name, content in (("notes.txt", "hello"), ("fake.mp4", "not really a video")):
        (tmp_path / name).write_text(content)
        with pytest.raises(Exception) as error:
            client.predict(handle_file(str(tmp_path / name)), api_name="/predict")
        assert name in str(error.value) and ("not a video file" in str(error.value) or
                                             "no readable frames" in str(error.value))
    assert proc.poll() is None
    video = sorted((shared_data / "videos").glob("*.mp4"))[-1]
    label, _, _ = client.predict(handle_file(str(video)), api_name="/predict")
    assert len(label["confidences"]) == 3


def test_app_with_comp_serves_the_ensemble_blend(tiny_run, tiny_comp, shared_data, tmp_path, monkeypatch):
    """`app comp=` without runs: the ensemble.yaml's members, blended and calibrated as `submit` does."""
    from vidkit.app import make_predict
    from vidkit.config import load_competition
    from vidkit.analysis.explain import load_fold_model
    from vidkit.rundir import CompDir
    monkeypatch.chdir(tmp_path)
    comp = load_competition(tiny_comp)
    CompDir(comp).path.mkdir(parents=True)
    CompDir(comp).ensemble_yaml.write_text(f"metric: accuracy\ntemperature: 2.0\nmembers:\n- run: {tiny_run}\n"
                                           "  weight: 1.0\n")
    predict = make_predict([str(tiny_run)], 4, load_fold_model(tiny_run, 0), tmp_path, comp)
    video = sorted((shared_data / "videos").glob("*.mp4"))[0]
    label, frames, heat = predict(str(video))
    want = predict_video([], video, comp=comp)
    assert label == pytest.approx({c: float(p) for c, p in want.items()}, abs=1e-6)
    assert label != pytest.approx({c: float(p) for c, p in predict_video([tiny_run], video).items()}, abs=1e-3)
