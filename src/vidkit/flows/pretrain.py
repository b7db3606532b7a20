"""`pretrain CONFIG comp=C [use_test=true] [mask_ratio=0.9] [out_dir=DIR]`: masked-autoencoding pretraining on
every readable video of the competition (labels unused; the test videos too with use_test=true), into a run
folder (default weights/<competition>/<config>_pretrain/):

  pretrained/          a save_pretrained folder (VideoMAEForPreTraining: encoder + decoder) that `pretrained=`
                       takes for videomae / hf_video, with vidkit_pretrain.json (source run, licence `own data`,
                       the parent checkpoint's record when it continued one)
  config.yaml, run.json (provenance), metrics.jsonl, curves.png, reconstruction.png; state/ while unfinished
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vidkit.analysis import provenance
from vidkit.analysis.reconstruction import plot_pretrain_curves, plot_reconstruction
from vidkit.config import Competition, Config
from vidkit.data import index_test, index_train
from vidkit.engine.pretrain import check_enough, learned_little, pretrain_loop, reconstruct
from vidkit.engine.runtime import make_accelerator, process_state
from vidkit.engine.train import train_dataset
from vidkit.flows.cv import _context, deadline
from vidkit.models.weights import OWN_PRETRAINING, pretrained_license
from vidkit.rundir import CompDir, RunDir, metrics_file

from vidkit.files import write_json

log = logging.getLogger(__name__)
PRETRAINED = "pretrained"  # the save_pretrained folder inside a pretraining run


def pretrain_dir(cfg: Config, comp: Competition, out_root: Path | None = None) -> RunDir:
    """out_dir=, else <out_root>/<competition>/<config>_pretrain (beside, never inside, the config's cv run)."""
    if cfg.out_dir:
        return RunDir(cfg.out_dir)
    return RunDir(CompDir(comp, out_root).path / f"{cfg.name or cfg.model}_pretrain")


def pretrained_folder(run: str | Path) -> Path:
    return Path(run) / PRETRAINED


def finished(run: str | Path) -> bool:
    """A pretraining run that wrote its save_pretrained folder and has no unfinished state."""
    return (pretrained_folder(run) / OWN_PRETRAINING).is_file() and not (Path(run) / "state").exists()


def pretrain_videos(comp: Competition, use_test: bool) -> pd.DataFrame:
    """Every readable training video (and test video with `use_test`); a warning names those left out."""
    table = index_train(comp).assign(split="train")
    if use_test:
        test = index_test(comp)
        test = test[test["path"].notna()].assign(split="test", label="")
        log.warning("use_test=true: %d test videos join pretraining (labels are never used; some competitions' "
                    "rules forbid training on test data)", len(test))
        table = pd.concat([table, test], ignore_index=True)
    readable = (table["n_frames"] > 0) & (table["height"] > 0) & (table["width"] > 0)
    if not readable.all():
        left = table.loc[~readable, "video_id"].tolist()
        log.warning("pretrain: leaving out %d videos with no readable frames: %s", len(left), ", ".join(left[:20]))
    return table[readable].reset_index(drop=True)


def run_pretrain(cfg: Config, comp: Competition | None = None, out_root: Path | None = None) -> Path:
    """The `pretrain` verb; the run folder (its pretrained/ once finished; resume=true continues an unfinished one)."""
    cfg, comp = _context(cfg, comp)
    out = pretrain_dir(cfg, comp, out_root)
    table = pretrain_videos(comp, cfg.use_test)
    check_enough(comp, len(table), cfg, process_state().num_processes)  # before any model or folder is made
    accelerator = make_accelerator(cfg, out.path)
    parent = pretrained_license(cfg.pretrained, cfg.model, cfg.pretrained_license)
    if accelerator.is_main_process:
        out.path.mkdir(parents=True, exist_ok=True)
        out.write_config(cfg)
        videos = table["split"].value_counts().to_dict()
        out.write_meta({"kind": "pretrain", "competition": comp.name, "competition_yaml": comp.path,
                        "model": cfg.model, "mask_ratio": cfg.mask_ratio, "use_test": cfg.use_test,
                        "videos": {k: int(v) for k, v in videos.items()}, "pretrained": parent,
                        "provenance": provenance.start(table, table[["video_id"]].assign(fold=-1),
                                                       provenance.read(out))})
        log.info("pretrain: %s videos, mask_ratio %.2f, into %s", len(table), cfg.mask_ratio, out)
    accelerator.wait_for_everyone()
    start = time.time()
    model = pretrain_loop(cfg, comp, table, out.path, accelerator, deadline(cfg))
    if accelerator.is_main_process:
        provenance.record_fold(out, "pretrain", time.time() - start, add=cfg.resume)
    if model is None:
        accelerator.print(f"pretraining stopped early ({'max_time=' + cfg.max_time if cfg.max_time else 'max_steps'});"
                          " run again with resume=true to finish")
        return out.path
    if accelerator.is_main_process:
        save_pretrained(model, out, cfg, comp, parent, table)
        write_figures(model, cfg, table, out)
        provenance.finish(out)
    accelerator.wait_for_everyone()
    folder = pretrained_folder(out)
    accelerator.print(f"pretrained encoder: {folder} (fine-tune with pretrained={folder})")
    return out.path


def save_pretrained(model, out: RunDir, cfg: Config, comp: Competition, parent: dict, table: pd.DataFrame) -> Path:
    """The transformers folder plus its licence record: own data, and the parent checkpoint's when continued."""
    folder = pretrained_folder(out)
    model.hf.save_pretrained(str(folder), safe_serialization=True)
    record = {"source": str(out.path.resolve()), "license": "own data", "competition": comp.name,
              "use_test": cfg.use_test, "videos": len(table), "mask_ratio": cfg.mask_ratio,
              "parent": parent if parent.get("source") else None}
    write_json(folder / OWN_PRETRAINING, record)
    out.update_meta(pretrained_folder=str(folder))
    return folder


def write_figures(model, cfg: Config, table: pd.DataFrame, out: RunDir, n: int = 3) -> None:
    """curves.png (loss, lr per epoch) and reconstruction.png (a few clips: input, mask, reconstruction)."""
    import torch
    plot_pretrain_curves(metrics_file(out.path), out / "curves.png")
    rows = table.head(n)
    dataset = train_dataset(cfg, model.input_spec, rows, np.full(len(rows), -1))
    dataset.seed = 0
    clips = torch.stack([dataset[i]["video"] for i in range(len(rows))])
    views = reconstruct(model, clips, seed=int(cfg.seed))
    plot_reconstruction(views, out / "reconstruction.png")
    out.update_meta(final_reconstruction_loss=round(views["loss"], 5),
                    constant_baseline_loss=round(views["baseline"], 5))
    if learned_little(views["loss"], views["baseline"]):
        log.warning("pretrain: reconstruction loss %.4f is not 10%% below that of predicting a constant (%.4f) "
                    "on %s: the encoder learned little, and fine-tuning from it may do worse than from scratch (try "
                    "a lower lr, norm_pix_loss=false, a lower mask_ratio, more videos or epochs)", views["loss"],
                    views["baseline"], out / "reconstruction.png")
