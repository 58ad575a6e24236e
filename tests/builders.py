"""Builders of small inputs that several test modules share, imported one way (`from builders import ...`):
a processed cohort, a folder-source project, a manifest of given diagnoses, stand-in hub weights."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image

from pipeline import split
from pipeline.core.atomic import atomic_outputs
from pipeline.core.params import from_dict

ROOT = Path(__file__).resolve().parents[1]
IDS = ("NA", "None", "NULL", "007", "nan", "P5", "P6", "P7")
DIAGNOSES = ("N", "IBM", "N", "DM", "N", "PM", "IBM", "N")


def write_cohort(root: Path, patients: int = 12, per_side: int = 1, size: int = 32, separation: float = 60.0,
                 seed: int = 0, train_cfg: dict | None = None, split_folds: int = 2) -> None:
    """A tiny processed cohort in `root`: diseased images brighter by `separation` grey levels."""
    rng = np.random.default_rng(seed)
    dx = np.array(["N", "IBM", "N", "DM"] * patients)[:patients]  # half normal: S1 is balanced
    rows, images = [], []
    for p in range(patients):
        for side in "RL":
            for muscle in ("D", "B", "R", "G", "T", "FCR", "FDP"):
                for _ in range(per_side):
                    base = 70 + (separation if dx[p] != "N" else 0) + rng.normal(0, 5)
                    images.append(np.clip(rng.normal(base, 25, size=(1, size, size)), 0, 255))
                    rows.append({"patient_id": f"P{p:02d}", "diagnosis": dx[p], "muscle": muscle, "side": side})
    manifest = pd.DataFrame(rows)
    manifest.insert(0, "image_id", np.arange(len(manifest)))
    manifest = manifest.assign(source="synthetic", path="x", sha256="0", source_name="x")
    (root / "data/processed").mkdir(parents=True, exist_ok=True)
    np.save(root / "data/processed/images.npy", np.stack(images).astype(np.uint8))
    manifest.to_csv(root / "data/processed/manifest.csv", index=False)
    raw = {"seed": 0, "data": {"image_size": size},
           "split": {"folds": split_folds, "protocols": ["patient", "image"]},
           "train": {"models": ["stanet"], "folds": [1, 2], "epochs": 3,
                     "optim": {"batch_size": 16, "lr": 0.003}, **(train_cfg or {})}}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    with atomic_outputs() as out:
        split.write_splits(split.make_splits(manifest, from_dict(raw)), ["S1"], out, root / "data/splits")


def write_hub_weights(cache: Path, hub_id: str, state: dict[str, torch.Tensor]) -> Path:
    """Stand-in weights for `hub_id` in the Hugging Face cache layout under `cache`; the file's path."""
    from safetensors.torch import save_file

    repo = cache / f"models--{hub_id.replace('/', '--')}"
    commit = hashlib.sha1(hub_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot / "model.safetensors"


def vgg_stand_ins(cache: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The feature tensors of timm's vgg16 and vgg19 (half precision, to keep the files small), seeded."""
    import timm

    out = {}
    for arch in ("vgg16", "vgg19"):
        torch.manual_seed(len(arch) + (16 if arch == "vgg16" else 19))
        features = timm.create_model(arch, pretrained=False, num_classes=0).features.state_dict()
        state = {f"features.{k}": v.half() for k, v in features.items()}
        write_hub_weights(cache, f"timm/{arch}.tv_in1k", state)
        out[arch] = state
    return out


def write_project(root: Path, ids=IDS, diagnoses=DIAGNOSES, size: int = 32, models=("stanet",)) -> None:
    """A folder-source project: 8 patients x 4 images, ids that pandas would misread."""
    raw_dir = root / "data/raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["path,patient_id,diagnosis,muscle,side"]
    for p, (pid, dx) in enumerate(zip(ids, diagnoses)):
        for k, muscle in enumerate(("D", "B", "FCR", "FDP")):
            name = f"p{p}_{k}.png"
            level = 60 if dx == "N" else 120
            Image.fromarray(np.clip(rng.normal(level, 20, (40, 40)), 0, 255).astype(np.uint8)).save(raw_dir / name)
            lines.append(f"{name},{pid},{dx},{muscle},R")
    (raw_dir / "manifest.csv").write_text("\n".join(lines) + "\n")
    params = {"data": {"source": "folder", "root": "data/raw", "image_size": size},
              "split": {"folds": 2, "protocols": ["patient", "image"]},
              "train": {"models": list(models), "folds": [1, 2], "epochs": 1, "optim": {"batch_size": 8}},
              "evaluate": {"reference_model": models[0], "bootstrap": 100}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def cohort(diagnoses: dict[str, int], per_patient: int = 4) -> pd.DataFrame:
    """A manifest: `n` patients of each diagnosis, `per_patient` images each."""
    rows = []
    for dx, n in diagnoses.items():
        for p in range(n):
            for k in range(per_patient):
                rows.append({"image_id": len(rows), "patient_id": f"{dx}{p}", "diagnosis": dx, "muscle": "D",
                             "side": "R", "sha256": f"{len(rows)}", "source_name": f"{len(rows)}.png"})
    return pd.DataFrame(rows)
