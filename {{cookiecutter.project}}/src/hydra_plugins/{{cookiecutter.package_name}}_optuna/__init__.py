"""A Hydra sweeper that runs an Optuna study whose storage lets an interrupted search resume.

Why not hydra-optuna-sweeper: see "Hyperparameter search" in the README. Hydra only
instantiates sweepers from the ``hydra_plugins`` namespace, hence this package. It is
imported by Hydra's plugin scan on every start, so Optuna is imported only when a search runs.

The search space is a list of sweep overrides in Hydra's syntax (``params``, from the config's
``search_space``), followed by those of the command line: ``choice(a, b)`` and
``range(start, stop, step)`` are categorical, ``interval(low, high)`` is uniform and
``tag(log, interval(low, high))`` log-uniform (integers if both ends are).
Trial *n* runs in sweep subfolder *n*; a search re-run with the same storage and study
name continues from the trials that finished and re-runs those that were cut off. A study
records the metric it optimizes and refuses to continue with another metric or direction.
"""

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger(__name__)

DIRECTIONS = {"min": "minimize", "max": "maximize"}
_ABSENT = object()


def search_space(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Optuna distributions for the sweep overrides; the other overrides are passed to every trial as they are.

    A later override of a key replaces an earlier one, so the command line can fix or re-define a searched parameter.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(overrides):
        name, sweep = override.get_key_element(), override.value()
        space.pop(name, None)
        fixed.pop(name, None)
        if not override.is_sweep_override():
            fixed[name] = override.input_line
        elif isinstance(sweep, IntervalSweep):
            whole = isinstance(sweep.start, int) and isinstance(sweep.end, int)
            kind = IntDistribution if whole else FloatDistribution
            space[name] = kind(sweep.start, sweep.end, log="log" in sweep.tags)
        else:
            space[name] = CategoricalDistribution(list(override.sweep_string_iterator()))
    return space, list(fixed.values())


def check_searchable(space: dict[str, Any], config: DictConfig) -> None:
    """Refuse a search with nothing to search, or one whose parameters this config does not have."""
    if not space:
        raise SystemExit(
            "hparams_search: nothing to search. Give sweep overrides in search_space (an experiment config) or on "
            "the command line, e.g. 'model.optimizer.lr=tag(log, interval(1e-4, 1e-1))'."
        )
    choices = config.hydra.runtime.choices
    for key in space:
        if "/" not in key and not key.startswith("+") and OmegaConf.select(config, key, default=_ABSENT) is _ABSENT:
            raise SystemExit(
                f"hparams_search: {key} is not in this config (model={choices.get('model')}, "
                f"data={choices.get('data')}). Search this model's own parameters: search_space=[...] in its "
                "experiment config, or 'search_space=[]' and sweep overrides on the command line."
            )


def check_same_objective(study, metric: str, direction: str) -> None:
    """A study goes on only with the metric and direction it started with."""
    started = study.user_attrs.get("metric")
    current = study.direction.name.lower()
    if started is None:
        study.set_user_attr("metric", metric)
        started = metric
    if (started, current) != (metric, direction):
        raise SystemExit(
            f"hparams_search: study {study.study_name!r} ranks trials by {started} ({current}), this search by "
            f"{metric} ({direction}). Use monitor.metric={started} with its mode, or start another study: "
            "hydra.sweeper.study_name=<new name>."
        )


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        storage: str | None,
        study_name: str,
        direction: str,
        n_trials: int,
        n_jobs: int,
        sampler: DictConfig,
        params: ListConfig | None = None,
    ):
        self.storage, self.study_name, self.n_trials, self.n_jobs = storage, study_name, n_trials, n_jobs
        self.direction = DIRECTIONS.get(direction, direction)
        self.sampler = sampler
        self.params = list(params or [])

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from hydra.core.utils import JobStatus
        from hydra.utils import instantiate
        from optuna.trial import TrialState

        space, fixed = search_space([*self.params, *arguments])
        check_searchable(space, self.config)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            storage=self.storage, study_name=self.study_name, direction=self.direction, load_if_exists=True
        )
        check_same_objective(study, self.config.monitor.metric, self.direction)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # One search drives a study at a time, so a running trial was left by one that was killed:
            # run its parameters again, under a new number.
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        trials = study.get_trials(deepcopy=False)
        retried = {trial.user_attrs["retry_of"] for trial in trials if "retry_of" in trial.user_attrs}
        done = sum(trial.state.is_finished() and trial.number not in retried for trial in trials)
        # A resumed seeded sampler would otherwise propose the first trials' parameters again.
        seed = {"seed": self.sampler.seed + len(trials)} if self.sampler.get("seed") is not None else {}
        study.sampler = instantiate(self.sampler, **seed)
        log.info(
            "Study %r in %s (%s): %d of %d trials done",
            self.study_name,
            self.storage,
            self.direction,
            done,
            self.n_trials,
        )

        while done < self.n_trials:
            batch = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            overrides = [[*fixed, *(f"{name}={trial.params[name]}" for name in space)] for trial in batch]
            returns = self.launcher.launch(overrides, initial_job_idx=batch[0].number)
            for trial, job in zip(batch, returns, strict=True):
                value = job.return_value if job.status == JobStatus.COMPLETED else None
                if value is None or math.isnan(value):  # train() returns None for a failed run
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, float(value))
            done += len(batch)
