"""XNN-d (paper section 4): private inference with an adversarial noise encoder and a distilled server RecNet.

Client side only. The feature generator FG (public ExtNet + LayerNorm + the secret noise encoder)
lives here, with the two training stages that make it. The server (``veil.serve``) and the attacks
(``veil.attacks``) never import this package: a test reads their imports.
"""

from veil.xnnd.config import AdversarialConfig, DistillConfig, XnndConfig
from veil.xnnd.distill import distill_server, train_teacher
from veil.xnnd.features import generate
from veil.xnnd.generator import FeatureGenerator, NoiseEncoder, load_generator, save_generator
from veil.xnnd.stage1 import train_noise_encoder

__all__ = ["AdversarialConfig", "DistillConfig", "XnndConfig", "FeatureGenerator", "NoiseEncoder",
           "distill_server", "generate", "load_generator", "save_generator", "train_noise_encoder", "train_teacher"]
