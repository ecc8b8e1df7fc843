"""``trainer=fsdp``: Lightning's ``ModelParallelStrategy`` (FSDP2, ``fully_shard``), sharding over every process.

Lightning's FSDPStrategy (FSDP1) refuses CPUs, and torch's FSDP1 needs an accelerator ("FSDP needs
a non-CPU accelerator device"); FSDP2 runs on CPU processes over gloo as well as on GPUs over NCCL.
``ModelParallelStrategy`` leaves the sharding to the LightningModule's ``configure_model`` (see
``GPT.configure_model``), which it calls with a device mesh. Its ``"auto"`` sizes make each node
a tensor-parallel group; for plain FSDP all processes form the data-parallel group instead.
"""

from pytorch_lightning.strategies import ModelParallelStrategy


class FullyShardedStrategy(ModelParallelStrategy):
    def __init__(self, data_parallel_size="auto", tensor_parallel_size=1, **kwargs):
        super().__init__(data_parallel_size=data_parallel_size, tensor_parallel_size=tensor_parallel_size, **kwargs)

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto" and isinstance(self._tensor_parallel_size, int):
            self._data_parallel_size = self.num_nodes * self.num_processes // self._tensor_parallel_size
        super().setup_environment()
