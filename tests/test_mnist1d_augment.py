"""mnist1d's --augment (its generator's own steps, per batch) and --train-fraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurokd.data import Indexed, load_data, make_loader
from neurokd.data.mnist1d import LENGTH, Mnist1dAugmentation, generator_std


@pytest.fixture(scope="module")
def augmented():
    return load_data("mnist1d", augment=True)


def _epoch(bundle, torch_seed: int, epochs: int = 1, order_seed: int = 3) -> list[list]:
    """``epochs`` passes of a fresh shuffled training loader, after torch.manual_seed."""
    loader = make_loader(Indexed(bundle.train), 256, shuffle=True, seed=order_seed,
                         transform=bundle.train_transform)
    torch.manual_seed(torch_seed)
    return [[b for b in loader] for _ in range(epochs)]


def _by_index(batches: list) -> torch.Tensor:
    x = torch.cat([b[0] for b in batches])
    index = torch.cat([b[2] for b in batches])
    return x[index.argsort()]


def test_parameters_are_the_generators():
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    aug = Mnist1dAugmentation.from_generator()
    std = generator_std()
    assert aug.scale_coeff == args.scale_coeff
    assert aug.grid == args.template_len + args.padding[-1] == 72
    assert aug.max_shift == round(args.max_translation * LENGTH / aug.grid) == 27
    assert aug.corr_noise_scale == pytest.approx(args.corr_noise_scale / std)
    assert aug.iid_noise_scale == pytest.approx(args.iid_noise_scale / std)


def test_augmentation_is_mnist1ds_own_steps_on_the_same_seed(augmented):
    """The batched steps equal mnist1d.transform's functions, called one sample at a time on
    numpy's global generator seeded alike (RandomState(s) and np.random.seed(s) are one stream)."""
    from mnist1d.transform import corr_noise_like, iid_noise_like, interpolate, translate

    aug = augmented.train_transform
    x = augmented.train.tensors[0][:16].double().numpy().reshape(16, LENGTH)
    ours = aug.apply(x, np.random.RandomState(11))
    saved = np.random.get_state()
    try:
        np.random.seed(11)
        # mnist1d.transform.transform's scale step (inline there), then its functions
        scaled = [row * (1 + aug.scale_coeff * (np.random.rand() - 0.5)) for row in x]
        shifted = [translate(row, aug.max_shift) for row in scaled]
        corr = [corr_noise_like(np.zeros(aug.grid), aug.corr_noise_scale) for _ in x]
        iid = [iid_noise_like(np.zeros(aug.grid), aug.iid_noise_scale) for _ in x]
    finally:
        np.random.set_state(saved)
    theirs = np.stack([s + interpolate(c + i, LENGTH) for s, c, i in zip(shifted, corr, iid,
                                                                         strict=True)])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert not np.allclose(ours, x)


