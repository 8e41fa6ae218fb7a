"""Benchmark: the XNN paper's Table 2 (+ Table 5 ablations) on real faces (LFW).

    python bench/table2.py [--owner-epochs N] [--attack-epochs N] [--data PATH]

Rows Vanilla+PE, IH(k=2), IH(k=3), NC, XNN: the owner's utility (top-1 identification of 300 unseen
persons, one gallery image each), the expectation attack's leakage with each auxiliary group (aux_a,
aux_b: disjoint identities, the paper's FaceScrub and IMDb columns) and chance; then the ablations.
Same as ``veil bench table2 --results bench/results``; writes bench/results/table2.json and .md, in the
common bench envelope (``veil.bench``: its ``figures`` the headline per method, the full rows beside them).
"""

from __future__ import annotations

import sys

from _common import HERE  # puts src/ on sys.path

from veil.cli.bench import app  # noqa: E402

if __name__ == "__main__":
    app(["table2", "--results", str(HERE / "results"), "--out", str(HERE.parent / "runs" / "table2"),
         *sys.argv[1:]], prog_name="bench/table2.py")
