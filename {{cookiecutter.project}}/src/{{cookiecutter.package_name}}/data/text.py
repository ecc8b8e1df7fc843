"""Byte-level language modelling on text that ships with Python: its documentation topics, offline.

``pydoc_data.topics`` holds the text of the language reference behind ``help("if")`` and friends
(~470 kB). The bytes of the corpus (all topics, by name) are cut into consecutive blocks of
``block_size + 1``: a block's first ``block_size`` bytes are the input and its last
``block_size`` the targets, one position ahead. The last ``val_fraction`` and ``test_fraction``
of the corpus are validation and test text, every byte of them predicted once; training blocks
come from the text before, so no evaluated text is ever trained on. Batches go through the
harness's in-memory path (``harness/in_memory.py``): tensors picked by index, shuffled by seed and
epoch, so a resumed run continues its epoch exactly.

``predict_path`` names a UTF-8 text file of prompts, one a line; ``evaluate.py <run> predict=<file>``
then writes the model's continuation of each (see ``GPT.predict_step``).
"""

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ..harness.in_memory import TensorBatchDataset, keep_batch
from ..harness.sampling import EpochShuffle, TensorBatchSampler, loader_generator

VOCAB_SIZE = 256  # bytes: any text, no tokenizer to fit or ship


def python_docs() -> str:
    """The text of Python's documentation topics (the standard library's ``pydoc_data``), in a fixed order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[name] for name in sorted(topics))


def encode(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()


def decode(tokens) -> str:
    return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")


def blocks(tokens: torch.Tensor, block_size: int) -> TensorBatchDataset:
    """Consecutive, non-overlapping ``(input, target)`` pairs of ``block_size`` tokens; the target one ahead."""
    count = (len(tokens) - 1) // block_size
    starts = torch.arange(count) * block_size
    windows = starts[:, None] + torch.arange(block_size + 1)
    chunks = tokens[windows]
    return TensorBatchDataset(chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous())


class Prompts(Dataset):
    def __init__(self, lines: list[str]):
        self.names = lines  # the prompt labels its row of the predictions file
        self.tokens = [encode(line) for line in lines]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.tokens[index]


class PythonDocsDataModule(pl.LightningDataModule):
    def __init__(
        self,
        block_size: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        max_bytes: int | None = None,
        drop_last: bool = False,
        predict_path: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1):
            raise ValueError(
                f"val_fraction={val_fraction}, test_fraction={test_fraction}: both must be above 0 and sum to "
                "less than 1 (the rest is training text)."
            )
        self.datasets: dict[str, Dataset] = {}

    @property
    def model_kwargs(self) -> dict:
        """What the data tells the model (see harness/contract.py)."""
        return {"vocab_size": VOCAB_SIZE, "block_size": self.hparams.block_size}

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self.datasets["predict"] = Prompts(self.read_prompts())
            return
        if "train" in self.datasets:
            return
        tokens = encode(python_docs())[: self.hparams.max_bytes]
        n_val, n_test = (round(len(tokens) * f) for f in (self.hparams.val_fraction, self.hparams.test_fraction))
        train_end, val_end = len(tokens) - n_val - n_test, len(tokens) - n_test
        block = self.hparams.block_size
        self.datasets = {
            "train": blocks(tokens[:train_end], block),
            # Each evaluated split starts one byte early: its first byte is a target too.
            "val": blocks(tokens[train_end - 1 : val_end], block),
            "test": blocks(tokens[val_end - 1 :], block),
        }
        if len(self.datasets["val"]) == 0 or len(self.datasets["test"]) == 0:
            raise ValueError(
                f"block_size={block}: the validation or test text ({n_val} and {n_test} bytes) holds no whole "
                "block. Use a smaller block_size or larger val_fraction/test_fraction (or max_bytes)."
            )

    def read_prompts(self) -> list[str]:
        path = self.hparams.predict_path
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(
                f"predict_path={path}: {type(self).__name__} continues the prompts of a UTF-8 text file, one a line."
            )
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
        if not lines:
            raise ValueError(f"predict_path={path} holds no prompt: write one per line.")
        return lines

    def _loader(self, split: str, **batching) -> DataLoader:
        return DataLoader(self.datasets[split], generator=loader_generator(), collate_fn=keep_batch, **batching)

    def train_dataloader(self) -> DataLoader:
        # The same order in a resumed run as in an uninterrupted one (harness/sampling.py).
        sampler = EpochShuffle(self.datasets["train"])
        batches = TensorBatchSampler(sampler, batch_size=self.hparams.batch_size, drop_last=self.hparams.drop_last)
        return self._loader("train", batch_sampler=batches)

    def _evaluation_loader(self, split: str) -> DataLoader:
        return self._loader(split, batch_size=self.hparams.eval_batch_size or self.hparams.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        # Prompts differ in length: one at a time, as a batch of one.
        return DataLoader(self.datasets["predict"], batch_size=1, collate_fn=lambda items: items)