@pytest.mark.slow
def test_generator_std_is_the_std_of_the_generators_raw_samples():
    """Regenerates mnist1d's raw samples with its transform in make_dataset's order and checks
    both the standard deviation and that standardising them gives the stored data."""
    from mnist1d.data import get_dataset_args, get_templates, make_dataset
    from mnist1d.transform import transform
    from mnist1d.utils import set_seed

    args, templates = get_dataset_args(), get_templates()
    stored = make_dataset(args)
    saved = np.random.get_state()
    try:
        set_seed(args.seed)
        raw = np.stack([transform(templates["x"][label], templates["t"], args)[0]
                        for label in range(10) for _ in range(args.num_samples // 10)])
        raw = raw[np.random.permutation(len(raw))]  # make_dataset's shuffle, next in its stream
    finally:
        np.random.set_state(saved)
    assert generator_std() == pytest.approx(raw.std(), rel=1e-9)
    np.testing.assert_allclose((raw - raw.mean()) / raw.std(),
                               np.concatenate([stored["x"], stored["x_test"]]), atol=1e-9)


def test_deterministic_for_a_seed_new_each_epoch_labels_kept(augmented):
    first, again = _epoch(augmented, 7, epochs=2), _epoch(augmented, 7, epochs=2)
    for a, b in zip(first[0] + first[1], again[0] + again[1], strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    clean_x, clean_y = augmented.train.tensors
    for batches in first:
        for x, y, index in batches:
            assert torch.equal(y, clean_y[index])  # labels kept
            assert x.shape == clean_x[index].shape and x.dtype == clean_x.dtype
            assert (x - clean_x[index]).abs().amax(dim=(1, 2, 3)).min() > 0.1  # every sample moved
    one, two = _by_index(first[0]), _by_index(first[1])
    assert (one - two).abs().amax(dim=(1, 2, 3)).min() > 0.1  # other draws in epoch 2
    other_seed = _by_index(_epoch(augmented, 8)[0])
    assert not torch.allclose(one, other_seed)


def test_off_by_default_and_evaluation_splits_stay_clean():
    plain = load_data("mnist1d")
    assert plain.train_transform is None and not plain.augmented
    aug = load_data("mnist1d", augment=True)
    assert aug.augmented
    for split in ("train", "val", "test"):  # the datasets themselves hold the stored samples
        assert torch.equal(getattr(plain, split).tensors[0], getattr(aug, split).tensors[0])
    batch = next(iter(make_loader(aug.val, 64)))  # no transform given: clean batches
    assert torch.equal(batch[0], aug.val.tensors[0][:64])


def test_train_fraction_is_stratified_and_seeded():
    bundle = load_data("mnist1d")
    labels = bundle.train.tensors[1].numpy()
    shares = {seed: bundle.with_student_share(0.25, seed) for seed in (0, 0, 1)}
    student = shares[0].for_student().train
    assert shares[0].train is bundle.train  # the teacher keeps the whole training split
    assert len(student) == round(0.25 * len(labels))
    picked = np.asarray(student.indices)
    counts, full = np.bincount(labels[picked], minlength=10), np.bincount(labels, minlength=10)
    assert np.all(np.abs(counts - 0.25 * full) <= 1)  # every class in proportion
    again = bundle.with_student_share(0.25, 0).for_student().train
    assert again.indices == student.indices
    assert shares[1].for_student().train.indices != student.indices
    assert bundle.with_student_share(1.0, 0).for_student().train is bundle.train


def test_teacher_runs_on_the_augmented_batch(augmented):
    """With --augment the teacher's logits are those of the batch the student sees (no cache)."""
    from neurokd.config import RunConfig
    from neurokd.models import build_teacher
    from neurokd.train.features import TeacherSignal

    from helpers import make_student

    config = RunConfig(dataset="mnist1d", method="kd", teacher_width=8, input_shape=[1, 1, 40],
                       num_classes=10)
    teacher = build_teacher(config.to_dict()).eval()
    student = make_student()
    signal = TeacherSignal(config, student, teacher, augmented, torch.device("cpu"))
    assert signal.cache is None
    x, _, index = _epoch(augmented, 0)[0][0]
    logits, _ = signal.teacher_outputs(x, index)
    with torch.no_grad():
        assert torch.allclose(logits, teacher(x))
        assert not torch.allclose(logits, teacher(augmented.train.tensors[0][index]))


@pytest.mark.slow
def test_augmented_low_data_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """The augmentation's draws come back with the training state: an interrupted --augment
    --train-fraction run ends with the uninterrupted run's weights."""
    import importlib
    import signal

    from test_resume import _signal_at_step, _untimed

    from neurokd.config import RunConfig
    from neurokd.train.fitting import Interrupted

    distill_module = importlib.import_module("neurokd.train.distillation")

    def config(name: str) -> RunConfig:
        return RunConfig(dataset="mnist1d", augment=True, train_fraction=0.5, method="tser",
                         out=str(tmp_path), name=name, epochs=3, teacher_epochs=2,
                         batch_size=64, seed=5)

    reference = distill_module.distill(config("whole"))
    assert reference.metrics["student_train_samples"] == 1800
    steps_per_epoch = -(-1800 // 64)
    _signal_at_step(monkeypatch, steps_per_epoch + 3, signal.SIGTERM)  # mid-way through epoch 2
    with pytest.raises(Interrupted):
        distill_module.distill(config("cut"))
    monkeypatch.undo()
    resumed = distill_module.distill(config("cut"), resume=True)
    for (name, x), (_, y) in zip(reference.student.state_dict().items(),
                                 resumed.student.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert _untimed(resumed.metrics)["history"] == _untimed(reference.metrics)["history"]
