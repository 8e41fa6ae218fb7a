"""ExtNet (public, frozen) and RecNet (trained by the cloud), built from timm/torchvision parts."""

from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone, load_extnet, save_backbone
from veil.models.recnet import RecNet, RecNetConfig, load_recnet, save_recnet

__all__ = ["ExtNet", "ExtractorConfig", "build_backbone", "load_extnet", "save_backbone", "RecNet",
           "RecNetConfig", "load_recnet", "save_recnet"]
