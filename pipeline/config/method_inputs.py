"""What each target method reads besides the inputs every adapt@ run shares: its own params (knobs) and the upstream
files it starts from. Torch-free.

Why a table: one DVC matrix makes every ``adapt@<target>-<method>-<seed>`` stage, so dvc.yaml gives them all the
same deps and params, and DVC cannot splice a list into a stage's deps. Stage ``method_inputs`` therefore writes,
per method, ``results/method_inputs/<method>.json``: the values of its knobs and the sha256 of each file in
:data:`UPSTREAM` it reads. Each adapt@ stage depends on its own method's file, so changing distill reruns the
``mpt`` runs only, a new source prompt the ``spot`` and ``attempt`` runs only, ``adapt.cpt_epsilon`` the ``cpt``
runs only; a rerun that writes the same P or prompts writes the same file, and nothing after it reruns.
"""

from __future__ import annotations

# Params every adapt@ run reads, whatever its method (besides its own target's tasks.<target>).
SHARED_KEYS = (
    "backbone.dtype", "numerics", "model", "adapt.steps", "adapt.lr", "adapt.warmup_steps", "adapt.eval_every",
    "adapt.select",
)

# Each method's own params. adapt.lr stays shared (six of the eight train a full prompt with it); factor_lr is read
# by the methods with low-rank factors only. spot and attempt read the source prompts in source_tasks order.
KNOBS: dict[str, tuple[str, ...]] = {
    "pt": ("adapt.pt_init",),
    "mpt": ("adapt.factor_lr", "adapt.rank", "adapt.freeze_shared"),
    "mpt_full": ("adapt.factor_lr", "adapt.rank"),  # P is trained whatever adapt.freeze_shared says
    "spot": ("source_tasks",),
    "attempt": ("source_tasks", "adapt.encoder_lr"),
    "prefix": (),
    "ptuning": ("adapt.ptuning_encoder", "adapt.encoder_lr"),
    "cpt": ("adapt.cpt_examples", "adapt.cpt_epsilon"),
}

# The upstream a method starts from: distill's P and factors, or each source teacher's prompt.
DISTILLED, SOURCE_PROMPTS = "distill", "source prompts"
UPSTREAM: dict[str, str] = {"mpt": DISTILLED, "mpt_full": DISTILLED, "spot": SOURCE_PROMPTS, "attempt": SOURCE_PROMPTS}


def knob_keys() -> tuple[str, ...]:
    """Every method's own params, each once, in table order: what stage method_inputs tracks."""
    return tuple(dict.fromkeys(key for keys in KNOBS.values() for key in keys))
