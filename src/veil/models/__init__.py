"""ExtNet (public, frozen) and RecNet (trained by the cloud), built from timm/torchvision/dlib parts.

Importing the package imports each extractor's module, which registers its kind and names
(:mod:`veil.models.registry`)."""

from veil.models import dlib_resnet  # noqa: F401 - registers the dlib-resnet kind and names
from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone, load_extnet, save_backbone
from veil.models.recnet import RecNet, RecNetConfig, load_recnet, save_recnet

__all__ = ["ExtNet", "ExtractorConfig", "build_backbone", "load_extnet", "save_backbone", "RecNet",
           "RecNetConfig", "load_recnet", "save_recnet"]
