"""``python -m veil.serve --recnet R --gallery G --port P``: the same server as ``veil serve``, with a slim start-up.

It imports only the server (not the whole CLI with every attack), so it starts in about a second;
the tests and ``bench/serve.py`` launch the server this way.
"""

from __future__ import annotations

import argparse
import sys

from veil.errors import VeilError
from veil.serve.app import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY, run_server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m veil.serve", description=__doc__)
    p.add_argument("--recnet", required=True)
    p.add_argument("--gallery", default="gallery.safetensors")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY)
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    try:
        run_server(a.recnet, a.gallery, a.host, a.port, a.max_body, a.max_batch, a.threads)
    except VeilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
