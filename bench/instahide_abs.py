"""Benchmark (issue 22): InstaHide's |x| invariant attack (Carlini et al. 2021) on real LFW faces, no training.

    python bench/instahide_abs.py [--private 300] [--ks 2,4] [--encodings 8]

The owner's private images are ``--private`` probe images of the 200 victim identities (``veil.partition.data``:
LFW aligned face chips at 150 px, dlib's input); each is InstaHide-encoded ``T`` times (``--encodings``: a fresh
mix and sign mask per epoch of training, from the owner's CSPRNG), mixed with ``(k-1)//2`` other private images
and the rest from a public pool (the 300 adversary identities' images, disjoint from the victims). The adversary
holds the encodings (ungrouped) and one clean photo of each victim identity (its gallery, ``gallery_probe``
seeded). ``InstaHideAbsAttack`` (identifier: dlib's public network whole) names one encoding of every private
image (top-1, n = private images, Wilson 95% CI, chance 1/200), alone and averaged over its ``T - 1`` nearest
among all the encodings in ``|.|`` detail. Encodings are stored as uint8 images, as an owner would write them.
References on the same gallery: dlib on the clean private images, and dlib on their ``|2 x - 1|`` (the
attack's ceiling: a perfect estimate of ``|x|``). Writes bench/results/instahide_abs.{json,md}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import HERE, Envelope, pct, publish, run_conditions

from veil.attacks.instahide_abs import InstaHideAbsAttack, image_target
from veil.data.splits import gallery_probe
from veil.metrics import top1
from veil.models.dlib_resnet import load_whole, normalize_rgb
from veil.obfuscation.instahide import InstaHide
from veil.partition.data import load_image_data
from veil.paths import cache_dir, default_data

SIZE = 150  # dlib's input side: the aligned chips the face pipeline makes


def encode(images: torch.Tensor, public: torch.Tensor, k: int, times: int, batch: int = 256) -> torch.Tensor:
    """``times`` InstaHide encodings of every image (private partners from ``images``), image-major order."""
    ih = InstaHide(k, public)
    reps = images.repeat_interleave(times, dim=0)
    return torch.cat([(ih.mix(reps[i:i + batch], private=images)[0] * 255).round().to(torch.uint8)
                      for i in range(0, len(reps), batch)])


def dlib_embedder():  # noqa: ANN201 - Embedder
    net = load_whole(cache_dir())

    @torch.no_grad()
    def embed(images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return torch.cat([net(normalize_rgb(x[i:i + 64])) for i in range(0, len(x), 64)])

    return embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--private", type=int, default=300, help="private images (probe images, seeded order)")
    parser.add_argument("--ks", default="2,4")
    parser.add_argument("--encodings", default="8", help="encodings per private image (comma list)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "instahide_abs.json")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    env = Envelope("instahide_abs", seed=args.seed, device="cpu")
    data = args.data or default_data()
    imgs = load_image_data(data, SIZE, args.seed, need_train=False)
    gallery, probe = gallery_probe(imgs.victim, args.seed)
    probe = probe[torch.randperm(len(probe), generator=torch.Generator().manual_seed(args.seed))][:args.private]
    g_img, g_lab = imgs.victim.images[gallery], imgs.victim.labels[gallery]
    private, p_lab = imgs.victim.images[probe], imgs.victim.labels[probe]
    public = imgs.aux.images
    chance = 1.0 / len(gallery)
    embed = dlib_embedder()
    g_emb = embed(g_img)
    clean, _ = top1(g_emb, g_lab, embed(private), p_lab)
    ceiling = InstaHideAbsAttack(0, identifier=embed).run(image_target(g_img, g_lab, private, p_lab)).leakage
    references = {"dlib_on_clean_images": {**clean.as_dict(), "chance": chance, "gallery": len(gallery)},
                  "dlib_on_abs_of_clean_images": ceiling.as_dict()}
    print(f"references: dlib on clean {pct(clean.as_dict())}, on |x| of clean {pct(ceiling.as_dict())}", flush=True)
    rows = []
    for k in [int(v) for v in args.ks.split(",")]:
        for times in [int(v) for v in args.encodings.split(",")]:
            enc = encode(private, public, k, times)
            target = image_target(g_img, g_lab, enc, p_lab.repeat_interleave(times))
            attack = InstaHideAbsAttack(times - 1, identifier=embed)
            first = torch.arange(0, len(enc), times)  # one encoding of each private image is named
            raw = attack.run(target, image_of=torch.arange(len(private)).repeat_interleave(times), scored=first)
            res = attack.result(raw.leakage, f"InstaHideAbsAttack(neighbours={times - 1}, identifier=dlib)", raw,
                                single=raw.single.as_dict(), neighbours=raw.neighbours, detail=raw.detail,
                                sibling_precision=raw.sibling_precision)
            row = {"k": k, "encodings_per_image": times, **res.to_dict()}
            rows.append(row)
            print(f"k={k} T={times}: clustered {pct(row)}, single {pct(row['single'])}, sibling precision "
                  f"{raw.sibling_precision}", flush=True)
            del enc, target
    figures = {"references": references, "rows": rows, "chance": chance, "gallery": len(gallery),
               "private_images": len(private), "public_pool": len(public), "image_size": SIZE,
               "roles": imgs.split}
    publish(args.out, env.finish(figures, **run_conditions(data)), markdown(figures, env.command))


def markdown(f: dict, command: str) -> str:
    ref = f["references"]
    lines = ["# InstaHide's |x| invariant attack (Carlini et al. 2021) on LFW", "",
             f"`{command}`. {f['private_images']} private images (probe images of {f['gallery']} victim "
             f"identities, aligned chips at {f['image_size']} px), each encoded T times, public pool "
             f"{f['public_pool']} images of other persons; the adversary's gallery: one clean photo per victim "
             f"identity (chance {100 * f['chance']:.2f}%). No key, no training, encodings ungrouped.", "",
             "Identifier: dlib's public network whole (cosine). References on the same gallery: dlib on the clean "
             f"private images {pct(ref['dlib_on_clean_images'])}; dlib on their |2x-1| against the gallery's "
             f"|2g-1| {pct(ref['dlib_on_abs_of_clean_images'])} (the attack's ceiling: a perfect |x|).", "",
             "| k | encodings per image (T) | n (private images) | one encoding alone, top-1 [95% CI] | averaged over "
             "its T-1 nearest encodings, "
             "top-1 [95% CI] | x chance | siblings found |", "|---|---|---|---|---|---|---|"]
    for r in f["rows"]:
        sib = r.get("sibling_precision")
        lines.append(f"| {r['k']} | {r['encodings_per_image']} | {r['n']} | {pct(r['single'])} | "
                     f"{pct(r) if r['neighbours'] else '—'} | {r['rate'] / r['chance']:.1f} | "
                     f"{'—' if sib is None else f'{100 * sib:.0f}%'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
