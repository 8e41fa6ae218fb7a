"""One rank of a two-process DDP run, started by ``tests/train/test_ddp.py`` (which is rank 0 itself).

Usage: python ddp_rank.py STORE OUT CONFIG_JSON. The rendezvous comes from the environment (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as torchrun sets it. Writes this rank's RecNet parameters to OUT.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from safetensors.torch import save_file


def main(store: str, out: str, config: str) -> None:
    from veil.train.cloud import CloudTrainConfig, train_recnet

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    try:
        recnet, _ = train_recnet(store, CloudTrainConfig(**json.loads(config)), "cpu", show_progress=False)
    finally:
        dist.destroy_process_group()
    save_file({k: v.contiguous() for k, v in recnet.state_dict().items()}, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
