"""Every option of every config group composes with the defaults and instantiates."""

import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from {{ cookiecutter.package_name }}.harness import contract
from {{ cookiecutter.package_name }}.harness.components import build_callbacks, build_loggers

from conftest import group_options, misfit

GROUPS = [
    "model",
    "model/optimizer",
    "model/scheduler",
    "data",
    "trainer",
    "callbacks",
    "logger",
    "debug",
    "experiment",
]
CASES = [(group, option) for group in GROUPS for option in group_options(group)]


def with_partner(make_cfg, group: str, option: str):
    """The config with ``group=option``; for a model (or data) the default data (or model) doesn't fit, the first
    option that does (conftest.misfit), or None."""
    cfg = make_cfg(f"{group}={option}")
    partner = {"model": "data", "data": "model"}.get(group)
    if partner is None or misfit(cfg) is None:
        return cfg
    for other in group_options(partner):
        cfg = make_cfg(f"{group}={option}", f"{partner}={other}")
        if misfit(cfg) is None:
            return cfg
    return None


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_instantiates(make_cfg, group, option):
    cfg = with_partner(make_cfg, group, option)
    if cfg is None and group == "model":
        pytest.fail(f"model={option} trains on no data option: add the data it needs, or an experiment (see misfit)")
    if cfg is None:
        # Data that no model here takes (yet): it instantiates, at least.
        assert isinstance(instantiate(make_cfg(f"data={option}").data), pl.LightningDataModule)
        return
    if not torch.cuda.is_available():
        cfg.trainer.accelerator = "cpu"
    _, model = contract.build(cfg)
    loggers = build_loggers(cfg.logger)
    has_scheduler = cfg.model.get("scheduler") is not None
    callbacks = build_callbacks(cfg.callbacks, has_logger=bool(loggers), has_scheduler=has_scheduler)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    model.trainer = trainer
    optimizers = model.configure_optimizers()
    assert optimizers is not None


@pytest.mark.parametrize("option", group_options("cluster"))
def test_cluster_option_composes(make_cfg, option):
    assert make_cfg(f"cluster={option}")


PRESETS = [f"trainer={option}" for option in group_options("trainer")] + [
    f"cluster={option}" for option in group_options("cluster")
]


@pytest.mark.parametrize("preset", PRESETS)
def test_no_preset_mixes_gpu_precision_into_a_cpu_run(make_cfg, preset):
    cfg = make_cfg(preset, "trainer.accelerator=cpu")
    assert str(cfg.trainer.precision) in ("32-true", "32", "64-true", "64"), cfg.trainer.precision


def test_gpu_presets_keep_their_gpu_precision_on_a_gpu(make_cfg):
    hpc = ["cluster=hpc_a100"] if "hpc_a100" in group_options("cluster") else []
    for preset in ("trainer=gpu", "trainer=ddp", "trainer=multinode", *hpc):
        assert make_cfg(preset, "trainer.accelerator=gpu").trainer.precision == "bf16-mixed", preset


def test_optimizer_and_lr_are_where_the_docs_say(make_cfg):
    cfg = make_cfg("model.optimizer.lr=0.123", "data.batch_size=7", "trainer.max_epochs=3", "seed=5")
    assert (cfg.model.optimizer.lr, cfg.data.batch_size, cfg.trainer.max_epochs, cfg.seed) == (0.123, 7, 3, 5)


@pytest.mark.parametrize("override", ["trainer.max_epoch=3", "data.batchsize=3", "model=resnet9000"])
def test_bad_override_is_refused(make_cfg, override):
    with pytest.raises(ConfigCompositionException):
        make_cfg(override)


def test_scheduler_dict_form(make_cfg):
    cfg = make_cfg("model/scheduler=plateau")
    _, model = contract.build(cfg)
    configured = model.configure_optimizers()
    assert configured["lr_scheduler"]["monitor"] == cfg.monitor.metric
    assert configured["lr_scheduler"]["interval"] == "epoch"
    assert isinstance(configured["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)


@pytest.mark.parametrize("option", group_options("model/optimizer"))
def test_optimizer_is_fused_unless_the_config_chooses(make_cfg, option):
    def optimizer_of(*overrides):
        cfg = make_cfg(f"model/optimizer={option}", *overrides)
        _, model = contract.build(cfg)
        configured = model.configure_optimizers()
        return configured["optimizer"] if isinstance(configured, dict) else configured

    assert optimizer_of().defaults["fused"] is True
    assert not optimizer_of("+model.optimizer.fused=false").defaults["fused"]
    chosen = optimizer_of("+model.optimizer.foreach=true").defaults
    assert chosen["foreach"] is True and not chosen["fused"]


@pytest.mark.parametrize("compiled", [False, True])
def test_compiled_model_trains_on_one_batch_shape(make_cfg, compiled):
    cfg = make_cfg(f"model.compile={compiled}", "data.batch_size=100")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    train_sizes = [len(labels) for _, labels in datamodule.train_dataloader()]
    n_train = len(datamodule.datasets["train"])
    assert n_train % 100  # the digits' training split leaves a last, smaller batch
    assert set(train_sizes) == ({100} if compiled else {100, n_train % 100})
    # Validation still sees every example.
    assert sum(len(labels) for _, labels in datamodule.val_dataloader()) == len(datamodule.datasets["val"])


@pytest.mark.parametrize("name", ["model_checkpoint", "early_stopping"])
def test_monitors_keep_lightnings_state_keys(make_cfg, name):
    # Checkpoints store callback states under these keys: ours must match Lightning's to load either way.
    from omegaconf import OmegaConf
    from pytorch_lightning import callbacks

    cfg = make_cfg(f"callbacks.{name}.monitor=val/acc", f"callbacks.{name}.mode=max")
    settings = OmegaConf.to_container(cfg.callbacks[name], resolve=True)
    ours = instantiate(settings)
    lightnings = getattr(callbacks, type(ours).__name__)(**{k: v for k, v in settings.items() if k != "_target_"})
    assert type(ours) is not type(lightnings) and isinstance(ours, type(lightnings))
    assert ours.state_key == lightnings.state_key and "val/acc" in ours.state_key
    assert ours.state_key is ours.state_key
