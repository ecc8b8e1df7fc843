"""A small GPT: a decoder-only transformer language model, with exact validation loss and perplexity.

Pre-norm blocks of causal self-attention (``F.scaled_dot_product_attention``, which picks a fused
kernel where there is one) and an MLP, learned positions, a final LayerNorm and a linear head.
``vocab_size`` and ``block_size`` come from the data (its ``model_kwargs``). Validation logs
``val/loss``, the mean cross-entropy over every predicted token (in nats), and ``val/ppl``, its
exponential; at the end of each validation it continues ``sample_prompt`` and logs the text.
``activation_checkpointing`` recomputes each block's activations in backward instead of storing
them; ``configure_model`` shards the blocks under ``trainer=fsdp``.
"""

import logging
from collections.abc import Mapping

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchmetrics import MeanMetric

from .optimization import configure_optimizers

log = logging.getLogger(__name__)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be a multiple of n_head={n_head}.")
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (part.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for part in self.qkv(x).split(c, 2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(pl.LightningModule):
    """``optimizer`` and ``scheduler`` are Hydra configs that arrive as plain dicts (as for ``Classifier``)."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        optimizer: Mapping,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        scheduler: Mapping | None = None,
        activation_checkpointing: bool = False,
        sample_prompt: str = "The ",
        sample_tokens: int = 80,
        temperature: float = 0.8,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        self.position_embedding = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        # Token-weighted: every predicted token counts once, whatever the batch and the number of processes.
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")

    @property
    def lr(self) -> float:
        """The optimizer's learning rate; Lightning's LR finder reads and sets it."""
        return self.hparams.optimizer["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hparams.optimizer["lr"] = float(value)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, vocab_size)`` for tokens ``(B, T)``, ``T <= block_size``."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.drop(self.token_embedding(tokens) + self.position_embedding(positions))
        for block in self.blocks:
            if self.hparams.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.head(self.ln_f(x))

    def configure_model(self) -> None:
        """Under ``trainer=fsdp`` (harness/sharding.py): each block one FSDP2 unit, the rest of the model another.

        A block's parameters are gathered just before it runs and freed after, so a process holds
        whole only the block at work. Other strategies give no device mesh: nothing to do.
        """
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if self.device_mesh is None or isinstance(self, FSDPModule):
            return  # not sharded training, or sharded already (Lightning calls this hook at every fit and test)
        mesh = self.device_mesh["data_parallel"]
        for block in self.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(self, mesh=mesh)

    def token_losses(self, batch) -> torch.Tensor:
        inputs, targets = batch
        logits = self(inputs)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")

    def count_tokens(self, batch) -> int:
        """Predicted tokens in a training batch, for throughput/tokens_per_s (harness/callbacks/throughput.py)."""
        return batch[1].numel()

    def training_step(self, batch, batch_idx):
        loss = self.token_losses(batch).mean()
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch, stage: str, metric: MeanMetric) -> None:
        metric.update(self.token_losses(batch))
        self.log(f"{stage}/loss", metric, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_loss)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_loss)

    def on_validation_epoch_end(self) -> None:
        # compute() has summed over all processes already: each logs the same value (sync_dist averages equals).
        self.log("val/ppl", torch.exp(self.val_loss.compute()), prog_bar=True, sync_dist=True)
        if self.trainer.sanity_checking:
            return
        # Every process generates (a sharded model needs all of them for a forward pass); rank 0 reports.
        text = self.generate(self.hparams.sample_prompt, self.hparams.sample_tokens)
        if self.trainer.is_global_zero:
            log.info("Sample at step %d: %r", self.global_step, text)
            for logger in self.loggers:
                if hasattr(logger.experiment, "add_text"):  # TensorBoard
                    logger.experiment.add_text("val/sample", text, self.global_step)

    def on_test_epoch_end(self) -> None:
        self.log("test/ppl", torch.exp(self.test_loss.compute()), sync_dist=True)

    def predict_step(self, batch, batch_idx):
        """Each prompt's continuation of ``sample_tokens`` bytes."""
        from ..data.text import decode

        return {"continuation": [decode(self.continue_tokens(prompt, self.hparams.sample_tokens)) for prompt in batch]}

    def generate(self, prompt: str, tokens: int) -> str:
        from ..data.text import decode, encode

        return prompt + decode(self.continue_tokens(encode(prompt), tokens))

    @torch.no_grad()
    def continue_tokens(self, prompt: torch.Tensor, tokens: int) -> list[int]:
        """``tokens`` more tokens after ``prompt``, sampled at ``temperature`` with a generator of their own.

        Seeded afresh each time, so the global generators (and a resumed run's) are left as they were,
        and every process draws the same text.
        """
        generator = torch.Generator(device=self.device).manual_seed(0)
        sequence = prompt.to(self.device).view(1, -1)
        was_training = self.training
        self.eval()
        for _ in range(tokens):
            logits = self(sequence[:, -self.hparams.block_size :])[:, -1] / max(self.hparams.temperature, 1e-6)
            following = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            sequence = torch.cat([sequence, following], dim=1)
        self.train(was_training)
        return sequence[0, prompt.numel() :].tolist()

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.hparams.optimizer, self.hparams.scheduler, self.device)
