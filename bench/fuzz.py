"""Bounded fuzzing campaigns against Veil's untrusted-input surfaces (issue 12).

    python bench/fuzz.py [--service-examples 100] [--node-packets 1200] [--reader-inputs 1200] [--seed 0]
                         [--flood-seconds 60] [--flood-connections 1100] [--only service,node,store,key,flood]

Campaigns, each writing one row {surface, inputs, crashes, server_errors, accepted_invalid, data_lost}:

- **service** (live ``python -m veil.serve`` process with credentials, loopback): schemathesis generates
  requests for every operation of the served OpenAPI schema, with a safetensors body strategy (valid
  bodies, huge or non-finite values, wrong dtypes/shapes/keys, truncated, mutated and random bytes).
  Three passes: an admin token, an identify-only token, no token. *server_errors*: 5xx answers;
  *crashes*: the process died or stopped answering; *accepted_invalid*: a 200 for a body the reference
  decoder refuses, for a bad name, for a right the caller lacks, or a non-finite gallery entry;
  *data_lost*: acknowledged enrolments (minus acknowledged deletions) missing after a restart.
- **node** (live in-process layer nodes on the ZeroMQ transport, bound to a designer's run): packets
  forged from the pool file (every layer op, and sealed routing slots of arbitrary bytes), genuine session
  packets with bytes flipped, truncated or extended, replays, and random packets of valid length.
  *accepted_invalid*: any layer op acted on; *data_lost*: a layer's state changed, or training afterwards
  does not match the local reference; *crashes*: a node stopped serving.
- **flood** (issue 24): live ``python -m veil.serve`` processes under ``ulimit -n 1024`` with the default
  limits, each flooded for ``--flood-seconds`` from 127.0.0.1 by ``veil.serve.flooding`` holding
  ``--flood-connections`` connections, each reopened at once when the server closes it: *tls-no-hello*
  (TLS server, TCP connections that never send a ClientHello), *plain-held* (connections that send
  nothing), *half-body* (a request head and 10 of 1,000 body bytes). Meanwhile a legitimate client at
  127.0.0.2 asks ``/health`` every 0.5 s. Figures: connections the flooder opened and how many the server
  refused, /health answers (n, failures with a 95% interval, latency p50/p99/max), the server's log bytes
  (and per minute), whether it survived, and the load average. *crashes*: the server died;
  *server_errors*: /health not answered 200.
- **store** and **key** readers (in process): mutated manifests, shards and key files.
  *accepted_invalid*: a mutated input read back as *different* data without an error; *crashes*: any
  exception other than ``VeilError``.

Writes ``bench/results/fuzz.json`` (the common bench envelope, ``veil.bench``: command, device, library
versions, seed, wall time; the campaigns under ``figures``) and ``fuzz.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from _common import HERE, Envelope, publish  # also puts src/ on sys.path

from veil.errors import VeilError  # noqa: E402

ROW_KEYS = ("surface", "inputs", "crashes", "server_errors", "accepted_invalid", "data_lost")


def row(surface: str, **counts: int) -> dict:
    out = {"surface": surface, **{k: 0 for k in ROW_KEYS[1:]}}
    out.update(counts)
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Flip, truncate, extend, splice or zero a run: the mutations an on-path attacker or a bad disk makes."""
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "truncate", "extend", "splice", "zero"])
    if kind == "flip" and b:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= rng.randint(1, 255)
    elif kind == "truncate":
        b = b[: rng.randrange(max(1, len(b)))]
    elif kind == "extend":
        b += os.urandom(rng.randint(1, 64))
    elif kind == "splice" and b:
        i = rng.randrange(len(b) + 1)
        b[i:i] = os.urandom(rng.randint(1, 32))
    elif kind == "zero" and b:
        i, n = rng.randrange(len(b)), rng.randint(1, 64)
        b[i:i + n] = bytes(len(b[i:i + n]))
    out = bytes(b)
    return out if out != data else out + b"\0"


