"""The registry and the files agree, in both directions, and the rows match SPEC.md section 8."""

import importlib
import pathlib
import subprocess
import sys
import tomllib

import pytest

from snnref import registry
from snnref.spec import surrogates

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "snnref" / "spec"
# Modules of snnref/spec that are infrastructure, not a model family.
SPEC_INFRASTRUCTURE = {"__init__", "api", "surrogates", "sums"}

MODEL_KEYS = [
    "tether.LIF", "tether.PLIF", "tether.ALIF", "tether.SpikingSelfAttention",
    "rnnbuilder.LIF", "rnnbuilder.NoReset", "rnnbuilder.Cooldown", "rnnbuilder.Adaptive",
    "rnnbuilder.Discontinuous", "qualia.IFSRL", "qualia.ATIF", "hxtorch.cuba_lif",
    "hxtorch.cuba_refractory_lif", "hxtorch.cuba_li", "hxtorch.cuba_iaf",
    "hxtorch.cuba_refractory_iaf",
]
SURROGATE_KEYS = ["arctan", "sigmoid", "fast_sigmoid", "superspike", "spike_linear"]


def test_the_keys_are_exactly_those_of_the_issue():
    assert sorted(registry.MODELS) == sorted(MODEL_KEYS)
    assert sorted(registry.SURROGATES) == sorted(SURROGATE_KEYS)


def test_every_family_has_its_spec_module():
    for row in registry.MODELS.values():
        module = importlib.import_module(f"snnref.spec.{row.family}")
        assert callable(module.forward) and callable(module.backward), row.key


def test_every_spec_module_is_used_by_a_row():
    families = {row.family for row in registry.MODELS.values()}
    modules = {p.stem for p in SPEC_DIR.glob("*.py")} - SPEC_INFRASTRUCTURE
    assert modules == families


def test_surrogate_rows_and_implementations_agree():
    assert set(surrogates.IMPLEMENTATIONS) == set(registry.SURROGATES)


def test_every_model_has_a_hand_worked_test():
    text = "\n".join(p.read_text() for p in (ROOT / "tests" / "handworked").glob("test_*.py"))
    missing = [key for key in registry.MODELS if f'"{key}"' not in text]
    assert not missing, f"no hand-worked test mentions {missing}"


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_row_is_consistent(key):
    row = registry.MODELS[key]
    names = [p.name for p in row.params]
    assert len(set(names)) == len(names)
    for name in row.surrogates:
        scale = registry.SURROGATES[name].scale
        # A model with several spiking stages names one scale parameter per stage.
        for scale_param in row.options.get("scale_params", (scale,)):
            assert scale_param in names, f"{key} accepts {name} but has no parameter {scale_param!r}"
            # A trainable scale needs dF/dscale from every surrogate the model accepts.
            if row.param(scale_param).trainable:
                assert registry.SURROGATES[name].trainable_scale, (key, name)
    for var in row.state:
        if isinstance(var.initial, str):
            assert var.initial in names, (key, var.name)
    assert (row.spike_test is None) == (not row.surrogates)
    assert row.spike_test in (None, ">", ">=")
    assert row.reset in (None, "zero", "subtract", "to_reset")


