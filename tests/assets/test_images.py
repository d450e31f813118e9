"""The step images: one per step, tagged by their content, built for the nodes' platforms."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from crypto_pipeline.config import DEFAULT_REGISTRY, DEFAULT_TAG
from crypto_pipeline.pipeline import STEP_IMAGES

ROOT = Path(__file__).resolve().parents[2]


def build_images(*args: str, **env: str) -> str:
    clean = {"PATH": "/usr/bin:/bin", **env}
    result = subprocess.run(
        ["bash", ROOT / "scripts" / "build_images.sh", "--dry-run", *args],
        capture_output=True,
        text=True,
        env=clean,
        check=True,
    )
    return result.stdout


def image_tag(root: Path = ROOT) -> str:
    return subprocess.run(
        ["python3", ROOT / "scripts" / "image_tag.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    ).stdout.strip()


def test_one_image_per_step_tagged_by_content_and_version():
    """(f) Before, every build reused 0.1.0: nodes kept old images, KFP's cache old steps."""
    with_dockerfile = {p.parent.name for p in (ROOT / "components").glob("*/Dockerfile")}
    assert with_dockerfile == set(STEP_IMAGES.values())
    tag = image_tag()
    assert re.fullmatch(rf"{re.escape(DEFAULT_TAG)}-[0-9a-f]{{12}}", tag)
    out = build_images("--push")
    built = re.findall(r"^\+ docker build -f \S+ -t (\S+) -t (\S+) \.$", out, re.MULTILINE)
    assert sorted(built) == sorted(
        (f"{DEFAULT_REGISTRY}/{image}:{tag}", f"{DEFAULT_REGISTRY}/{image}:{DEFAULT_TAG}")
        for image in with_dockerfile
    )
    pushed = re.findall(r"^\+ docker push (\S+)$", out, re.MULTILINE)
    assert sorted(pushed) == sorted(f"{DEFAULT_REGISTRY}/{i}:{tag}" for i in with_dockerfile)
    assert out.splitlines()[-1] == tag  # for `crypto-pipeline compile --tag`


def test_the_tag_follows_what_the_images_hold(tmp_path):
    repo = tmp_path / "repo"
    for name in ("components", "locks", "scripts"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, repo / name)
    before = subprocess.run(
        ["python3", repo / "scripts" / "image_tag.py"], capture_output=True, text=True, check=True
    ).stdout
    assert before.strip() == image_tag()
    (repo / "notebooks").mkdir()
    (repo / "notebooks" / "new.ipynb").write_text("{}")  # not in any image: same tag
    again = subprocess.run(
        ["python3", repo / "scripts" / "image_tag.py"], capture_output=True, text=True, check=True
    ).stdout
    assert again == before
    serve = repo / "components" / "crypto_pipeline" / "serving" / "server.py"
    serve.write_text(serve.read_text() + "\n# changed\n")
    after = subprocess.run(
        ["python3", repo / "scripts" / "image_tag.py"], capture_output=True, text=True, check=True
    ).stdout
    assert after != before


def test_a_remote_registry_gets_images_for_amd64_and_arm64():
    """(g) Before, an Apple-silicon laptop pushed arm64 images that amd64 nodes cannot run."""
    out = build_images("--push", REGISTRY="ghcr.io/me/poets", TAG="t1")
    builds = [line for line in out.splitlines() if line.startswith("+ ")]
    assert len(builds) == len(set(STEP_IMAGES.values()))
    for line in builds:
        assert line.startswith("+ docker buildx build --platform linux/amd64,linux/arm64")
        assert line.endswith("--push .") and ":t1 " in line
    out = build_images("--push", REGISTRY="ghcr.io/me/poets", TAG="t1", PLATFORMS="linux/arm64")
    assert "--platform linux/arm64 " in out
    # kind's registry on this machine: this machine's platform, plain build and push.
    local = build_images("--push", TAG="t1")
    assert "buildx" not in local and "+ docker push localhost:5001/" in local


def test_a_builder_that_cannot_build_for_the_nodes_is_named_with_the_fix(tmp_path):
    """A plain Linux engine's default builder knows its own platform only."""
    fake = tmp_path / "docker"
    fake.write_text(
        '#!/bin/bash\nif [[ "$1 $2" == "buildx inspect" ]]; then\n'
        '  echo "Name: default"; echo "Platforms: linux/amd64, linux/amd64/v2, linux/386"\n'
        'else echo "docker $*" >> "$LOG"; fi\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LOG": str(tmp_path / "log"), "TAG": "t"}
    result = subprocess.run(
        ["bash", ROOT / "scripts" / "build_images.sh", "--push"],
        capture_output=True,
        text=True,
        env={**env, "REGISTRY": "ghcr.io/me/poets"},
    )
    assert result.returncode == 1
    assert "cannot build for linux/arm64" in result.stderr and "buildx create" in result.stderr
    assert not (tmp_path / "log").exists()  # nothing built
    ok = subprocess.run(
        ["bash", ROOT / "scripts" / "build_images.sh", "--push"],
        capture_output=True,
        text=True,
        env={**env, "REGISTRY": "ghcr.io/me/poets", "PLATFORMS": "linux/amd64"},
    )
    assert ok.returncode == 0, ok.stderr
    assert "docker buildx build --platform linux/amd64 " in (tmp_path / "log").read_text()


STEP_DOCKERFILES = sorted((ROOT / "components").glob("*/Dockerfile"))


def copied(dockerfile: Path) -> list[tuple[str, str]]:
    """Each (source, destination) a Dockerfile's COPY and ADD take from the build context."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] not in (["COPY"], ["ADD"]) or any(w.startswith("--from") for w in words):
            continue
        *sources, destination = [w for w in words[1:] if not w.startswith("--")]
        pairs += [(source, destination) for source in sources]
    return pairs


def test_no_step_image_copies_the_notebooks_helpers():
    """The step images hold the pipeline's package; workshop/ is the notebooks' (and image's)."""
    assert {p.parent.name for p in STEP_DOCKERFILES} >= set(STEP_IMAGES.values())
    for dockerfile in STEP_DOCKERFILES:
        sources = [Path(source) for source, _ in copied(dockerfile)]
        assert "components/crypto_pipeline" in map(str, sources), dockerfile
        whole = [s for s in sources if not s.parts or s.parts[0] in ("workshop", "*")]
        assert not whole, f"{dockerfile.relative_to(ROOT)} copies {whole}"


def test_a_step_image_s_package_holds_the_pipeline_and_not_the_notebooks_helpers(tmp_path):
    """`pip install .` where a step image copies only its files: no crypto_workshop in it.

    setuptools looks for packages in components/ and workshop/; a step image's context has
    no workshop/, and the wheel must still build, with crypto_pipeline alone.
    """
    context = tmp_path / "context"
    context.mkdir()
    into_workdir = {s for d in STEP_DOCKERFILES for s, to in copied(d) if not to.startswith("/")}
    for source in sorted(into_workdir):  # not what goes elsewhere (an entrypoint script)
        if (ROOT / source).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(ROOT / source, context / source, ignore=ignore)
        else:
            shutil.copy2(ROOT / source, context / source)
    assert not (context / "workshop").exists()
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--disable-pip-version-check", "-w", str(tmp_path / "wheels"), str(context)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert "crypto_pipeline/cli.py" in names
    assert not [t for t in tops if t.startswith("crypto_workshop")], sorted(tops)
    assert all(t.startswith("crypto_pipeline") for t in tops), sorted(tops)