# --- service ------------------------------------------------------------------------------------------------
TOKENS, DIM, MAX_BATCH = 5, 16, 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(recnet: Path, gallery: Path, creds: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "veil.serve", "--recnet", str(recnet), "--gallery", str(gallery),
                             "--port", str(port), "--credentials", str(creds), "--max-batch", str(MAX_BATCH),
                             "--max-body", str(256 * 1024),
                             # every caller of this campaign is 127.0.0.1 and schemathesis sends wrong tokens: the
                             # failed-auth throttle (tests/serve/test_throttle.py) would lock the admin out
                             "--auth-failures-burst", "1000000"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit("fuzz: the server did not start")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("fuzz: the server did not start in time")


def _body_strategy():
    """safetensors bodies, most of them wrong in one way: schemathesis draws the request body from this."""
    from hypothesis import strategies as st
    from safetensors.torch import save as st_save

    def tensors(batch: int, tokens: int, dim: int, value: str, dtype: str, extra: bool, flipped: bool) -> bytes:
        x = torch.randn(batch, tokens, dim)
        if value != "normal" and x.numel():
            x.view(-1)[0] = {"huge": 3e38, "big": 1e21, "nan": float("nan"), "inf": float("inf")}[value]
        out = {"features": x.to(getattr(torch, dtype))}
        if flipped:
            out["flipped"] = torch.randn(batch, tokens, dim)
        if extra:
            out["weights"] = torch.zeros(1)
        return st_save(out)

    valid = st.builds(tensors, st.integers(1, 3), st.just(TOKENS), st.just(DIM), st.just("normal"),
                      st.just("float32"), st.just(False), st.booleans())
    wrong = st.builds(tensors, st.integers(0, MAX_BATCH + 2), st.sampled_from([TOKENS, TOKENS + 1, 1]),
                      st.sampled_from([DIM, DIM - 1]), st.sampled_from(["normal", "huge", "big", "nan", "inf"]),
                      st.sampled_from(["float32", "float16", "float64", "int64"]), st.booleans(), st.booleans())
    mangled = st.tuples(valid, st.randoms(use_true_random=False)).map(lambda t: mutate(t[0], t[1]))
    return st.one_of(valid, valid, wrong, mangled, st.binary(max_size=256))


def service_campaign(examples: int, seed: int, tmp: Path) -> dict:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    from veil.models.recnet import RecNet, RecNetConfig, save_recnet
    from veil.secretfile import write_private
    from veil.serve.app import NAME_RE
    from veil.serve.auth import Credentials, parse_rights
    from veil.serve.protocol import CONTENT_TYPE, BadRequest, decode

    torch.manual_seed(seed)
    recnet = save_recnet(RecNet(RecNetConfig(TOKENS, DIM, 32, 1, 2, 16)).eval(), tmp / "recnet.safetensors",
                         {"synthetic": True, "xnnd": {"role": "server"}})
    creds = Credentials()
    tokens = {c: creds.add(c, parse_rights(r)) for c, r in (("boss", "identify,enrol,admin"), ("kiosk", "identify"))}
    write_private(tmp / "creds.json", b"")
    creds.save(tmp / "creds.json")
    gallery = tmp / "gallery.safetensors"
    proc, url = _start_server(recnet, gallery, tmp / "creds.json")
    schemathesis.openapi.media_type(CONTENT_TYPE, _body_strategy())
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    counts = row("service: veil serve (schemathesis, safetensors bodies)")
    expected: dict[str, int] = {}  # acknowledged enrolments minus acknowledged deletions
    rights = {"boss": {"identify", "enrol", "admin"}, "kiosk": {"identify"}, None: set()}
    needs = {("POST", "/v1/identify"): "identify", ("POST", "/v1/enrol"): "enrol", ("GET", "/v1/gallery"): "admin",
             ("DELETE", "/v1/gallery/{name}"): "admin", ("GET", "/health"): None}

    def check(case, who: str | None, r) -> None:
        counts["inputs"] += 1
        if r.status_code >= 500:
            counts["server_errors"] += 1
        if r.status_code != 200:
            return
        key = (case.method.upper(), case.path)
        right = needs.get(key)
        if right is not None and right not in rights[who]:
            counts["accepted_invalid"] += 1
            return
        if key in (("POST", "/v1/identify"), ("POST", "/v1/enrol")):
            try:
                decode(case.body if isinstance(case.body, bytes) else b"", TOKENS, DIM, MAX_BATCH)
            except BadRequest:
                counts["accepted_invalid"] += 1
                return
        if key == ("POST", "/v1/enrol"):
            name = (case.query or {}).get("name", "")
            if not isinstance(name, str) or not NAME_RE.match(name):
                counts["accepted_invalid"] += 1
            expected[name] = expected.get(name, 0) + int(r.json()["enrolled"])
        if key == ("DELETE", "/v1/gallery/{name}"):
            expected.pop(case.path_parameters["name"], None)

    live = {"url": url}

    def runner(op, who: str | None, headers: dict):
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case) -> None:
            try:
                r = case.call(base_url=live["url"], headers=headers, timeout=30)
            except Exception:  # noqa: BLE001 - the server hung up or is gone: counted, not raised
                counts["inputs"] += 1
                counts["crashes"] += 1
                return
            check(case, who, r)
        return run

    for who in ("boss", "kiosk", None):
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
        for result in schema.get_all_operations():
            run = runner(result.ok(), who, headers)
            run()
            if proc.poll() is not None:
                counts["crashes"] += 1
                proc, url = _start_server(recnet, gallery, tmp / "creds.json")
                live["url"] = url
    boss = {"Authorization": f"Bearer {tokens['boss']}"}
    before = {r["name"]: r for r in httpx.get(url + "/v1/gallery", headers=boss).json()["names"]}
    proc.terminate()
    proc.wait(timeout=30)
    proc, url = _start_server(recnet, gallery, tmp / "creds.json")  # what survives a restart
    after = {r["name"]: r for r in httpx.get(url + "/v1/gallery", headers=boss).json()["names"]}
    proc.terminate()
    proc.wait(timeout=30)
    counts["data_lost"] = sum(max(0, n - after.get(name, {}).get("entries", 0)) for name, n in expected.items())
    counts["accepted_invalid"] += sum(r["entries"] for r in after.values() if not r.get("finite", True))
    counts["detail"] = {"examples_per_operation_and_caller": examples, "callers": ["admin", "identify-only", "none"],
                        "operations": [f"{o.ok().method.upper()} {o.ok().path}" for o in schema.get_all_operations()],
                        "acknowledged_entries": sum(expected.values()), "gallery_names_after_restart": len(after),
                        "same_listing_after_restart": before == after}
    return counts


