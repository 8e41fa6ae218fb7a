"""Benchmark: the XNN-d paper's Table 4 on LFW with dlib's public face ResNet as ExtNet, and its privacy-utility curve.

    python bench/table4.py                  # baseline + one setting (eps 1, weak adversary), aux_a and aux_b
    python bench/table4.py --sweep          # eps {0.5, 1, 2, 4, 8} x adversary {weak, strong}: curve + verdict

Same as ``veil bench table4 [--sweep]``. Writes bench/results/table4.{json,md,png} (``--out``):
``curve`` (one row per setting: eps, adversary, utility, asr_black_box, asr_transfer,
asr_expectation, asr_known_plaintext, each with n, CI and chance in ``settings``) and ``verdict``
(strongest-attack ASR <= 0.5 x baseline at utility >= 0.9 x baseline?), in the common bench envelope
(``veil.bench``: its ``figures`` the baseline row, the curve and the verdict). The owner's clean ExtNet
tokens are extracted once per group into runs/xnnd-tokens/ (private, git-ignored) and reused.
The library code is ``veil.xnnd.table4``; see docs/xnnd.md.
"""

from __future__ import annotations

import shlex
import sys

from _common import HERE  # noqa: F401  (puts src/ on sys.path)

from veil.cli.bench import app  # noqa: E402

if __name__ == "__main__":
    app(["table4", "--record-command", shlex.join(["python", "bench/table4.py", *sys.argv[1:]]), *sys.argv[1:]],
        prog_name="python bench/table4.py")
