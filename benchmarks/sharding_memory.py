"""Per-process memory of the baked ``model=gpt`` under DDP and under FSDP (``trainer=fsdp``), on 2 CPU processes.

Bakes a project, then starts two gloo processes that each build the GPT, wrap it as the strategy
would (``DistributedDataParallel``, or ``GPT.configure_model``'s FSDP2 ``fully_shard`` per block),
take one AdamW step on a batch of the python_docs data and count what each process then holds:
the bytes of its parameters, gradients and optimizer state (the local shard of a sharded tensor),
and the bytes of the activations one training forward keeps for backward (``saved_tensors_hooks``),
without and with ``activation_checkpointing``. These are the tensors' own sizes: allocator
overhead, communication buffers and the gathered parameters of the block at work come on top.

    python benchmarks/sharding_memory.py [--n-layer 6 --n-embd 384 --block-size 256 --batch-size 16]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import bake, package_name  # noqa: E402

MIB = 2**20


def local_bytes(tensor) -> int:
    tensor = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return tensor.numel() * tensor.element_size()


def saved_activation_bytes(model, inputs, targets) -> int:
    """Bytes of the tensors one forward saves for backward (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    parameters = {p.data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
    loss.backward()
    return sum(size for pointer, size in seen.items() if pointer not in parameters)


def measure(rank: int, world: int, port: int, package: str, args, results) -> None:
    import importlib

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    GPT = importlib.import_module(f"{package}.models").GPT
    data = importlib.import_module(f"{package}.data").PythonDocsDataModule(block_size=args.block_size)
    data.setup("fit")
    inputs, targets = (t[rank * args.batch_size : (rank + 1) * args.batch_size] for t in data.datasets["train"].tensors)
    row = {}
    for strategy in ("ddp", "fsdp"):
        for checkpointing in (False, True):
            torch.manual_seed(0)
            model = GPT(
                vocab_size=256,
                block_size=args.block_size,
                optimizer={},
                n_layer=args.n_layer,
                n_head=args.n_head,
                n_embd=args.n_embd,
                activation_checkpointing=checkpointing,
            )
            if strategy == "fsdp":
                from torch.distributed.device_mesh import init_device_mesh

                model._device_mesh = init_device_mesh("cpu", (world, 1), mesh_dim_names=("data_parallel", "tp"))
                model.configure_model()
                wrapped = model
            else:
                wrapped = torch.nn.parallel.DistributedDataParallel(model)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            activations = saved_activation_bytes(wrapped, inputs, targets)
            optimizer.step()
            params = sum(local_bytes(p) for p in model.parameters())
            grads = sum(local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
            state = sum(local_bytes(v) for s in optimizer.state.values() for v in s.values() if v.dim() > 0)
            row[(strategy, checkpointing)] = (params, grads, state, activations)
    results[rank] = row
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--n-head", type=int, default=6)
    parser.add_argument("--n-embd", type=int, default=384)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        project = bake(Path(folder))
        package = package_name(project)
        results = mp.Manager().dict()
        port = 29500 + os.getpid() % 1000
        mp.spawn(measure, args=(2, port, package, args, results), nprocs=2)
    shape = f"{args.n_layer} layers x {args.n_embd}, context {args.block_size}, batch {args.batch_size} per process"
    print(f"GPT ({shape}), fp32, AdamW, 2 CPU processes (gloo); MiB per process (rank 0):\n")
    columns = ("parameters", "gradients", "optimizer state", "saved activations", "total")
    print(f"| strategy | activation checkpointing | {' | '.join(columns)} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (strategy, checkpointing), sizes in results[0].items():
        cells = " | ".join(f"{size / MIB:.1f}" for size in (*sizes, sum(sizes)))
        print(f"| {strategy} | {'yes' if checkpointing else 'no'} | {cells} |")


if __name__ == "__main__":
    main()
