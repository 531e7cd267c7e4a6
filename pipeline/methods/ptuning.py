"""P-tuning (Liu et al., 2021): virtual tokens produced by a trainable prompt encoder (PEFT's PromptEncoder).

An MLP or a bidirectional LSTM (``adapt.ptuning_encoder``; hidden size d, PEFT's default) maps l trainable
embeddings to the l virtual tokens. With ``[P]`` markers in the task template (see pipeline.data.markers) the virtual
tokens are split evenly across the markers, the first markers taking one more when l does not divide, and each
group is inserted where its marker stood, the template's own words staying as text (anchor tokens). Without
markers they are prepended like a prompt.
Trainable: the l·d input embeddings plus, with h = d, the MLP's 3·d² + 3·d, or the two-layer LSTM's
2·(4h·(d + h) + 8h) + 2·(4h·3h + 8h) and its head's (4h² + 2h) + (2h·d + d).
"""

from __future__ import annotations


import torch
from peft import PromptEncoder, PromptEncoderConfig
from torch import nn

from pipeline.model.backbone import Prompt
from pipeline.data.batching import Batch
from pipeline.errors import PipelineError
from pipeline.data.markers import MARKER
from pipeline.methods.base import Built, MethodContext, seeded, target_task



def marker_groups(markers: torch.Tensor, length: int) -> torch.Tensor:
    """Positions (B, l) of l virtual tokens split evenly over m marker positions (B, m), earlier markers first."""
    count = markers.shape[1]
    sizes = [length // count + (1 if index < length % count else 0) for index in range(count)]
    return markers.repeat_interleave(torch.tensor(sizes, device=markers.device), dim=1)


class PTuningPrompt(nn.Module):
    """l virtual tokens from a prompt encoder: a (l, d) prompt, or a Prompt placed at the template's markers."""

    def __init__(self, config: PromptEncoderConfig, markers: int) -> None:
        super().__init__()
        self.encoder = PromptEncoder(config)
        self.markers = markers  # [P] markers in the template; 0 prepends the virtual tokens
        self.register_buffer("indices", torch.arange(config.num_virtual_tokens), persistent=False)

    def virtual_tokens(self) -> torch.Tensor:
        """The (l, d) virtual token embeddings."""
        return self.encoder(self.indices.unsqueeze(0))[0]  # the LSTM encoder wants a batch dimension

    def forward(self, batch: Batch) -> torch.Tensor | Prompt:
        embeds = self.virtual_tokens()
        if not self.markers:
            return embeds
        if batch.marker_positions is None:
            raise PipelineError(f"ptuning: the template has {MARKER} markers but the batch carries no positions")
        return Prompt(embeds, positions=marker_groups(batch.marker_positions, embeds.shape[0]))

    def export(self) -> dict[str, torch.Tensor]:
        """A prepended run's tokens are a prompt (exportable to PEFT); a marker run's are not: named apart."""
        return {"virtual_tokens" if self.markers else "prompt": self.virtual_tokens().detach()}


def build(ctx: MethodContext) -> Built:
    """``ptuning``: the prompt encoder, trained at ``adapt.encoder_lr``."""
    markers = target_task(ctx, "ptuning").info.template.count(MARKER)
    config = PromptEncoderConfig(
        num_virtual_tokens=ctx.model.prompt_length,
        token_dim=ctx.backbone.hidden_size,
        num_transformer_submodules=1,  # virtual tokens on the (encoder) input only, as every method here
        encoder_reparameterization_type=ctx.options.ptuning_encoder.upper(),
        encoder_hidden_size=ctx.backbone.hidden_size,
    )
    with seeded(ctx.seed):
        module = PTuningPrompt(config, markers)
    return Built(module, [{"params": list(module.parameters()), "lr": ctx.options.encoder_lr}])
