"""Owner side: from a run directory, build exactly what each adversary would hold, and run the attacks.

This module holds the owner's key (it must, to make the obfuscated features an adversary would see)
and so lives outside ``veil.attacks``. It hands the attacks tensors only: the owner's obfuscated test
features (float16, as a store carries them), the gallery/probe protocol, public ExtNet tokens of an
auxiliary group, leaked pairs, the store. With the key it then scores what the attacks estimated
(permutation accuracy, matrix error), which no attack can see.

A run directory is what ``veil demo`` / ``bench/xnn.py`` write: ``split.json``, ``owner.key``,
``results.json`` (with the ``extractor`` and ``data`` paths, and under ``preprocess`` how each group's images
became face chips) and one store per method, in the folder the
obfuscation registry names (``store_xnn``, ``store_vanilla``; ``veil obfuscate --method xnnh --out
RUN/store_xnnh`` adds XNN-H). A method is named as the registry knows it (``xnn``, ``none`` or ``vanilla``
or ``Vanilla+PE``, ``xnnh``). Every attack runs through its ``on(view)``: the harness builds the
:class:`~veil.attacks.base.View`, then adds the owner-side facts (method, utility, estimate scores) to the
:class:`~veil.attacks.base.AttackResult`'s details.

Images are read as the run read them: the face settings recorded under ``preprocess`` (detector, no-face
policy, chip size, padding; or no alignment for a run made with ``--align none``), so an attack sees the
features the owner's store and utility came from. A run recorded before ``preprocess`` existed is read with
the pipeline's default, with a warning saying so.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from veil.attacks import (
    AlignmentAttack,
    Attack,
    AttackRecNetConfig,
    AttackResult,
    CloudModelAttack,
    ExpectationAttack,
    KnownPlaintextAttack,
    Target,
    View,
    extract_tokens,
)
from veil.attacks.recnet_fit import owner_recipe
from veil.data.faceset import FaceSet
from veil.data.loaders import load_faces
from veil.data.splits import Split, gallery_probe
from veil.errors import VeilError
from veil.faces.config import DEFAULT_FACES, FaceConfig, recorded_faces
from veil.keys import OwnerKey
from veil.models.extractor import Extractor, load_extnet
from veil.models.recnet import load_recnet
from veil.obfuscation import registry
from veil.obfuscation.base import NoObfuscation, Obfuscation
from veil.obfuscation.xnn import XNN
from veil.pipeline import load_group, make_obfuscation
from veil.store import open_store

GALLERIES = ("owner", "clean")


def _wire(features: torch.Tensor) -> torch.Tensor:
    """Features as the store carries them (float16), back in float32 for computation."""
    return features.to(torch.float16).float()


class LeakageHarness:
    """Builds each adversary's inputs from a run directory and runs the attacks against a method's store."""

    def __init__(self, run_dir: str | Path, data: str | Path | None = None, device: str | torch.device = "cpu",
                 log=lambda *_: None) -> None:
        self.run = Path(run_dir)
        for name in ("split.json", "owner.key", "results.json"):
            if not (self.run / name).is_file():
                raise VeilError(f"{self.run} is not a run directory made by `veil demo` (missing {name})")
        self.results = json.loads((self.run / "results.json").read_text())
        self.data = Path(data or self.results.get("data", ""))
        if not self.data.exists():
            raise VeilError(f"dataset not found: {self.data} (pass --data)")
        self.extractor = Path(self.results.get("extractor", ""))
        if not self.extractor.is_file():
            raise VeilError(f"extractor not found: {self.extractor} (results.json 'extractor')")
        self.split = Split.load(self.run / "split.json")
        self.key = OwnerKey.load(self.run / "owner.key")
        self.device = torch.device(device)
        self.log = log
        self.preprocess = self._recorded_preprocess()
        self._warned: set[str] = set()
        self._faces: dict[str, FaceSet] = {}
        self._tokens: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- owner-side facts --------------------------------------------------------------------------
    @cached_property
    def ext(self) -> Extractor:
        return load_extnet(self.extractor)

    def _recorded_preprocess(self) -> dict[str, dict]:
        """``results.json``'s ``preprocess``, per group (a single record stands for every group); an old run
        without it gets an empty map, and :meth:`face_settings` then warns and assumes the default."""
        raw = self.results.get("preprocess")
        if not isinstance(raw, dict) or not raw:
            return {}
        if "align" in raw:  # one record for the whole run
            return {"*": raw}
        return {str(g): r for g, r in raw.items() if isinstance(r, dict)}

    def face_settings(self, group: str) -> tuple[FaceConfig | None, int]:
        """(face pipeline, chip size) for ``group``'s images, as the run recorded them. A group the run did not
        read itself (an adversary's aux group) is read like the owner's test images; a run that recorded
        nothing is read with the pipeline's default, with a warning naming that assumption."""
        size = self.ext.cfg.img_size
        record = (self.preprocess.get(group) or self.preprocess.get("owner_test") or self.preprocess.get("*")
                  or next(iter(self.preprocess.values()), None))
        if record is None:
            message = (f"{self.run / 'results.json'} records no face pipeline ('preprocess'): assuming the default "
                       f"({DEFAULT_FACES.detector} alignment, no-face policy {DEFAULT_FACES.on_no_face}, "
                       f"{size} px chips, padding {DEFAULT_FACES.padding}); a run made with other settings "
                       "(e.g. --align none) is then attacked on other images than its own")
            if group not in self._warned:
                self._warned.add(group)
                warnings.warn(message, stacklevel=2)
                self.log(message)
            return DEFAULT_FACES, size
        config, chip = recorded_faces(record)
        if chip is not None and chip != size:
            raise VeilError(f"the run recorded {chip} px face chips for {group}, its extractor takes {size} px")
        return config, size

    def store_dir(self, method: str) -> Path:
        """The run's store of ``method`` (any registered name or label), in the folder the registry names."""
        path = self.run / registry.lookup(method).store
        if not path.is_dir():
            raise VeilError(f"{self.run} has no {path.name} (make it with `veil obfuscate --method "
                            f"{registry.lookup(method).name} --out {path}`)")
        return path

    def matrix_kind(self, method: str) -> str:
        info = open_store(self.store_dir(method)).manifest.get("obfuscation") or {}
        return info.get("matrix", "orthogonal")

    def xnn_matrix(self, method: str) -> str:
        """The matrix kind an XNN-shaped estimate (P, M) should assume: the store's, for methods with one."""
        return self.matrix_kind(method) if "matrix" in registry.lookup(method).options else "orthogonal"

    def method_of(self, method: str) -> str:
        """The registered obfuscation method the store was made with (its public manifest says)."""
        info = open_store(self.store_dir(method)).manifest.get("obfuscation") or {}
        return info.get("method", "none")

    def obfuscation(self, method: str) -> Obfuscation:
        """The owner's transform for the store ``method`` (as its manifest names it, under the owner's key)."""
        name = self.method_of(method)
        key = self.key if registry.get(name).keyed else None
        return make_obfuscation(self.ext, key, self.matrix_kind(method), name)

    def owner_recipe(self, epochs: int | None = None, seed: int = 0) -> AttackRecNetConfig:
        """The cloud's training recipe this run recorded (``config.cloud``), whole, as an attacker's recipe: what
        "the same recipe as the owner" means (``head_init`` and ``lr`` included). ``epochs`` replaces its own."""
        recipe = (self.results.get("config") or {}).get("cloud")
        if not isinstance(recipe, dict):
            raise VeilError(f"{self.run / 'results.json'} records no cloud recipe (config.cloud)")
        return owner_recipe(recipe, epochs, seed)

    def utility(self, method: str) -> dict | None:
        return (self.results.get("utility") or {}).get(registry.lookup(method).display())

    def faces(self, group: str) -> FaceSet:
        if group not in self._faces:
            self.log(f"loading {group} images")
            align, size = self.face_settings(group)
            self._faces[group] = load_group(self.data, self.split, group, size, align)
        return self._faces[group]

    def clean_tokens(self, group: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, mirrored tokens) of a group's images through the public ExtNet."""
        if group not in self._tokens:
            faces = self.faces(group)
            self.log(f"ExtNet over {len(faces)} {group} images (and mirrors)")
            self._tokens[group] = (extract_tokens(self.ext, faces.images, device=self.device),
                                   extract_tokens(self.ext, faces.images, flip=True, device=self.device))
        return self._tokens[group]

    # -- what each adversary holds ---------------------------------------------------------------------
    @torch.no_grad()
    def target(self, method: str, gallery_kind: str = "owner") -> Target:
        """The owner's test persons, obfuscated under ``method``, with the owner's gallery/probe indices.

        ``gallery_kind="clean"`` is the paper's section 5.1 definition instead: the adversary holds *clean*
        photos of the persons (public ExtNet tokens, no obfuscation) as its gallery, and only the probes
        are the owner's obfuscated features.
        """
        if gallery_kind not in GALLERIES:
            raise VeilError(f"gallery must be one of {', '.join(GALLERIES)}, got {gallery_kind!r}")
        faces = self.faces("owner_test")
        tokens, mirrored = self.clean_tokens("owner_test")
        obf = self.obfuscation(method)
        gallery, probe = gallery_probe(faces, self.split.gallery_seed)
        features, flipped = _wire(obf(tokens)), _wire(obf(mirrored))
        if gallery_kind == "clean":
            features[gallery], flipped[gallery] = _wire(tokens[gallery]), _wire(mirrored[gallery])
        return Target(features, faces.labels, gallery, probe, flipped)

    def aux(self, group: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Public ExtNet tokens of an auxiliary group (images and mirrors) and their labels."""
        if not group.startswith("aux"):
            raise VeilError(f"the adversary's auxiliary set must be an aux group, got {group!r}")
        tokens, mirrored = self.clean_tokens(group)
        labels = self.faces(group).labels
        return torch.cat([tokens, mirrored]), torch.cat([labels, labels])

    @torch.no_grad()
    def leaked_pairs(self, method: str, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` random owner-training images: clean ExtNet tokens and their obfuscated store rows."""
        faces = self.faces("owner_train")
        if count > len(faces):
            raise VeilError(f"asked for {count} leaked pairs, owner_train has {len(faces)} images")
        pick = torch.from_numpy(np.random.default_rng(seed).permutation(len(faces))[:count])
        clean = extract_tokens(self.ext, faces.images[pick], device=self.device)
        return clean, _wire(self.obfuscation(method)(clean))

    def store_features(self, method: str, max_rows: int | None = None, seed: int = 0) -> torch.Tensor:
        feats, _ = open_store(self.store_dir(method)).load_all()
        if max_rows and len(feats) > max_rows:
            feats = feats[torch.from_numpy(np.random.default_rng(seed).permutation(len(feats))[:max_rows])]
        return feats.float()

    # -- owner-side scoring of the estimates ---------------------------------------------------------
    def score_estimate(self, method: str, perm: torch.Tensor, matrix: torch.Tensor) -> dict:
        """How close an attack's (P, M) is to the owner's: only the key holder can compute this.

        Empty for a method with no (P, M) of XNN's shape (XNN-H, the image-level baselines)."""
        obf = self.obfuscation(method)
        if isinstance(obf, NoObfuscation):
            true_perm, true_m = torch.arange(len(perm)), torch.eye(matrix.shape[0])
        elif isinstance(obf, XNN):
            true_perm, true_m = obf.perm, obf.matrix
        else:
            return {}
        err = float((matrix.float() - true_m).norm() / true_m.norm())
        return {"permutation_accuracy": float((perm == true_perm).float().mean()), "matrix_rel_error": err}

    # -- the attacks -------------------------------------------------------------------------------------
    def attack(self, attack: Attack, view: View, method: str, command: str | None = None,
               **details: object) -> AttackResult:
        """Run ``attack`` on ``view`` and add what only the owner knows: the method and the owner's utility."""
        result = attack.on(view, command)
        result.details = {"method": registry.lookup(method).name, **details, **result.details,
                          "utility": self.utility(method)}
        return result

    def expectation(self, method: str = "xnn", aux_group: str = "aux_a", recnet: AttackRecNetConfig | None = None,
                    seed: int = 0, gallery_kind: str = "owner", command: str | None = None) -> AttackResult:
        attack = ExpectationAttack(self.method_of(method), self.matrix_kind(method), recnet, seed, self.device)
        aux_tokens, aux_labels = self.aux(aux_group)
        view = View(target=self.target(method, gallery_kind), aux_tokens=aux_tokens, aux_labels=aux_labels)
        self.log(f"expectation attack on {method}: training on {aux_group} ({len(aux_tokens)} rows)")
        return self.attack(attack, view, method, command, aux=aux_group, gallery_kind=gallery_kind)

    def known_plaintext(self, method: str = "xnn", ks: Sequence[int] = (0, 1, 2, 4, 8, 16, 32, 64),
                        identifier: str = "pooled", aux_group: str = "aux_a",
                        recnet: AttackRecNetConfig | None = None, seed: int = 0,
                        command: str | None = None) -> AttackResult:
        attack = KnownPlaintextAttack(ks, self.xnn_matrix(method), identifier, recnet, device=self.device)
        clean, obf = self.leaked_pairs(method, max(attack.ks), seed)
        aux_tokens, aux_labels = self.aux(aux_group) if identifier == "recnet" else (None, None)
        view = View(target=self.target(method), pairs=(clean, obf), aux_tokens=aux_tokens, aux_labels=aux_labels)
        result = self.attack(attack, view, method, command)
        result.details["points"] = [{**point, **self.score_estimate(method, p.permutation, p.matrix)}
                                    for point, p in zip(result.details["points"], result.raw.points, strict=True)]
        return result

    def identifier(self):
        """The adversary's public identifier for clean tokens: the rest of dlib's network after the cut (dlib
        ExtNets), else mean-pooled tokens."""
        cut = getattr(self.ext.cfg, "cut", None)
        if getattr(self.ext.cfg, "kind", "") != "dlib-resnet" or cut is None:
            return None
        from veil.models.dlib_resnet import public_identifier

        return public_identifier(cut)

    def cloud_recnet(self, method: str) -> torch.nn.Module | None:
        """The RecNet the cloud trained on the method's store, if the run has one."""
        path = self.run / registry.lookup(method).recnet
        return load_recnet(path)[0] if path.is_file() else None

    def leaked_pairs_attack(self, method: str = "xnn", ks: Sequence[int] = (0, 1, 4, 16, 64, 256, 1024),
                            estimators: Sequence[str] | None = None, seed: int = 0,
                            command: str | None = None) -> AttackResult:
        """Issue 16's threat model: k leaked pairs + store + the cloud's RecNet vs a gallery of clean photos."""
        from veil.attacks.leaked_pairs import ESTIMATORS, LeakedPairsAttack

        attack = LeakedPairsAttack(ks, estimators or ESTIMATORS, self.xnn_matrix(method),
                                   identifier=self.identifier())
        clean, obf = self.leaked_pairs(method, max(attack.ks), seed)
        view = View(target=self.target(method, "clean"), pairs=(clean, obf),
                    store_features=self.store_features(method), recnet=self.cloud_recnet(method))
        return self.attack(attack, view, method, command, gallery_kind="clean")

    def public_tokens(self, group: str, max_identities: int | None = None, seed: int = 0) -> torch.Tensor:
        """Unlabelled public ExtNet tokens (images and mirrors) of up to ``max_identities`` persons of ``group``."""
        if group.startswith("owner"):
            raise VeilError(f"the adversary's public images cannot be the owner's ({group})")
        if group.startswith("aux") or not max_identities:
            tokens, mirrored = self.clean_tokens(group)
            return torch.cat([tokens, mirrored])
        names = self.split.groups[group]
        pick = np.random.default_rng(seed).permutation(len(names))[:max_identities]
        align, size = self.face_settings(group)
        faces = load_faces(self.data, size, [names[i] for i in sorted(pick)], align)
        self.log(f"ExtNet over {len(faces)} {group} images (and mirrors)")
        return torch.cat([extract_tokens(self.ext, faces.images, device=self.device),
                          extract_tokens(self.ext, faces.images, flip=True, device=self.device)])

    def alignment(self, method: str = "xnn", aux_group: str = "aux_a", identifier: str = "pooled",
                  axes: int = 4, max_store_rows: int | None = None, recnet: AttackRecNetConfig | None = None,
                  public_group: str | None = None, max_public_identities: int | None = None,
                  command: str | None = None) -> AttackResult:
        attack = AlignmentAttack(axes=axes, identifier=identifier, recnet=recnet, device=self.device)
        public_group = public_group or aux_group
        public = self.public_tokens(public_group, max_public_identities)
        aux_tokens, aux_labels = self.aux(aux_group) if identifier == "recnet" else (None, None)
        view = View(target=self.target(method), store_features=self.store_features(method, max_store_rows),
                    public_tokens=public, aux_tokens=aux_tokens, aux_labels=aux_labels)
        result = self.attack(attack, view, method, command, aux=aux_group, public=public_group,
                             public_rows=len(public))
        result.details.update(self.score_estimate(method, result.raw.permutation, result.raw.matrix))
        return result

    def cloud_model(self, method: str = "xnn", gallery_kind: str = "owner",
                    command: str | None = None) -> AttackResult:
        """The cloud's own RecNet, which it trained and holds, applied to the owner's obfuscated test features."""
        recnet = self.cloud_recnet(method)
        if recnet is None:
            raise VeilError(f"no cloud RecNet at {self.run / registry.lookup(method).recnet}")
        view = View(target=self.target(method, gallery_kind), recnet=recnet)
        return self.attack(CloudModelAttack(), view, method, command, gallery_kind=gallery_kind)
