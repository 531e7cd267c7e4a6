"""Inputs we load run no code and read nothing outside their root (issue 14): wheel members stay inside the wheel,
the Hub is never asked to trust remote code, YAML is read safely, and no loader of ours unpickles anything.

Paths inside archives and folders (``../``, absolute names, symbolic links) are tried in test_bad_files.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import load as params_load
from pipeline.config.load import read_params
from pipeline.config.schema import check_backbone_spec
from pipeline.config.sources import check_source
from pipeline.errors import PipelineError
from pipeline.model import backbone as backbone_module
from pipeline.model import gguf_weights, materialise
from pipeline.data.sources import load_raw_table
from tiny import save_tiny_backbone

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ["../data.csv", "/etc/passwd", "pkg/../../data.csv", "pkg/data/../../../data.csv"]
PACKAGE = {"kind": "package", "package": "pkg", "version": "1.0", "sha256": "0" * 64, "format": "csv"}


# ------------------------------------------------------------------------------------------ paths in wheels


@pytest.mark.parametrize("member", OUTSIDE)
def test_task_member_outside_the_wheel_is_refused(member):
    with pytest.raises(PipelineError, match=r"tasks\.t\.source\.member must be a path inside the wheel"):
        check_source({**PACKAGE, "member": member}, "tasks.t.source")


@pytest.mark.parametrize("member", OUTSIDE)
def test_backbone_member_outside_the_wheel_is_refused(member):
    source = {**PACKAGE, "format": "gguf", "member": member}
    with pytest.raises(PipelineError, match=r"backbone\.source\.member must be a path inside the wheel"):
        check_backbone_spec({"name": "m", "kind": "causal", "source": source})


def test_members_inside_the_wheel_pass():
    check_source({**PACKAGE, "member": "pkg/data/x..y.csv"}, "tasks.t.source")
    check_backbone_spec({"name": "m", "kind": "causal", "source": {**PACKAGE, "format": "gguf", "member": "m/a.gguf"}})


# ---------------------------------------------------------------------------------------- trust_remote_code


class Recorder:
    """Stands in for a loading function: records its keyword arguments, returns ``result``."""

    def __init__(self, result: object = None) -> None:
        self.calls: list[dict] = []
        self.result = result

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append(kwargs)
        return self.result


def test_hub_dataset_loading_never_sets_trust_remote_code(tmp_path, monkeypatch):
    import datasets

    recorder = Recorder(datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}))
    monkeypatch.setattr(datasets, "load_dataset", recorder)
    table, _ = load_raw_table({"kind": "hub", "dataset": "someone/set", "split": "train"}, "tasks.t.source", tmp_path)
    assert table["label"].tolist() == ["0", "1"]
    assert len(recorder.calls) == 1 and not recorder.calls[0].get("trust_remote_code")
    assert "trust_remote_code" not in recorder.calls[0]


def test_backbone_loading_never_trusts_remote_code_and_reads_only_safetensors(monkeypatch):
    tokenizer, model = Recorder("tokenizer"), Recorder("model")
    monkeypatch.setattr(materialise.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(materialise.AutoModelForCausalLM, "from_pretrained", model)
    assert materialise._tokenizer("someone/model", {"revision": "main"}) == "tokenizer"
    assert materialise._model("causal", "someone/model", {"revision": "main"}) == "model"
    assert tokenizer.calls[0]["trust_remote_code"] is False and model.calls[0]["trust_remote_code"] is False
    assert model.calls[0]["use_safetensors"] is True


def test_a_gguf_backbone_builds_no_remote_code(tmp_path, monkeypatch):
    """A GGUF is neither pickle nor safetensors: its config is read with remote code off, its model never loaded."""
    config = Recorder("config")
    monkeypatch.setattr(gguf_weights.AutoConfig, "from_pretrained", config)
    monkeypatch.setattr(gguf_weights.AutoModelForCausalLM, "from_config", Recorder(None))

    def stop(*args: object, **kwargs: object) -> None:
        raise LookupError("stop after the config")

    monkeypatch.setattr(gguf_weights, "load_gguf_checkpoint", stop)
    with pytest.raises(LookupError, match="stop after the config"):
        gguf_weights.save_gguf_weights(tmp_path / "m.gguf", "causal", tmp_path / "out")
    assert config.calls[0]["trust_remote_code"] is False and config.calls[0]["gguf_file"] == "m.gguf"


def test_materialised_backbone_is_loaded_without_remote_code_and_from_safetensors(tmp_path, monkeypatch):
    info = {"name": "m", "kind": "causal", "hidden_size": 32, "vocab_size": 8, "fingerprint": "x"}
    (tmp_path / backbone_module.INFO_FILE).write_text(json.dumps(info))
    tokenizer, model = Recorder("tokenizer"), Recorder(torch.nn.Linear(1, 1))
    monkeypatch.setattr(backbone_module.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(backbone_module.AutoModelForCausalLM, "from_pretrained", model)
    monkeypatch.setattr(backbone_module, "Backbone", lambda *args: args)
    backbone_module.load_backbone(tmp_path)
    assert tokenizer.calls[0]["trust_remote_code"] is False and model.calls[0]["trust_remote_code"] is False
    assert model.calls[0]["use_safetensors"] is True


def test_a_model_with_only_pickled_weights_is_refused_never_unpickled(tmp_path, monkeypatch):
    folder = save_tiny_backbone(tmp_path / "tiny", "causal")
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    torch.save(state, folder / "pytorch_model.bin")  # the pickled form older Hub models ship
    (folder / "model.safetensors").unlink()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load (unpickling) must never run"))
    spec = {"name": "tiny", "kind": "causal", "source": {"kind": "hub", "model": str(folder)}}
    with pytest.raises(PipelineError, match=r"^params\.yaml: backbone\.source\.model: cannot load .*model\.safetensors"):
        materialise.materialise_backbone(spec, tmp_path / "backbone", tmp_path)
    assert not (tmp_path / "backbone").exists()


# ------------------------------------------------------------------------------------------------------ YAML


@pytest.mark.parametrize(
    "payload", ["!!python/object/apply:os.system ['touch {marker}']", "!!python/name:os.system", "!!python/object:os.X {}"]
)
def test_params_yaml_runs_no_code(tmp_path, payload):
    marker = tmp_path / "ran"
    (tmp_path / "params.yaml").write_text(f"seed: 0\nbad: {payload.replace('{marker}', str(marker))}\n")
    with pytest.raises(PipelineError, match=r"params\.yaml: not valid YAML at line 2"):
        read_params(tmp_path / "params.yaml")
    assert not marker.exists()
    assert issubclass(params_load._UniqueKeyLoader, yaml.SafeLoader)


# ------------------------------------------------------------------------------------- a scan of our loaders

# Modules whose loading runs code from the data (unpickling), and calls that load that way or trust the data.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_CALLS = {"torch.load", "read_pickle", "yaml.unsafe_load", "yaml.full_load", "yaml.full_load_all",
                "yaml.unsafe_load_all"}  # fmt: skip
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "_UniqueKeyLoader"}


def _name(node: ast.AST) -> str:
    """Dotted name of a call's function (``torch.load``, ``pd.read_pickle`` as ``read_pickle``)."""
    if isinstance(node, ast.Attribute):
        owner = _name(node.value)
        return f"{owner}.{node.attr}" if owner in ("torch", "yaml", "np", "numpy") else node.attr
    return node.id if isinstance(node, ast.Name) else ""


