"""Heads: registered models whose input is features (N, P, D) of a frozen backbone (P temporal positions x D dims)
instead of clips; their InputSpec's layout is `features` (num_frames = P), which makes training and TTA feed them
a feature store's arrays (`vidkit.data.features`) instead of decoded clips.

`backbone_tokens(model, x)` is the other half: a video model's clips -> (N, P, D) features whose mean over P is
its classifier's input: a 3D CNN's last feature map as a (t, h, w) grid of tokens, a per-frame 2D CNN's one
vector per frame, else (transformers) the pooled vector alone (P = 1). `FrozenHead` chains the two (a head on a
frozen backbone, end to end, without a store).

The gbdt head (LightGBM on pooled features) is fitted by `vidkit.engine.gbdt`, not by gradient steps; its module
holds the booster as bytes so that its checkpoint is a model.safetensors like any other.
"""
from __future__ import annotations

import torch
from torch import nn

from vidkit.models.registry import InputSpec, register_model

FEATURES = "features"  # InputSpec.layout of a head


def feature_spec(positions: int) -> InputSpec:
    return InputSpec(num_frames=positions, size=0, mean=(), std=(), layout=FEATURES)


def _check(in_dim: int | None, name: str) -> int:
    if not in_dim:
        from vidkit.errors import VidkitError
        raise VidkitError(f"{name}: a head needs features: give features=STORE (or the competition's features_dir)")
    return int(in_dim)


