"""Accuracy–energy sweeps: an Optuna study whose trials are ordinary ``distill`` runs.

A sweep spec (TOML) names what every trial shares and what varies::

    [sweep]
    trials = 12                  # COMPLETE trials to reach (default: the grid's size)
    sampler = "tpe"              # tpe | random | grid (grid: every combination, enqueued)
    seed = 0                     # the sampler's seed
    profile = "loihi"            # how energy per inference is priced (energy report's)
    energy_model = "compute"
    ann = "twin"

    [base]                       # distill options of every trial
    dataset = "digits"
    epochs = 3

    [space]                      # distill options that vary
    method = ["tser", "kd"]                            # a list: one of these
    rate_weight = {low = 1.0, high = 1000.0, log = true}   # a float range
    timesteps = {low = 2, high = 6}                    # an int range (both ends ints)

Objectives (one Optuna direction each): test accuracy up, energy per inference (pJ, metrics
``energy.snn_energy_pj``) down, and mean exit timesteps down when the trials have an exit rule
(``exit.mean_timesteps``). Trial ``n`` is the run folder ``SWEEP/runs/trial-NNNN``; a retry of
a trial that died resumes in the folder of the attempt it replaces.

Coordination is Optuna's own: the study lives in a storage (default ``sqlite:///SWEEP/
study.db``; any RDB URL, so several processes or machines run one study by starting the same
command). Each RUNNING trial sends a heartbeat; a trial whose worker died (SIGKILL, a lost
machine) goes stale after the grace period, is failed by the next worker that starts a trial
(``optuna.storages.fail_stale_trials``) and re-enqueued by
:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`. A trial stopped by Ctrl-C is failed and its
parameters enqueued again at once. Only COMPLETE trials count toward ``trials``, so a retried
trial is never counted twice.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError, Interrupted, NeuroKDError, TrainingError
from ..files.safe_io import make_folder, read_small_text, write_text
from ..runtime.progress import Reporter
from ..text import first_line

SAMPLERS = ("tpe", "random", "grid")
SWEEP_KEYS = ("trials", "sampler", "seed", "profile", "energy_model", "ann")
# Set by the sweep for each trial: naming them in the spec would break "one trial, one folder".
RESERVED = ("name", "out", "log_dir")
HEARTBEAT_S = 10  # a live worker's beat; a trial silent for GRACE x this is taken as dead
GRACE = 3
MAX_RETRY = 3     # a trial failing this often is left failed (a real error, not a lost worker)


@dataclass(frozen=True)
class Dimension:
    """One option of ``[space]``: ``choices`` (a list) or a ``low``..``high`` range (``log``:
    sampled on a log scale; ints when both ends are ints)."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, checked sweep spec (see the module doc). Checked when read, so an option that
    does not exist or a value distill refuses fails before any storage is touched."""

    text: str                      # the file as written: a study refuses a changed spec
    base: dict[str, Any]
    space: tuple[Dimension, ...]
    trials: int
    sampler: str = "tpe"
    seed: int = 0
    profile: str = "45nm-fp32"
    energy_model: str = "compute"
    ann: str = "twin"
    objectives: tuple[str, ...] = field(default=("accuracy", "energy_pj"))

    @property
    def grid(self) -> list[dict[str, Any]]:
        """Every combination of a choices-only space, in a stable order."""
        combos: list[dict[str, Any]] = [{}]
        for dim in self.space:
            if dim.choices is None:
                raise ConfigError(f"sampler grid needs choices (a list) for every option; "
                                  f"{dim.name} is a range")
            combos = [{**c, dim.name: v} for c in combos for v in dim.choices]
        return combos

    def config(self, params: dict[str, Any], out: Path, name: str) -> RunConfig:
        """The RunConfig of one trial."""
        return RunConfig.from_dict({**self.base, **params, "out": str(out), "name": name},
                                   source="sweep spec")


def read_spec(path: str | Path, trials: int | None = None) -> SweepSpec:
    """The sweep spec at ``path`` (ConfigError, one line, for anything wrong in it);
    ``trials`` overrides ``[sweep] trials``.

    >>> spec = read_spec("sweep.toml"); spec.objectives
    ('accuracy', 'energy_pj')
    """
    text = read_small_text(path, "sweep spec")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML in {path}: {exc}") from None
    unknown = set(values) - {"sweep", "base", "space"}
    if unknown:
        raise ConfigError(f"{path}: unknown table {sorted(unknown)[0]!r}; a sweep spec has "
                          "[sweep], [base] and [space]")
    head, base, raw_space = (values.get(k, {}) for k in ("sweep", "base", "space"))
    for key in head:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"{path}: [sweep] has no key {key!r}{_near(key, SWEEP_KEYS)}; "
                              f"it has {', '.join(SWEEP_KEYS)}")
    options = [f.name for f in fields(RunConfig) if not f.metadata.get("internal")]
    for table, keys in (("base", base), ("space", raw_space)):
        for key in keys:
            if key not in options:
                raise ConfigError(f"{path}: [{table}] names {key!r}, which is no distill "
                                  f"option{_near(key, options)}")
            if key in RESERVED:
                raise ConfigError(f"{path}: [{table}] {key}: the sweep sets it for each trial")
    both = set(base) & set(raw_space)
    if both:
        raise ConfigError(f"{path}: {sorted(both)[0]!r} is in [base] and [space]; give it once")
    space = tuple(_dimension(path, k, v) for k, v in raw_space.items())
    for key in ("profile", "energy_model", "ann"):  # rate targets priced as the sweep prices,
        if key not in raw_space and key in head:     # unless the spec says otherwise
            base.setdefault(key, head[key])
    sampler = head.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError(f"{path}: sampler must be one of {', '.join(SAMPLERS)}, not "
                          f"{sampler!r}")
    spec = SweepSpec(text, dict(base), space, 1, sampler, head.get("seed", 0),
                     head.get("profile", "45nm-fp32"), head.get("energy_model", "compute"),
                     head.get("ann", "twin"))
    _check_values(path, spec)
    count = trials if trials is not None else head.get(
        "trials", len(spec.grid) if sampler == "grid" else None)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"{path}: trials must be a whole number >= 1 (give [sweep] trials "
                          f"or --trials), not {count!r}")
    exits = spec.base.get("exit_rule") is not None or any(d.name == "exit_rule"
                                                           for d in space)
    return SweepSpec(text, spec.base, space, count, sampler, spec.seed, spec.profile,
                     spec.energy_model, spec.ann,
                     ("accuracy", "energy_pj", *(("exit_timesteps",) if exits else ())))


def _near(key: str, names) -> str:
    near = difflib.get_close_matches(key, list(names), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _dimension(path, name: str, value: Any) -> Dimension:
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{path}: [space] {name} = []: give at least one choice")
        return Dimension(name, choices=tuple(value))
    if isinstance(value, dict) and {"low", "high"} <= set(value) <= {"low", "high", "log"}:
        low, high, log = value["low"], value["high"], value.get("log", False)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                      for v in (low, high))
        if not numbers or low >= high or not isinstance(log, bool) or (log and low <= 0):
            raise ConfigError(f"{path}: [space] {name}: need finite numbers low < high "
                              "(and low > 0 with log = true)")
        return Dimension(name, low=low, high=high, log=log)
    raise ConfigError(f"{path}: [space] {name} must be a list of choices or "
                      "{low = .., high = .., log = true|false}")


def _check_values(path, spec: SweepSpec) -> None:
    """Every choice, and both ends of every range, through RunConfig's own checks."""
    for dim in spec.space:
        for value in dim.choices if dim.choices is not None else (dim.low, dim.high):
            try:
                spec.config({dim.name: value}, Path("."), "check")
            except ConfigError as exc:
                raise ConfigError(f"{path}: {dim.name} = {value!r}: {exc}") from None
    if not spec.space:
        spec.config({}, Path("."), "check")


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_S):
    """An Optuna RDB storage with heartbeats and retries of dead trials; ConfigError (one
    line) when it cannot be opened, before any study is made in it.

    >>> open_storage("sqlite:///sweeps/demo/study.db")
    """
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bar says it
    # heartbeats are "experimental" in Optuna 5 but are its way of finding dead workers
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # SQLite: wait for another worker's write rather than fail with "database is locked"
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(1, OPEN_TRIES + 1):
        try:
            storage = RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s,
                                 grace_period=GRACE * heartbeat_s,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                     max_retry=MAX_RETRY))
            if url.startswith("sqlite"):
                _serialise_sqlite(storage.engine)
            return storage
        except Exception as exc:  # noqa: BLE001 - sqlalchemy, drivers: any means "cannot"
            # Workers started together race to create the tables of a new database: the
            # loser's CREATE TABLE or its insert of the schema version fails (measured over
            # 90 three-worker starts: 13 IntegrityError on alembic_version, 4 "table …
            # already exists"), and the tables are there a moment later.
            if attempt < OPEN_TRIES and _creation_race(exc):
                time.sleep(0.2 * attempt)
                continue
            raise ConfigError(f"--storage {url}: cannot open it: "
                              f"{type(exc).__name__}: {first_line(exc)}") from None
    raise AssertionError("unreachable")


