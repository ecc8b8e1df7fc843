"""Remove what the answers exclude; never prompts and never touches the network."""

import json
import shutil
from pathlib import Path

ANSWERS = json.loads({{cookiecutter | jsonify | quoted}})

# Everything that submits to SLURM; hydra-submitit-launcher is a dependency only with these.
SLURM = [
    "configs/cluster/slurm.yaml",
    "configs/cluster/hpc_a100.yaml",
    "scripts/slurm_job.sh",
    f"src/hydra_plugins/{ANSWERS['package_name']}_slurm",
    "tests/test_slurm.py",
]
# Files that exist only for some answers, keyed by (question, answer that drops them).
OPTIONAL = {
    ("use_wandb", "no"): ["configs/logger/wandb.yaml", "tests/test_wandb.py"],
    ("license", "none"): ["LICENSE"],
    ("cluster_presets", "none"): [*SLURM, "configs/cluster/workstation.yaml"],
    ("cluster_presets", "slurm"): ["configs/cluster/workstation.yaml"],
    ("cluster_presets", "workstation"): SLURM,
}


def main() -> None:
    root = Path.cwd()
    for (question, answer), paths in OPTIONAL.items():
        if ANSWERS[question] != answer:
            continue
        for relative in paths:
            path = root / relative
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            if path.parent != root and path.parent.is_dir() and not any(path.parent.iterdir()):
                path.parent.rmdir()
    # The answers and the template's address, for `cruft link` and re-baking: no local paths, and
    # nothing that changes between template versions (cruft's _commit), so that every rendering with
    # the same answers writes the same file and `cruft update` never has to patch it (.rej).
    recorded = root / ".cookiecutter.json"
    answers = json.loads(recorded.read_text(encoding="utf-8"))
    for volatile in ("_output_dir", "_repo_dir", "_checkout", "_commit"):
        answers.pop(volatile, None)
    recorded.write_text(json.dumps(answers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
