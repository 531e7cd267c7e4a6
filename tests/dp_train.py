"""Train a tiny prompt for a few steps and save it: run alone, or under `accelerate launch` (see test_distributed)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from pipeline.methods import MethodContext, build_method  # noqa: E402
from pipeline.training.fit import fit_and_evaluate  # noqa: E402
from pipeline.training.loop import TrainConfig  # noqa: E402
from test_train import MODEL, STEPS, toy_task  # noqa: E402
from tiny import tiny_backbone  # noqa: E402

torch.set_num_threads(1)
backbone = tiny_backbone("causal")
rows_seen = []
real_forward = backbone.forward


def counting_forward(prompt, input_ids, *args, **kwargs):
    rows_seen.append(input_ids.shape[0])
    return real_forward(prompt, input_ids, *args, **kwargs)


backbone.forward = counting_forward
module, groups = build_method("pt", MethodContext(backbone, MODEL, STEPS, seed=0))
config = TrainConfig(steps=8, param_groups=groups, warmup_steps=1, seed=0)
run = fit_and_evaluate(backbone, module, toy_task(backbone), MODEL, config, "dp")
state = PartialState()
if state.is_main_process:
    save_file({"prompt": module.weight.detach().contiguous()}, sys.argv[1] + ".safetensors")
    summary = {"losses": [h["loss"] for h in run.result.history], "processes": state.num_processes,
               "first_batch_rows": rows_seen[0]}
    Path(sys.argv[1] + ".json").write_text(json.dumps(summary))
