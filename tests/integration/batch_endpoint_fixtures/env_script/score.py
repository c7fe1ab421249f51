"""Reports what a custom deployment sees: env vars, its model folder, init() calls per worker."""

import os
from pathlib import Path

INIT_CALLS = 0
MARKER = ""


def init():
    global INIT_CALLS, MARKER  # noqa: PLW0603 - module state is how scoring scripts keep init() results
    INIT_CALLS += 1
    MARKER = (Path(os.environ["AZUREML_MODEL_DIR"]) / "model" / "marker.txt").read_text().strip()


def run(mini_batch):
    out_dir = Path(os.environ["AZUREML_BI_OUTPUT_PATH"])
    results = []
    for file in mini_batch:
        name = Path(file).name
        if "bad" in name:
            raise RuntimeError(f"cannot score {name}")
        (out_dir / f"sidecar-{name}.txt").write_text(Path(file).read_text().upper())
        results.append(f"{name}|{MARKER}|init={INIT_CALLS}|out_dir={out_dir.is_dir()}")
    return results