class PooledHead(nn.Module):
    """Mean over positions, then a linear layer (hidden=0) or an MLP."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        layers = [nn.Dropout(dropout)] if dropout else []
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout)]
        self.classifier = nn.Sequential(*layers, nn.Linear(hidden or in_dim, num_classes))

    def forward(self, x):
        return self.classifier(self.norm(x.float().mean(1)))


class AttentiveProbe(nn.Module):
    """V-JEPA 2's evaluation head: learned queries cross-attend over the tokens (one attention block with an
    MLP), their outputs averaged, then a linear classifier."""

    def __init__(self, in_dim: int, num_classes: int, num_queries: int = 1, num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        heads = num_heads if in_dim % num_heads == 0 else 1
        self.queries = nn.Parameter(torch.randn(1, num_queries, in_dim) * 0.02)
        self.norm_kv, self.norm_q = nn.LayerNorm(in_dim), nn.LayerNorm(in_dim)
        self.attn = nn.MultiheadAttention(in_dim, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, 2 * in_dim), nn.GELU(),
                                 nn.Linear(2 * in_dim, in_dim))
        self.classifier = nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, num_classes))

    def forward(self, x):
        kv = self.norm_kv(x.float())
        q = self.queries.expand(len(x), -1, -1)
        q = q + self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]
        q = q + self.mlp(q)
        return self.classifier(q.mean(1))


class TemporalTransformer(nn.Module):
    """A CLS token and learned position embeddings, a few pre-norm transformer layers, a linear classifier."""

    def __init__(self, in_dim: int, num_classes: int, positions: int, dim: int = 128, depth: int = 2,
                 num_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, positions + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, num_heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.classifier = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, x):
        x = self.proj(x.float())
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos[:, : x.shape[1] + 1]
        return self.classifier(self.encoder(x)[:, 0])


class NetVLAD(nn.Module):
    """NetVLAD learnable pooling (Arandjelovic et al., 2016; the YouTube-8M winners' head): soft assignment of
    each position to K clusters, residuals summed per cluster, intra- and L2-normalised, then a linear layer."""

    def __init__(self, in_dim: int, num_classes: int, clusters: int = 8, dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, dim))
        self.assign = nn.Linear(dim, clusters)
        self.centroids = nn.Parameter(torch.randn(clusters, dim) * 0.1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(clusters * dim, num_classes))

    def forward(self, x):
        x = self.proj(x.float())                                          # (N, P, d)
        a = self.assign(x).softmax(-1)                                    # (N, P, K)
        vlad = a.transpose(1, 2) @ x - a.sum(1).unsqueeze(-1) * self.centroids  # (N, K, d)
        vlad = nn.functional.normalize(nn.functional.normalize(vlad, dim=-1).flatten(1), dim=-1)
        return self.classifier(vlad)


class GBDTHead(nn.Module):
    """Gradient-boosted trees on pooled features: `booster` holds LightGBM's model text as uint8 (empty until
    `vidkit.engine.gbdt` fits it); forward predicts through it (no gradients)."""

    def __init__(self, in_dim: int, num_classes: int, params: dict):
        super().__init__()
        self.in_dim, self.num_classes, self.params = in_dim, num_classes, params
        self.register_buffer("booster", torch.zeros(0, dtype=torch.uint8))
        self._model = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "booster"
        if key in state_dict:  # the booster's size is the fitted model's, not the empty buffer's
            self.booster = state_dict[key].clone()
            self._model = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_booster(self, text: str) -> None:
        self.booster = torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8).clone()
        self._model = None

    def forward(self, x):
        import lightgbm
        import numpy as np
        if self._model is None:
            self._model = lightgbm.Booster(model_str=bytes(self.booster.cpu().numpy()).decode())
        pooled = x.float().mean(1).cpu().numpy()
        p = np.asarray(self._model.predict(pooled)).reshape(len(pooled), -1)
        if p.shape[1] == 1:  # binary: P(class 1)
            p = np.concatenate([1 - p, p], 1)
        return torch.from_numpy(np.log(np.clip(p, 1e-7, 1))).float().to(x.device)


def _spec(model: nn.Module, positions: int | None) -> nn.Module:
    model.input_spec = feature_spec(int(positions or 1))
    return model


@register_model
def linear_probe(num_classes, pretrained=None, num_frames=None, image_size=None, in_dim=None, positions=None,
                 dropout: float = 0.0):
    return _spec(PooledHead(_check(in_dim, "linear_probe"), num_classes, 0, dropout), positions)


@register_model
def mlp_head(num_classes, pretrained=None, num_frames=None, image_size=None, in_dim=None, positions=None,
             hidden: int = 256, dropout: float = 0.2):
    return _spec(PooledHead(_check(in_dim, "mlp_head"), num_classes, hidden, dropout), positions)


@register_model
def attentive_probe(num_classes, pretrained=None, num_frames=None, image_size=None, in_dim=None, positions=None,
                    num_queries: int = 1, num_heads: int = 4, dropout: float = 0.0):
    return _spec(AttentiveProbe(_check(in_dim, "attentive_probe"), num_classes, num_queries, num_heads, dropout),
                 positions)


@register_model
def temporal_transformer(num_classes, pretrained=None, num_frames=None, image_size=None, in_dim=None,
                         positions=None, dim: int = 128, depth: int = 2, num_heads: int = 4, dropout: float = 0.1):
    return _spec(TemporalTransformer(_check(in_dim, "temporal_transformer"), num_classes, int(positions or 1), dim,
                                     depth, num_heads, dropout), positions)


@register_model
def netvlad(num_classes, pretrained=None, num_frames=None, image_size=None, in_dim=None, positions=None,
            clusters: int = 8, dim: int = 64, dropout: float = 0.0):
    return _spec(NetVLAD(_check(in_dim, "netvlad"), num_classes, clusters, dim, dropout), positions)


@register_model
def gbdt(num_classes, pretrained=None, num_frames=None, image_size=None, in_dim=None, positions=None,
         num_leaves: int = 15, learning_rate: float = 0.05, n_estimators: int = 200, min_child_samples: int = 5,
         colsample_bytree: float = 0.5):
    params = {"num_leaves": num_leaves, "learning_rate": learning_rate, "n_estimators": n_estimators,
              "min_child_samples": min_child_samples, "colsample_bytree": colsample_bytree}
    return _spec(GBDTHead(_check(in_dim, "gbdt"), num_classes, params), positions)


def is_head(model: nn.Module) -> bool:
    return getattr(getattr(model, "input_spec", None), "layout", None) == FEATURES


# ---------------------------------------------------------------- a backbone's features

def _classifier(model: nn.Module, num_classes: int) -> nn.Module | None:
    """The last nn.Linear with num_classes outputs: its input is the pooled feature."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    return found[-1] if found else None


