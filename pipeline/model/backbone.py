"""The frozen language model behind one interface: causal (decoder-only) or encoder-decoder.

Classification is label-word scoring: the hidden state at the prediction position is multiplied
by the output-layer rows of the label words only, never by the whole vocabulary. A label word of
several tokens is scored by its summed log-probability, normalised over the label words' tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DynamicCache,
    PreTrainedTokenizerBase,
)

from pipeline.errors import PipelineError
from pipeline.config.schema import BACKBONE_KINDS as KINDS
from pipeline.model.precision import attention_implementation

INFO_FILE = "backbone.json"


@dataclass(frozen=True)
class BackboneInfo:
    """What an artifact needs to know about the backbone it was made with."""

    name: str
    kind: str
    hidden_size: int
    vocab_size: int
    fingerprint: str  # sha256 prefix over the weights and tokenizer files

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class LabelWords:
    """Token ids of each label word, as the backbone's tokenizer encodes them."""

    token_ids: list[list[int]]

    @property
    def single_token(self) -> bool:
        return all(len(ids) == 1 for ids in self.token_ids)

    @property
    def first_ids(self) -> torch.Tensor:
        return torch.tensor([ids[0] for ids in self.token_ids])


@dataclass
class Prompt:
    """What a method adds to the frozen model's input, beyond a plain (l, d) tensor prepended to it.

    ``embeds``: (l, d) or (B, l, d) virtual token embeddings; l may be 0.
    ``positions``: optional (B, l) input-token indices, non-decreasing along l and at most each row's length:
    virtual token j goes right before input token ``positions[b, j]`` (a row's length: after its last real
    token). None prepends them all, as prompt tuning does.
    ``prefix``: optional key/value prefix of every decoder layer, (layers, 2, B, heads, p, head_dim) with keys
    at [:, 0] and values at [:, 1] (prefix tuning; causal LMs only).
    ``rows``: optional (B,) indices into (K, l, d) ``embeds``: row b gets prompt ``embeds[rows[b]]`` (e.g. one
    prompt per source task in a mixed batch), so that a causal LM runs each of the K prompts once, not B times.
    """

    embeds: torch.Tensor
    positions: torch.Tensor | None = None
    prefix: torch.Tensor | None = None
    rows: torch.Tensor | None = None


@dataclass
class Scores:
    """Label scores for a batch: ``logits`` (B, C) and the ``hidden`` state used for distillation (B, d)."""

    logits: torch.Tensor
    hidden: torch.Tensor


