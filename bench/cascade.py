"""MixNN benchmark: the paper's MLP trained through a cascade of real node processes on loopback vs locally.

Reports, in one run: test accuracy (cascade vs local, same seed and batch order), epoch time ratio, per-hop
packet processing time of Veil's format vs an RSA-2048-OAEP + AES-256-GCM hybrid (the paper's scheme) on the
same payload, and every node's peak memory against a bare Python + torch process.

    python bench/cascade.py                 # scikit-learn digits (64-128-64-10)
    python bench/cascade.py --mnist DIR     # MNIST idx files (784-128-64-10)

Writes bench/results/cascade.json and bench/results/cascade.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veil.cascade import constants as C
from veil.cascade import data as D
from veil.cascade import local
from veil.cascade import pool as pool_mod
from veil.cascade.designer import Designer
from veil.cascade.models import load_spec
from veil.cascade.packet import Hop, Peeler, build_packet, reseal
from veil.cascade.routing import Routing

OUT = Path(__file__).parent / "results"


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def bare_torch_peak_kib() -> int:
    code = ("import torch, grpc, cryptography, safetensors; torch.set_num_threads(1); torch.zeros(8) + 1;"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def spawn_nodes(k: int, pool: Path, root: Path) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-m", "veil.cli.cascade", "node", "--listen", "127.0.0.1:0",
                               "--pool", str(pool), "--log-file", str(root / f"node{i}.log")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(k)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(pool_mod.load(pool)) < k:
        time.sleep(0.1)
    if len(pool_mod.load(pool)) < k:
        raise SystemExit("nodes did not register")
    return procs


def hop_veil(body_size: int, reps: int, cell: int) -> float:
    """Median seconds for one hop: peel (X25519 + HKDF + 2 AEAD opens + header stream) and reseal, in the
    run's packet size class ``cell``."""
    peelers = [Peeler() for _ in range(reps)]
    times = []
    for p in peelers:
        hops = [Hop("127.0.0.1:1", p.public_key), Hop("127.0.0.1:2", Peeler().public_key)]
        pkt, _ = build_packet(hops, [Routing(op=C.OP_FORWARD)] * 2, os.urandom(body_size), cell)
        t0 = time.perf_counter()
        peeled = p.peel(pkt)
        reseal(peeled, peeled.body)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def hop_rsa(body_size: int, reps: int) -> float:
    """Median seconds for one hop of the paper's scheme: RSA-2048-OAEP-unwrap an AES-256-GCM key, decrypt
    the payload, then wrap a fresh key for the next hop's RSA public key and encrypt the payload again."""
    me, nxt = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048).public_key()
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    body, times = os.urandom(body_size), []
    for _ in range(reps):
        k = AESGCM.generate_key(256)
        wrapped, ct = me.public_key().encrypt(k, oaep), AESGCM(k).encrypt(bytes(12), body, None)
        t0 = time.perf_counter()
        plain = AESGCM(me.decrypt(wrapped, oaep)).decrypt(bytes(12), ct, None)
        k2 = AESGCM.generate_key(256)
        nxt.encrypt(k2, oaep), AESGCM(k2).encrypt(bytes(12), plain, None)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "grpcio", "cryptography", "safetensors", "numpy", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=None, help="MNIST idx directory (default: digits)")
    ap.add_argument("--train-limit", type=int, default=None, help="MNIST: first N training images")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dummies", type=int, default=1)
    ap.add_argument("--loop-rate", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    ds = D.load(args.mnist, args.seed, args.train_limit)
    spec = load_spec("mlp", ds.input_dim)

    ref = local.train_local(spec, ds, args.epochs, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool = root / "pool.json"
        n = len(spec.layers) + args.dummies
        procs = spawn_nodes(n, pool, root)
        try:
            with Designer(pool, spec, dummies=args.dummies, seed=args.seed, loop_rate=args.loop_rate) as des:
                res = des.train(ds, args.epochs)
                deadline = time.monotonic() + 10  # loop messages are sent without waiting: let the last return
                while des.loops_returned + des.loops_lost < des.loops_sent and time.monotonic() < deadline:
                    time.sleep(0.05)
                loops = (des.loops_sent, des.loops_returned)
                layer_of = des.cascade.layer_of
                cell = des.cell
                pid_of = {e.address: e.pid for e in pool_mod.load(pool)}
                order = [pid_of[e.address] for e in des.cascade.entries]
            peaks = {pid: vm_hwm_kib(pid) for pid in order}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=20)
    bare = bare_torch_peak_kib()
    act = spec.batch * 128 * 4  # the first hidden activation at batch 64: 32,768 bytes
    inp = spec.batch * ds.input_dim * 4
    # each size in the class its run would use: the run's own cell for its messages; the largest body of
    # the old single 256 KiB format for comparison with the paper-sized payload
    sizes = {act: cell, inp: cell, C.body_capacity(C.DEFAULT_CELL) - 64: C.DEFAULT_CELL}
    hop = {size: {"cell": c, "veil_us": hop_veil(size, args.reps, c) * 1e6,
                  "rsa2048_oaep_hybrid_us": hop_rsa(size, args.reps) * 1e6} for size, c in sizes.items()}
    cas_epoch, loc_epoch = statistics.mean(res.epoch_seconds), statistics.mean(ref.epoch_seconds)
    result = {
        "data": ds.name, "train_samples": len(ds.x_train), "test_samples": len(ds.x_test),
        "model": "mlp " + "-".join([str(ds.input_dim), "128", "64", "10"]) + " + LogSoftmax + NLL",
        "optimizer": spec.optimizer, "batch": spec.batch, "epochs": args.epochs, "seed": args.seed,
        "cascade": {"servers": n, "dummies": args.dummies, "layer_of": layer_of, "loop_rate": args.loop_rate,
                    "loops_sent": loops[0], "loops_returned": loops[1], "cell_bytes": cell,
                    "packet_bytes": C.packet_size(cell), "header_bytes": C.HEADER_SIZE},
        "accuracy": {"cascade": res.accuracy, "local": ref.accuracy, "abs_diff": abs(res.accuracy - ref.accuracy),
                     "identical_losses": res.losses == ref.losses},
        "epoch_seconds": {"cascade": res.epoch_seconds, "local": ref.epoch_seconds,
                          "ratio_mean": cas_epoch / loc_epoch, "paper_ratio": 7.5, "target_ratio": 2.0},
        "per_hop_packet_us": {str(k): v for k, v in hop.items()},
        "node_peak_rss_kib": {"per_position": [peaks[p] for p in order], "bare_python_torch": bare,
                              "max_ratio_to_bare": max(peaks.values()) / bare},
        "device": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                   "cpus": os.cpu_count(), "torch_threads_per_process": 1},
        "versions": versions(),
        "wall_seconds": time.perf_counter() - t_start,
        "command": "python bench/cascade.py " + " ".join(sys.argv[1:]),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cascade.json").write_text(json.dumps(result, indent=1))
    rows = [
        ("test accuracy, cascade / local", f"{res.accuracy:.4f} / {ref.accuracy:.4f}"
         f" (identical losses: {res.losses == ref.losses})"),
        ("epoch time, cascade / local", f"{cas_epoch:.3f} s / {loc_epoch:.4f} s = {cas_epoch / loc_epoch:.1f}x"
         " (paper 7.5x, target <= 2.0x)"),
    ]
    for size, v in hop.items():
        rows.append((f"per-hop packet processing, {size:,} B body in a {v['cell']:,} B cell",
                     f"Veil {v['veil_us']:.0f} us vs RSA-2048-OAEP hybrid {v['rsa2048_oaep_hybrid_us']:.0f} us"))
    rows.append(("node peak RSS (per position)", ", ".join(f"{peaks[p] / 1024:.0f}" for p in order)
                 + f" MiB; bare Python+torch {bare / 1024:.0f} MiB"))
    rows.append(("loop messages sent / returned", f"{loops[0]} / {loops[1]}"))
    md_text = ["# MixNN cascade benchmark", "",
               f"`{result['command'].strip()}` on {result['device']['processor']}, {os.cpu_count()} CPUs, "
               f"{ds.name} ({len(ds.x_train)} train / {len(ds.x_test)} test), {args.epochs} epochs, seed {args.seed}, "
               f"{n} node processes ({args.dummies} dummy), packet {C.packet_size(cell):,} bytes "
               f"(header {C.HEADER_SIZE:,} + cell {cell:,}) for every op and hop of the run.", "",
               "| measure | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    (OUT / "cascade.md").write_text("\n".join(md_text) + "\n")
    print("\n".join(md_text))


if __name__ == "__main__":
    main()