@torch.no_grad()
def backbone_tokens(model: nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, P, D) features of a clip batch: the last feature map in a CNN layout whose channels are D and whose
    mean is the classifier's input: a 3D CNN's (N, D, t, h, w) as its t*h*w grid of tokens, a per-frame 2D
    CNN's (N*t, D, h, w) averaged over space (P = t); a transformers video model that mean-pools its tokens
    (VideoMAE: fc_norm of their mean) its last hidden state averaged over space, one position per tubelet step
    (P = T'); else the classifier's input alone (P = 1)."""
    head = _classifier(model, num_classes)
    if head is None:
        from vidkit.errors import VidkitError
        raise VidkitError(f"{type(model).__name__}: no linear classifier with {num_classes} outputs to take "
                          "features from")
    got: dict = {}
    maps: list = []
    dims = head.in_features

    def keep_input(module, args):
        got["pooled"] = args[0]

    def keep_map(module, args, out):
        if torch.is_tensor(out) and out.ndim in (4, 5) and out.shape[1] == dims and out.shape[-1] * out.shape[-2] > 1:
            maps.append(out)
    def keep_sequence(module, args, out):
        got["sequence"] = getattr(out, "last_hidden_state", None)
    handles = [head.register_forward_pre_hook(keep_input)]
    handles += [m.register_forward_hook(keep_map) for name, m in model.named_modules() if name]
    base = getattr(getattr(model, "hf", None), "base_model", None)
    if isinstance(base, nn.Module):
        handles.append(base.register_forward_hook(keep_sequence))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    pooled = got["pooled"].flatten(1)
    n = len(pooled)
    if maps:
        fmap = maps[-1]  # 3D CNN: the (t, h, w) token grid; per-frame 2D: one token per frame
        tokens = fmap.flatten(2).transpose(1, 2) if fmap.ndim == 5 else fmap.mean((-2, -1)).view(n, -1, dims)
        if tokens.shape[0] == n and torch.allclose(tokens.mean(1), pooled, atol=1e-4, rtol=1e-3):
            return tokens.contiguous()
    positions = time_positions(model.hf, got.get("sequence"), pooled) if base is not None else None
    return pooled[:, None] if positions is None else positions


def _last(value) -> int:
    return int(value[-1] if isinstance(value, (list, tuple)) else value)


def time_positions(hf: nn.Module, sequence: torch.Tensor | None, pooled: torch.Tensor) -> torch.Tensor | None:
    """(N, T', D): a transformers video model's last hidden state (N, [CLS +] T' x S, D) averaged over its S
    spatial tokens, when the classifier's input is (its final norm of) their mean; else None."""
    config = getattr(hf, "config", None)
    if sequence is None or sequence.ndim != 3 or config is None or sequence.shape[-1] != pooled.shape[-1]:
        return None
    tubelet = getattr(config, "tubelet_size", 1)
    steps = int(getattr(config, "num_frames", 0)) // int(tubelet[0] if isinstance(tubelet, (list, tuple)) else tubelet)
    patch = _last(getattr(config, "patch_size", tubelet))
    spatial = (_last(getattr(config, "image_size", 0)) // max(patch, 1)) ** 2
    extra = sequence.shape[1] - steps * spatial
    if steps < 2 or extra not in (0, 1):  # one step: nothing temporal to keep
        return None
    tokens = sequence[:, extra:].reshape(len(sequence), steps, spatial, -1).mean(2)
    norm = getattr(hf, "fc_norm", None) or nn.Identity()
    if not torch.allclose(norm(tokens.mean(1)), pooled, atol=1e-4, rtol=1e-3):
        return None  # the classifier reads a CLS token or an attentive pooler: the pooled feature stays
    return tokens.contiguous()


class FrozenHead(nn.Module):
    """A head on a frozen backbone, end to end: clips -> backbone_tokens -> head (the store's path, without it)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, num_classes: int):
        super().__init__()
        self.backbone, self.head, self.num_classes = backbone.eval(), head, num_classes
        self.input_spec = backbone.input_spec

    def forward(self, x):
        return self.head(backbone_tokens(self.backbone, x, self.num_classes))


HEADS = ("linear_probe", "mlp_head", "attentive_probe", "temporal_transformer", "netvlad", "gbdt")
