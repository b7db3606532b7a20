from vidkit.models import cnn3d, frame2d, hf, inflate, spot, stack, tvzoo  # noqa: F401  (register the builders)
from vidkit.models import heads  # noqa: F401  (heads on feature stores)
from vidkit.models.registry import InputSpec, create_model, list_models, register_model

__all__ = ["InputSpec", "create_model", "list_models", "register_model"]
