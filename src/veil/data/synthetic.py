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


def synthetic_stream(images: int, identities: int = 1000, image_size: int = 64, batch_size: int = 256,
                     seed: int = 0):
    """Batches of SYNTHETIC (images, labels), generated on the fly: a dataset of any size in flat memory.

    Used to show that obfuscation's peak memory does not grow with the dataset.
    """
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(identities, 3, 4, 4, generator=g) * 255
    for start in range(0, images, batch_size):
        n = min(batch_size, images - start)
        labels = torch.randint(0, identities, (n,), generator=g)
        base = torch.nn.functional.interpolate(low[labels], size=(image_size, image_size), mode="bilinear",
                                               align_corners=False)
        noisy = base + 25.0 * torch.randn(base.shape, generator=g)
        yield noisy.clamp(0, 255).round().to(torch.uint8), labels
