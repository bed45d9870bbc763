"""``neurokd energy report`` as one library call: every input checked before any counting."""

from __future__ import annotations

from pathlib import Path

from neurokd.errors import ConfigError
from neurokd.sources import StudentSource

from .inputs import student_inputs
from .lava import read_lava_result
from .profiles import load_profile
from .report import EnergyReport, check_ann, deployed_report, estimate


def energy_report(source: StudentSource | None, profile: str = "45nm-fp32",
                  ann: str | None = None, dataset: str | None = None,
                  data_dir: str | None = None, samples: int | None = None,
                  batch_size: int = 256, lava_result: str | Path | None = None,
                  reporter=None) -> EnergyReport:
    """The float estimate of ``source`` and/or the energy of a deployed run's ``lava_result``.

    With both, the float estimate runs on as many test samples as the deployed run (unless
    ``samples`` says otherwise) and carries the deployed report in ``.deployed``.
    """
    price_list = load_profile(profile)
    if source is None and lava_result is None:
        raise ConfigError("give a checkpoint, --model pkg.module:build_fn, or --from-lava "
                          "RESULT.npz")
    deployed = None
    if lava_result is not None:  # read once, before any counting: a bad file fails at once
        counts, backend = read_lava_result(lava_result)
        deployed = counts, backend, Path(lava_result).name
    if source is None:
        if ann not in (None, "none"):
            raise ConfigError("--ann needs the checkpoint or --model as well as --from-lava")
        return deployed_report(*deployed, price_list)
    check_ann(source, ann)
    batches, total, label = student_inputs(source, dataset, data_dir,
                                           samples or (counts.samples if deployed else None),
                                           batch_size)
    result = estimate(source, batches, price_list, ann, reporter, total, label)
    if deployed is not None:
        result.deployed = deployed_report(*deployed, price_list, result)
    return result