# --- layer node ---------------------------------------------------------------------------------------------
def node_campaign(packets: int, seed: int, tmp: Path) -> dict:
    import struct

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    from veil.cascade import constants as C
    from veil.cascade import data as D
    from veil.cascade import local, message, transport
    from veil.cascade import pool as pool_mod
    from veil.cascade.designer import Designer
    from veil.cascade.keys import derive, generate_private_key, load_public, public_bytes
    from veil.cascade.models import load_spec
    from veil.cascade.node import Node
    from veil.cascade.packet import Hop, Peeler, build_packet, current_window
    from veil.cascade.routing import Routing
    from veil.cascade.testing import wait_until

    logging.getLogger("veil.cascade").setLevel(logging.ERROR)  # one warning per rejected packet otherwise
    rng = random.Random(seed)
    layer_ops = (C.OP_INIT, C.OP_FORWARD, C.OP_BACKWARD, C.OP_TEST, C.OP_STATE, C.OP_CLOSE)
    ds = D.load(seed=5)
    ds.x_train, ds.y_train = ds.x_train[:320], ds.y_train[:320]
    spec = load_spec("mlp", ds.input_dim)  # the built-in 5-layer model: one node per layer
    pool = tmp / "pool.json"
    nodes = [Node(transport="zmq").start() for _ in range(len(spec.layers))]
    for n in nodes:
        pool_mod.register(pool, n.address, n.public_key, transport="zmq")
    counts = row("node: cascade layer node (forged from the pool file, mutated, replayed, random)")
    kinds: dict[str, int] = {}
    try:
        with Designer(pool, spec, dummies=0, seed=5, loop_rate=0) as des:
            des.setup()
            before = des.fetch_state(0)
            victims = [n for n in nodes if n.address in {e.address for e in des.cascade.entries}]
            acted = {n.address: sum(n.stats[C.OPS[op]] for op in layer_ops) for n in victims}
            rejected0 = {n.address: n.stats["rejected"] for n in victims}
            outsider = [Hop(e.address, e.public_key) for e in pool_mod.load(pool)]
            insider = [Hop(e.address, e.public_key, des.cascade.sessions[e.address]) for e in des.cascade.entries]
            sink = Hop(des.hop.address, Peeler().public_key)
            x = ds.x_train[:32]
            bodies = {C.OP_FORWARD: {"x": x}, C.OP_TEST: {"x": x}, C.OP_BACKWARD: {"g": torch.ones(32, 32)}}
            sender = transport.make("zmq")
            sent = {n.address: 0 for n in victims}

            def push(hop: Hop, pkt: bytes, kind: str) -> None:
                sender.push(hop.address, pkt)
                kinds[kind] = kinds.get(kind, 0) + 1
                if hop.address in sent:
                    sent[hop.address] += 1

            def forged_routing(hop: Hop) -> bytes:
                """A slot sealed to the node's public key around arbitrary (often well-formed) routing bytes."""
                eph = generate_private_key()
                keys = derive(eph.exchange(load_public(hop.public_key)))
                version_flags = (C.FORMAT_VERSION << C.VERSION_SHIFT) | rng.randrange(16)
                raw = struct.pack(C.ROUTING_FORMAT, rng.choice(layer_ops), version_flags, os.urandom(8),
                                  os.urandom(rng.randrange(C.ADDRESS_SIZE + 1)), os.urandom(32), des.cell,
                                  current_window(), rng.randrange(4), rng.randrange(300), os.urandom(256)) \
                    if rng.random() < 0.7 else os.urandom(C.ROUTING_SIZE)
                beta = os.urandom(C.HEADER_SIZE - C.SLOT_SIZE)
                header = public_bytes(eph) + ChaCha20Poly1305(keys.header).encrypt(bytes(12), raw, beta) + beta
                return header + AESGCM(keys.payload).encrypt(bytes(12), bytes(des.cell - C.TAG_SIZE), header)

            victim_hops = [h for h in outsider if h.address in sent]
            session_hops = [h for h in insider if h.address in sent]
            per_kind = max(1, packets // 4)
            for i in range(per_kind):  # forged from the pool file: every layer op, with real-looking bodies
                hop = victim_hops[i % len(victim_hops)]
                op = layer_ops[i % len(layer_ops)]
                body = message.encode({}, bodies.get(op, {}))
                pkt, _ = build_packet([hop, sink], [Routing(op=op, flags=rng.choice([0, C.FLAG_TARGET]), frag=1)] * 2,
                                      body, des.cell)
                push(hop, pkt, "forged_layer_op")
            for i in range(per_kind):  # forged slots of arbitrary routing bytes
                hop = victim_hops[i % len(victim_hops)]
                push(hop, forged_routing(hop), "forged_routing_bytes")
            for i in range(per_kind):  # genuine session packets, tampered in transit (never sent unmodified)
                hop = session_hops[i % len(session_hops)]
                op = layer_ops[i % len(layer_ops)]
                pkt, _ = build_packet([hop, sink], [Routing(op=op, flags=C.FLAG_TARGET, frag=1)] * 2,
                                      message.encode({}, bodies.get(op, {})), des.cell)
                push(hop, mutate(pkt, rng), "mutated_session_packet")
            replay_hop = session_hops[0]
            genuine, _ = build_packet([replay_hop, sink], [Routing(op=C.OP_LOOP, frag=1)] * 2, b"cover", des.cell)
            sender.push(replay_hop.address, genuine)  # one genuine cover packet, then its replays
            for i in range(per_kind):
                if i % 2:
                    push(replay_hop, genuine, "replayed_session_packet")
                else:
                    hop = victim_hops[i % len(victim_hops)]
                    size = rng.choice(sorted(C.PACKET_SIZES)[:3])
                    push(hop, os.urandom(size), "random_valid_length")
            sender.close()
            counts["inputs"] = sum(kinds.values())
            done = wait_until(lambda: all(n.stats["rejected"] - rejected0[n.address] >= sent[n.address]
                                          for n in victims), timeout=300)
            counts["detail"] = {"kinds": kinds, "all_rejected_in_time": done,
                                "rejected": {n.address: n.stats["rejected"] - rejected0[n.address] for n in victims},
                                "sent": sent, "session_auth_commit": _git_head("src/veil/cascade")}
            counts["accepted_invalid"] = sum(sum(n.stats[C.OPS[op]] for op in layer_ops) - acted[n.address]
                                             for n in victims)
            counts["accepted_invalid"] += sum(max(0, sent[a] - counts["detail"]["rejected"][a]) for a in sent)
            counts["crashes"] = sum(1 for n in victims if not (n.layer is not None and n.bound))
            try:
                after = des.fetch_state(0)
                changed = sum(1 for layer, st in before.states.items() for k, v in st.items()
                              if not torch.equal(v, after.states[layer][k]))
            except VeilError:
                counts["crashes"] += 1
                changed = len(before.states)
            res = des.train(ds, epochs=1)
        same = res.losses == local.train_local(spec, ds, 1, seed=5).losses
        counts["data_lost"] = changed + (0 if same else 1)
        counts["detail"]["training_after_matches_local"] = same
    finally:
        for n in nodes:
            n.stop()
    return counts


def _git_head(path: str) -> str:
    try:
        return subprocess.run(["git", "log", "-1", "--format=%h %s", "--", path], cwd=HERE.parent, capture_output=True,
                              text=True, timeout=10).stdout.strip()[:120]
    except (OSError, subprocess.SubprocessError):
        return ""


# --- store and key readers ----------------------------------------------------------------------------------
def store_campaign(inputs: int, seed: int, tmp: Path) -> dict:
    from veil.store import StoreWriter, open_store

    rng = random.Random(seed)
    good = tmp / "good"
    w = StoreWriter(good, {"num_classes": 5}, shard_size=8)
    w.add(torch.randn(20, 4, 8), torch.randint(0, 5, (20,)))
    w.close()
    reference = open_store(good).load_all()
    digest = {p.name: p.read_bytes() for p in good.iterdir()}
    counts = row("store reader: manifest.json and safetensors shards")
    manifest = json.loads((good / "manifest.json").read_text())
    for i in range(inputs):
        case = tmp / f"case{i % 4}"
        shutil.rmtree(case, ignore_errors=True)
        shutil.copytree(good, case)
        target = rng.choice(["manifest", "manifest-json", "shard"])
        if target == "manifest":
            (case / "manifest.json").write_bytes(mutate(digest["manifest.json"], rng))
        elif target == "manifest-json":
            m = json.loads(json.dumps(manifest))
            field = rng.choice(sorted(m) + ["shards.file", "shards.rows"])
            junk = rng.choice([None, -1, 0, 10**15, "x", [], {}, "../../etc/passwd", 1.5, True])
            if field.startswith("shards."):
                m["shards"][0][field.split(".")[1]] = junk
            else:
                m[field] = junk
            (case / "manifest.json").write_text(json.dumps(m))
        else:
            shard = rng.choice(sorted(case.glob("shard-*")))
            shard.write_bytes(mutate(shard.read_bytes(), rng))
        counts["inputs"] += 1
        try:
            feats, labels = open_store(case).load_all()
        except VeilError:
            continue
        except Exception:  # noqa: BLE001
            counts["crashes"] += 1
            continue
        if not (torch.equal(feats, reference[0]) and torch.equal(labels, reference[1])):
            counts["accepted_invalid"] += 1
    counts["data_lost"] = sum(1 for p in good.iterdir() if digest.get(p.name) != p.read_bytes())
    return counts


def key_campaign(inputs: int, seed: int, tmp: Path) -> dict:
    from veil.keys import OwnerKey

    rng = random.Random(seed)
    original = OwnerKey.generate()
    good = original.save(tmp / "good.key").read_bytes()
    counts = row("key reader: owner key files")
    for i in range(inputs):
        path = tmp / "case.key"
        path.unlink(missing_ok=True)
        choice = rng.random()
        body = os.urandom(rng.randrange(200)) if choice < 0.2 else mutate(good, rng)
        path.write_bytes(body)
        path.chmod(0o644 if i % 10 == 0 else 0o600)  # every tenth also readable by others: must be refused
        counts["inputs"] += 1
        try:
            key = OwnerKey.load(path)
        except VeilError:
            continue
        except Exception:  # noqa: BLE001
            counts["crashes"] += 1
            continue
        if key.seed != original.seed or i % 10 == 0:
            counts["accepted_invalid"] += 1
    counts["data_lost"] = int((tmp / "good.key").read_bytes() != good)
    return counts


FLOODS = (("tls-no-hello", "hold", True), ("plain-held", "hold", False), ("half-body", "half-body", False))


def _flood_server(recnet: Path, folder: Path, tls: bool) -> tuple[subprocess.Popen, str, Path, object]:
    """The server with the default limits, ``ulimit -n 1024``, its output in a file; (proc, url, log, verify)."""
    import resource
    import ssl

    from veil.serve.selfsigned import write_self_signed

    port = _free_port()
    log = folder / "server.log"
    extra: list[str] = []
    verify: object = True
    if tls:
        cert, key = write_self_signed(folder / "server.crt", folder / "server.key")
        extra = ["--tls-cert", str(cert), "--tls-key", str(key)]
        verify = ssl.create_default_context(cafile=str(cert))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "OMP_NUM_THREADS": "1"}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "veil.serve", "--recnet", str(recnet), "--gallery",
                                 str(folder / "gallery.safetensors"), "--port", str(port), *extra], env=env,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"fuzz: the flood server did not start: {log.read_text()[-1000:]}")
        try:
            if httpx.get(url + "/health", timeout=1, verify=verify).status_code == 200:  # type: ignore[arg-type]
                return proc, url, log, verify
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("fuzz: the flood server did not start in time")