# SPEC.md section 8: (trainable parameters, state variables, default surrogate).
SECTION_8 = {
    "tether.LIF": ({"decay", "threshold", "alpha"}, ("v",), "arctan"),
    "tether.PLIF": ({"decay", "threshold", "alpha"}, ("v",), "arctan"),
    "tether.ALIF": ({"decay_v", "decay_a", "threshold", "beta", "alpha"}, ("v", "a"), "arctan"),
    "tether.SpikingSelfAttention": (
        {"q_weight", "k_weight", "v_weight", "proj_weight", "proj_bias"}
        | {f"{p}_{n}" for p in "qkv" for n in ("decay", "threshold", "alpha")},
        ("q_v", "k_v", "v_v", "context"), "arctan",
    ),
    "rnnbuilder.LIF": (set(), ("m",), "spike_linear"),
    "rnnbuilder.NoReset": (set(), ("m",), "spike_linear"),
    "rnnbuilder.Cooldown": (set(), ("m",), "spike_linear"),
    "rnnbuilder.Adaptive": (set(), ("m", "r"), "spike_linear"),
    "rnnbuilder.Discontinuous": (set(), (), "spike_linear"),
    "qualia.IFSRL": ({"threshold"}, ("v",), "sigmoid"),
    "qualia.ATIF": ({"threshold"}, ("v",), "sigmoid"),
    "hxtorch.cuba_lif": ({"leak", "reset", "threshold", "tau_syn", "tau_mem"}, ("v", "i"), "superspike"),
    "hxtorch.cuba_refractory_lif": (
        {"leak", "reset", "threshold", "tau_syn", "tau_mem"}, ("v", "i", "r"), "superspike"),
    "hxtorch.cuba_li": ({"leak", "tau_syn", "tau_mem"}, ("v", "i"), None),
    "hxtorch.cuba_iaf": ({"reset", "threshold", "tau_syn", "tau_mem"}, ("v", "i"), "superspike"),
    "hxtorch.cuba_refractory_iaf": ({"reset", "threshold", "tau_syn", "tau_mem"}, ("v", "i", "r"), "superspike"),
}

# Seed defaults, SPEC.md section 8.
DEFAULTS = {
    "tether.LIF": {"decay": 0.9, "threshold": 1.0, "alpha": 2.0},
    "tether.ALIF": {"decay_v": 0.9, "decay_a": 0.9, "threshold": 1.0, "beta": 0.5, "alpha": 2.0},
    "rnnbuilder.Adaptive": {"tau": 5.0, "tau_thr": 5.0, "gamma": 0.25, "gradient_factor": 0.3},
    "qualia.IFSRL": {"threshold": 1.0, "alpha": 1.0},
    "hxtorch.cuba_refractory_lif": {"leak": 0.0, "reset": 0.0, "threshold": 1.0, "tau_syn": 1e-5,
                                    "tau_mem": 1e-5, "alpha": 50.0, "refractory_time": 1e-6, "dt": 1e-6},
}


@pytest.mark.parametrize("key", sorted(SECTION_8))
def test_rows_match_section_8(key):
    trainable, state, default_surrogate = SECTION_8[key]
    row = registry.MODELS[key]
    assert set(row.trainable) == trainable
    assert row.state_names == state
    assert row.default_surrogate == default_surrogate


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_seed_defaults(key):
    row = registry.MODELS[key]
    assert {p.name: p.default for p in row.params} == DEFAULTS[key]


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="tether.LIF"):
        registry.model("tether.lif")
    with pytest.raises(ValueError, match="superspike"):
        registry.surrogate("super_spike")


def test_registry_and_spec_do_not_import_torch():
    code = (
        "import sys, snnref.registry, snnref.spec, snnref.checks, snnref.tolerance\n"
        "import snnref.spec.api as api\n"
        "for row in snnref.registry.MODELS.values(): api._family(row)\n"
        "bad = [m for m in ('torch', 'triton') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kernels_install_as_snnref_kernels_only():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # (snnref.goldens maps the golden store onto golden/: package data, no code.)
    assert config["package-dir"] == {"snnref.kernels": "kernels", "snnref.goldens": "golden"}
    assert "kernels" not in config["packages"] and "snnref.kernels" in config["packages"]
    importlib.import_module("snnref.kernels")


def test_every_package_is_in_the_explicit_list():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "snnref").rglob("__init__.py")}
    found |= {".".join(("snnref",) + p.parent.relative_to(ROOT).parts) for p in (ROOT / "kernels").rglob("__init__.py")}
    assert found | {"snnref.goldens"} == set(config["packages"])
