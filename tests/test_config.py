"""Recipe validation: one-line errors that name the field and what is allowed."""

import dataclasses

import pytest

from lmforge.config import (
    Recipe,
    apply_overrides,
    build_recipe,
    builtin_recipes,
    load_recipe,
    parse_override,
    resolve_recipe_path,
)
from lmforge.errors import ConfigError
from lmforge.models.gpt import GPTConfig


def test_defaults_validate_and_round_trip_yaml(tmp_path):
    r = build_recipe({"data": {"corpus": "world"}, "model": {"arch": "gpt", "n_layer": 2}})
    assert isinstance(r.model, GPTConfig) and r.model.n_layer == 2
    p = tmp_path / "r.yaml"
    p.write_text(r.to_yaml())
    again = load_recipe(p)
    assert again.to_dict() == r.to_dict()


def test_unknown_section_key_names_field_and_allowed():
    with pytest.raises(ConfigError) as e:
        build_recipe({"train": {"lr": 1e-3, "learning_rate": 3}})
    msg = str(e.value)
    assert "\n" not in msg
    assert "train.learning_rate: unknown field" in msg
    assert "allowed:" in msg and "max_steps" in msg


def test_unknown_top_level_section():
    with pytest.raises(ConfigError) as e:
        build_recipe({"trian": {}})
    assert "trian: unknown field" in str(e.value)
    assert "did you mean 'train'" in str(e.value)


def test_unknown_model_field_lists_gpt_fields():
    with pytest.raises(ConfigError) as e:
        build_recipe({"model": {"arch": "gpt", "n_layers": 4}})
    msg = str(e.value)
    assert "model.n_layers: unknown field" in msg and "did you mean 'n_layer'" in msg
    assert "d_model" in msg


def test_ill_typed_field():
    with pytest.raises(ConfigError) as e:
        build_recipe({"train": {"lr": "fast"}})
    assert "train.lr" in str(e.value) and "fast" in str(e.value)


def test_literal_field_lists_allowed_values():
    with pytest.raises(ConfigError) as e:
        build_recipe({"train": {"schedule": "step"}})
    msg = str(e.value)
    assert "train.schedule" in msg and "'cosine'" in msg and "'linear'" in msg


def test_out_of_range_and_model_constraint():
    with pytest.raises(ConfigError, match="train.batch_size"):
        build_recipe({"train": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="not divisible by n_head"):
        build_recipe({"model": {"d_model": 100, "n_head": 3}})
    with pytest.raises(ConfigError, match="unknown architecture 'gpt9'"):
        build_recipe({"model": {"arch": "gpt9"}})


def test_overrides_are_typed():
    assert parse_override("train.lr=3e-4") == (["train", "lr"], 3e-4)
    assert parse_override("train.compile=true") == (["train", "compile"], True)
    assert parse_override("data.inputs=[a.txt, b.txt]") == (["data", "inputs"], ["a.txt", "b.txt"])
    raw = apply_overrides({}, ["train.lr=3e-4", "model.n_layer=3", "run.name=x"])
    r = build_recipe(raw)
    assert r.train.lr == 3e-4 and r.model.n_layer == 3 and r.run.name == "x"
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="train.nope: unknown field"):
        load_recipe(None, ["train.nope=1"])


def test_style_defaults_fill_architecture():
    llama = GPTConfig(style="llama", n_head=8, n_kv_head=2, d_model=256)
    assert (llama.pos, llama.norm, llama.mlp, llama.bias) == ("rope", "rmsnorm", "swiglu", False)
    assert llama.d_ff % 64 == 0 and llama.d_ff >= 8 * 256 // 3
    gpt2 = GPTConfig()
    assert (gpt2.pos, gpt2.norm, gpt2.mlp, gpt2.tie_embeddings) == \
        ("learned", "layernorm", "gelu", True)
    assert dataclasses.asdict(GPTConfig(**dataclasses.asdict(llama))) == dataclasses.asdict(llama)


def test_builtin_recipes_all_validate():
    names = builtin_recipes()
    assert "quickstart" in names and "gpt-world" in names
    for name in names:
        assert isinstance(load_recipe(resolve_recipe_path(name)), Recipe)
    with pytest.raises(ConfigError, match="not found"):
        resolve_recipe_path("no-such-recipe")


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(p)
    p.write_bytes(b"train:\n  lr: \xff\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_recipe(p)
