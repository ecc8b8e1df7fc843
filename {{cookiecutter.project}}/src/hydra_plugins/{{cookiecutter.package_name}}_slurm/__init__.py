"""The SLURM launcher of ``cluster=slurm``: hydra-submitit-launcher's, for this project's configs.

Hydra only instantiates launchers from the ``hydra_plugins`` namespace, hence this package. It
is imported by Hydra's plugin scan on every start, so submitit is imported only when a job is
submitted.
"""

from {{ cookiecutter.package_name }}.harness.resolvers import register_resolvers

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


class SlurmLauncher(SubmititSlurmLauncher):
    """On the node, submitit unpickles the launcher in a fresh Python process that never imports
    train.py, and Hydra composes the job's config again there: the resolvers must exist first."""

    def __call__(self, *args, **kwargs):
        register_resolvers()
        return super().__call__(*args, **kwargs)
