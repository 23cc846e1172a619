import torch

from hwbench.data.datamodules import MNISTDataModule, SyntheticDataModule, TensorBatches

# from ../shared/data/README.md: the published label counts of MNIST
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_splits_shapes_range_and_labels(data_root: str) -> None:
    dm = MNISTDataModule(root=data_root)
    dm.setup()
    (xt, yt), (xv, yv), (xs, ys) = dm.splits["train"], dm.splits["val"], dm.splits["test"]
    assert (len(xt), len(xv), len(xs)) == (55_000, 5_000, 10_000)
    assert xt.shape[1:] == (1, 28, 28) and xt.dtype == torch.float32
    assert xt.min() == 0 and xt.max() == 1
    assert torch.bincount(torch.cat([yt, yv])).tolist() == TRAIN_COUNTS
    assert torch.bincount(ys).tolist() == TEST_COUNTS


def test_split_is_seeded_and_train_limit_takes_the_first_images(data_root: str) -> None:
    a, b, c = (
        MNISTDataModule(root=data_root, seed=1),
        MNISTDataModule(root=data_root, seed=1),
        MNISTDataModule(root=data_root, seed=2),
    )
    limited = MNISTDataModule(root=data_root, seed=1, train_limit=2000)
    for dm in (a, b, c, limited):
        dm.setup()
    assert torch.equal(a.splits["val"][1], b.splits["val"][1])
    assert not torch.equal(a.splits["val"][1], c.splits["val"][1])
    assert torch.equal(limited.splits["train"][0], a.splits["train"][0][:2000])


def test_batches_cover_the_data_reshuffled_every_epoch() -> None:
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    batches = TensorBatches(x, y, batch_size=4, shuffle=True, seed=0)
    first, second = [torch.cat([b[1] for b in batches]) for _ in range(2)]
    assert len(batches) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)
    again = TensorBatches(x, y, batch_size=4, shuffle=True, seed=0)
    assert torch.equal(torch.cat([b[1] for b in again]), first)


def test_synthetic_data_has_mnist_shapes() -> None:
    dm = SyntheticDataModule(val_size=5000)
    dm.setup()
    assert dm.splits["train"][0].shape == (55_000, 1, 28, 28)
    assert dm.splits["test"][0].shape == (10_000, 1, 28, 28)
    assert dm.splits["train"][1].max() <= 9
