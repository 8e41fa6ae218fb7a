"""Mutation testing of the modules whose correctness is a security claim (issue 17), with mutmut.

    python bench/mutation.py                       # every module below, writes bench/results/mutation.json
    python bench/mutation.py --modules keys keyed  # a subset (the JSON keeps the other modules' last rows)

Each module is mutated in a scratch copy of the working tree (``src``, ``tests``, ``pyproject.toml``
plus a ``[tool.mutmut]`` section written there), so a long run neither litters the checkout nor sees
edits made while it runs. mutmut runs only the tests that execute the mutated function (its own
coverage stats over the module's covering tests listed below), forks each mutant from a warm fork
server, and kills a mutant whose tests exceed ``timeout_multiplier`` times their clean CPU time.
Tests that start subprocesses (DDP's second rank) see the mutant too: ``PYTHONPATH`` points at the
mutated copy and mutmut's ``MUTANT_UNDER_TEST`` is inherited.

Score = (killed + timed out) / (generated - equivalent): a mutant that makes its tests hang is
detected. "no tests" (no covering test executes the mutated function) counts as surviving.
Every survivor is either listed in ``EQUIVALENT`` below with a one-line reason (checked against the
mutant's diff, so a stale entry stops counting) or shows up in the JSON as a survivor to kill.

The JSON is in the bench envelope (``bench/_common.py``: benchmark, command, device, environment, seed,
wall_seconds, figures); ``figures.modules`` has each module's counts and score, and the top-level
``modules`` the full rows (covering tests, command, wall time, load average, every survivor's diff and
the reason an equivalent one is equivalent). Each row is replaced only when its module is run again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from _common import Envelope, write_markdown, write_result

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "mutation.json"


@dataclass
class Target:
    name: str
    path: str  # relative to the repository root
    tests: list[str]
    skip_lines: list[str] = field(default_factory=list)  # regexes of lines not to mutate (logging, progress)
    budget_s: float = 300.0


# Covering tests per module, fastest first (each mutant stops at its first failing test). Each list is narrow: stats
# collection runs the whole list once, so a server start or a node process in it costs every campaign its time.
# ``budget_s`` bounds a module's wall time; a module cut short says so (``completed: false`` and its
# ``not_checked`` count).
FUZZ = "tests/test_fuzz_parsers.py::"
KAT = "tests/test_key_derivation.py"  # known answers: fast, so most mutants of the key modules die first here
SESSION = "tests/cascade/test_session.py::"
TARGETS = [
    Target("keys", "src/veil/keys.py",
           [KAT, "tests/test_key_file.py", "tests/test_keyed_stream.py", "tests/test_keys.py",
            FUZZ + "test_key_reader"], budget_s=300),
    Target("keyed", "src/veil/obfuscation/keyed.py",
           [KAT, "tests/test_keyed_stream.py", "tests/test_keys.py"], budget_s=150),
    Target("xnn", "src/veil/obfuscation/xnn.py",
           [KAT, "tests/obfuscation/test_xnn_construction.py", "tests/obfuscation/test_obfuscation.py",
            "tests/test_keys.py", "-k", "not costs_a_few_percent"],
           budget_s=240),
    Target("store", "src/veil/store.py",
           ["tests/test_store_writer.py", "tests/test_store.py", "tests/test_store_reader_checks.py",
            FUZZ + "test_store_reader_mutated_manifest",
            FUZZ + "test_store_reader_mutated_shard"], budget_s=600),
    Target("packet", "src/veil/cascade/packet.py",
           ["tests/cascade/test_packet_units.py", "tests/cascade/test_packet.py",
            SESSION + "test_session_packets_need_the_secret_and_the_cache_is_run_scoped",
            FUZZ + "test_peeler_rejects_every_mutated_packet",
            FUZZ + "test_peeler_rejects_random_packets_of_valid_length",
            FUZZ + "test_peeler_forged_header_with_arbitrary_routing_bytes"], budget_s=600),
    Target("routing", "src/veil/cascade/routing.py",
           ["tests/cascade/test_routing_bounds.py", "tests/cascade/test_packet.py",
            FUZZ + "test_peeler_forged_header_with_arbitrary_routing_bytes"], budget_s=200),
    Target("protocol", "src/veil/serve/protocol.py",
           ["tests/serve/test_protocol_units.py", FUZZ + "test_body_decoder_random_bytes",
            FUZZ + "test_body_decoder_mutated_valid_bodies",
            FUZZ + "test_body_decoder_well_formed_safetensors_of_any_shape_and_value"], budget_s=300),
    Target("gallery", "src/veil/serve/gallery.py",
           ["tests/serve/test_gallery_units.py", FUZZ + "test_gallery_reader"], budget_s=300),
    Target("cloud", "src/veil/train/cloud.py",
           ["tests/train/test_cloud_units.py", "tests/train/test_ddp.py", "tests/train/test_cloud_training.py", "-k",
            "not single_process_and_ddp_both_train"],
           skip_lines=[r"bar\.(update|add_task)", r"progress_bar\(", r"history\[\"(seconds|samples_per_second)\"\]"],
           budget_s=1200),
]

NOFOLLOW = ("os.O_NOFOLLOW exists on every platform Veil runs on (Linux, macOS: fcntl.flock already needs POSIX), "
            "so getattr's default is never read")
LABELS_CHECKED = ("unreachable: store.load_all() (Store.shards) already refuses labels outside 0..num_classes-1 "
                  "with the same bound, so this second check never fires")
FROM_GROUP = ("DistributedSampler takes a missing num_replicas / rank from the process group, which under torchrun "
              "holds the WORLD_SIZE / RANK train_recnet reads (it joins the group from them itself)")
# mutant name -> (a line of its diff that must still be there, why it cannot change behaviour)
EQUIVALENT: dict[str, tuple[str, str]] = {
    "veil.keys.xǁKeyedStreamǁuniform__mutmut_16": (
        "words.astype(None)", "ndarray.astype(None) converts to NumPy's default dtype, float64: the same array"),
    "veil.keys.xǁOwnerKeyǁgenerate__mutmut_2": (
        "secrets.token_bytes(None)", "token_bytes(None) draws secrets.DEFAULT_ENTROPY = 32 bytes = SEED_BYTES: "
        "the same distribution from the same CSPRNG"),
    "veil.keys.xǁOwnerKeyǁderive_bytes__mutmut_8": (
        "length=32, info=label.encode()).derive(", "cryptography's HKDF takes an omitted salt as None, the salt "
        "given: the same derivation (the known-answer tests pass on this mutant)"),
    "veil.obfuscation.xnn.x_gaussian_to_matrix__mutmut_2": (
        "d = gauss.shape[1]", "gauss is D x D (its contract; from_key and random pass (dim, dim)): shape[0] == "
        "shape[1]"),
    "veil.obfuscation.xnn.x_gaussian_to_matrix__mutmut_13": (
        "return q / torch.sign(", "sign(diag(r)) is +-1 unless the Gaussian draw is singular (probability 0), and "
        "x / +-1 == x * +-1 exactly"),
    "veil.store.x__sha256__mutmut_10": (
        "fh.read(None)", "the chunk size only sets how the file is read; the digest of the bytes is the same"),
    "veil.store.x__sha256__mutmut_12": (
        "fh.read(2 << 20)", "the chunk size only sets how the file is read; the digest of the bytes is the same"),
    "veil.store.x__sha256__mutmut_13": (
        "fh.read(1 << 21)", "the chunk size only sets how the file is read; the digest of the bytes is the same"),
    "veil.store.x_open_store__mutmut_11": (
        'decode("UTF-8")', "codec names are case-insensitive: the same UTF-8 decoder"),
    "veil.store.x_open_store__mutmut_15": (
        "[:121]", "json's and UTF-8's decode errors stay under 120 characters for any manifest under 100 TB (the "
        "longest, 'Expecting property name enclosed in double quotes: line L column C (char P)'): the same text"),
    "veil.store.xǁStoreWriterǁclose__mutmut_38": (
        "indent=None)", "whitespace in the manifest: every reader (open_store, veil report) parses it as JSON "
        "and gets the same object"),
    "veil.store.xǁStoreWriterǁclose__mutmut_40": (
        "json.dumps(manifest, ))", "whitespace in the manifest: every reader (open_store, veil report) parses it "
        "as JSON and gets the same object"),
    "veil.store.xǁStoreWriterǁclose__mutmut_41": (
        "indent=2)", "whitespace in the manifest: every reader (open_store, veil report) parses it as JSON and "
        "gets the same object"),
    "veil.store.xǁStoreWriterǁ_flush__mutmut_29": (
        "or True else ([], [])", "an empty remainder kept in the buffer concatenates to nothing; _buffered is 0 "
        "either way"),
    "veil.store.xǁStoreWriterǁclose__mutmut_25": (
        'split(".")[+1]', '"torch.<dtype>".split(".") has exactly two parts, so [+1] is [-1]'),
    "veil.store.xǁStoreWriterǁclose__mutmut_34": (
        '"XX.tmpXX"', "the manifest's temporary name inside the hidden build directory; it is renamed to "
        "manifest.json at once and nothing reads it"),
    "veil.store.xǁStoreWriterǁclose__mutmut_35": (
        '".TMP"', "the manifest's temporary name inside the hidden build directory; it is renamed to "
        "manifest.json at once and nothing reads it"),
    "veil.store.xǁStoreWriterǁ_swap_in__mutmut_1": (
        'old: Path | None = ""', 'old stays "" only when no old store was moved aside; shutil.rmtree("", '
        "ignore_errors=True) then does nothing (lstat('') fails, the error is ignored)"),
    "veil.store.xǁStoreWriterǁ_swap_in__mutmut_15": (
        '"XXstoreXX"', "the name the old store gets inside its hidden .NAME.old-* directory, deleted right after"),
    "veil.store.xǁStoreWriterǁ_swap_in__mutmut_16": (
        '"STORE"', "the name the old store gets inside its hidden .NAME.old-* directory, deleted right after"),
    "veil.cascade.packet.x_build_header__mutmut_19": (
        "strict=None", "hop_keys always returns a pair, so the two zipped sequences have equal length"),
    "veil.cascade.packet.x_build_header__mutmut_21": (
        "for h in path), )", "hop_keys always returns a pair, so the two zipped sequences have equal length"),
    "veil.cascade.packet.x_build_header__mutmut_23": (
        "strict=False", "hop_keys always returns a pair, so the two zipped sequences have equal length"),
    "veil.cascade.packet.x_seal_packet__mutmut_17": (
        'pack_into("<i"', "the length is at most the body capacity (checked just above, far below 2**31): "
        "signed and unsigned 32-bit encodings are the same bytes"),
    "veil.cascade.packet.x_build_header__mutmut_90": (
        "header = None", "the loop below runs at least once (1 <= k, checked above) and assigns header before "
        "anything reads it"),
    "veil.cascade.packet.x_build_header__mutmut_91": (
        'header = b"XXXX"', "the loop below runs at least once (1 <= k, checked above) and assigns header before "
        "anything reads it"),
    "veil.cascade.packet.x_current_window__mutmut_2": (
        "/ C.REPLAY_WINDOW_S)", "for a clock >= 0, int(t / 60) == t // 60 for every float t (the rounded quotient "
        "never reaches the next integer; checked at every minute boundary of 2023-2038): windows are unsigned"),
    "veil.cascade.packet.xǁPeelerǁ__init____mutmut_5": (
        "self._clock = None", "Peeler never reads self._clock: both replay caches are given the clock directly"),
    **{f"veil.train.cloud.x_train_recnet__mutmut_{n}": (marker, LABELS_CHECKED) for n, marker in (
        (45, "< 0 and int(labels.max())"), (50, "> store.num_classes):"), (51, "raise VeilError(None)"),
        (52, "num_classes + 1}"), (53, "num_classes - 2}"))},
    **{f"veil.train.cloud.x_train_recnet__mutmut_{n}": (marker, FROM_GROUP) for n, marker in (
        (91, "DistributedSampler(data, None, rank,"), (92, "DistributedSampler(data, world, None,"),
        (98, "DistributedSampler(data, world, shuffle=True,"))},
    "veil.train.cloud.x_train_recnet__mutmut_34": (
        '"NCCL" if device.type', "torch.distributed.Backend lower-cases the name: 'NCCL' is nccl"),
    "veil.train.cloud.x_train_recnet__mutmut_39": (
        'else "GLOO")', "torch.distributed.Backend lower-cases the name: 'GLOO' is gloo"),
    "veil.train.cloud.x_train_recnet__mutmut_99": (
        "DistributedSampler(data, world, rank, seed=cfg.seed", "DistributedSampler's shuffle defaults to True, the "
        "value given"),
    **{f"veil.train.cloud.x_train_recnet__mutmut_{n}": (marker, "every parameter gets a gradient at every step "
       "(DDP, run without find_unused_parameters, would fail otherwise), so zeroed and None gradients give the "
       "same update") for n, marker in ((169, "set_to_none=None"), (170, "set_to_none=False"))},
    "veil.serve.protocol.x_decode__mutmut_51": (
        "+            break", "'flipped' is the loop's last name and 'features' is never None there (refused above): "
        "break and continue both end the loop"),
    "veil.serve.gallery.xǁGalleryǁenrol__mutmut_25": (
        "F.normalize(emb, )", "F.normalize's default dim is 1, the dim given"),
    "veil.serve.gallery.xǁGalleryǁidentify__mutmut_23": (
        "F.normalize(embeddings.float(), )", "F.normalize's default dim is 1, the dim given"),
    "veil.serve.gallery.xǁGalleryǁidentify__mutmut_36": (
        'float("-INF")', 'float() parses "-INF" case-insensitively: the same -inf'),
    "veil.serve.gallery.xǁGalleryǁidentify__mutmut_52": (
        "score, strict=None)", "idx and score come from one max(dim=1): always the same length"),
    "veil.serve.gallery.xǁGalleryǁidentify__mutmut_55": (
        "zip(idx.tolist(), score, )", "idx and score come from one max(dim=1): always the same length"),
    "veil.serve.gallery.xǁGalleryǁidentify__mutmut_56": (
        "score, strict=False)", "idx and score come from one max(dim=1): always the same length"),
    "veil.serve.gallery.xǁGalleryǁlisting__mutmut_13": (
        "finite, strict=None)", "names and embeddings always have the same length (enrol and delete replace both "
        "at once, _load refuses a file where they differ): strict never fires"),
    "veil.serve.gallery.xǁGalleryǁlisting__mutmut_16": (
        "zip(names, finite, )", "names and embeddings always have the same length (enrol and delete replace both "
        "at once, _load refuses a file where they differ): strict never fires"),
    "veil.serve.gallery.xǁGalleryǁlisting__mutmut_17": (
        "finite, strict=False)", "names and embeddings always have the same length (enrol and delete replace both "
        "at once, _load refuses a file where they differ): strict never fires"),
    "veil.serve.gallery.xǁGalleryǁlisting__mutmut_6": (
        "if (len(names)) or True else []", "with no names the embeddings are (0, dim), whose isfinite(...).all(dim=1)"
        ".tolist() is [] too"),
    "veil.serve.gallery.xǁGalleryǁ_acquire_file_lock__mutmut_24": (
        'getattr(os, "O_NOFOLLOW", None)', NOFOLLOW),
    "veil.serve.gallery.xǁGalleryǁ_acquire_file_lock__mutmut_27": (
        'getattr(os, "O_NOFOLLOW", )', NOFOLLOW),
    "veil.serve.gallery.xǁGalleryǁ_acquire_file_lock__mutmut_30": (
        'getattr(os, "O_NOFOLLOW", 1)', NOFOLLOW),
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault",
          None: "not checked"}


def scratch_copy(target: Target, root: Path, timeout_multiplier: float) -> Path:
    work = root / target.name
    work.mkdir(parents=True)
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    tests = [t for t in target.tests
             if t.startswith("-") or not t.startswith("tests") or (REPO / t.split("::")[0]).exists()]
    config = {"source_paths": ["src"], "only_mutate": [target.path],
              "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:unraisableexception", "-x", "-q"],
              "pytest_add_cli_args_test_selection": tests, "process_isolation": "forkserver",
              "timeout_multiplier": timeout_multiplier, "timeout_constant": 2.0,
              "use_git_change_detection": False, "do_not_mutate_patterns": target.skip_lines}
    # PYTHONPATH names mutants/src before mutmut creates it: make it now, or the import system caches it as absent
    (work / "mutants" / "src").mkdir(parents=True)
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    (work / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + "\n".join(lines) + "\n")
    return work


def mutmut(work: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run mutmut in ``work``; on timeout its whole process group (fork server, workers) is ended."""
    env = {**os.environ, "PYTHONPATH": str(work / "mutants" / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mutmut", *args], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def diff_of(work: Path, name: str) -> str:
    shown = mutmut(work, "show", name, timeout=120).stdout
    return "\n".join(line for line in shown.splitlines() if line.startswith(("+", "-")) and
                     not line.startswith(("+++", "---")))


def results_of(target: Target, work: Path) -> dict:
    meta = json.loads((work / "mutants" / (target.path + ".meta")).read_text())
    statuses = {name: STATUS.get(code, "suspicious") for name, code in meta["exit_code_by_key"].items()}
    row = {"module": target.path, "tests": target.tests, "generated": len(statuses)}
    for status in ("killed", "timeout", "survived", "no tests", "suspicious", "segfault", "not checked", "skipped"):
        row[status.replace(" ", "_")] = sum(s == status for s in statuses.values())
    survivors, equivalent = [], 0
    for name, status in sorted(statuses.items()):
        if status in ("killed", "timeout", "not checked"):
            continue
        diff = diff_of(work, name)
        entry = {"mutant": name, "status": status, "diff": diff}
        if name in EQUIVALENT and EQUIVALENT[name][0] in diff:
            entry.update(status="equivalent", reason=EQUIVALENT[name][1])
            equivalent += 1
        survivors.append(entry)
    row["equivalent"] = equivalent
    detected = row["killed"] + row["timeout"]
    row["score"] = round(detected / max(1, row["generated"] - equivalent), 4)
    row["survivors"] = survivors
    return row


def reclassify(row: dict) -> dict:
    """Re-apply ``EQUIVALENT`` to a row's recorded survivors (their diffs are in the JSON) and rescore it."""
    if "survivors" not in row:
        return row
    for entry in row["survivors"]:
        name = entry["mutant"]
        if name in EQUIVALENT and EQUIVALENT[name][0] in entry["diff"]:
            entry.update(status="equivalent", reason=EQUIVALENT[name][1])
    row["equivalent"] = sum(e["status"] == "equivalent" for e in row["survivors"])
    # survived: every undetected mutant not shown equivalent ('survived', 'no tests', 'suspicious', ...), so
    # killed + timeout + survived + equivalent + not_checked = generated
    row["survived"] = sum(e["status"] != "equivalent" for e in row["survivors"])
    row["score"] = round((row["killed"] + row["timeout"]) / max(1, row["generated"] - row["equivalent"]), 4)
    return row


def markdown(payload: dict) -> str:
    cols = ("generated", "killed", "timeout", "survived", "no_tests", "not_checked", "equivalent", "score",
            "completed", "wall_s", "loadavg_1min")
    env = payload["environment"]
    lines = ["# Mutation testing (issue 17)", "", f"Tool: {payload['tool']}. Score = {payload['score_formula']}.",
             f"Environment: {env['cpu_count']} CPUs ({env['platform']}), Python {env['python']}, torch {env['torch']}, "
             f"pytest {env['pytest']}, hypothesis {env['hypothesis']}; device {payload['device']}; "
             f"jobs {payload['jobs']}, timeout multiplier {payload['timeout_multiplier']}. "
             f"Seed: {payload['seed_note']}.",
             f"Last invocation: `{payload['command']}`, {payload['wall_seconds']} s wall; modules' wall time in all "
             f"{payload['figures']['module_wall_s_total']} s. loadavg_1min: the machine's 1-minute load average "
             "before and after the module (2 cores shared with other jobs).", "",
             "| module | " + " | ".join(cols) + " | command |", "|" + "---|" * (len(cols) + 2)]
    for r in payload["modules"]:
        lines.append(f"| {r['module']} | " + " | ".join(str(r.get(c, "")) for c in cols) +
                     f" | `{r.get('command', payload['command'])}` |")
    lines += [""] + [f"- {note}" for note in payload.get("notes", [])]
    for r in payload["modules"]:
        lines += ["", f"## {r['module']}", "", f"Covering tests: `{' '.join(r.get('tests', []))}`"]
        re = r.get("rechecked_survivors")
        if re:
            lines.append(f"Survivors re-run after adding `{re['tests_added']}` (mutmut run on the kept scratch copy): "
                         f"{len(re['killed'])} killed, {len(re['still_surviving'])} still surviving.")
        for e in r.get("survivors", []):
            diff = " / ".join(x.strip() for x in e["diff"].splitlines())
            why = (f" — {e['reason']}" if e.get("reason") else "") + (f" ({e['recheck']})" if e.get("recheck") else "")
            lines.append(f"- {e['status']}: `{e['mutant']}`: `{diff[:200]}`{why}")
    return "\n".join(lines) + "\n"


def run_target(target: Target, root: Path, args: argparse.Namespace) -> dict:
    work = scratch_copy(target, root, args.timeout_multiplier)
    load_before = round(os.getloadavg()[0], 2)
    start = time.time()
    try:
        proc = mutmut(work, "run", "--max-children", str(args.jobs), timeout=target.budget_s * args.budget_scale)
        log = proc.stdout[-4000:] + proc.stderr[-4000:]
        ok = proc.returncode == 0
    except subprocess.TimeoutExpired as exc:
        log, ok = f"stopped after {exc.timeout:.0f} s (the module's budget)", False
    wall = time.time() - start
    meta = work / "mutants" / (target.path + ".meta")
    if not meta.is_file():
        return {"module": target.path, "error": "mutmut produced no results", "log": log[-3000:], "wall_s": wall}
    row = results_of(target, work)
    # completed: mutmut finished and ran every mutant (a crash after the last one still leaves results)
    row.update(wall_s=round(wall, 1), completed=ok and row["not_checked"] == 0,
               loadavg_1min=[load_before, round(os.getloadavg()[0], 2)])
    if not ok:
        row["log"] = log[-3000:]
    return row


def campaign_versions() -> dict:
    """What this campaign depends on beyond the envelope's environment (python, torch, numpy, platform, threads)."""
    return {"cpu_count": os.cpu_count(), "mutmut": version("mutmut"), "pytest": version("pytest"),
            "hypothesis": version("hypothesis")}


SUMMARY = ("module", "generated", "killed", "timeout", "survived", "no_tests", "not_checked", "equivalent", "score",
           "completed", "wall_s")


def summary(row: dict) -> dict:
    """A module's counts without its survivors' diffs (``survived``: see ``reclassify``)."""
    return {k: row.get(k) for k in SUMMARY}


def payload_of(rows: dict, args: argparse.Namespace, envelope: Envelope, old: dict) -> dict:
    """The result in _common's envelope; ``modules`` (full rows, survivors and their diffs) stays at top level."""
    order = [t.path for t in TARGETS]
    modules = sorted(rows.values(), key=lambda r: order.index(r["module"]) if r["module"] in order else 99)
    figures = {"modules": [summary(r) for r in modules], "target_score": 0.9,
               "below_target": [r["module"] for r in modules if r.get("score", 0) < 0.9],
               "incomplete": [r["module"] for r in modules if not r.get("completed")],
               "module_wall_s_total": round(sum(r.get("wall_s", 0) for r in modules), 1)}
    payload = envelope.finish(
        figures, tool=f"mutmut {version('mutmut')}",
        score_formula="(killed + timeout) / (generated - equivalent); 'no tests' and 'not checked' (budget ran out) "
                      "count against the score. survived = undetected and not equivalent (includes 'no tests'), so "
                      "killed + timeout + survived + equivalent + not_checked = generated",
        seed_note="no seed: mutmut enumerates mutants deterministically and runs each against fixed tests; the tests "
                  "seed their own generators (hypothesis derandomized) except the cascade's fresh keys (os.urandom)",
        jobs=args.jobs, timeout_multiplier=args.timeout_multiplier, budget_scale=args.budget_scale,
        notes=args.note if args.note else old.get("notes", []), modules=modules)
    payload["environment"] = {**payload["environment"], **campaign_versions()}
    payload["wall_seconds"] = round(payload["wall_seconds"], 1)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="*", default=[t.name for t in TARGETS],
                        help=f"names among {[t.name for t in TARGETS]}")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    parser.add_argument("--timeout-multiplier", type=float, default=8.0)
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiplies every module's wall budget")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--note", action="append", help="replace the JSON's notes with these (repeat for several)")
    parser.add_argument("--reclassify", action="store_true",
                        help="run nothing: re-apply EQUIVALENT to the JSON's recorded survivors, rescore, rewrite")
    args = parser.parse_args()
    envelope = Envelope("mutation", seed=None, device="cpu")
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    rows = {r["module"]: r for r in old.get("modules", [])}
    if args.reclassify:
        rows = {m: reclassify(r) for m, r in rows.items()}
        payload = payload_of(rows, args, envelope, old)
        for k in ("command", "wall_seconds", "jobs", "timeout_multiplier", "budget_scale"):  # the run's, not this
            payload[k] = old.get(k, payload[k])
        write_result(args.out, payload)
        write_markdown(args.out.with_suffix(".md"), markdown(payload))
        print(f"rewrote {args.out} and {args.out.with_suffix('.md')}")
        return
    chosen = [t for t in TARGETS if t.name in args.modules]
    root = Path(tempfile.mkdtemp(prefix="veil-mutation-"))

    def write() -> dict:  # after every module, so a run cut short keeps what it measured
        payload = payload_of(rows, args, envelope, old)
        write_result(args.out, payload)
        write_markdown(args.out.with_suffix(".md"), markdown(payload))
        return payload

    payload = write()
    try:
        for target in chosen:
            row = run_target(target, root, args)
            row["command"] = envelope.command
            rows[target.path] = reclassify(row)
            print(f"{target.path}: " + ", ".join(f"{k} {row.get(k)}" for k in
                                                   ("generated", "killed", "timeout", "survived", "no_tests",
                                                    "not_checked", "equivalent", "score", "wall_s")), flush=True)
            payload = write()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"scratch copies kept in {root}")
    print(f"wrote {args.out}")
    low = payload["figures"]["below_target"]
    if low:
        print("below 90%: " + ", ".join(low))


if __name__ == "__main__":
    main()
