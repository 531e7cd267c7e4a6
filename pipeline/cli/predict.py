"""Labels for raw texts from a finished run's prompt (`python -m pipeline predict`).

Each text is whitespace-normalised as the data stage does, filled into the task's template and scored by
label-word scoring on the frozen backbone; the answer is the best label and its probability among the labels.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pipeline.model.backbone import Backbone, load_backbone
from pipeline.data.batching import Batch, EncodedSplit, encode_texts
from pipeline.errors import PipelineError
from pipeline.training.evaluate import predict
from pipeline.data.markers import strip_markers
from pipeline.cli.artifact import PromptArtifact, load_prompt_artifact
from pipeline.config.load import PARAMS_FILE, read_params
from pipeline.config.params import ModelSettings
from pipeline.layout import PREPARED_DIR
from pipeline.store.locks import artifacts_locked

SHOWN_CHARS = 60  # of each text in the output line


@dataclass(frozen=True)
class Prediction:
    """The best label for one input text and its probability among the task's labels."""

    label: str
    word: str  # the label word that was scored, e.g. " spam" for label "1"
    probability: float
    text: str

    def line(self) -> str:
        """``<label>\\t<word>\\t<probability>\\t<text>``; the text on one line (whitespace folded), cut to 60 chars."""
        shown = " ".join(self.text.split())[:SHOWN_CHARS]
        return f"{self.label}\t{self.word.strip()}\t{self.probability:.3f}\t{shown}"


def read_texts(texts: list[str], file: Path | None) -> list[str]:
    """The ``--text`` values, then the file's lines (one text a line); empty ones are skipped."""
    lines: list[str] = []
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise PipelineError(f"{file}: not UTF-8 text") from None
        except OSError as exc:
            raise PipelineError(f"{file}: cannot read ({exc.strerror})") from None
    kept = [text for text in [*texts, *lines] if text.strip()]
    if not kept:
        raise PipelineError("no texts to label; give --text TEXT or a --file with non-empty lines")
    return kept


def predict_texts(
    backbone: Backbone,
    artifact: PromptArtifact,
    texts: list[str],
    batch_size: int,
    max_length: int,
    progress: bool = False,
) -> list[Prediction]:
    """Label each text (in input order); batches are length-sorted so they pad little."""
    task = artifact.task
    if "{text_b}" in task.template:
        raise PipelineError(f"task {task.name}: its template takes a text pair ({{text_b}}); predict takes one text")
    # As the data stage does: whitespace runs folded, ends stripped, then the template filled; then, as training
    # read it, without the template's [P] markers (pipeline.data.markers).
    filled = [strip_markers(task.template.format(text=" ".join(text.split())))[0] for text in texts]
    labels = backbone.label_words(task.label_words, where=f"{artifact.path}: label words")
    # EncodedSplit wants labels; these placeholders are never read.
    split = EncodedSplit(encode_texts(backbone, filled, max_length), [0] * len(texts), backbone.tokenizer.pad_token_id)
    prompt = artifact.prompt.to(backbone.device)  # (l, d), shared by every batch
    with tqdm(total=len(texts), unit="text", disable=not progress, file=sys.stderr) as bar:

        def score(batch: Batch) -> torch.Tensor:
            bar.update(len(batch.rows))
            return backbone(prompt, batch.input_ids, batch.attention_mask, labels).logits  # (B, C)

        probabilities = predict(score, split, batch_size, backbone.device).softmax(dim=-1)  # (N, C)
    chosen, best = probabilities.max(dim=-1)  # (N,) each
    return [
        Prediction(task.labels[c], task.label_words[c], p, text)
        for c, p, text in zip(best.tolist(), chosen.tolist(), texts)
    ]


def run_predict(
    run_dir: Path,
    texts: list[str],
    file: Path | None,
    batch_size: int,
    backbone_dir: Path,
    max_length: int | None = None,
) -> list[Prediction]:
    """Read the inputs, check the run against the backbone, then load the backbone and label the texts.

    ``max_length`` (input tokens) defaults to params.yaml's ``model.max_length``, what the run was trained with.
    """
    if batch_size <= 0:
        raise PipelineError(f"--batch-size must be > 0, got {batch_size}")
    inputs = read_texts(texts, file)  # before any loading: a bad input fails in a second, not after the model
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # Loaded whole, never while a running stage replaces them; the labelling then runs without the lock.
    with artifacts_locked(run_dir, backbone_dir, PREPARED_DIR, exclusive=False):
        artifact = load_prompt_artifact(run_dir, backbone_dir)
        if max_length is None:
            if not PARAMS_FILE.is_file():
                raise PipelineError(f"{PARAMS_FILE}: not found (it gives model.max_length); pass --max-length N")
            max_length = ModelSettings.from_params(read_params()).max_length
        backbone = load_backbone(backbone_dir, device)
    return predict_texts(backbone, artifact, inputs, batch_size, max_length, progress=file is not None)
