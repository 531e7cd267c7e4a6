"""Every target method on tiny backbones: what it trains, how many parameters, that it learns, seq2seq behaviour."""

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from pipeline.store.tensors import save_tensors
from pipeline.model.backbone import Prompt
from pipeline.data.batching import EncodedSplit, TaskData
from pipeline.errors import PipelineError
from pipeline.training.losses import task_loss
from pipeline.data.markers import encode_marked, strip_markers
from pipeline.methods import TARGET_METHODS, MethodContext, build, spot
from pipeline.methods.attempt import HIDDEN
from pipeline.methods.cpt import LABEL, balanced_rows
from pipeline.methods.mpt import widened
from pipeline.methods.ptuning import marker_groups
from pipeline.config.params import DevSettings, MethodSettings
from pipeline.training.fit import fit_and_evaluate
from pipeline.config.tasks import TaskSpec
from pipeline.training.loop import TrainConfig
from pipeline.data.prepare import to_examples
from test_train import MODEL, STEPS, toy_task
from tiny import GEMMA3_HEAD_DIM, GEMMA3_KV_HEADS, GEMMA3_LAYERS, tiny_backbone

L, D = MODEL.prompt_length, 32  # the tiny backbones' hidden size
LAYERS, KV_HEADS, HEAD_DIM = 2, 2, 8  # tiny Llama: 4 query heads share 2 key/value heads of size 8
# Per tiny causal backbone: (layers, key/value heads, head size); Gemma-3's head size is not hidden / heads.
KV_SHAPES = {"causal": (LAYERS, KV_HEADS, HEAD_DIM), "gemma3": (GEMMA3_LAYERS, GEMMA3_KV_HEADS, GEMMA3_HEAD_DIM)}
SOURCES = ("a", "b")
SEQ2SEQ_REFUSED = {"prefix", "cpt"}


def trainable_count(method: str, extras: dict, kind: str = "causal") -> int:
    """The exact trainable parameter count of each method, from its formula."""
    layers, kv_heads, head_dim = KV_SHAPES.get(kind, KV_SHAPES["causal"])
    return {
        "pt": L * D,
        "spot": L * D,
        "mpt": L + D,  # rank one: U (l, 1) and V (1, d)
        "mpt_full": L * D + L + D,
        "attempt": L * D + 2 * D * HIDDEN + 2 * D,  # target prompt, W_down and W_up, LayerNorm
        "prefix": L * layers * 2 * kv_heads * head_dim,
        "ptuning": L * D + 3 * D * D + 3 * D,  # input embeddings + MLP d -> d -> d -> d
        "cpt": extras.get("cpt_tokens", 0) * D,
    }[method]


def context(backbone, folder, task=None, seed=0, **options) -> MethodContext:
    """A context with two source teachers and a distilled P written under ``folder`` (once per folder)."""
    if not (folder / "shared.safetensors").exists():
        generator = torch.Generator().manual_seed(1)
        for name in SOURCES:
            prompt = backbone.sample_vocab_embeddings(L, generator)
            save_tensors(folder / name / "prompt.safetensors", {"prompt": prompt}, {"backbone": "tiny"})
        distilled = {"shared": backbone.sample_vocab_embeddings(L, generator), "u": torch.ones(2, L, 1)}
        distilled["v"] = torch.ones(2, 1, D) + 0.1 * torch.randn(2, 1, D, generator=generator)
        save_tensors(folder / "shared.safetensors", distilled, {"backbone": "tiny"})
    return MethodContext(
        backbone, MODEL, STEPS, seed, distill_file=folder / "shared.safetensors", task=task or toy_task(backbone),
        sources=SOURCES, sources_dir=folder, options=MethodSettings(**options),
    )


def loss_on_batch(backbone, module, task) -> torch.Tensor:
    batch = task.splits["train"].batch(list(range(8)))
    return task_loss(backbone(module(batch), batch.input_ids, batch.attention_mask, task.labels).logits, batch.labels)


