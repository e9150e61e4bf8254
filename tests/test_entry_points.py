"""The environment defaults (core/runtime.py configure_environment) reach torch and the libraries it loads: every
stage and the CLI set them in stage_entry, as main() starts, which is in time only while importing them loads none
of those libraries."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT

HEAVY = ("torch", "transformers", "tokenizers", "bitsandbytes", "peft", "accelerate", "onnxruntime")


def test_no_stage_or_cli_import_loads_torch():
    # the stage scripts loaded as modules (their `if __name__ == "__main__"` stays false), in a fresh interpreter
    load = "\n".join(
        f"spec = importlib.util.spec_from_file_location('stage_{p.stem}', {str(p)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))"
        for p in sorted((ROOT / "stages").glob("*.py")))
    code = (f"import importlib.util, sys\nimport qlora_sentiment.cli\n{load}\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", f"loaded before main() runs: {done.stdout.strip()}"


def test_stage_entry_sets_the_environment_before_main(monkeypatch):
    from qlora_sentiment.core.runtime import stage_entry

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # a user's own value wins
    seen = {}

    @stage_entry
    def main(argv):
        seen.update(cublas=os.environ.get("CUBLAS_WORKSPACE_CONFIG"), tokenizers=os.environ["TOKENIZERS_PARALLELISM"])

    main([])
    assert seen == {"cublas": ":4096:8", "tokenizers": "true"}


def test_the_process_entry_point_tunes_the_collector_and_a_library_call_does_not():
    """program_gc (core/runtime.py): a stage or the CLI run as the process collects young objects less often and
    freezes the survivors at exit; main(argv) called from other code (tests, the Python API) leaves gc alone."""
    import gc

    from qlora_sentiment.core.runtime import stage_entry

    code = ("import atexit, gc\nfrom qlora_sentiment.core.runtime import stage_entry\n"
            "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
            "stage_entry(lambda argv: print('threshold:', gc.get_threshold()[0]))()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # atexit runs the newest handler first: the freeze, registered as main starts, before this older one
    assert done.stdout.split() == ["threshold:", "10000", "frozen", "at", "exit:", "True"], done.stdout
    before = gc.get_threshold()
    stage_entry(lambda argv: None)([])
    assert gc.get_threshold() == before
