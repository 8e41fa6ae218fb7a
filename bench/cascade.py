"""MixNN benchmark: the paper's workload (MLP 784-128-64-10, batch 64, SGD 0.01/0.9) trained to a plateau through
a cascade of real node processes on loopback, and locally, in the same run.

Reports: per-message cost of the two transports (ZeroMQ, gRPC unary); the epoch-time ratio cascade / local for
m = 1, 2, 4, 8 micro-batches in flight; accuracy cascade vs local at a trained model; a per-step time breakdown
(designer packing, node crypto, layer compute, node send, the rest: transport and waiting); the cost of a 1 ms
Poisson mixing delay per hop; per-hop crypto vs an RSA-2048-OAEP hybrid; node peak memory; the per-step floor.

    python bench/cascade.py                 # digits upsampled to 28x28 (784 inputs; no MNIST on disk)
    python bench/cascade.py --mnist DIR     # MNIST idx files

Writes bench/results/cascade.json and bench/results/cascade.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 shared cores, 7+ processes: one OpenMP thread each (nodes inherit)
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from _common import Envelope, write_markdown, write_result  # also puts src/ on sys.path
from cascade_deploy import (
    chain_probe,
    deployment_rows,
    deployment_section,
    emulated_section,
    one_core,
    probed_link,
    ratio_ci,
    timed_local_epochs,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veil.cascade import constants as C
from veil.cascade import data as D
from veil.cascade import local, message, transport
from veil.cascade import pool as pool_mod
from veil.cascade.deployment_model import Link
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


def spawn_nodes(k: int, pool: Path, root: Path, extra: tuple[str, ...] = (), tag: str = "") -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-m", "veil.cli.cascade", "node", "--listen", "127.0.0.1:0",
                               "--pool", str(pool), "--log-file", str(root / f"node{tag}{i}.log"), *extra],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(k)]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(pool_mod.load(pool)) < k:
        time.sleep(0.1)
    if len(pool_mod.load(pool)) < k:
        raise SystemExit("nodes did not register")
    return procs


def stop_nodes(procs: list[subprocess.Popen], grace: float = 60.0) -> None:
    """SIGTERM every node (each logs its timing line, deregisters), then wait on one shared deadline; kill the
    rest. Interpreter teardown with torch takes seconds per process on a loaded machine, so the grace is long."""
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def hop_veil_once(body_size: int, cell: int) -> float:
    """Seconds for one hop: peel (session mode, what every training packet uses: HKDF + the slot's AEAD + the
    AES-256-GCM payload + the header stream) and reseal, in the run's packet size class ``cell``."""
    p = Peeler()
    secret = os.urandom(32)
    p.bind(secret)
    hops = [Hop("127.0.0.1:1", p.public_key, secret), Hop("127.0.0.1:2", Peeler().public_key)]
    pkt, _ = build_packet(hops, [Routing(op=C.OP_FORWARD)] * 2, os.urandom(body_size), cell)
    t0 = time.perf_counter()
    peeled = p.peel(pkt)
    reseal(peeled, peeled.body)
    return time.perf_counter() - t0


class RsaHop:
    """One hop of the paper's scheme: RSA-2048-OAEP-unwrap an AES-256-GCM key, decrypt the payload, then wrap a
    fresh key for the next hop's RSA public key and encrypt the payload again."""

    def __init__(self) -> None:
        self.me, self.nxt = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048).public_key()
        self.oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

    def once(self, body_size: int) -> float:
        body = os.urandom(body_size)
        k = AESGCM.generate_key(256)
        wrapped, ct = self.me.public_key().encrypt(k, self.oaep), AESGCM(k).encrypt(bytes(12), body, None)
        t0 = time.perf_counter()
        plain = AESGCM(self.me.decrypt(wrapped, self.oaep)).decrypt(bytes(12), ct, None)
        k2 = AESGCM.generate_key(256)
        self.nxt.encrypt(k2, self.oaep), AESGCM(k2).encrypt(bytes(12), plain, None)
        return time.perf_counter() - t0