@pytest.mark.parametrize("kind", ["causal", "gemma3"])
@pytest.mark.parametrize("method", list(TARGET_METHODS))
def test_exact_trainable_set_and_count(method, kind, tmp_path):
    backbone = tiny_backbone(kind)
    ctx = context(backbone, tmp_path)
    module, groups, extras = build(method, ctx)
    trainable = {name: p for name, p in module.named_parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in trainable.values()}  # all optimised
    assert sum(p.numel() for p in trainable.values()) == trainable_count(method, dict(extras), kind)
    start = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    loss_on_batch(backbone, module, ctx.task).backward()
    for name, p in trainable.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{method}: {name} gets no gradient"
    for name, p in module.named_parameters():
        assert p.requires_grad or p.grad is None, f"{method}: frozen {name} got a gradient"
    assert all(p.grad is None and not p.requires_grad for p in backbone.model.parameters())  # backbone frozen
    sources = torch.stack([_source(tmp_path, n) for n in SOURCES])
    if method == "mpt":
        assert "shared" in dict(module.named_buffers()) and set(trainable) == {"u", "v"}  # P frozen
    if method == "mpt_full":
        assert set(trainable) == {"shared", "u", "v"}  # P trained too
    if method == "attempt":
        assert torch.equal(start["sources"], sources) and "sources" not in trainable  # source prompts frozen
    if method == "spot":
        assert torch.equal(start["weight"], _source(tmp_path, extras["spot_source"]))  # starts as the chosen source
    if method == "cpt":
        assert not module.cpt.embedding.weight.requires_grad  # the examples' own embeddings stay frozen
        assert set(trainable) == {"cpt.delta_embedding.weight"}


@pytest.mark.parametrize("method", list(TARGET_METHODS))
def test_every_method_trains_on_a_bf16_backbone(method, tmp_path):
    """backbone.dtype auto is bf16 on a CPU with native bf16: each method's own tensors stay fp32 and get gradients."""
    backbone = tiny_backbone("causal")
    backbone.model.to(torch.bfloat16)
    ctx = context(backbone, tmp_path)
    module, _, _ = build(method, ctx)
    loss_on_batch(backbone, module, ctx.task).backward()
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in trainable), method


def _source(folder, name) -> torch.Tensor:
    return load_file(str(folder / name / "prompt.safetensors"))["prompt"]


@pytest.mark.parametrize("kind", ["causal", "gemma3", "seq2seq"])
@pytest.mark.parametrize("method", list(TARGET_METHODS))
def test_a_few_steps_reduce_the_loss_or_seq2seq_is_refused(method, kind, tmp_path):
    backbone = tiny_backbone(kind)
    if kind == "seq2seq" and method in SEQ2SEQ_REFUSED:
        with pytest.raises(PipelineError, match=rf"^{method}: not supported for this backbone \(causal LMs only\)"):
            build(method, context(backbone, tmp_path))
        return
    ctx = context(backbone, tmp_path)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    module, groups, extras = build(method, ctx)
    config = TrainConfig(steps=STEPS.steps, param_groups=groups, warmup_steps=STEPS.warmup_steps, seed=0)
    run = fit_and_evaluate(backbone, module, ctx.task, MODEL, config, method)
    losses = [h["loss"] for h in run.result.history]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert run.trainable_params == trainable_count(method, dict(extras), kind)
    assert all(torch.equal(before[k], v) for k, v in backbone.model.state_dict().items())
    assert set(run.metrics) == {"dev", "test"}


def test_spot_picks_the_best_zero_step_source_and_ties_go_to_source_order(tmp_path, monkeypatch):
    backbone = tiny_backbone("causal")
    ctx = context(backbone, tmp_path)
    real = spot.zero_step_scores(backbone, {n: _source(tmp_path, n) for n in SOURCES}, ctx.task, 8)
    _, _, extras = build("spot", ctx)
    assert extras["spot_candidates"] == {n: round(acc, 6) for n, acc in real.items()}
    for scores, chosen in (({"a": 0.4, "b": 0.7}, "b"), ({"a": 0.5, "b": 0.5}, "a")):
        monkeypatch.setattr(spot, "zero_step_scores", lambda *args, s=scores: s)
        module, _, extras = build("spot", ctx)
        assert extras["spot_source"] == chosen and torch.equal(module.weight.detach(), _source(tmp_path, chosen))


def test_attempt_prompts_depend_on_the_input_and_mix_k_plus_one_prompts(tmp_path):
    backbone = tiny_backbone("causal")
    ctx = context(backbone, tmp_path)
    module, _, _ = build("attempt", ctx)
    batch = ctx.task.splits["train"].batch([0, 1, 0])
    weights, prompts = module.attention(batch), module(batch)
    assert weights.shape == (3, len(SOURCES) + 1) and torch.allclose(weights.sum(-1), torch.ones(3))
    assert prompts.shape == (3, L, D)
    assert torch.equal(prompts[0], prompts[2]) and not torch.equal(prompts[0], prompts[1])
    expected = module.target + torch.einsum("k,kld->ld", weights[1], module.prompts())
    assert torch.allclose(prompts[1], expected)