def flood_campaign(seconds: float, connections: int, seed: int, tmp: Path) -> dict:
    from veil.metrics import wilson
    from veil.models.recnet import RecNet, RecNetConfig, save_recnet
    from veil.serve.flooding import percentile, probe_health

    torch.manual_seed(seed)
    recnet = save_recnet(RecNet(RecNetConfig(TOKENS, DIM, 32, 1, 2, 16)).eval(), tmp / "recnet.safetensors",
                         {"synthetic": True, "xnnd": {"role": "server"}})
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "OMP_NUM_THREADS": "1"}
    counts = row(f"flood: veil serve, {connections:,} connections from one address, ulimit -n 1024")
    floods = []
    for name, kind, tls in FLOODS:
        folder = tmp / name
        folder.mkdir()
        proc, url, log, verify = _flood_server(recnet, folder, tls)
        log_before = log.stat().st_size
        load_before = os.getloadavg()
        port = url.rsplit(":", 1)[1]
        flooder = subprocess.Popen([sys.executable, "-m", "veil.serve.flooding", "127.0.0.1", port, kind,
                                    str(connections), str(seconds)], env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(min(5.0, seconds / 4))  # let the flood build up before the first sample
        samples = probe_health(url, seconds - min(5.0, seconds / 4) - 1.0, every=0.5, verify=verify)  # type: ignore
        out, _ = flooder.communicate(timeout=seconds + 120)
        attack = json.loads(out)
        alive = proc.poll() is None
        load_after = os.getloadavg()
        log_bytes = log.stat().st_size - log_before
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        lat = [t for t, _ in samples]
        failed = sum(1 for _, status in samples if status != 200)
        lo, hi = wilson(failed, len(samples))
        floods.append({"flood": name, "kind": kind, "tls": tls, "seconds": seconds, "attacker": attack,
                       "health": {"n": len(samples), "failed": failed, "failed_rate_ci95": [round(lo, 4), round(hi, 4)],
                                  "p50_s": round(percentile(lat, 0.5), 4), "p99_s": round(percentile(lat, 0.99), 4),
                                  "max_s": round(max(lat), 4) if lat else None},
                       "log_bytes": log_bytes, "log_bytes_per_minute": round(log_bytes * 60 / seconds),
                       "server_alive": alive, "loadavg_before": [round(x, 2) for x in load_before],
                       "loadavg_after": [round(x, 2) for x in load_after],
                       "targets_met": alive and failed == 0 and percentile(lat, 0.99) <= 1.0
                       and log_bytes * 60 / seconds <= 1_000_000})
        print(json.dumps(floods[-1]), flush=True)
        counts["inputs"] += int(attack["opened"])
        counts["crashes"] += 0 if alive else 1
        counts["server_errors"] += failed
    counts["detail"] = {"floods": floods, "health_from": "127.0.0.2 (another client than the flooder)",
                        "limits": "defaults: 256 connections, 32 per address, 5 s TLS handshake, 10 s headers, "
                                  "30 s body"}
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-examples", type=int, default=100, help="per operation and caller (x5 ops x3)")
    parser.add_argument("--node-packets", type=int, default=1200)
    parser.add_argument("--reader-inputs", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flood-seconds", type=float, default=60.0, help="per flood (three floods)")
    parser.add_argument("--flood-connections", type=int, default=1100)
    parser.add_argument("--only", default="service,node,store,key,flood")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fuzz.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    envelope = Envelope("fuzz", seed=args.seed, device="cpu")
    campaigns, walls = [], {}
    with tempfile.TemporaryDirectory() as tmp_root:
        for name in args.only.split(","):
            tmp = Path(tmp_root) / name
            tmp.mkdir()
            t0 = time.perf_counter()
            if name == "service":
                campaigns.append(service_campaign(args.service_examples, args.seed, tmp))
            elif name == "node":
                campaigns.append(node_campaign(args.node_packets, args.seed, tmp))
            elif name == "store":
                campaigns.append(store_campaign(args.reader_inputs, args.seed, tmp))
            elif name == "key":
                campaigns.append(key_campaign(args.reader_inputs, args.seed, tmp))
            elif name == "flood":
                campaigns.append(flood_campaign(args.flood_seconds, args.flood_connections, args.seed, tmp))
            else:
                raise SystemExit(f"unknown campaign {name!r}")
            walls[name] = round(time.perf_counter() - t0, 1)
            campaigns[-1]["wall_seconds"] = walls[name]
            print(json.dumps({k: campaigns[-1][k] for k in ROW_KEYS}), flush=True)
    import cryptography
    import fastapi
    import hypothesis
    import schemathesis
    import uvicorn

    envelope.versions.update(hypothesis=hypothesis.__version__, schemathesis=schemathesis.SCHEMATHESIS_VERSION,
                             fastapi=fastapi.__version__, uvicorn=uvicorn.__version__,
                             cryptography=cryptography.__version__)
    result = envelope.finish({"campaigns": campaigns, "campaign_seconds": sum(walls.values()),
                              "all_zero": all(c[k] == 0 for c in campaigns for k in ROW_KEYS[2:])})
    md = ["| surface | inputs | crashes | server errors | accepted invalid | data lost | wall |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {c['surface']} | {c['inputs']:,} | {c['crashes']} | {c['server_errors']} | {c['accepted_invalid']} | "
           f"{c['data_lost']} | {c['wall_seconds']:.0f} s |" for c in campaigns]
    floods = [f for c in campaigns for f in c.get("detail", {}).get("floods", [])]
    if floods:
        md += ["", "Floods (issue 24; targets: /health p99 <= 1 s, 0 crashes, log growth <= 1 MB/min):", "",
               "| flood | opened | refused | /health n | failed (95% CI) | p50 | p99 | max | log bytes/min | "
               "server alive | load before -> after | targets |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        md += [f"| {f['flood']} | {f['attacker']['opened']:,} | {f['attacker']['refused']:,} | {f['health']['n']} | "
               f"{f['health']['failed']} ({100 * f['health']['failed_rate_ci95'][0]:.1f}-"
               f"{100 * f['health']['failed_rate_ci95'][1]:.1f}%) | {f['health']['p50_s']:.3f} s | "
               f"{f['health']['p99_s']:.3f} s | {f['health']['max_s']:.3f} s | {f['log_bytes_per_minute']:,} | "
               f"{f['server_alive']} | {f['loadavg_before'][0]:.2f} -> {f['loadavg_after'][0]:.2f} | "
               f"{'met' if f['targets_met'] else 'MISSED'} |" for f in floods]
    md.append(f"\nSeed {args.seed}, CPU, {os.cpu_count()} cores; regenerate: `{result['command']}`.")
    publish(args.out, result, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