OPEN_TRIES = 6


def _serialise_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN
    IMMEDIATE``). Python's sqlite3 starts a transaction only at the first write, so Optuna's
    pop of an enqueued trial (read "WAITING", then write "RUNNING") is not atomic across
    processes: two workers popped the same trial and trained the same run (measured: 17
    duplicates in 5 rounds of two processes popping 40 enqueued trials; 0 with this). The
    pooled connections made while the tables were created are dropped, so every connection
    from here on is made with the two hooks (SQLAlchemy's documented pysqlite recipe)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below says when

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def _creation_race(exc: Exception) -> bool:
    text = str(exc)
    return (type(exc).__name__ == "IntegrityError" or "database is locked" in text
            or ("table" in text and "already exists" in text))


@dataclass
class SweepOutcome:
    """What a sweep invocation ends with: the study's COMPLETE trials (this worker's and the
    others') and the Pareto front among them."""

    study_name: str
    objectives: tuple[str, ...]
    trials: list[dict[str, Any]]
    pareto: list[dict[str, Any]]
    ran_here: int


DIRECTIONS = {"accuracy": "maximize", "energy_pj": "minimize", "exit_timesteps": "minimize"}


def run_sweep(spec: SweepSpec, folder: Path,
              run_trial: Callable[[RunConfig, bool], dict[str, Any]],
              storage_url: str | None = None, study_name: str = "sweep",
              reporter: Reporter | None = None, heartbeat_s: int = HEARTBEAT_S) -> SweepOutcome:
    """Run trials of ``spec`` until the study holds ``spec.trials`` COMPLETE ones.

    ``run_trial(config, resume) -> metrics`` trains one trial (``distill`` with an energy
    pricer: the metrics need ``student_accuracy`` and ``energy.snn_energy_pj``; ``resume``:
    continue the state a dead attempt left in the folder). Start it again (here or
    elsewhere, same storage) to add a worker or to resume.

    >>> outcome = run_sweep(read_spec("sweep.toml"), Path("sweeps/demo"), run_trial)
    >>> [t["params"] for t in outcome.pareto]
    """
    import optuna

    reporter = reporter or Reporter()
    if storage_url is None:
        make_folder(folder)
    kind = (optuna.samplers.RandomSampler if spec.sampler in ("random", "grid")
            else optuna.samplers.TPESampler)
    sampler = per_trial_seed(lambda number: kind(seed=spec.seed * 100_003 + number))
    study = open_study(storage_url or f"sqlite:///{folder / 'study.db'}", study_name,
                       [DIRECTIONS[o] for o in spec.objectives], sampler, heartbeat_s)
    _claim_spec(study, spec)
    if spec.sampler == "grid":  # every combination once; skip_if_exists: a second worker's
        for params in spec.grid:   # enqueue of the same point is a no-op
            study.enqueue_trial(params, skip_if_exists=True)
    make_folder(folder / "runs")

    def objective(trial) -> tuple[float, ...]:
        params = {dim.name: dim.suggest(trial) for dim in spec.space}
        # a retried trial inherits the folder of the attempt that died (its user attrs):
        # the run resumes from the state it saved there
        run_dir = Path(trial.user_attrs.get("run_dir")
                       or folder / "runs" / f"trial-{trial.number:04d}")
        trial.set_user_attr("run_dir", str(run_dir))
        resume = (run_dir / "config.toml").is_file() and any(
            (run_dir / f).is_file() for f in ("last.pt", "last-teacher.pt", "teacher.pt"))
        metrics = run_trial(spec.config(params, run_dir.parent, run_dir.name), resume)
        return objective_values(metrics, spec.objectives)

    def said(trial, values) -> str:
        return f"trial {trial.number}: " + ", ".join(
            f"{o} {v:.4g}" for o, v in zip(spec.objectives, values, strict=True))

    ran = work_through(study, spec.trials, objective, heartbeat_s, reporter,
                       f"sweep {study_name}", said)
    return outcome(study, spec.objectives, ran)


def per_trial_seed(make: Callable[[int], Any]):
    """A sampler that is ``make(n)`` for trial ``n``.

    One seeded sampler per worker would draw the same sequence in every worker (and again
    in a resumed one): two workers started together would train the same points. Seeding by
    the trial's number, unique in the study, gives each trial its own draw, the same one
    whichever worker runs it. TPE and random sampling keep no state but their RNG (the
    history they learn from is the study's), so a fresh sampler per trial loses nothing.
    """
    import optuna

    class PerTrialSeed(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = make(0)

        def before_trial(self, study, trial) -> None:
            self.inner = make(trial.number)
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self.inner.after_trial(study, trial, state, values)

    return PerTrialSeed()


def open_study(url: str, name: str, directions: list[str], sampler=None,
               heartbeat_s: int = HEARTBEAT_S):
    """The study ``name`` in the storage at ``url``, made if it is not there yet (by whichever
    worker comes first); ConfigError, one line, when the storage cannot be opened.

    >>> study = open_study("sqlite:///bench/study.db", "digits", ["maximize"])
    """
    import optuna

    storage = open_storage(url, heartbeat_s)
    try:
        return optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                   directions=directions, load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 - a storage that opened but cannot hold a study
        raise ConfigError(f"--storage {url}: cannot create the study: {first_line(exc)}") \
            from None


def work_through(study, trials: int, objective: Callable, heartbeat_s: int = HEARTBEAT_S,
                 reporter: Reporter | None = None, label: str = "study",
                 said: Callable | None = None) -> int:
    """Run ``objective(trial) -> values`` for trials of ``study`` until it holds ``trials``
    COMPLETE ones (counting the other workers'); the number run here.

    Waits while the other workers run the last trials, and takes over a dead one's trial
    once its heartbeat has stopped. A trial stopped by Ctrl-C (``Interrupted``) is failed and
    its parameters enqueued again, then the interruption goes on up.
    """
    import optuna
    from optuna.trial import TrialState

    reporter = reporter or Reporter()

    def complete() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    task = reporter.start(label, trials)
    reporter.advance(task, min(complete(), trials))
    ran = [0]

    def guarded(trial) -> tuple[float, ...]:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if complete() + len(running) - 1 >= trials:  # another worker asked at once
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned("the study has its trials")
        try:
            values = objective(trial)
        except (Interrupted, KeyboardInterrupt):
            # stopped on purpose: the same point is trained again on resume
            study.enqueue_trial(trial.params, user_attrs={**trial.user_attrs,
                                                          "retry_of": trial.number})
            raise
        ran[0] += 1
        reporter.advance(task, status=said(trial, values) if said else None)
        return values

    while complete() < trials:
        optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, re-enqueued
        states = [t.state for t in study.get_trials(deepcopy=False)]
        running, waiting = states.count(TrialState.RUNNING), states.count(TrialState.WAITING)
        if not waiting and complete() + running >= trials:
            # the others are running the last trials: wait for them to finish, or for their
            # heartbeats to stop (then their trials come back as WAITING)
            time.sleep(heartbeat_s)
            continue
        # a run that diverged or a combination distill refuses fails that trial only; a
        # Ctrl-C (Interrupted) ends the sweep
        study.optimize(guarded, n_trials=1, catch=(TrainingError, ConfigError),
                       gc_after_trial=False)
    reporter.finish(task, f"{complete()} trials complete, {ran[0]} run by this worker")
    return ran[0]


def objective_values(metrics: dict[str, Any], objectives: tuple[str, ...]) -> tuple[float, ...]:
    """The objectives' values of one run's metrics.json."""
    energy = metrics.get("energy") or {}
    exit_record = metrics.get("exit") or {}
    found = {"accuracy": metrics.get("student_accuracy"),
             "energy_pj": energy.get("snn_energy_pj"),
             "exit_timesteps": exit_record.get("mean_timesteps")}
    missing = [o for o in objectives if found[o] is None]
    if missing:
        raise NeuroKDError(f"the trial's metrics lack {', '.join(missing)}")
    return tuple(float(found[o]) for o in objectives)


def _claim_spec(study, spec: SweepSpec) -> None:
    """A study runs one spec: a second worker (or a resume) with another is refused."""
    saved = study.user_attrs.get("spec")
    if saved is None:
        study.set_user_attr("spec", spec.text)
        study.set_user_attr("objectives", list(spec.objectives))
    elif saved != spec.text:
        raise ConfigError(f"study {study.study_name!r} was started with another sweep spec; "
                          "use the same file, another --study name or another folder")


def outcome(study, objectives: tuple[str, ...], ran_here: int = 0) -> SweepOutcome:
    """The COMPLETE trials of ``study`` and its Pareto front, as plain rows."""
    from optuna.trial import TrialState

    def row(t) -> dict[str, Any]:
        return {"number": t.number, "params": dict(t.params),
                **dict(zip(objectives, t.values, strict=True)),
                "run_dir": t.user_attrs.get("run_dir")}

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    front = study.best_trials if done else []
    return SweepOutcome(study.study_name, objectives, [row(t) for t in done],
                        sorted((row(t) for t in front), key=lambda r: -r["accuracy"]),
                        ran_here)


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


HEADINGS = {"accuracy": "test accuracy", "energy_pj": "energy per inference (pJ)",
            "exit_timesteps": "mean exit timesteps"}


def pareto_markdown(result: SweepOutcome) -> str:
    """The Pareto front as a Markdown table, most accurate first."""
    heads = ["trial", "settings", *(HEADINGS[o] for o in result.objectives), "run folder"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in result.pareto:
        cells = [str(r["number"]), _label(r["params"]) or "—", f"{100 * r['accuracy']:.2f}%",
                 f"{r['energy_pj']:.4g}"]
        if "exit_timesteps" in result.objectives:
            cells.append(f"{r['exit_timesteps']:.3f}")
        cells.append(f"`{r['run_dir']}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pareto_csv(result: SweepOutcome, rows: list[dict[str, Any]] | None = None) -> str:
    """``rows`` (default: the Pareto front) as CSV: one column per parameter and objective."""
    rows = result.pareto if rows is None else rows
    params = list(dict.fromkeys(k for r in rows for k in r["params"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", *params, *result.objectives, "run_dir"])
    for r in rows:
        writer.writerow([r["number"], *(r["params"].get(k, "") for k in params),
                         *(r[o] for o in result.objectives), r["run_dir"]])
    return out.getvalue()


def write_tables(result: SweepOutcome, folder: Path) -> list[Path]:
    """pareto.md, pareto.csv and trials.csv (every COMPLETE trial) in ``folder``."""
    return [write_text(folder / "pareto.md", pareto_markdown(result)),
            write_text(folder / "pareto.csv", pareto_csv(result)),
            write_text(folder / "trials.csv", pareto_csv(result, result.trials))]