@pytest.mark.parametrize("kind", ["causal", "gemma3"])
def test_untrained_prefix_is_the_keys_and_values_of_its_sampled_tokens(kind, tmp_path):
    """Checks the cache layout end to end: the prefix acts exactly as the sampled tokens prepended as text (on
    Gemma-3 also past its sliding window: the prefix keeps all L positions of every layer)."""
    backbone = tiny_backbone(kind)
    ctx = context(backbone, tmp_path)
    module, _, _ = build("prefix", ctx)
    batch = ctx.task.splits["dev"].batch(list(range(8)))
    tokens = backbone.input_embeddings(backbone.sample_vocab_ids(L, torch.Generator().manual_seed(0)))
    layers, kv_heads, head_dim = KV_SHAPES[kind]
    with torch.no_grad():
        prompt = module(batch)
        assert prompt.embeds.shape == (0, D) and prompt.prefix.shape == (layers, 2, 8, kv_heads, L, head_dim)
        with_prefix = backbone(prompt, batch.input_ids, batch.attention_mask, ctx.task.labels).logits
        with_tokens = backbone(tokens, batch.input_ids, batch.attention_mask, ctx.task.labels).logits
        assert torch.allclose(with_prefix, with_tokens, atol=1e-5)
        multi = backbone.label_words([" good movie", " bad"], "test")  # several passes share one prefix
        assert torch.allclose(
            backbone(module(batch), batch.input_ids, batch.attention_mask, multi).logits,
            backbone(tokens, batch.input_ids, batch.attention_mask, multi).logits, atol=1e-5,
        )


def test_cpt_context_is_class_balanced_and_its_delta_stays_in_the_ball(tmp_path):
    labels = [0] * 10 + [1] * 3
    assert sorted(labels[r] for r in balanced_rows(labels, 4, seed=0)) == [0, 0, 1, 1]
    assert sorted(labels[r] for r in balanced_rows(labels, 8, seed=0)) == [0] * 5 + [1] * 3  # class 1 runs out
    assert balanced_rows(labels, 4, seed=3) == balanced_rows(labels, 4, seed=3)
    backbone = tiny_backbone("causal")
    ctx = context(backbone, tmp_path, cpt_examples=2, cpt_epsilon=0.5)
    module, groups, extras = build("cpt", ctx)
    types = torch.tensor(module.cpt.config.cpt_tokens_type_mask)
    ids = torch.tensor(module.cpt.config.cpt_token_ids)
    assert torch.equal(module.cpt.embedding.weight, backbone.input_embeddings.weight[ids])
    assert int((types % 4 == LABEL % 4).sum()) == 2 and len(ids) == extras["cpt_tokens"]  # one label word each
    config = TrainConfig(steps=10, param_groups=groups, seed=0)
    fit_and_evaluate(backbone, module, ctx.task, MODEL, config, "cpt")  # evaluation ends with a forward pass
    delta = module.export()["delta"]
    radius = 0.5 * (D / 2048) ** 0.5
    assert (delta.norm(dim=1) <= radius * (1 + 1e-5)).all() and delta.norm(dim=1).max() > radius / 2
    assert (delta[types % 4 == 0] == 0).all()  # label tokens never change
    assert torch.allclose(module.export()["prompt"], module.cpt.embedding.weight + delta)


