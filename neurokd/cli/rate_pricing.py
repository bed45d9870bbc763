"""The energy registry's prices for the training core: break-even targets and the finished
student's report (``neurokd.train.rates.Pricer``).

Lives in the CLI, which may import ``neurokd.energy`` (the training core may not:
tools/lint_imports.py rule 1). Every number is computed by the code ``neurokd energy report``
runs: :func:`~neurokd.energy.estimation.estimate` for the targets,
:func:`~neurokd.energy.estimation.estimate_from_options` for the report.

    >>> pricer = EnergyPricer.of("loihi", "compute", "twin")    # refused here if unknown
    >>> distill(config, pricer=pricer).metrics["energy"]["ratio"]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class EnergyPricer:
    """A profile, an energy model and an ANN reference (``twin`` or ``teacher``), checked when
    made so a bad name fails before a run folder is claimed."""

    profile: str
    energy_model: str
    ann: str

    @classmethod
    def of(cls, profile: str, energy_model: str, ann: str) -> EnergyPricer:
        from ..energy.pricing import Prices
        from ..energy.profiles import ann_pricing_profile, load_profile

        if ann not in ("twin", "teacher"):
            raise ConfigError(f"--ann must be twin or teacher, not {ann!r}")
        # ConfigError naming the profile, the model or the cost a profile lacks: the SNN's
        # prices and the ANN's (loihi prices its ANN on a 45 nm core), as energy report checks
        loaded = load_profile(profile)
        Prices.of(loaded, energy_model)
        Prices.of(ann_pricing_profile(loaded), energy_model)
        return cls(profile, energy_model, ann)

    @classmethod
    def for_config(cls, config) -> EnergyPricer:
        return cls.of(config.profile, config.energy_model, config.ann)

    def break_even(self, student: nn.Module, config: dict[str, Any],
                   teacher: nn.Module | None, inputs: torch.Tensor) -> dict[str, float | None]:
        """``{layer: break-even rate}`` of ``student`` on ``inputs``: EnergyReport.break_even,
        the column ``energy report`` prints."""
        from ..energy.estimation import estimate
        from ..student.sources import StudentSource

        if self.ann == "teacher" and teacher is None:
            raise ConfigError("--ann teacher: this method trains no teacher; use --ann twin")
        # copies on the CPU: the twin is built there, and counting must not touch the
        # training student's state (spikingjelly's neuron memories, the train/eval flag)
        source = StudentSource(copy.deepcopy(student).cpu(), tuple(config["input_shape"]),
                               config["timesteps"], "student", config=config,
                               teacher=None if teacher is None else copy.deepcopy(teacher).cpu())
        report = estimate(source, inputs.cpu(), self.profile, self.ann,
                          energy_model=self.energy_model)
        return {layer.name: report.break_even(layer) for layer in report.layers}

    def report(self, checkpoint: Path) -> dict[str, Any]:
        """What ``energy report CHECKPOINT --profile P --energy-model M --ann A`` says: per
        layer its input rate, break-even and whether it is below, and the SNN/ANN ratio."""
        from ..energy.estimation import estimate_from_options
        from ..student.sources import load_source

        report = estimate_from_options(load_source(checkpoint=checkpoint), self.profile,
                                       self.ann, energy_model=self.energy_model)
        data = report.to_dict()
        layers = {row["name"]: {"rate": row["firing_rate"],
                                "break_even": row["break_even_rate"],
                                "below": row["below_break_even"]} for row in data["layers"]}
        return {"profile": self.profile, "energy_model": self.energy_model, "ann": self.ann,
                "samples": data["samples"], "snn_energy_pj": data["snn_energy_pj"],
                "ann_energy_pj": data["ann_energy_pj"], "ratio": data["ratio"],
                "layers": layers,
                "below_break_even": [name for name, row in layers.items() if row["below"]],
                "above_break_even": [name for name, row in layers.items()
                                     if row["below"] is False]}


@dataclass(frozen=True)
class SplitPricer:
    """Break-even targets from one pricer, the result's report from another: a sweep trial
    whose own ``--profile`` differs from the profile the sweep's energy objective uses."""

    targets: EnergyPricer
    result: EnergyPricer

    def break_even(self, *args, **kwargs) -> dict[str, float | None]:
        return self.targets.break_even(*args, **kwargs)

    def report(self, checkpoint: Path) -> dict[str, Any]:
        return self.result.report(checkpoint)
