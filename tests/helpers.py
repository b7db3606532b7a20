"""What tests share besides fixtures: the tiny training overrides, tiny model arguments, the shared real data and
small checks. Import it as a module (`from helpers import TINY`); fixtures live in conftest.py."""
import hashlib
import json
import shutil
from pathlib import Path

# ../shared/data beside the checkout (/work/main), or beside the worktrees' folder (/work/wt/<name>)
SHARED = next((p for p in (Path(__file__).resolve().parents[i] / "shared" / "data" for i in (2, 3)) if p.is_dir()),
              Path(__file__).resolve().parents[2] / "shared" / "data")
# key=value overrides that make any r3d18-style config tiny (4 frames at 32 px, width 8): the one TINY
TINY = ["num_frames=4", "image_size=32", "model_args.width=8", "batch_size=8", "num_workers=0", "tta_clips=2"]


def tiny_overrides(**extra) -> dict[str, str]:
    """TINY as the {key: value} dict `load_config` takes, plus `extra` (values as strings)."""
    return {**dict(a.split("=", 1) for a in TINY), **{k: str(v) for k, v in extra.items()}}


CNN3D = dict(num_frames=4, image_size=32, width=8, layers=(1, 1, 1, 1))
VIT = dict(num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=64, patch_size=16)
MVIT_BLOCKS = [dict(num_heads=1, input_channels=16, output_channels=16, kernel_q=[3, 3, 3], kernel_kv=[3, 3, 3],
                   stride_q=[1, 1, 1], stride_kv=[1, 2, 2]),
               dict(num_heads=2, input_channels=16, output_channels=32, kernel_q=[3, 3, 3], kernel_kv=[3, 3, 3],
                    stride_q=[1, 2, 2], stride_kv=[1, 1, 1])]
MVIT1 = dict(num_frames=4, image_size=32, arch=dict(block_setting=MVIT_BLOCKS, residual_pool=False,
                                                    residual_with_cls_embed=True, rel_pos_embed=False,
                                                    proj_after_attn=False))
MVIT2 = dict(num_frames=4, image_size=32, arch=dict(block_setting=MVIT_BLOCKS, residual_pool=True,
                                                    residual_with_cls_embed=False, rel_pos_embed=True,
                                                    proj_after_attn=True))
SWIN = dict(num_frames=4, image_size=32, arch=dict(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1, 1, 1],
                                                   num_heads=[1, 1, 1, 1], window_size=[2, 4, 4]))
TV_ZOO = ["s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b"]
MODEL_ARGS = {  # a tiny, fast variant of every registered model: create_model(name, num_classes=..., **MODEL_ARGS[name])
    "r3d_18": CNN3D, "mc3_18": CNN3D, "r2plus1d_18": CNN3D,
    "r3d_18_late_fusion": {**CNN3D, "segments": 2},
    "r3d_18_inception": CNN3D,
    "videomae": VIT,
    "timesformer": VIT,
    "vivit": dict(num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, tubelet_size=[2, 16, 16]),
    "vjepa2": dict(num_frames=4, image_size=32, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                   num_pooler_layers=1, patch_size=16, pred_hidden_size=16, pred_num_hidden_layers=1,
                   pred_num_attention_heads=2),
    "videoprism": dict(num_frames=4, image_size=32, hidden_size=32, num_spatial_layers=1, num_temporal_layers=1,
                       num_attention_heads=2, intermediate_size=64, tubelet_size=[1, 16, 16]),
    "hf_video": dict(model_type="vivit", num_frames=4, image_size=32, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64, tubelet_size=[2, 16, 16]),  # any model_type
    "s3d": dict(num_frames=8, image_size=32),  # torchvision's S3D has no width knob: full width, tiny clip
    "mvit_v1_b": MVIT1, "mvit_v2_s": MVIT2, "swin3d_t": SWIN, "swin3d_s": SWIN, "swin3d_b": SWIN,
    "i3d_r50": dict(num_frames=4, image_size=32, backbone="test_resnet"),
    "stack2d3d": dict(num_frames=4, image_size=32, backbone="test_resnet", stack=2, head_channels=16, head_blocks=1),
    "tsm": dict(num_frames=3, image_size=32, backbone="test_resnet"),
    "tsn": dict(num_frames=3, image_size=32, backbone="test_resnet"),
    "cnn_rnn": dict(num_frames=3, image_size=32, backbone="test_resnet", hidden=16, pool_grid=2),
    "spot_dense": dict(num_frames=3, image_size=32, backbone="test_resnet", hidden=16, stack=3),
    "spot_head": dict(num_frames=3, image_size=32, in_dim=3 * 32 * 32, hidden=16),
}


def manifest_of(folder: Path) -> dict:
    """A kernel bundle's manifest.json, checked: it lists every file in the folder (but itself and the Kaggle
    metadata) with its sha256."""
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json", "dataset-metadata.json"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest, rel
    return manifest


def copy_run(run: Path, dst: Path) -> Path:
    """A private copy of a session run, for a test that writes into it or needs it under another name."""
    shutil.copytree(run, dst)
    return dst