def test_markers_leave_the_text_and_record_token_positions():
    assert strip_markers("[P] Review: x [P] Sentiment:") == ("Review: x Sentiment:", [0, 10])
    assert strip_markers("Sentiment: [P]") == ("Sentiment:", [10])
    assert strip_markers("no markers") == ("no markers", [])
    backbone = tiny_backbone("causal")
    texts = ["[P] good movie [P] sentiment :", "[P] bad film plot sentiment : [P]"]
    ids, positions = encode_marked(backbone, texts, 16, markers=2, where="test")
    plain = [strip_markers(t)[0] for t in texts]
    assert ids == [backbone.tokenizer(t)["input_ids"] for t in plain]  # anchor words stay tokens
    assert positions == [[0, 2], [0, 5]]  # before "good", before "sentiment"; after the last token
    with pytest.raises(PipelineError, match="row 0 holds 3"):
        encode_marked(backbone, ["[P] good [P] bad [P]"], 16, markers=2, where="test")
    assert marker_groups(torch.tensor([[0, 5]]), 5).tolist() == [[0, 0, 0, 5, 5]]


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_virtual_tokens_land_at_the_marker_positions(kind):
    """The backbone's insertion equals running each row alone with the virtual tokens spliced in by hand."""
    backbone = tiny_backbone(kind)
    texts = ["[P] good movie [P] sentiment :", "[P] bad film plot sentiment : [P]"]
    ids, positions = encode_marked(backbone, texts, 16, markers=2, where="test")
    batch = EncodedSplit(ids, [0, 1], 0, positions).batch([0, 1])
    virtual = torch.randn(L, D, generator=torch.Generator().manual_seed(0))
    spots = marker_groups(batch.marker_positions, L)  # (B, l)
    with torch.no_grad():
        hidden = backbone.prediction_hidden(Prompt(virtual, positions=spots), batch.input_ids, batch.attention_mask)
        for row, tokens in enumerate(ids):
            pieces = []
            for t in range(len(tokens) + 1):
                pieces += [virtual[j : j + 1] for j in range(L) if spots[row, j] == t]
                pieces += [backbone.input_embeddings(torch.tensor(tokens[t : t + 1]))] if t < len(tokens) else []
            embeds = torch.cat(pieces).unsqueeze(0)
            if kind == "causal":
                alone = backbone.model.get_decoder()(inputs_embeds=embeds).last_hidden_state[0, -1]
            else:
                encoded = backbone.model.get_encoder()(inputs_embeds=embeds).last_hidden_state
                start = torch.zeros(1, 1, dtype=torch.long)
                decoded = backbone.model.get_decoder()(input_ids=start, encoder_hidden_states=encoded)
                alone = decoded.last_hidden_state[0, 0]
                if getattr(backbone.model.config, "scale_decoder_outputs", False):
                    alone = alone * D**-0.5  # as T5 does before its tied output layer
            assert torch.allclose(hidden[row], alone, atol=1e-5)


def test_ptuning_places_its_tokens_at_the_template_markers(tmp_path):
    backbone = tiny_backbone("causal")
    task = toy_task(backbone)
    texts = [f"[P] {'good' if i % 2 == 0 else 'bad'} movie [P] sentiment :" for i in range(16)]
    ids, positions = encode_marked(backbone, texts, 16, markers=2, where="test")
    split = EncodedSplit(ids, [i % 2 for i in range(16)], 0, positions)
    task.info.template = "[P] {text} [P] sentiment :"
    task = TaskData(info=task.info, labels=task.labels, splits={"train": split, "dev": split, "test": split})
    module, groups, _ = build("ptuning", context(backbone, tmp_path, task=task))
    prompt = module(split.batch([0, 1]))
    assert isinstance(prompt, Prompt) and prompt.positions.tolist() == [[0, 0, 2, 2]] * 2
    assert set(module.export()) == {"virtual_tokens"}  # not a prepended prompt: not exported as one
    config = TrainConfig(steps=15, param_groups=groups, seed=0)
    losses = [h["loss"] for h in fit_and_evaluate(backbone, module, task, MODEL, config, "p").result.history]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_ptuning_lstm_encoder_count(tmp_path):
    backbone = tiny_backbone("causal")
    module, _, _ = build("ptuning", context(backbone, tmp_path, ptuning_encoder="lstm"))
    h = D
    lstm = 2 * (4 * h * (D + h) + 8 * h) + 2 * (4 * h * 3 * h + 8 * h)
    head = (2 * h * 2 * h + 2 * h) + (2 * h * D + D)
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == L * D + lstm + head


def test_method_knobs_are_validated_and_default():
    assert MethodSettings.from_params({"adapt": {}}) == MethodSettings()
    for bad, match in (
        ({"ptuning_encoder": "gru"}, "adapt.ptuning_encoder must be one of mlp, lstm"),
        ({"cpt_examples": 0}, "adapt.cpt_examples must be > 0"),
        ({"cpt_epsilon": "big"}, "adapt.cpt_epsilon must be int or float"),
        ({"encoder_lr": -1.0}, "adapt.encoder_lr must be > 0"),
        ({"pt_init": "zeros"}, "adapt.pt_init must be one of vocab, label_words"),
        ({"rank": -1}, "adapt.rank must be >= 0"),
    ):
        with pytest.raises(PipelineError, match=match):
            MethodSettings.from_params({"adapt": bad})


