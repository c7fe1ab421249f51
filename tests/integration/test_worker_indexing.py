"""Core Tools compatibility: the real Python worker (azure-functions-runtime, Python 3.13) indexes function_app.py.

The worker applies checks our own tests cannot: every parameter must be a declared binding,
annotations must suit their converters, and so on. It runs in its own venv, built on first use
under .localdev/ and reused while requirements.txt is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WORKER = "azure-functions-runtime>=1.3,<2"

#: The start of every script run in the 3.13 runtime: its loader, and the protobuf types it is handed, stubbed.
RUNTIME_PREAMBLE = r"""
import json, sys, types, uuid
from azure_functions_runtime import loader
from azure_functions_runtime.bindings import meta
from azure_functions_runtime.functions import Registry

class _Msg:
    def __init__(self, **kw): self.__dict__.update(kw)

class BindingInfo(_Msg):  # mirrors FunctionRpc.proto enums
    out = 1; inout = 2; undefined = 0; string = 1; binary = 2; stream = 3
setattr(BindingInfo, "in", 0)
meta.load_binding_registry()
protos = types.SimpleNamespace(BindingInfo=BindingInfo, RpcRetryOptions=_Msg, RpcFunctionMetadata=_Msg)
"""

INDEX_SCRIPT = (
    RUNTIME_PREAMBLE
    + r"""
indexed = loader.index_function_app(sys.argv[1])
metadata, _ = loader.process_indexed_function(protos, Registry(), indexed, sys.argv[2])
print(json.dumps({m.name: [json.loads(b)["type"] for b in m.raw_bindings] for m in metadata}))
"""
)


def find_python313() -> str | None:
    for candidate in ("python3.13", str(Path.home() / ".pyenv/versions/3.13.0/bin/python3.13")):
        path = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
        if path and subprocess.run([path, "--version"], capture_output=True, check=False).returncode == 0:
            return path
    return None


def worker_venv(python: str) -> Path:
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + WORKER.encode()).hexdigest()[:12]
    venv = ROOT / ".localdev" / f"py313-worker-{digest}"
    ready = venv / ".ready"
    if not ready.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(ROOT / "requirements.txt"), WORKER], check=True, timeout=600)
        ready.touch()
    return venv / "bin" / "python"


@pytest.mark.skipif(find_python313() is None, reason="no python3.13 on this machine: the 3.13 worker cannot run")
def test_the_python_313_worker_indexes_every_function(tmp_path: Path) -> None:
    python = worker_venv(str(find_python313()))
    script = tmp_path / "index.py"
    script.write_text(INDEX_SCRIPT)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no app settings at all
    result = subprocess.run(
        [str(python), str(script), "function_app.py", str(ROOT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    functions = json.loads(result.stdout.strip().splitlines()[-1])
    assert functions == {
        "on_input_blob": ["blobTrigger"],
        "poll_jobs": ["timerTrigger"],
        "complete_job": ["queueTrigger"],
        "give_up_completion": ["queueTrigger"],
        "aml_run_events": ["eventGridTrigger"],
        "get_job": ["httpTrigger", "http"],
        "list_jobs": ["httpTrigger", "http"],
        "job_summary": ["httpTrigger", "http"],
        "dashboard": ["httpTrigger", "http"],
        "redrive_job": ["httpTrigger", "http"],
        "cancel_job": ["httpTrigger", "http"],
        "health": ["httpTrigger", "http"],
    }
