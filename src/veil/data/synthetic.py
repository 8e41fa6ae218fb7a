"""Synthetic identities for unit tests only. Anything built on them is labelled synthetic."""

from __future__ import annotations

import torch

from veil.data.faceset import FaceSet


def synthetic_faces(identities: int = 20, per_identity: int = 4, image_size: int = 32, seed: int = 0,
                    noise: float = 25.0) -> FaceSet:
    """Each identity is a smooth random colour pattern; its images are shifted, noisy copies of it."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(identities, 3, 4, 4, generator=g) * 255
    bases = torch.nn.functional.interpolate(low, size=(image_size, image_size), mode="bilinear",
                                            align_corners=False)
    images, labels = [], []
    for i in range(identities):
        for _ in range(per_identity):
            shift = torch.randint(-2, 3, (2,), generator=g).tolist()
            img = torch.roll(bases[i], shifts=shift, dims=(1, 2))
            img = img + noise * torch.randn(img.shape, generator=g)
            images.append(img.clamp(0, 255).round().to(torch.uint8))
            labels.append(i)
    return FaceSet(torch.stack(images), torch.tensor(labels), [f"synthetic_{i:04d}" for i in range(identities)],
                   synthetic=True, source="synthetic")
