"""Every setting of a distillation run: one dataclass, validated on creation, TOML in and out.

The same field list drives the command-line options (see ``cli.py``), so every option is also a
TOML key and the command line wins over the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .anytime import EXIT_RULES, check_threshold, rule_names
from .data import DATASETS, EVENT_FRAMES
from .data.encoding import ENCODINGS
from .data.frames import downsampling
from .errors import ConfigError, NeuroKDError
from .files.safe_io import read_small_text
from .losses import method_names, method_rule, param_readers, parse_method, uses_features
from .validation import check_field_types, check_values

STUDENTS = ("cnn", "resnet", "resnet18", "resnet19")
TEACHERS = ("cnn", "twin", "resnet18", "resnet34")
DEVICES = ("auto", "cpu", "cuda")
RESETS = ("hard", "soft")
OPTIMIZERS = ("adam", "sgd")
BN_RECOMPUTE = ("auto", "always", "never")
RATE_ANNS = ("twin", "teacher")  # what break-even compares with (energy/ann.py's choices)
BREAK_EVEN = "break-even"        # --rate-target's one word; anything else is a number


def _opt(help: str, default: Any = None, cli: str | None = None, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, "cli": cli, **kw})


def _loss_opt(name: str, help: str, default: Any = None) -> Any:
    """A hyper-parameter of the losses; its help names the losses that read it."""
    return _opt(f"{help} (read by {', '.join(param_readers(name))})", default)


@dataclass
class RunConfig:
    """Settings of one ``neurokd distill`` run (all plain types, so it round-trips through TOML)."""

    name: str | None = _opt("run name: files go to OUT/NAME (default: DATASET[-STUDENT]"
                            "[-ENCODING]-METHOD-tT-sSEED; the student and encoding when not "
                            "cnn and direct)")
    out: str = _opt("parent folder of run folders", "runs")
    dataset: str = _opt("data set (docs/data.md)", "digits", choices=tuple(DATASETS))
    data_dir: str | None = _opt("folder with CIFAR python batches or ImageFolder class folders")
    image_size: int = _opt("side length images are resized to (imagefolder)", 32)
    val_fraction: float = _opt("share of the training split held out for validation", 0.1)
    train_fraction: float = _opt("share of the training split the student trains on "
                                 "(stratified, drawn with --seed); a teacher trained in the "
                                 "run sees all of it", 1.0)
    augment: bool | None = _opt("random transforms of the training inputs (docs/data.md): "
                                "crop + flip for CIFAR (on unless --no-augment) and "
                                "imagefolder; mnist1d's own generator steps (scale, shift, "
                                "noise) for mnist1d")
    encoding: str | None = _opt("how a static sample reaches the student: "
                                + "; ".join(f"{e.name}: {e.summary}" for e in ENCODINGS.values())
                                + " (default: direct; event data sets are spikes already)",
                                choices=tuple(ENCODINGS))
    event_size: int | None = _opt("event data sets: bin the camera's pixels down to SIZE x SIZE "
                                  "(e.g. 128 -> 64; default: the sensor's size)")
    event_frames: str | None = _opt("event data sets: what a frame holds; " + "; ".join(
        f"{k}: {v}" for k, v in EVENT_FRAMES.items()) + " (default: binary)",
        choices=tuple(EVENT_FRAMES))
    cache_dir: str | None = _opt("folder for the event frames cache (default: $NEUROKD_CACHE_DIR "
                                 "or ~/.cache/neurokd)")
    student: str = _opt("student architecture", "cnn", choices=STUDENTS)
    width: int = _opt("base channel count of the student", 16)
    teacher_arch: str = _opt("teacher architecture", "cnn", choices=TEACHERS)
    teacher_width: int = _opt("base channel count of the cnn teacher", 32)
    teacher: str | None = _opt("reuse this teacher (teacher.pt or a student.pt) instead of training one")
    teacher_epochs: int = _opt("epochs to train the teacher", 30)
    teacher_lr: float = _opt("teacher learning rate (same optimiser as the student)", 2e-3)
    method: str = _opt(f"distillation loss (docs/losses.md): {method_rule()}", "tser",
                       choices=method_names())
    alpha: float = _loss_opt("alpha", "weight of the distillation term (0..1)", 0.5)
    tau: float = _loss_opt("tau", "softmax temperature of the distillation term", 1.0)
    lam: float = _loss_opt("lam", "entropy-regularisation weight", 0.05)
    ce_tau: float = _loss_opt("ce_tau", "temperature the CE term is taken at, CE(z/ce_tau)", 1.0)
    entropy_tau: float | None = _loss_opt(
        "entropy_tau", "temperature of the entropy term, H(softmax(z/entropy_tau)); unset: --tau")
    feature_weight: float = _loss_opt("feature_weight", "weight of each feature loss", 1.0)
    mask_ratio: float = _loss_opt("mask_ratio", "share of feature positions blurred", 0.15)
    rate_target: str | None = _opt(
        "add a spike-rate term (docs/energy-aware.md): break-even (each spiking layer's "
        "break-even input rate under --profile, --energy-model and --ann, from the energy "
        "registry) or a number in (0, 1] (one target for every layer); unset: no term")
    # 100: a rate 0.02 above its aim then pulls with 2·w·0.02 = 4, the CE's scale (w=1 left
    # digits' features.3 above break-even; w=100 took it below at no accuracy cost)
    rate_weight: float = _loss_opt("rate_weight", "weight w of the spike-rate term", 100.0)
    rate_margin: float = _loss_opt("rate_margin", "the rate term aims at margin x target", 0.9)
    profile: str = _opt("energy profile pricing the rate targets and the result "
                        "(neurokd energy profiles)", "45nm-fp32")
    energy_model: str = _opt("energy model pricing them: compute or memory (docs/energy.md)",
                             "compute")
    ann: str = _opt("the ANN a layer's break-even compares with: twin (the student's "
                    "architecture with ReLU) or teacher", "twin", choices=RATE_ANNS)
    student_tap: str | None = _opt("student module path whose output is distilled (feature KD)")
    teacher_tap: str | None = _opt("teacher module path whose output is matched (feature KD)")
    timesteps: int = _opt("simulation timesteps T", 4)
    neuron_tau: float = _opt("LIF membrane time constant (>1)", 2.0)
    v_threshold: float = _opt("LIF firing threshold", 1.0)
    reset: str = _opt("LIF reset after a spike: hard (to 0) or soft (subtract threshold)", "hard", choices=RESETS)
    exit_rule: str | None = _opt(
        "early exit (docs/anytime.md): stop a sample at the first timestep t where, with "
        "p_t the softmax of its mean logits over steps 1..t, "
        + "; ".join(f"{r.name}: {r.equation}" for r in EXIT_RULES.values())
        + "; recorded in metrics.json and exports, with --exit-threshold or --exit-drop",
        choices=rule_names())
    exit_threshold: float | None = _opt("the exit rule's threshold c, in " + "; ".join(
        f"[{r.low:g}, {r.high:g}] for {r.name}" for r in EXIT_RULES.values()))
    exit_drop: float | None = _opt("calibrate the exit threshold on the validation split: the "
                                   "fewest mean timesteps within this many accuracy points of "
                                   "the full-T validation accuracy (e.g. 0.5)")
    epochs: int = _opt("student training epochs", 30)
    batch_size: int = _opt("mini-batch size", 64)
    lr: float = _opt("student learning rate", 2e-3)
    optimizer: str = _opt("adam, or sgd (with --momentum); both on a cosine schedule", "adam",
                          choices=OPTIMIZERS)
    momentum: float = _opt("SGD momentum", 0.9)
    recompute_bn: str = _opt(
        "recompute BatchNorm's statistics from the training split before each evaluation: "
        "auto (when an epoch has fewer steps than BatchNorm's ~10-step averaging window, "
        "where its running statistics lag the weights and a student right in training is "
        "silent in evaluation), always, or never", "auto", choices=BN_RECOMPUTE)
    weight_decay: float = _opt("weight decay", 0.0)
    seed: int = _opt("random seed (data order, initialisation)", 0)
    device: str = _opt("auto picks CUDA when present", "auto", choices=DEVICES)
    threads: int | None = _opt("torch intra-op threads (default: the cores other jobs leave "
                               "free at start, recorded in metrics.json; OMP_NUM_THREADS is "
                               "honoured; give the same N to repeat a run bit for bit)")
    log_dir: str | None = _opt("also write every epoch as TensorBoard scalars and CSV here")
    amp: bool = _opt("mixed precision (float16 autocast) on CUDA", False)
    detect_anomaly: bool = _opt("torch.autograd anomaly detection (slow; for debugging NaNs)", False)
    # Filled in from the data set when a run starts, so the config alone rebuilds the model.
    input_shape: list[int] | None = _opt("input shape C,H,W (set from the data set)", internal=True)
    num_classes: int | None = _opt("number of classes (set from the data set)", internal=True)

    def __post_init__(self) -> None:
        check_field_types(self)  # the same checks for options, TOML files and checkpoints
        parse_method(self.method)  # before the choices check: its message names the rule
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and not (value is None and f.default is None) and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, not {value!r}")
        positive_ints = ("epochs", "teacher_epochs", "batch_size", "timesteps", "width",
                         "teacher_width", "image_size")
        for key in positive_ints:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if "epochs" in key else 1):
                bound = "a whole number >= 0" if "epochs" in key else "a whole number >= 1"
                raise ConfigError(f"{key} must be {bound}, not {value!r}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, not {self.epochs}")
        taps = [f"--{k.replace('_', '-')}" for k in ("student_tap", "teacher_tap")
                if getattr(self, k) is not None]
        if taps and not uses_features(self.method):
            raise ConfigError(f"{' and '.join(taps)} {'are' if len(taps) > 1 else 'is'} only "
                              "used by a feature method (fitnet, bkd, e.g. tser+fitnet); "
                              f"--method {self.method} distils logits only")
        if self.threads is not None and (not isinstance(self.threads, int) or
                                         isinstance(self.threads, bool) or self.threads < 1):
            raise ConfigError(f"threads must be a whole number >= 1, not {self.threads!r}")
        _check_range("alpha", self.alpha, 0.0, 1.0)
        _check_range("momentum", self.momentum, 0.0, 1.0)
        _check_range("mask_ratio", self.mask_ratio, 0.0, 1.0)
        if not _is_number(self.feature_weight) or self.feature_weight < 0:
            raise ConfigError(f"feature_weight must be a number >= 0, not {self.feature_weight!r}")
        _check_range("val_fraction", self.val_fraction, 0.0, 0.5, low_open=True)
        _check_range("train_fraction", self.train_fraction, 0.0, 1.0, low_open=True)
        self.train_fraction = float(self.train_fraction)
        for key in ("tau", "ce_tau"):
            _check_positive_finite(key, getattr(self, key))
        if self.entropy_tau is not None:
            _check_positive_finite("entropy_tau", self.entropy_tau)
            self.entropy_tau = float(self.entropy_tau)
        for key in ("lr", "teacher_lr", "v_threshold"):
            if not _is_number(getattr(self, key)) or getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be a number > 0, not {getattr(self, key)!r}")
        if not _is_number(self.lam) or self.lam < 0:
            raise ConfigError(f"lam must be a number >= 0, not {self.lam!r}")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be a number >= 0, not {self.weight_decay!r}")
        if not _is_number(self.neuron_tau) or self.neuron_tau <= 1:
            raise ConfigError(f"neuron_tau must be a number > 1, not {self.neuron_tau!r}")
        if DATASETS[self.dataset].needs_data_dir and not self.data_dir:
            raise ConfigError(f"dataset {self.dataset} needs --data-dir (nothing is downloaded)")
        _check_event_options(self)
        _check_exit_options(self)
        _check_rate_options(self)
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ConfigError(f"name must be a plain folder name, not {self.name!r}")
        self.alpha, self.tau, self.lam = float(self.alpha), float(self.tau), float(self.lam)
        self.ce_tau = float(self.ce_tau)
        self.neuron_tau = float(self.neuron_tau)

    @property
    def run_name(self) -> str:
        """NAME, else what tells default-named runs apart: the data, the student and the input
        encoding (these two only when not the defaults, so the common names stay short), the
        loss, T and the seed: ``digits-tser-t4-s0``, ``digits-rate-tser-t4-s0``."""
        if self.name:
            return self.name
        parts = [self.dataset]
        if self.student != "cnn":
            parts.append(self.student)
        if self.encoding not in (None, "direct"):  # direct is what no encoding means
            parts.append(self.encoding)
        method = self.method
        if self.rate_target is not None:  # a rate-regularised run must not take the plain name
            method += "-rbe" if self.rate_target == BREAK_EVEN else f"-r{self.rate_target}"
        return "-".join([*parts, method, f"t{self.timesteps}", f"s{self.seed}"])

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.run_name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                near = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except ConfigError as exc:  # a value from a file: say which file
            if source == "options" or str(exc).startswith(source):
                raise
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_sources(cls, toml_path: str | Path | None, overrides: dict[str, Any],
                     preset: str | None = None) -> RunConfig:
        """Defaults, then a preset, then the TOML file, then the command line (``None``: not
        given)."""
        values = load_toml(preset_path(preset)) if preset else {}
        from_file = load_toml(toml_path) if toml_path else {}
        try:  # the file's own values, also those an option overrides: a broken file is refused
            check_values(cls, from_file)
        except ConfigError as exc:
            raise ConfigError(f"{toml_path}: {exc}") from None
        values.update(from_file)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, source=str(toml_path) if toml_path else "options")


PRESETS = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def preset_path(name: str) -> Path:
    path = PRESETS / f"{name}.toml"
    if not path.is_file():
        near = difflib.get_close_matches(name, preset_names(), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; presets: {', '.join(preset_names())}")
    return path


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = read_small_text(path, "config file")
    except NeuroKDError as exc:
        raise ConfigError(str(exc)) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML in {path}: {exc}") from None
    except RecursionError:  # arrays nested thousands deep
        raise ConfigError(f"malformed TOML in {path}: nested too deeply") from None
    except ValueError as exc:  # an integer of 100,000 digits (Python's int-to-str limit)
        raise ConfigError(f"malformed TOML in {path}: {str(exc).splitlines()[0][:160]}") \
            from None
    # A [distill] table is accepted as well as top-level keys.
    if set(values) == {"distill"} and isinstance(values["distill"], dict):
        values = values["distill"]
    return values


def to_toml(values: dict[str, Any]) -> str:
    """Flat TOML for plain values; ``None`` (not set) is left out."""
    lines = []
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_event_options(config: RunConfig) -> None:
    """--encoding belongs to static data sets, --event-size / --event-frames to event ones."""
    spec = DATASETS[config.dataset]
    if spec.events and config.encoding is not None:
        raise ConfigError(f"--encoding {config.encoding}: {config.dataset} is event data, "
                          "spikes already; drop --encoding")
    for key in ("event_size", "event_frames"):
        if not spec.events and getattr(config, key) is not None:
            events = ", ".join(name for name, d in DATASETS.items() if d.events)
            raise ConfigError(f"--{key.replace('_', '-')} applies to event data sets ({events}),"
                              f" not {config.dataset}")
    if config.event_size is not None:
        downsampling(spec.sensor, config.event_size, config.dataset)


def _check_exit_options(config: RunConfig) -> None:
    """An exit rule needs exactly one way to its threshold; a threshold or a drop means
    nothing without a rule (it would be recorded as if it had been applied)."""
    given = [key for key in ("exit_threshold", "exit_drop") if getattr(config, key) is not None]
    if config.exit_rule is None:
        if given:
            raise ConfigError(f"{given[0]} needs an exit_rule ({', '.join(EXIT_RULES)})")
        return
    if len(given) != 1:
        raise ConfigError(f"exit_rule {config.exit_rule} needs exit_threshold (a given "
                          "threshold) or exit_drop (calibrate one on validation): "
                          + ("not both" if given else "give one"))
    if config.exit_threshold is not None:
        try:
            config.exit_threshold = check_threshold(config.exit_rule, config.exit_threshold)
        except ConfigError as exc:
            raise ConfigError(f"exit_threshold: {exc}") from None
    elif not _is_number(config.exit_drop) or not 0 <= config.exit_drop <= 100:
        raise ConfigError(f"exit_drop must be in [0, 100] accuracy points, not "
                          f"{config.exit_drop!r}")
    else:
        config.exit_drop = float(config.exit_drop)


def rate_target_value(target: str | None) -> float | None:
    """The fixed target a ``rate_target`` names (None for break-even or no target).

    >>> rate_target_value("0.05"), rate_target_value("break-even")
    (0.05, None)
    """
    if target is None or target == BREAK_EVEN:
        return None
    try:
        value = float(target)
    except (TypeError, ValueError):
        value = math.nan
    # A rate is a share of input positions x timesteps: outside (0, 1] no layer can meet it.
    if not 0 < value <= 1:
        raise ConfigError(f"rate_target must be {BREAK_EVEN} or a rate in (0, 1], not "
                          f"{target!r}")
    return value


def _check_rate_options(config: RunConfig) -> None:
    """A negative weight would reward spikes; a negative margin would aim below silence."""
    rate_target_value(config.rate_target)
    for key in ("rate_weight", "rate_margin"):
        value = getattr(config, key)
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{key} must be a finite number >= 0, not {value!r}")
        setattr(config, key, float(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _check_positive_finite(key: str, value: Any) -> None:
    # A temperature of inf would make τ²·KL inf·0 = NaN on the first step.
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key} must be a finite number > 0, not {value!r}")


def _check_range(key: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    ok = _is_number(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{key} must be in {bracket}{low}, {high}], not {value!r}")
