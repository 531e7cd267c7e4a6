"""Prefix tuning (Li & Liang, 2021): trainable keys and values prepended in every layer, from PEFT's PrefixEncoder.

The encoder's config is the one PEFT derives from the backbone's config (layers, key/value heads under
grouped-query attention, head size), so its output (p, layers·2·kv_heads·head_dim) has PEFT's layout: per layer,
the keys, then the values. The backbone reads it as a key/value cache and attends to it from every input token;
no virtual token enters the input (the prompt's embeddings are empty, l = 0).
The prefix starts as the keys and values of p sampled vocabulary tokens run through the frozen model (Li & Liang's
initialisation from real activations), so it starts at the scale of the model's own keys and values rather than at
PEFT's N(0, 1) default. No reparameterisation MLP (PEFT's default, prefix_projection=False).
Causal LMs only: transformers 5's T5 encoder drops any cache it is given, and PEFT itself prefixes only T5's decoder.
Trainable: p · layers · 2 · kv_heads · head_dim.
"""

from __future__ import annotations


import torch
from peft import PrefixEncoder, PrefixTuningConfig, TaskType
from peft.utils import _prepare_prompt_learning_config
from torch import nn

from pipeline.model.backbone import Backbone, Prompt
from pipeline.data.batching import Batch
from pipeline.errors import PipelineError
from pipeline.methods.base import Built, MethodContext, seeded



class PrefixPrompt(nn.Module):
    """A key/value prefix of p positions for every layer, as a :class:`~pipeline.model.backbone.Prompt`."""

    def __init__(self, config: PrefixTuningConfig, hidden_size: int) -> None:
        super().__init__()
        self.encoder = PrefixEncoder(config)
        self.layers, self.heads = config.num_layers, config.num_attention_heads  # key/value heads
        self.head_dim = config.token_dim // config.num_attention_heads
        self.hidden_size = hidden_size
        self.register_buffer("positions", torch.arange(config.num_virtual_tokens), persistent=False)

    def forward(self, batch: Batch) -> Prompt:
        """No virtual input tokens, and a prefix (layers, 2, B, kv_heads, p, head_dim)."""
        flat = self.encoder(self.positions)  # (p, layers·2·kv_dim)
        kv = flat.view(flat.shape[0], self.layers, 2, self.heads, self.head_dim).permute(1, 2, 3, 0, 4)
        prefix = kv.unsqueeze(2).expand(-1, -1, batch.input_ids.shape[0], -1, -1, -1)
        return Prompt(embeds=flat.new_zeros(0, self.hidden_size), prefix=prefix)

    def export(self) -> dict[str, torch.Tensor]:
        """The prefix in PEFT's layout (what PEFT saves as ``prompt_embeddings`` for prefix tuning)."""
        return {"prefix": self.encoder.embedding.weight.detach()}


@torch.no_grad()
def activation_init(backbone: Backbone, count: int, generator: torch.Generator) -> torch.Tensor:
    """Keys and values (count, layers·2·kv_dim) of ``count`` sampled vocabulary tokens, in PEFT's prefix layout."""
    ids = backbone.sample_vocab_ids(count, generator).to(backbone.device).unsqueeze(0)
    kv = backbone.layer_keys_values(input_ids=ids)[:, :, 0]  # (L, 2, H, p, hd)
    return kv.permute(3, 0, 1, 2, 4).reshape(count, -1)


def build(ctx: MethodContext) -> Built:
    """``prefix``: p = model.prompt_length prefix positions in every layer, trained at the full-prompt lr."""
    if ctx.backbone.info.kind != "causal":
        raise PipelineError(
            "prefix: not supported for this backbone (causal LMs only): a T5 encoder takes no key/value prefix"
        )
    length = ctx.model.prompt_length
    config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=length)
    config = _prepare_prompt_learning_config(config, ctx.backbone.model.config)  # layers, kv heads, head size
    init = activation_init(ctx.backbone, length, torch.Generator().manual_seed(ctx.seed))
    with seeded(ctx.seed):
        module = PrefixPrompt(config, ctx.backbone.hidden_size)
    module.encoder.load_prompt_embeddings(init)
    return Built(module, [{"params": list(module.parameters()), "lr": ctx.steps.lr}])
