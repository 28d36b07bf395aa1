"""Copy a trained LoRA OneGen model into the package as the default, adapter stored in float16.

`python training/configs/ship_default.py runs/default-r2/model onegen_integrations/default`
once `onegen eval` prefers the new model. float16 halves the adapter (about 9 MB); the runtime merges the
LoRA product in float32 and casts it to the weights' dtype, as for any adapter.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file


def main(source: str, target: str) -> None:
    """Replace `target` with `source`, minus peft's README, adapter weights in float16."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    Path(target, "adapter", "README.md").unlink(missing_ok=True)
    weights = Path(target, "adapter", "adapter_model.safetensors")
    save_file({k: v.half().contiguous() for k, v in load_file(weights).items()}, weights)
    settings = Path(target, "adapter", "adapter_config.json")  # not the training machine's path
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "base_model_name_or_path": "default"}, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
