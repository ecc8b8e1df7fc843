"""The SLURM launcher of ``cluster=slurm``: hydra-submitit-launcher's, for this project's configs.

Hydra only instantiates launchers from the ``hydra_plugins`` namespace, hence this package. It
is imported by Hydra's plugin scan on every start, so submitit is imported only when a job is
submitted.
"""

import logging
from typing import NoReturn

from hydra.core.utils import JobReturn, JobStatus

from {{ cookiecutter.package_name }}.harness.resolvers import register_resolvers

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

log = logging.getLogger(__name__)


class SlurmLauncher(SubmititSlurmLauncher):
    """On the node, submitit unpickles the launcher in a fresh Python process that never imports
    train.py, and Hydra composes the job's config again there: the resolvers must exist first."""

    def __call__(self, *args, **kwargs):
        register_resolvers()
        result = super().__call__(*args, **kwargs)
        if result.status == JobStatus.FAILED:
            _end_failed_job(result)
        return result


def _end_failed_job(result: JobReturn) -> NoReturn:
    """Hand the sweep a result it goes on from, as a local sweep does (sweeps.continue_sweep), then
    end this process non-zero so that SLURM marks the job (the array task) FAILED.

    Raised as an exception, the failure would reach submitit, which would hand the sweep an error
    that ends it before the other jobs report; returned, SLURM would call the job COMPLETED.
    """
    from submitit import JobEnvironment
    from submitit.core.utils import cloudpickle_dump, temporary_save_path

    log.error("This job failed; the sweep goes on with the others.", exc_info=result._return_value)
    result.status, result.return_value = JobStatus.COMPLETED, None
    with temporary_save_path(JobEnvironment().paths.result_pickle) as path:
        cloudpickle_dump(("success", result), path)
    raise SystemExit(1)
