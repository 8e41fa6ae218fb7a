"""Check: are Table 5's "XNN, frozen pre-trained RecNet" row and XNN's aux_a expectation row one measurement?

    python bench/table5_check.py        # after python bench/table2.py: reads runs/table2 (key, split) and its recipe

Both rows of ``bench/results/table2.json`` have 682 hits out of 1,094. This rebuilds the two models exactly as
``veil.evaluation.table2`` does (the run's key and split, the recorded recipes), compares them probe by probe,
and scores the untrained identity-initialised RecNet (key-free mean pooling of the tokens) beside them.
Writes ``bench/results/table5_check.json`` and ``.md``; about 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Envelope, write_markdown, write_result  # noqa: E402  (also puts src/ on sys.path)

from veil.attacks.leakage import identity_leakage  # noqa: E402
from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet, recnet_embedder  # noqa: E402
from veil.demo import PRESETS, cached_extractor, run_key  # noqa: E402
from veil.evaluation import protections  # noqa: E402
from veil.evaluation import table2 as t2  # noqa: E402
from veil.models.extractor import load_extnet  # noqa: E402
from veil.models.recnet import build_recnet  # noqa: E402
from veil.paths import default_data  # noqa: E402
from veil.pipeline import load_group, prepare_split  # noqa: E402

OUT = HERE / "results" / "table5_check.json"


def main() -> None:
    env = Envelope("table5_check", seed=0)
    recorded = json.loads((HERE / "results" / "table2.json").read_text())
    attack = AttackRecNetConfig(**recorded["config"]["attack_recipe"])
    owner = AttackRecNetConfig(**recorded["config"]["owner_recipe"])
    cfg = t2.Table2Config()
    data, run = default_data(), HERE.parent / "runs" / "table2"
    split = prepare_split(data, run / "split.json", PRESETS[cfg.preset].split)
    ext = load_extnet(cached_extractor(data, split, PRESETS[cfg.preset], "cpu", False, print)[0])
    aux = {g: load_group(data, split, g, ext.cfg.img_size) for g in cfg.aux_groups}
    clean = {g: t2.clean_tokens(ext, f, "cpu") for g, f in aux.items()}
    test = load_group(data, split, "owner_test", ext.cfg.img_size)
    target = t2.owner_target(protections.xnn(ext, run_key(run), cfg.matrix), test, split.gallery_seed, "cpu")

    expectation = t2.simulation("XNN", ext, aux["aux_a"], clean["aux_a"], torch.zeros(0), cfg, "cpu").fit(attack)
    offsets, labels = 0, []
    for faces in aux.values():  # exactly Table 5's frozen RecNet: clean aux_a + aux_b, images then mirrors
        labels += [faces.labels + offsets] * 2
        offsets += len(faces.names)
    frozen = fit_recnet(torch.cat(list(clean.values())), torch.cat(labels), owner)
    untrained = build_recnet(*ext.token_shape, attack)
    results = {name: identity_leakage(target, recnet_embedder(net))
               for name, net in (("expectation_aux_a", expectation), ("frozen_recnet", frozen),
                                 ("untrained_identity_init", untrained))}
    hits = {k: r.hits.bool() for k, r in results.items()}
    figures = {k: r.as_dict() for k, r in results.items()}
    figures["same_outcome"] = {
        "expectation_vs_frozen": int((hits["expectation_aux_a"] == hits["frozen_recnet"]).sum()),
        "both_hit": int((hits["expectation_aux_a"] & hits["frozen_recnet"]).sum()),
        "probes": len(hits["frozen_recnet"])}
    figures["recorded_hits"] = {"expectation_aux_a": recorded["rows"][-1]["leakage"]["aux_a"]["hits"],
                                "frozen_recnet": recorded["ablations"][-1]["utility"]["hits"]}
    payload = env.finish(figures)
    write_result(OUT, payload)
    publish_markdown(payload)


def publish_markdown(payload: dict) -> None:
    f = payload["figures"]
    rows = [(k, f[k]) for k in ("expectation_aux_a", "frozen_recnet", "untrained_identity_init")]
    s = f["same_outcome"]
    lines = ["# Table 5 check: XNN frozen-RecNet row vs XNN aux_a expectation row", "", f"`{payload['command']}`", "",
             "| model | top-1 on XNN tokens [95% CI] | hits / n | chance |", "|---|---|---|---|"]
    lines += [f"| {k} | {100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}] | "
              f"{r['hits']} / {r['n']} | {100 * r['chance']:.2f}% |" for k, r in rows]
    lines += ["", f"Same per-probe outcome for the two trained models on {s['expectation_vs_frozen']} of "
              f"{s['probes']} probes ({s['both_hit']} hit by both); recorded in table2.json: {f['recorded_hits']}."]
    write_markdown(OUT.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown-only"]:  # re-render the .md from the committed JSON, nothing re-measured
        publish_markdown(json.loads(OUT.read_text()))
    else:
        main()
