"""`veil client enrol / identify` end to end against the real server: only features travel."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from veil.cli.client import app as client_app
from veil.data.synthetic import synthetic_faces

REPO = Path(__file__).resolve().parents[2]
LFW = REPO.parent / "shared" / "data" / "lfw112"


def write_images(folder: Path, images, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = folder / f"{stem}_{i}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(p)
        paths.append(p)
    return paths


def enrol_and_identify(server, fg: Path, people: dict[str, list[Path]], probes: list[Path],
                       align: str = "hog") -> list[str]:
    runner = CliRunner()
    for name, files in people.items():
        r = runner.invoke(client_app, ["enrol", *map(str, files), "--name", name, "--fg", str(fg),
                                       "--server", server.url, "--align", align])
        assert r.exit_code == 0, r.output
    r = runner.invoke(client_app, ["identify", *map(str, probes), "--fg", str(fg), "--server", server.url,
                                   "--align", align])
    assert r.exit_code == 0, r.output
    rows = [ln.split("\t") for ln in r.output.splitlines() if ln.count("\t") == 2]
    return [name for _, name, _ in rows]


def test_client_cli_end_to_end_synthetic(server, tiny_models, tmp_path):
    """SYNTHETIC faces: enrolled images are identified as themselves."""
    faces = synthetic_faces(identities=3, per_identity=1, image_size=32, seed=3)
    people = {f"syn{i}": write_images(tmp_path / f"p{i}", faces.images[i:i + 1], f"syn{i}") for i in range(3)}
    probes = [people["syn2"][0], people["syn0"][0]]
    assert enrol_and_identify(server, tiny_models["fg"], people, probes, align="none") == ["syn2", "syn0"]


def test_client_cli_errors_are_one_line(tiny_models, tmp_path):
    r = CliRunner().invoke(client_app, ["identify", str(tmp_path / "missing.png"), "--fg", str(tiny_models["fg"])])
    assert r.exit_code == 2 and "error:" in r.output
    img = write_images(tmp_path, synthetic_faces(1, 1, 32, seed=0).images, "x")
    r = CliRunner().invoke(client_app, ["identify", str(img[0]), "--fg", str(tiny_models["fg"]),
                                        "--server", "http://127.0.0.1:9", "--align", "none"])
    assert r.exit_code == 2 and "cannot reach" in r.output
    r = CliRunner().invoke(client_app, ["identify", str(img[0]), "--fg", str(tiny_models["recnet"])])
    assert r.exit_code == 2 and "not a Veil XNN-d feature-generator" in r.output
    r = CliRunner().invoke(client_app, ["identify", str(img[0]), "--fg", str(tiny_models["fg"]),
                                        "--server", "http://127.0.0.1:9"])  # SYNTHETIC: no face, nothing sent
    assert r.exit_code == 2 and "no face found in" in r.output and "cannot reach" not in r.output


@pytest.mark.skipif(not LFW.is_dir(), reason="real LFW data not found at ../shared/data/lfw112")
def test_client_cli_on_real_lfw_faces(server, tiny_models):
    """REAL faces (3 LFW persons) through the untrained tiny FG: the wire works on real images."""
    names = sorted(p.name for p in LFW.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)[:3]
    people = {n: sorted((LFW / n).iterdir())[:1] for n in names}
    probes = [people[n][0] for n in reversed(names)]
    assert enrol_and_identify(server, tiny_models["fg"], people, probes) == list(reversed(names))


def test_veil_serve_refuses_a_file_that_is_not_a_recnet(tiny_models, tmp_path):
    import typer

    from veil.cli.serve import serve

    app = typer.Typer()
    app.command()(serve)
    app.command("noop")(lambda: None)  # two commands keep typer from collapsing the group
    r = CliRunner().invoke(app, ["serve", "--recnet", str(tiny_models["fg"]), "--gallery", str(tmp_path / "g")])
    assert r.exit_code == 2 and "not a Veil RecNet file" in r.output
    bad = tmp_path / "g.safetensors"
    bad.write_bytes(b"garbage")
    r = CliRunner().invoke(app, ["serve", "--recnet", str(tiny_models["recnet"]), "--gallery", str(bad)])
    assert r.exit_code == 2 and "gallery" in r.output


def test_credentials_add_with_a_symlinked_file_writes_nothing(tmp_path):
    """Issue 24, finding 4: ``--file`` a symlink exited 2, but the new token file was already written."""
    from veil.cli.app import app as veil_app

    target = tmp_path / "elsewhere.json"
    link = tmp_path / "credentials.json"
    link.symlink_to(target)
    token = tmp_path / "kiosk.token"
    r = CliRunner().invoke(veil_app, ["serve-credentials", "add", "kiosk", "--file", str(link),
                                      "--token-out", str(token)])
    assert r.exit_code == 2 and "symbolic link" in r.output
    assert not token.exists() and not target.exists()