def test_the_data_stage_keeps_markers_in_the_template():
    spec = TaskSpec.from_params("t", {
        "source": {"kind": "file", "path": "x.csv", "format": "csv"}, "columns": {"text": "t", "label": "y"},
        "template": "[P] Review: {text} [P] Sentiment:", "label_words": {"a": " good", "b": " bad"},
        "splits": {"train": 4, "dev": 2, "test": 2},
    })
    examples = to_examples(spec, pd.DataFrame({"t": ["fine film"], "y": ["a"]}), "x.csv")
    assert spec.template == "[P] Review: {text} [P] Sentiment:"
    assert examples["input"].tolist() == ["[P] Review: fine film [P] Sentiment:"]
    assert np.array_equal(examples["label"].to_numpy(), [0])


def test_runs_without_a_single_prompt_are_refused_by_export_and_predict(tmp_path):
    from pipeline.cli.artifact import load_prompt_artifact
    from pipeline.config.params import NumericsSettings
    from pipeline.flows.runs import artifact_meta, task_meta
    from tiny_runs import TASK, save_backbone_folder, save_task_info

    backbone = save_backbone_folder(tmp_path / "backbone")
    save_task_info(tmp_path / "prepared")
    task = TaskData(info=TASK, labels=backbone.label_words(TASK.label_words, "test"))
    meta = artifact_meta(backbone, MODEL, NumericsSettings(), method="attempt", **task_meta(task))
    save_tensors(tmp_path / "run" / "params.safetensors", {"target": torch.zeros(L, D)}, meta)
    with pytest.raises(PipelineError, match="method 'attempt' leaves no single \\(l, d\\) prompt"):
        load_prompt_artifact(tmp_path / "run", tmp_path / "backbone", tmp_path / "prepared")


@pytest.mark.parametrize("method", list(TARGET_METHODS))
def test_every_method_records_a_dev_curve_and_is_scored_at_the_step_best_dev_selects(method, tmp_path):
    """One hook for all: no method needs code of its own for the dev curve or for restoring its best state."""
    backbone = tiny_backbone("causal")
    ctx = context(backbone, tmp_path)
    module, groups, _ = build(method, ctx)
    config = TrainConfig(steps=6, param_groups=groups, warmup_steps=1, seed=0)
    run = fit_and_evaluate(backbone, module, ctx.task, MODEL, config, method, dev=DevSettings(3, "best_dev"))
    curve = dict(run.selection["dev_curve"])
    assert list(curve) == [0, 3, 6] and set(run.selection["zero_step"]) == {"dev", "test"}
    assert run.selection["selected_step"] == min(step for step, acc in curve.items() if acc == max(curve.values()))
    assert run.metrics["dev"]["accuracy"] == pytest.approx(curve[run.selection["selected_step"]])


@pytest.mark.parametrize("kind", ["causal", "gemma3"])
def test_label_word_init_puts_each_label_embedding_first_and_keeps_the_vocab_rows_after(kind, tmp_path):
    backbone = tiny_backbone(kind)
    task = toy_task(backbone)
    vocab = build("pt", context(backbone, tmp_path, task=task)).module.weight.detach()
    labelled = build("pt", context(backbone, tmp_path, task=task, pt_init="label_words")).module.weight.detach()
    scale = 32**0.5 if kind == "gemma3" else 1.0  # Gemma's embedding module scales its rows by sqrt(d)
    embeddings = backbone.input_embeddings.weight.detach().float() * scale
    classes = len(task.labels.token_ids)
    for row, ids in enumerate(task.labels.token_ids):
        assert torch.allclose(labelled[row], embeddings[ids].mean(dim=0), rtol=1e-5)
    assert torch.equal(labelled[classes:], vocab[classes:])
    assert not torch.equal(labelled[:classes], vocab[:classes])


@pytest.mark.parametrize("method", ["mpt", "mpt_full"])
def test_a_wider_target_rank_starts_at_the_same_prompt_and_trains_more_factor_entries(method, tmp_path):
    backbone = tiny_backbone("causal")
    base = build(method, context(backbone, tmp_path)).module
    wide = build(method, context(backbone, tmp_path, rank=4)).module
    assert wide.u.shape == (L, 4) and wide.v.shape == (4, D)
    assert torch.allclose(wide(), base(), atol=1e-6)  # the new components add a product of zero
    wide(None).pow(2).sum().backward()
    assert wide.u.grad[:, 1:].abs().sum() == 0 and wide.v.grad[1:].abs().sum() > 0  # V's new rows learn first


def test_a_target_rank_below_the_distilled_rank_is_refused():
    with pytest.raises(PipelineError, match="adapt.rank is 1 but distill.rank is 2"):
        widened(torch.ones(L, 2), torch.ones(2, D), 1, seed=0)
