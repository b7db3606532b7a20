"""Several processes from a notebook: `launch` runs a verb through torchrun (2 CPU processes, gloo, here)."""
import pandas as pd
import pytest

from vidkit.config import load_competition
from vidkit.engine.launch import command, launch, num_processes
from vidkit.flows.submit import submit_on_every_gpu

CLASSES = ["down", "left", "right", "up"]


def test_process_count_and_command(monkeypatch):
    monkeypatch.setenv("VIDKIT_PROCESSES", "3")
    assert num_processes() == 3 and num_processes(2) == 2
    monkeypatch.delenv("VIDKIT_PROCESSES")
    assert num_processes() == 1  # no GPU here
    cmd = command("cv", ["configs/x.yaml"], 2)
    assert "torch.distributed.run" in cmd and "--nproc_per_node=2" in cmd and "--no-python" in cmd
    assert cmd[-4:] == ["-m", "vidkit", "cv", "configs/x.yaml"] and command("cv", [], 1)[-3:] == ["-m", "vidkit", "cv"]


@pytest.mark.slow
def test_two_processes_write_one_submission_equal_to_one_process(probs_comp, tiny_run, tmp_path, capsys,
                                                                  monkeypatch):
    """What a kernel does on Kaggle's T4 x2: `submit` through `launch`, each process predicting its shard of
    the test set; the gathered result is the single-process one and only the main process writes."""
    comp = load_competition(probs_comp)
    one = pd.read_csv(submit_on_every_gpu(comp, [str(tiny_run)], tmp_path / "one" / "sub.csv"))
    monkeypatch.setenv("VIDKIT_PROCESSES", "2")
    two = pd.read_csv(submit_on_every_gpu(comp, [str(tiny_run)], tmp_path / "two" / "sub.csv"))
    out = capsys.readouterr().out
    assert "(2 processes)" in out and out.count("wrote ") == 2  # once in-process, once from the main worker
    assert two["id"].tolist() == one["id"].tolist() and list(two.columns) == ["id", *CLASSES]
    assert (two[CLASSES] - one[CLASSES]).abs().to_numpy().max() < 1e-5 and one[CLASSES].to_numpy().std() > 0
    # one archived copy + JSON (not one per process), and the competition handed to the workers
    written = {p.name for p in (tmp_path / "two").iterdir()}
    assert len([n for n in written if n.endswith(".json")]) == 1 and "sub.competition.yaml" in written


def test_a_failing_verb_raises_with_its_exit_code(capsys):
    from vidkit.errors import VidkitError
    with pytest.raises(VidkitError, match=r"`vidkit nosuchverb` failed \(exit 2\)"):
        launch("nosuchverb", [], processes=1)
    assert "unknown verb 'nosuchverb'" in capsys.readouterr().out  # the child's stderr, streamed