def unsafe_loads(source: str) -> list[str]:
    """What in ``source`` could run code from the data it loads: one line per finding."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"import {name}" for name in names if name.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name, keywords = _name(node.func), {keyword.arg: keyword.value for keyword in node.keywords}
        if name in UNSAFE_CALLS:
            found.append(name)
        if name in ("yaml.load", "yaml.load_all") and _name(keywords.get("Loader", ast.Name("?"))) not in SAFE_LOADERS:
            found.append(f"{name} without a safe Loader")
        if name in ("np.load", "numpy.load") and not (
            isinstance(keywords.get("allow_pickle"), ast.Constant) and keywords["allow_pickle"].value is False
        ):
            found.append(f"{name} without allow_pickle=False")
        remote = keywords.get("trust_remote_code")
        if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
            found.append("trust_remote_code not False")
    return found


@pytest.mark.parametrize(
    ("snippet", "finding"),
    [
        ("import pickle", "import pickle"),
        ("from joblib import load", "import joblib"),
        ("torch.load(path)", "torch.load"),
        ("pd.read_pickle(path)", "read_pickle"),
        ("yaml.load(text)", "yaml.load without a safe Loader"),
        ("yaml.load(text, Loader=yaml.Loader)", "yaml.load without a safe Loader"),
        ("yaml.unsafe_load(text)", "yaml.unsafe_load"),
        ("np.load(path, allow_pickle=True)", "np.load without allow_pickle=False"),
        ("AutoModel.from_pretrained(m, trust_remote_code=True)", "trust_remote_code not False"),
        ("load_dataset(d, trust_remote_code=flag)", "trust_remote_code not False"),
    ],
)
def test_the_scan_finds_each_unsafe_load(snippet, finding):
    assert unsafe_loads(snippet) == [finding]
    assert unsafe_loads("yaml.load(t, Loader=_UniqueKeyLoader); yaml.safe_load(t); f(trust_remote_code=False)") == []


def test_no_loader_of_ours_unpickles_or_trusts_remote_code():
    files = sorted(path for folder in ("pipeline", "stages", "scripts") for path in (REPO / folder).rglob("*.py"))
    assert len(files) > 40  # the scan reads the code, not an empty folder
    findings = [
        f"{path.relative_to(REPO)}: {finding}"
        for path in files
        for finding in unsafe_loads(path.read_text(encoding="utf-8"))
    ]
    assert findings == []