class Backbone(nn.Module):
    """A frozen LM that scores label words after a soft prompt.

    The prompt is a tensor of shape (l, d), shared by the batch, or (B, l, d), one per example, or a
    :class:`Prompt` that also places the virtual tokens inside the input or carries a key/value prefix.
    Causal LMs see ``[prompt; input]`` and predict at the last input token (or at the last virtual token
    placed after it); encoder-decoder LMs get the prompt on the encoder input only and score labels with
    the decoder.
    """

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, info: BackboneInfo) -> None:
        super().__init__()
        if info.kind not in KINDS:
            raise PipelineError(f"backbone.kind must be one of {', '.join(KINDS)}, got {info.kind!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self._kv_memo: tuple[torch.Tensor, torch.Tensor] | None = None  # see _shared_keys_values
        # Frozen: no gradients, no optimizer state, dropout off.
        self.model.requires_grad_(False)
        self.model.eval()

    @property
    def hidden_size(self) -> int:
        return self.info.hidden_size

    @property
    def device(self) -> torch.device:
        return self.input_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The frozen weights' dtype (``backbone.dtype`` resolved, see :mod:`pipeline.model.precision`)."""
        return self.input_embeddings.weight.dtype

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def label_words(self, words: list[str], where: str) -> LabelWords:
        """Encode label words; a word the tokenizer cannot encode is a PipelineError naming ``where``."""
        token_ids = []
        for word in words:
            ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
            if not ids or (self.tokenizer.unk_token_id is not None and self.tokenizer.unk_token_id in ids):
                raise PipelineError(f"{where}: label word {word!r} cannot be encoded by the backbone's tokenizer")
            token_ids.append(list(ids))
        if len({tuple(ids) for ids in token_ids}) != len(token_ids):
            raise PipelineError(f"{where}: two label words encode to the same tokens")
        return LabelWords(token_ids)

    def tokenize(self, texts: list[str], max_length: int, with_offsets: bool = False) -> dict[str, torch.Tensor]:
        """Right-padded ids; over-long inputs lose their start, so the template's answer cue survives.

        ``with_offsets`` adds ``offset_mapping`` (B, T, 2), each token's characters, and ``special_tokens_mask``
        (B, T): what placing ``[P]`` markers needs (a fast tokenizer's feature).
        """
        tok = self.tokenizer
        tok.padding_side, tok.truncation_side = "right", "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if with_offsets and not tok.is_fast:
            raise PipelineError(f"backbone {self.info.name}: placing [P] markers needs a fast tokenizer")
        extra = {"return_offsets_mapping": True, "return_special_tokens_mask": True} if with_offsets else {}
        encoded = tok(texts, max_length=max_length, truncation=True, padding=True, return_tensors="pt", **extra)
        keys = ("input_ids", "attention_mask") + (("offset_mapping", "special_tokens_mask") if with_offsets else ())
        return {key: encoded[key] for key in keys}

    def sample_vocab_ids(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` random vocabulary ids (count,), on the CPU."""
        return torch.randint(0, self.input_embeddings.weight.shape[0], (count,), generator=generator)

    def sample_vocab_embeddings(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Input embeddings (count, d) of ``count`` random vocabulary ids (the usual soft-prompt init)."""
        return self.embed(self.sample_vocab_ids(count, generator))

    @torch.no_grad()
    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """The input embeddings (..., d) of ``token_ids`` as the model sees them, in fp32 on the backbone's device.

        Through the embedding module, not its weight rows: Gemma multiplies them by sqrt(d) there (25.3 at d = 640),
        and a soft prompt joins the input after that step, so it must start in the same space as the input it
        sits beside. fp32 whatever the backbone's dtype: a prompt is trained in fp32 and cast on its way in.
        """
        return self.input_embeddings(token_ids.to(self.device)).float()

    def forward(
        self, prompt: torch.Tensor | Prompt, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: LabelWords
    ) -> Scores:
        """Score every label word for each input after ``prompt``.

        Args:
            prompt: (l, d) or (B, l, d) soft prompt, or a :class:`Prompt`.
            input_ids, attention_mask: (B, T) right-padded token ids.
            labels: the task's label words.
        """
        batch = input_ids.shape[0]
        if not labels.single_token:
            return self._score_multi_token(self._batched(prompt, batch), input_ids, attention_mask, labels)
        hidden = self.prediction_hidden(prompt, input_ids, attention_mask)
        return Scores(logits=self.label_logits(hidden, labels), hidden=hidden)

    def prediction_hidden(
        self, prompt: torch.Tensor | Prompt, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The hidden state (B, d) that predicts the (first) label token, after a prompt as in :meth:`forward`."""
        return self._prediction_hidden(self._batched(prompt, input_ids.shape[0]), input_ids, attention_mask, None)

    def label_logits(self, hidden: torch.Tensor, labels: LabelWords) -> torch.Tensor:
        """Logits (B, C) of single-token label words from prediction hidden states (B, d), in fp32."""
        return self._logits(hidden, self._output_rows(labels.first_ids))

    # -- internals -------------------------------------------------------------------------------

    def _batched(self, prompt: torch.Tensor | Prompt, batch: int) -> Prompt:
        """The prompt as a :class:`Prompt` with (B, l, d) embeddings (no ``rows``) in the backbone's dtype.

        On a causal LM, prompts shared by rows and placed before the input become a key/value prefix (l = 0 then).
        """
        prompt = prompt if isinstance(prompt, Prompt) else Prompt(prompt)
        dtype = self.input_embeddings.weight.dtype
        embeds = prompt.embeds.to(dtype)
        if prompt.rows is not None and embeds.dim() != 3:
            raise PipelineError("a Prompt with rows needs (K, l, d) embeds: one prompt per distinct row")
        if embeds.dim() == 2:
            distinct = embeds.unsqueeze(0)  # one prompt for every row
        else:
            distinct = embeds if prompt.rows is not None else None  # without rows: a prompt per row, none shared
        prepended = prompt.positions is None and prompt.prefix is None and embeds.shape[-2] > 0
        if distinct is not None and prepended and self.info.kind == "causal":
            # Under causal attention a prompt's tokens never see the input after them, so their keys and values
            # are the same in every row that shares the prompt. Run each distinct prompt once and hand them on
            # as a key/value prefix: the same numbers, ~1.2x faster training steps (benchmarks P1).
            kv = self._shared_keys_values(distinct)
            kv = kv.expand(-1, -1, batch, -1, -1, -1) if prompt.rows is None else kv[:, :, prompt.rows.to(kv.device)]
            return Prompt(embeds.new_zeros(batch, 0, embeds.shape[-1]), prefix=kv)
        if prompt.rows is not None:
            embeds = embeds[prompt.rows.to(embeds.device)]
        elif embeds.dim() == 2:
            embeds = embeds.unsqueeze(0).expand(batch, -1, -1)
        prefix = None if prompt.prefix is None else prompt.prefix.to(dtype)
        if prefix is not None and self.info.kind != "causal":
            raise PipelineError(f"a key/value prefix is not supported for this backbone ({self.info.kind})")
        return Prompt(embeds, prompt.positions, prefix)

    def _shared_keys_values(self, prompts: torch.Tensor) -> torch.Tensor:
        """:meth:`_prompt_keys_values`, computed once for as long as the same prompts come back without gradients.

        Evaluation and the teacher-output cache score a fixed prompt batch after batch: under
        ``torch.inference_mode`` the last prompts' keys and values are kept and reused while the prompts are equal
        (the weights are frozen, so equal prompts give equal keys and values). Training never takes this path,
        since its keys and values must stay in the autograd graph.
        """
        if not torch.is_inference_mode_enabled():
            return self._prompt_keys_values(prompts)
        memo = self._kv_memo
        if memo is not None and memo[0].shape == prompts.shape and torch.equal(memo[0], prompts):
            return memo[1]
        kv = self._prompt_keys_values(prompts)
        self._kv_memo = (prompts.clone(), kv)
        return kv

    def _prompt_keys_values(self, prompts: torch.Tensor) -> torch.Tensor:
        """Every layer's keys and values of (K, l, d) prompts at positions 0..l-1: (layers, 2, K, kv_heads, l, hd)."""
        return self.layer_keys_values(inputs_embeds=prompts)

    def layer_keys_values(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Every decoder layer's keys and values of ``inputs`` (``input_ids`` or ``inputs_embeds``, (K, l[, d])) at
        positions 0..l-1, stacked (layers, 2, K, kv_heads, l, head_dim): a key/value prefix for later passes.

        The cache is given, not left to the model: a model with sliding-window layers (Gemma 3: 512 tokens in five
        of six layers) would otherwise make its own cache keep only the last window - 1 positions of those layers,
        and a prefix must hold every position; the later pass's attention mask applies the window.
        """
        cache = self.model.get_decoder()(**inputs, cache=DynamicCache(), use_cache=True).cache
        return torch.stack([torch.stack([layer.keys, layer.values]) for layer in cache.layers])

    def _joined(self, prompt: Prompt, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Input embeddings with the virtual tokens in place (B, l + T, d) and their attention mask (B, l + T)."""
        embeds = self.input_embeddings(input_ids)
        ones = attention_mask.new_ones(prompt.embeds.shape[:2])
        if prompt.positions is None:
            return torch.cat([prompt.embeds, embeds], dim=1), torch.cat([ones, attention_mask], dim=1)
        positions = prompt.positions.to(input_ids.device)
        return _insert(prompt.embeds, embeds, positions), _insert(ones, attention_mask, positions)

    def _logits(self, states: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``states`` (..., d) times output ``rows`` (n, d), as the model's own output layer would give them.

        A model with ``final_logit_softcapping`` (Gemma 2; Gemma 3 sets none) squashes its logits with
        cap·tanh(logits / cap) after the output layer: the label scores do the same, so they stay the model's.
        """
        logits = states.float() @ rows.T
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def _output_rows(self, token_ids: torch.Tensor) -> torch.Tensor:
        # A few rows: scoring them in fp32 costs nothing and keeps label scores and losses out of bf16 rounding.
        return self.model.get_output_embeddings().weight[token_ids.to(self.device)].float()

    def _prediction_hidden(
        self,
        prompt: Prompt,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        continuation: torch.Tensor | None,
    ) -> torch.Tensor:
        """Hidden states that predict the label tokens: (B, d), or (B, m, d) with a ``continuation`` (B, m-1)."""
        if self.info.kind == "causal":
            return self._causal_hidden(prompt, input_ids, attention_mask, continuation)
        return self._seq2seq_hidden(prompt, input_ids, attention_mask, continuation)

    def _causal_hidden(self, prompt: Prompt, input_ids, attention_mask, continuation):
        batch, length = prompt.embeds.shape[0], prompt.embeds.shape[1]
        lengths = attention_mask.sum(dim=1)
        if continuation is not None:
            # Insert the label's first m-1 tokens right after each input's last real token.
            input_ids, attention_mask = _append_after_real_tokens(input_ids, attention_mask, continuation)
        embeds, mask = self._joined(prompt, input_ids, attention_mask)
        extra = {}
        if prompt.prefix is not None:
            # A fresh cache per pass: the model appends this pass's keys to it, and multi-token scoring runs
            # several passes with the same prefix. The mask covers [prefix; prompt; input].
            extra["cache"] = DynamicCache([(layer[0], layer[1]) for layer in prompt.prefix])
            mask = torch.cat([mask.new_ones(batch, prompt.prefix.shape[4]), mask], dim=1)
        states = self.model.get_decoder()(inputs_embeds=embeds, attention_mask=mask, **extra).last_hidden_state
        steps = 1 if continuation is None else continuation.shape[1] + 1
        # Virtual tokens sit before or right after the real tokens (positions <= length), never among the padding,
        # so the real region is the first l + n positions and its last one predicts the label.
        positions = length + lengths.unsqueeze(1) - 1 + torch.arange(steps, device=lengths.device)
        picked = states[torch.arange(batch, device=states.device).unsqueeze(1), positions]
        return picked[:, 0].float() if continuation is None else picked

    def _seq2seq_hidden(self, prompt: Prompt, input_ids, attention_mask, continuation):
        batch = prompt.embeds.shape[0]
        embeds, mask = self._joined(prompt, input_ids, attention_mask)
        encoded = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        start = torch.full((batch, 1), self.model.config.decoder_start_token_id, device=input_ids.device)
        decoder_ids = start if continuation is None else torch.cat([start, continuation], dim=1)
        states = self.model.get_decoder()(
            input_ids=decoder_ids, encoder_hidden_states=encoded, encoder_attention_mask=mask
        ).last_hidden_state
        if getattr(self.model.config, "scale_decoder_outputs", False):
            states = states * (self.model.config.d_model**-0.5)  # as T5 does before its tied lm_head
        return states[:, 0].float() if continuation is None else states

    def _score_multi_token(self, prompt: Prompt, input_ids, attention_mask, labels: LabelWords) -> Scores:
        """Summed log-probability of each label's tokens, normalised over all label-word tokens."""
        classes = len(labels.token_ids)
        longest = max(len(ids) for ids in labels.token_ids)
        candidates = torch.tensor(sorted({t for ids in labels.token_ids for t in ids}), device=self.device)
        rows = self._output_rows(candidates)
        batch = input_ids.shape[0]
        logits = []
        hidden = None
        for ids in labels.token_ids:
            padded = ids + [ids[-1]] * (longest - len(ids))  # padding positions are ignored below
            continuation = torch.tensor(padded[:-1], dtype=torch.long, device=input_ids.device).expand(batch, -1)
            states = self._prediction_hidden(prompt, input_ids, attention_mask, continuation)  # (B, m, d)
            hidden = states[:, 0].float() if hidden is None else hidden
            log_probs = torch.log_softmax(self._logits(states, rows), dim=-1)  # (B, m, |candidates|)
            targets = torch.searchsorted(candidates, torch.tensor(ids, device=candidates.device))
            logits.append(log_probs[:, torch.arange(len(ids)), targets].sum(dim=1))
        assert len(logits) == classes
        return Scores(logits=torch.stack(logits, dim=1), hidden=hidden)


def _insert(virtual: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Merge ``virtual`` (B, l, ...) into ``tokens`` (B, T, ...): virtual j lands right before token positions[b, j].

    With non-decreasing positions, virtual token j has ``positions[j]`` tokens and j virtual tokens before it,
    and token t has t tokens and the virtual tokens at positions <= t before it: a permutation of l + T slots.
    """
    count, steps = virtual.shape[1], tokens.shape[1]
    columns = torch.arange(steps, device=tokens.device)
    token_slots = columns + (positions.unsqueeze(2) <= columns).sum(dim=1)  # (B, T)
    virtual_slots = positions + torch.arange(count, device=tokens.device)  # (B, l)
    slots = torch.cat([virtual_slots, token_slots], dim=1)
    values = torch.cat([virtual.to(tokens.dtype), tokens], dim=1)
    slots = slots.view(*slots.shape, *[1] * (values.dim() - 2)).expand_as(values)
    return torch.zeros_like(values).scatter(1, slots, values)


def _append_after_real_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, continuation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Place ``continuation`` (B, k) right after each row's real tokens of a right-padded batch."""
    batch, steps = continuation.shape
    pad = input_ids.new_zeros(batch, steps)
    ids = torch.cat([input_ids, pad], dim=1)
    mask = torch.cat([attention_mask, pad], dim=1)
    lengths = attention_mask.sum(dim=1, keepdim=True)
    columns = lengths + torch.arange(steps, device=input_ids.device)
    rows = torch.arange(batch, device=input_ids.device).unsqueeze(1)
    ids[rows, columns] = continuation
    mask[rows, columns] = 1
    return ids, mask


def load_backbone(folder: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """Load the materialised backbone (safetensors + tokenizer + backbone.json) from ``folder``.

    ``dtype``: the frozen weights' dtype, cast once here (:func:`pipeline.model.precision.resolve_dtype` picks it).
    """
    info_path = Path(folder) / INFO_FILE
    if not info_path.is_file():
        raise PipelineError(f"{info_path}: backbone not materialised; run `dvc repro backbone`")
    info = BackboneInfo(**json.loads(info_path.read_text(encoding="utf-8")))
    auto = AutoModelForCausalLM if info.kind == "causal" else AutoModelForSeq2SeqLM
    # trust_remote_code stays off: only architectures that transformers ships are loaded.
    attention = attention_implementation(dtype, device)
    model = auto.from_pretrained(
        folder, dtype=dtype, trust_remote_code=False, use_safetensors=True,
        **({"attn_implementation": attention} if attention else {}),
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return Backbone(model.to(device), tokenizer, info)
