"""A spotting head run's backbone (`cv CONFIG comp=C features=STORE` on a per-frame store of `embed`): rebuilt at
`cv` from the store manifest's recipe, checked against the weights hash the store recorded and saved into the run
folder (backbone.safetensors, backbone.json), so `submit`, `predict`, the ensemble and the kernel need the run folder
alone: each test video's frames go through it as `embed` did (`FeatureSlider`), the store's values bit for bit."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vidkit.config import Competition, Config
from vidkit.errors import VidkitError
from vidkit.flows.spotfeatures import BATCH, embed_batch


def store_backbone(cfg: Config, comp: Competition):
    """The store's backbone rebuilt from its manifest's recipe (seed, config, pretrained weights, as `embed` built
    it) and checked against the weights hash it recorded: (spot_dense model, manifest, its hash)."""
    from vidkit.engine.features import store_of, weights_hash
    from vidkit.flows.embed import load_backbone, recipe_of
    root, manifest = store_of(cfg, comp)
    where = Path(root) / "manifest.json"
    if manifest.get("per_frame") and not manifest.get("recipe"):
        raise VidkitError(f"{where}: no backbone recipe (embedded by an older vidkit); re-run `vidkit embed` on "
                          f"this store so a spotting head run can be submitted")
    backbone_cfg, num_classes, _ = recipe_of(root, manifest)
    model = load_backbone(backbone_cfg, num_classes, None, "cpu")
    digest = weights_hash(model)
    if digest != manifest.get("sources", {}).get("all"):
        raise VidkitError(f"{where}: its recipe's backbone ({backbone_cfg.model_args.get('backbone')}, pretrained "
                          f"{backbone_cfg.pretrained}) now has other weights ({digest}) than the features were "
                          f"embedded with; re-embed")
    return model, manifest, digest


def save_run_backbone(cfg: Config, comp: Competition, run) -> None:
    """The store's backbone (checked) into the run folder: backbone.safetensors and backbone.json (recipe, hash,
    feature size and dtype), so submit, predict and the kernel need the run folder alone."""
    from vidkit.files import save_safetensors, write_json
    from vidkit.rundir import BACKBONE_JSON, BACKBONE_WEIGHTS
    model, manifest, digest = store_backbone(cfg, comp)
    save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()}, Path(run) / BACKBONE_WEIGHTS)
    write_json(Path(run) / BACKBONE_JSON, {"recipe": manifest["recipe"], "weights_sha256": digest,
                                           "dims": int(manifest["dims"]), "dtype": manifest.get("dtype", "float16"),
                                           "image_size": int(manifest["image_size"]), "store": str(cfg.features)})


def load_run_backbone(run, device):
    """(backbone module on `device`, its input spec, backbone.json) of a spotting head run (`save_run_backbone`);
    weights other than the recorded ones are refused naming the file."""
    from vidkit.config import apply
    from vidkit.engine.runtime import build_model
    from vidkit.files import load_checkpoint, read_json
    from vidkit.engine.features import weights_hash
    from vidkit.rundir import BACKBONE_JSON, BACKBONE_WEIGHTS
    info_file, weights = Path(run) / BACKBONE_JSON, Path(run) / BACKBONE_WEIGHTS
    for path in (info_file, weights):
        if not path.exists():
            raise VidkitError(f"{path}: missing (a spotting head run trained before its backbone was saved with "
                              f"it?); run `cv` again to submit it")
    info = read_json(info_file, "spotting head's backbone record", keys={"recipe": dict, "weights_sha256": str,
                                                                          "dims": int, "dtype": str})
    backbone_cfg = apply(Config(), info["recipe"]["config"], where=f"{info_file}: recipe: ")
    model = build_model(backbone_cfg, int(info["recipe"]["num_classes"]), None)
    load_checkpoint(model, weights, "backbone")
    if weights_hash(model) != info["weights_sha256"]:
        raise VidkitError(f"{weights}: not the backbone weights {info_file} records; run `cv` again")
    return model.backbone.to(device).eval(), model.input_spec, info


class FeatureSlider:
    """A spotting head's sliding windows over a stream of frames: frames buffered `BATCH` at a time through the
    backbone (as `embed` did), each feature vector cast to the store's dtype and back (the stored values, bit for
    bit), pushed into the head's `Slider`. Holds one batch of frames and the slider's window + stride vectors."""

    def __init__(self, slider, backbone, spec, dtype: str, device):
        self.slider, self.backbone, self.spec, self.dtype, self.device = slider, backbone, spec, dtype, device
        self.batch = []

    def push(self, frame: np.ndarray) -> None:
        self.batch.append(frame)
        if len(self.batch) == BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            features = embed_batch(self.backbone, self.spec, self.batch, self.device)
            for vector in features.astype(self.dtype).astype(np.float32):
                self.slider.push(vector)
            self.batch = []

    def finish(self) -> np.ndarray:
        self._flush()
        return self.slider.finish()