def hop_pair(body_size: int, reps: int, cell: int, seed: int) -> dict[str, float | list[float]]:
    """Veil's hop and the RSA hybrid's, measured alternately (one of each per rep, so both see the same moments
    of the machine's background load): medians, their ratio and its 95% bootstrap interval over reps."""
    rsa_hop, veil, hybrid = RsaHop(), [], []
    for _ in range(reps):
        veil.append(hop_veil_once(body_size, cell))
        hybrid.append(rsa_hop.once(body_size))
    veil, hybrid = veil[reps // 10:], hybrid[reps // 10:]  # warm-up
    rng = random.Random(seed)
    idx = range(len(veil))
    boot = sorted(statistics.median(veil[i] for i in pick) / statistics.median(hybrid[i] for i in pick)
                  for pick in (rng.choices(idx, k=len(veil)) for _ in range(2000)))
    v, r = statistics.median(veil), statistics.median(hybrid)
    return {"veil_us": v * 1e6, "rsa2048_oaep_hybrid_us": r * 1e6, "ratio": v / r,
            "ratio_ci95": [boot[50], boot[1949]], "n": len(veil)}


def transfer_us(name: str, size: int, n: int = 300) -> float:
    """Median one-way cost of one ``size``-byte message on loopback: A -> B -> back to the sender, halved."""
    t = transport.make(name)
    back = threading.Event()
    lst: list = []
    lst.append(t.listen("127.0.0.1:0", lambda p: t.push(lst[1].address, p)))
    lst.append(t.listen("127.0.0.1:0", lambda p: back.set()))
    for x in lst:
        x.start()
    pkt, times = os.urandom(size), []
    try:
        for _ in range(n):
            back.clear()
            t0 = time.perf_counter()
            t.push(lst[0].address, pkt)
            back.wait(5)
            times.append(time.perf_counter() - t0)
    finally:
        for x in lst:
            x.stop()
        t.close()
    return statistics.median(times[20:]) / 2 * 1e6


def node_timing(root: Path, key: str = "node timing") -> dict[str, dict[str, float]]:
    """Each node's last ``<key> {json}`` line, by log file name: ``node timing`` (whole life, written at shutdown)
    or ``session timing`` (the last run released on it)."""
    out = {}
    for log in sorted(root.glob("node*.log")):
        for line in log.read_text().splitlines():
            if f"{key} " in line:
                out[log.stem] = json.loads(line.split(f"{key} ", 1)[1])
    return out


def cascade_run(pool: Path, spec, ds: D.Dataset, epochs: int, args, m: int) -> tuple:  # noqa: ANN001
    """Train through the pool's cascade with m micro-batches; returns (result, designer facts)."""
    with Designer(pool, spec, dummies=args.dummies, seed=args.seed, loop_rate=args.loop_rate,
                  microbatches=m, select_seed=args.seed) as des:
        res = des.train(ds, epochs)
        assert des.cascade is not None
        deadline = time.monotonic() + 10  # loop messages are sent without waiting: let the last return
        while des.loops_returned + des.loops_lost < des.loops_sent and time.monotonic() < deadline:
            time.sleep(0.05)
        facts = {"loops": (des.loops_sent, des.loops_returned), "layer_of": des.cascade.layer_of,
                 "cell": des.cell, "order": [e.address for e in des.cascade.entries],
                 "breakdown": des.trainer.breakdown(), "timeout_s": des.timeout()}
    return res, facts


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "grpcio", "pyzmq", "cryptography", "safetensors", "numpy", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=None, help="MNIST idx directory (default: digits upsampled)")
    ap.add_argument("--train-limit", type=int, default=None, help="MNIST: first N training images")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the main run (to the plateau)")
    ap.add_argument("--sweep-epochs", type=int, default=3, help="epochs per micro-batch setting in the sweep")
    ap.add_argument("--microbatches", type=str, default="1,2,4,8")
    ap.add_argument("--dummies", type=int, default=1)
    ap.add_argument("--loop-rate", type=int, default=1)
    ap.add_argument("--mix-delay-ms", type=float, default=1.0, help="mean delay of the mixing-cost run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--crypto-reps", type=int, default=400, help="paired reps of the per-hop crypto comparison")
    ap.add_argument("--reduced-why", default="", help="why epochs or the sweep were cut (stated in the outputs)")
    ap.add_argument("--emulate", default="dc:1,regions:1,regions:4",
                    help="PROFILE:M runs across emulated hosts (network namespaces; profiles: dc, regions; '' skips)")
    ap.add_argument("--emulate-epochs", type=int, default=2, help="epochs of each emulated run (kept short)")
    ap.add_argument("--part", choices=("all", "emulated", "rest"), default="all",
                    help="split the bench into two shorter timed runs: 'emulated' runs only the emulated hosts and "
                         "writes them to --emulated-json; 'rest' runs everything else and reads them from there")
    ap.add_argument("--emulated-json", type=Path, default=OUT / "cascade_emulated.json",
                    help="where --part emulated writes, and --part rest reads, the emulated runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = Envelope("cascade", seed=args.seed, device="cpu")
    load_start = os.getloadavg()
    ds = D.load(args.mnist, args.seed, args.train_limit, upsample=args.mnist is None)
    spec = load_spec("mlp", ds.input_dim)
    ms = [int(v) for v in args.microbatches.split(",")]
    if args.part == "emulated":
        n = len(spec.layers) + args.dummies
        part = emulated_section(args.emulate, n, args.emulate_epochs, args.seed, args.dummies, args.loop_rate)
        write_result(args.emulated_json, env.finish({"emulated": part, "load_average_at_start": load_start,
                                                     "load_average_at_end": os.getloadavg()}))
        return

    ref = local.train_local(spec, ds, args.epochs, args.seed, track_accuracy=True)
    spe = D.steps_per_epoch(len(ds.x_train), spec.batch)
    sizes_t = sorted({70_552, C.packet_size(C.cell_for(200_000)), C.packet_size(C.CELL_SIZES[2])})
    transfer = {name: {str(sz): transfer_us(name, sz) for sz in sizes_t} for name in ("zmq", "grpc")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool = root / "pool.json"
        n = len(spec.layers) + args.dummies
        procs = spawn_nodes(n, pool, root)
        sweep: dict[str, dict] = {}
        try:
            chain: dict[str, float] = {}  # per-link cost along n + 1 processes on these cores, beside each run
            for m in ms:
                loc = local.train_local(spec, ds, args.sweep_epochs, args.seed)  # same run, right beside it
                # the denominator: the median of 10 timed local epochs (a 20 ms epoch is cheap, and the median of
                # the run's own 2 moved 30% between runs on a quiet machine)
                loc_t = timed_local_epochs(spec, ds, args.seed)
                chain[str(m)] = chain_probe(spec, m, n)
                r, f = cascade_run(pool, spec, ds, args.sweep_epochs, args, m)
                c_ep, l_ep = statistics.median(r.epoch_seconds), statistics.median(loc_t)
                sweep[str(m)] = {"cascade_epoch_s": c_ep, "local_epoch_s": l_ep, "ratio": c_ep / l_ep,
                                 "cell_bytes": f["cell"], "max_loss_diff": max(abs(a - b) for a, b in
                                                                               zip(r.losses, loc.losses, strict=True)),
                                 "breakdown": f["breakdown"], "local_epochs_s": loc_t}
                print(f"m={m}: {c_ep:.3f} s / {l_ep:.4f} s = {c_ep / l_ep:.2f}x", flush=True)
            best = min(ms, key=lambda m: sweep[str(m)]["ratio"])
            # the ratio's denominator right beside the main run (load changes over minutes); accuracy: ``ref``
            loc_main = local.train_local(spec, ds, args.epochs, args.seed)
            chain["main"] = chain_probe(spec, best, n)
            load_main_start = os.getloadavg()
            res, facts = cascade_run(pool, spec, ds, args.epochs, args, best)
            load_main = {"start": load_main_start, "end": os.getloadavg()}
            pid_of = {e.address: e.pid for e in pool_mod.load(pool)}
            order = [pid_of[a] for a in facts["order"]]
            peaks = {pid: vm_hwm_kib(pid) for pid in order}
        finally:
            stop_nodes(procs)
        timing = node_timing(root)
        run_timing = node_timing(root, "session timing")  # the main run: the last one released on these nodes
        # the mixing delay's cost: the same cascade shape on nodes that hold each packet ~Exp(mean) before sending
        mix_pool = root / "mix.json"
        procs = spawn_nodes(n, mix_pool, root, ("--mix-delay-ms", str(args.mix_delay_ms)), tag="mix")
        try:
            mix_res, _ = cascade_run(mix_pool, spec, ds, args.sweep_epochs, args, best)
        finally:
            stop_nodes(procs)
    bare = bare_torch_peak_kib()
    cell = facts["cell"]
    # separate hosts: every party in its own network namespace, links at a rate with a held delay (short runs)
    if args.part == "rest":  # measured in a separate timed run (--part emulated), read back here
        part = json.loads(args.emulated_json.read_text())
        emulated = part["figures"]["emulated"]
        emulated_from = {"file": args.emulated_json.name, "command": part["command"],
                         "wall_seconds": part["wall_seconds"]}
    else:
        emulated_from = None
        emulated = emulated_section(args.emulate, n, args.emulate_epochs, args.seed, args.dummies, args.loop_rate)
    # the deployment model: costs alone on one core (this process stays pinned to it from here, crypto included),
    # predictions of every measured run, the projection for one VM per server in one region
    cores = os.cpu_count() or 1
    measured = [{"label": f"loopback main run, m = {best}", "m": best, "link": Link("loopback"), "cores": cores,
                 "cascade_epoch_s": statistics.median(res.epoch_seconds), "transfer_fixed_s": chain["main"],
                 "local_epoch_s": statistics.median(loc_main.epoch_seconds)}]
    measured += [{"label": f"loopback sweep, m = {m}", "m": int(m), "link": Link("loopback"), "cores": cores,
                  "cascade_epoch_s": v["cascade_epoch_s"], "local_epoch_s": v["local_epoch_s"],
                  "transfer_fixed_s": chain[m]} for m, v in sweep.items()]
    measured += [{"label": f"emulated {k}", "m": v["microbatches"], **probed_link(v), "cores": cores,
                  "cascade_epoch_s": v["cascade_epoch_s"], "local_epoch_s": v["local_epoch_median_s"]}
                 for k, v in emulated.items() if isinstance(v, dict)]
    deployment = deployment_section(spec, ds, facts["layer_of"], sorted({*ms, *(r["m"] for r in measured)}),
                                    measured, args.reps, args.seed)
    crypto_cpu, crypto_load = one_core(), os.getloadavg()
    # per-hop crypto on the bodies this workload sends: the full batch (m = 1) and micro-batches, each in its class
    hop = {}
    for n_rows in sorted({spec.batch, -(-spec.batch // best), -(-spec.batch // 4)}, reverse=True):
        size = len(message.encode({}, {"x": torch.zeros(n_rows, ds.input_dim)}))
        c = C.cell_for(size + 256)
        hop[size] = {"rows": n_rows, "cell": c, **hop_pair(size, args.crypto_reps, c, args.seed)}
    run_size = next(k for k, v in hop.items() if v["rows"] == -(-spec.batch // best))
    cas_epoch, loc_epoch = statistics.median(res.epoch_seconds), statistics.median(loc_main.epoch_seconds)
    # per-step breakdown: designer side measured by the designer; node side from the nodes' own counters of the
    # main run's forward and backward packets, summed over the cascade, per packet, times packets per step
    main = {k: t for k, t in run_timing.items() if not k.startswith("nodemix")}
    node_pkts = sum(t.get("packets", 0) for t in main.values())
    per_pkt = {k: sum(t.get(k, 0.0) for t in main.values()) / max(node_pkts, 1) for k in ("crypto", "layer", "send")}
    pkts_per_step = 2 * best * n
    step_s = facts["breakdown"]["step_s"]
    bd = {"step_s": step_s, "local_step_s": loc_epoch / spe, "designer_pack_s": facts["breakdown"]["designer_pack_s"],
          "node_crypto_s": per_pkt["crypto"] * pkts_per_step, "node_layer_s": per_pkt["layer"] * pkts_per_step,
          "node_send_s": per_pkt["send"] * pkts_per_step, "packets_per_step": pkts_per_step,
          "note": "node terms are sums over the cascade's packets of a step, from the nodes' own clocks; they can "
                  "overlap: a node's send ends when its thread runs again after the hand-off, while the next hop "
                  "already works (on 2 oversubscribed cores the sender is often descheduled there), and with "
                  "m > 1 micro-batches overlap; transport_and_waiting = step - the rest, floored at 0"}
    bd["transport_and_waiting_s"] = max(0.0, step_s - bd["designer_pack_s"] - bd["node_crypto_s"]
                                        - bd["node_layer_s"] - bd["node_send_s"])
    # the floor: every packet of a step crosses (n + 1) links each way, sequentially, with one hop's crypto each
    one_hop_us = hop[run_size]["veil_us"]
    link_us = transfer["zmq"][str(min(sizes_t, key=lambda z: abs(z - C.packet_size(cell))))]
    floor_s = 2 * (n + 1) * (link_us + one_hop_us) / 1e6
    mix_epoch = statistics.median(mix_res.epoch_seconds)
    no_mix_epoch = sweep[str(best)]["cascade_epoch_s"]
    ratio, gap = cas_epoch / loc_epoch, abs(res.accuracy - ref.accuracy)
    crypto_ratio = hop[run_size]["ratio"]
    reduced = args.epochs < 30 or ms != [1, 2, 4, 8]
    figures = {
        "accuracy_cascade": res.accuracy, "epoch_s": {"cascade": cas_epoch, "local": loc_epoch},
        "per_step_floor_s": floor_s, "per_hop_crypto_ratio_vs_rsa": crypto_ratio,
        "targets": {"epoch_time_ratio": {"target": 5.0, "value": ratio, "met": ratio <= 5.0, "paper": 7.5},
                    "accuracy_gap": {"target": 0.001, "value": gap, "met": gap <= 0.001},
                    "per_hop_crypto_vs_rsa2048_oaep_hybrid": {"target": 0.5, "value": crypto_ratio,
                                                              "ci95": hop[run_size]["ratio_ci95"],
                                                              "n": hop[run_size]["n"],
                                                              "met": crypto_ratio <= 0.5,
                                                              "at": f"{run_size:,} B body in the run's "
                                                                    f"{cell:,} B cell"},
                    "projected_ratio_paper_setup": {
                        "target": 5.0, "paper": 7.5, "value": deployment["projection_paper_setup"][0]["ratio"],
                        "met": deployment["projection_paper_setup"][0]["met"],
                        "at": deployment["projection_paper_setup"][0]["link"]},
                    "model_within_20pct_of_every_run": {"target": 0.2, "met": deployment["all_within_20pct"],
                                                        "value": max(abs(r["relative_error"])
                                                                     for r in deployment["predictions"]),
                                                        "value_hot": max(abs(r["relative_error_hot"])
                                                                         for r in deployment["predictions"]),
                                                        "counts": deployment["within_20pct"]},
                    "emulated_accuracy_gap": {"target": 0.001, "value": max(
                        [v["accuracy_gap"] for v in emulated.values() if isinstance(v, dict)], default=None),
                        "met": all(v["accuracy_gap"] <= 0.001 for v in emulated.values() if isinstance(v, dict))}},
        "loopback_ratio": {"value": ratio, "ci95": ratio_ci(res.epoch_seconds, loc_main.epoch_seconds, args.seed),
                           "microbatches": best, "load_average": load_main, "cpus": os.cpu_count(),
                           "note": f"{n} node processes, the designer and the local baseline on {os.cpu_count()} "
                                   "shared cores with other work; bootstrap over epochs"},
        "deployment": deployment,
        "emulated": emulated,
        "emulated_measured_in": emulated_from or "this run",
        "per_hop_crypto_measured_on": {"cpu_pinned": crypto_cpu, "load_average": crypto_load,
                                       "payload_aead": C.PAYLOAD_AEAD[C.FORMAT_VERSION],
                                       "format_version": C.FORMAT_VERSION},
        "reduced_run": ({"epochs": args.epochs, "microbatches": ms, "why": args.reduced_why} if reduced else None),
        "data": ds.name, "train_samples": len(ds.x_train), "test_samples": len(ds.x_test),
        "model": "mlp " + "-".join([str(ds.input_dim), "128", "64", "10"]) + " + LogSoftmax + NLL",
        "optimizer": spec.optimizer, "batch": spec.batch, "epochs": args.epochs, "sweep_epochs": args.sweep_epochs,
        "local_accuracy_by_epoch": ref.epoch_accuracy,
        "max_step_loss_diff": max(abs(a - b) for a, b in zip(res.losses, ref.losses, strict=True)),
        "microbatch_sweep": sweep,
        "transfer_one_way_us": transfer,
        "mixing_delay": {"mean_ms": args.mix_delay_ms, "epoch_s": mix_epoch, "epoch_s_without": no_mix_epoch,
                         "slowdown": mix_epoch / no_mix_epoch, "accuracy": mix_res.accuracy},
        "cascade": {"servers": n, "dummies": args.dummies, "layer_of": facts["layer_of"],
                    "loop_rate": args.loop_rate, "loops_sent": facts["loops"][0], "loops_returned": facts["loops"][1],
                    "cell_bytes": cell, "packet_bytes": C.packet_size(cell), "header_bytes": C.HEADER_SIZE,
                    "timeout_s": facts["timeout_s"]},
        "epoch_seconds": {"cascade": res.epoch_seconds, "local_beside_main_run": loc_main.epoch_seconds,
                          "local_first_run": ref.epoch_seconds},
        "per_hop_packet_us": {str(k): v for k, v in hop.items()},
        "node_timing": {"whole_life": timing, "main_run": main},
        "node_peak_rss_kib": {"per_position": [peaks[p] for p in order], "bare_python_torch": bare},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                    "load_average_at_start": load_start},
        "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch_threads_designer_and_local": 1,
                    "torch_threads_per_node": 1, "node_processes": n},
        "versions": versions(),
    }
    payload = env.finish(figures, epoch_time_ratio=ratio, accuracy_gap=gap, accuracy_local=ref.accuracy,
                         microbatches=best, transport="zmq", breakdown=bd)
    OUT.mkdir(parents=True, exist_ok=True)
    write_result(OUT / "cascade.json", payload)
    rows = [
        ("test accuracy, cascade / local", f"{res.accuracy:.4f} / {ref.accuracy:.4f} (gap {gap:.4f}, target <= 0.001; "
         f"largest per-step loss difference {figures['max_step_loss_diff']:.1e})"),
        ("epoch time, cascade / local", f"{cas_epoch:.3f} s / {loc_epoch:.4f} s = {ratio:.2f}x at "
         f"m = {best} (target <= 5.0x, paper 7.5x)"),
    ]
    rows += [(f"ratio with m = {m} ({args.sweep_epochs} epochs)", f"{v['ratio']:.2f}x ({v['cascade_epoch_s']:.3f} s / "
              f"{v['local_epoch_s']:.4f} s, cell {v['cell_bytes']:,} B, max loss diff {v['max_loss_diff']:.1e})")
             for m, v in sweep.items()]
    rows += [(f"one-way transfer, {int(sz):,} B", f"ZeroMQ {transfer['zmq'][sz]:.0f} us, gRPC unary "
              f"{transfer['grpc'][sz]:.0f} us") for sz in transfer["zmq"]]
    rows.append(("local test accuracy by epoch (plateau)", ", ".join(f"{a:.3f}" for a in ref.epoch_accuracy)))
    rows.append(("per-step time (cascade)", f"{step_s * 1e3:.2f} ms: designer packing "
                 f"{bd['designer_pack_s'] * 1e3:.2f}, "
                 f"node crypto {bd['node_crypto_s'] * 1e3:.2f}, layers {bd['node_layer_s'] * 1e3:.2f}, node send "
                 f"{bd['node_send_s'] * 1e3:.2f}, transport + waiting {bd['transport_and_waiting_s'] * 1e3:.2f} ms; "
                 f"local step {bd['local_step_s'] * 1e3:.2f} ms"))
    rows.append(("per-step floor (2(n+1) sequential links x (transfer + one hop's crypto))", f"{floor_s * 1e3:.2f} ms"))
    rows.append(("loopback main run: hop costs in the run, by the nodes' own clocks (per packet)",
                 f"crypto {per_pkt['crypto'] * 1e3:.3f} ms, layer {per_pkt['layer'] * 1e3:.3f} ms "
                 f"({node_pkts} packets)"))
    rows.append((f"Poisson mixing delay, mean {args.mix_delay_ms} ms per hop", f"epoch {mix_epoch:.3f} s vs "
                 f"{no_mix_epoch:.3f} s = {mix_epoch / no_mix_epoch:.1f}x slower (accuracy {mix_res.accuracy:.4f})"))
    for size, v in hop.items():
        rows.append((f"per-hop packet processing, {size:,} B body ({v['rows']} rows) in a {v['cell']:,} B cell",
                     f"Veil {v['veil_us']:.0f} us vs RSA-2048-OAEP hybrid {v['rsa2048_oaep_hybrid_us']:.0f} us "
                     f"= {v['ratio']:.2f}x [{v['ratio_ci95'][0]:.2f}, {v['ratio_ci95'][1]:.2f}] (n = {v['n']} "
                     "alternating pairs; target <= 0.5x)"))
    rows.append(("node peak RSS (per position)", ", ".join(f"{peaks[p] / 1024:.0f}" for p in order)
                 + f" MiB; bare Python+torch {bare / 1024:.0f} MiB"))
    rows.append(("loop messages sent / returned", f"{facts['loops'][0]} / {facts['loops'][1]}"))
    lr = figures["loopback_ratio"]
    rows.append(("loopback ratio (main run) with the load average", f"{ratio:.2f}x [{lr['ci95'][0]:.2f}, "
                 f"{lr['ci95'][1]:.2f}] at load {load_main['start'][0]:.1f} -> {load_main['end'][0]:.1f} "
                 f"on {os.cpu_count()} cores"))
    rows += deployment_rows(deployment, emulated)
    note = (f" Reduced run ({args.reduced_why})." if reduced else "")
    md_text = ["# MixNN cascade benchmark", "",
               f"`{payload['command']}` on {figures['machine']['processor']}, {os.cpu_count()} CPUs shared with other "
               f"work (load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end), "
               f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, one torch thread per process, "
               f"{ds.name} ({len(ds.x_train)} train / {len(ds.x_test)} test), "
               f"{args.epochs} epochs (sweep: {args.sweep_epochs} per m), seed {args.seed}, {n} node processes "
               f"({args.dummies} dummy), ZeroMQ, packet {C.packet_size(cell):,} bytes (header {C.HEADER_SIZE:,} + cell "
               f"{cell:,}) for every op and hop; wall time {payload['wall_seconds']:.0f} s.{note}", "",
               "| measure | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    write_markdown(OUT / "cascade.md", "\n".join(md_text) + "\n")
    print("\n".join(md_text))


if __name__ == "__main__":
    main()
