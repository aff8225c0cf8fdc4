"""Losses outside ssl_ext's trainer: on plain tensors, and in Classy Vision's registry from ``import ssl_ext``.

The Classy Vision checks run in a fresh interpreter, so nothing this test process
already imported (``ssl_ext.plugins``, registry look-ups) can do the registering.
"""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
import torch

import registry
from registry import build_loss
from loss_testing import RANDOM_LOSSES, STATEFUL_LOSSES, call_loss, tiny_case, tiny_context

SSL_EXT_LOSSES = sorted(n for n in registry.LOSSES.names() if registry.LOSSES.get(n).__module__.startswith("ssl_ext."))


@pytest.mark.parametrize("name", SSL_EXT_LOSSES)
def test_forward_tensors_is_the_trainer_path(name):
    params, student, teacher = tiny_case(name)
    loss = build_loss({"NAME": name, "PARAMS": params}).to(torch.float64)
    torch.manual_seed(0)
    through_trainer_output = call_loss(name, loss, student, teacher)
    torch.manual_seed(0)
    batch, extras = tiny_context(name)
    plain = loss.forward_tensors(student=student, teacher=teacher, batch=batch, extras=extras)
    assert plain.keys() == through_trainer_output.keys()
    for key, value in through_trainer_output.items():
        assert torch.equal(plain[key], value), key
    if name not in RANDOM_LOSSES | STATEFUL_LOSSES:
        again = loss.forward_tensors(student=student, teacher=teacher, batch=batch, extras=extras)
        assert torch.equal(again["loss"], plain["loss"])


@pytest.mark.parametrize("name", SSL_EXT_LOSSES)
def test_every_loss_documents_a_runnable_example(name):
    # test_functional.py runs the examples; this checks that each registered loss has one, in its class or
    # module docstring or in those of the ssl_ext loss it specializes (pmsn_loss shows its own, pdino_loss
    # is used as dino_loss is).
    cls = registry.LOSSES.get(name)
    documented = [
        (inspect.getdoc(klass) or "") + (inspect.getdoc(sys.modules[klass.__module__]) or "")
        for klass in inspect.getmro(cls)
        if klass.__module__.startswith("ssl_ext.losses.") and klass.__module__ != "ssl_ext.losses.base"
    ]
    assert any(">>>" in doc for doc in documented), f"{name} ({cls.__module__}) shows no >>> example of its use"


def test_a_list_of_head_outputs_is_refused_with_the_same_message():
    loss = build_loss({"NAME": "simclr_loss"})
    with pytest.raises(TypeError, match=r"a list of 2 tensors as its model output.*ssl_ext\.integrations\.vissl"):
        loss([torch.randn(4, 3), torch.randn(4, 3)], torch.zeros(4))


def run_fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON line last (stderr comes back as "stderr")."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "stderr": out.stderr}


# One fresh interpreter for both checks (each costs seconds of imports on a busy machine).
IMPORT_THEN_CALL_LIKE_CLASSY = """
import json, logging, sys
import torch
from classy_vision.losses import ClassyLoss, LOSS_REGISTRY, build_loss, register_loss

@register_loss("dino_loss")  # as VISSL's own dino_loss does when vissl.losses is imported first
class OtherFrameworksDino(ClassyLoss):
    pass

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
import ssl_ext
registered = sorted(n for n, cls in LOSS_REGISTRY.items() if cls.__module__.startswith("ssl_ext."))
kept_other_frameworks = LOSS_REGISTRY["dino_loss"] is OtherFrameworksDino
plugins_imported = "ssl_ext.plugins" in sys.modules  # a registry look-up would import every plugin folder
messages = {}
for name in registered:
    loss = build_loss({"name": name})  # Classy Vision builds it by name
    try:
        loss(torch.randn(8, 256), torch.zeros(8, dtype=torch.long))  # what a Classy task's train step does
        messages[name] = None
    except Exception as exc:
        messages[name] = [type(exc).__name__, str(exc)]
print(json.dumps({"registered": registered, "plugins_imported": plugins_imported, "messages": messages,
                  "kept_other_frameworks": kept_other_frameworks}))
"""


@pytest.fixture(scope="module")
def fresh_import_then_classy_call():
    return run_fresh(IMPORT_THEN_CALL_LIKE_CLASSY)


def test_import_ssl_ext_registers_every_loss_in_classy_vision(fresh_import_then_classy_call):
    result = fresh_import_then_classy_call
    assert not result["plugins_imported"]  # `import ssl_ext` itself did the registering
    assert result["registered"] == [n for n in SSL_EXT_LOSSES if n != "dino_loss"]


def test_a_classy_name_taken_by_another_framework_is_kept_and_said(fresh_import_then_classy_call):
    # VISSL imported before ssl_ext owns dino_loss/swav_loss in Classy's registry: import ssl_ext still works.
    assert fresh_import_then_classy_call["kept_other_frameworks"]
    assert "already has 'dino_loss'" in fresh_import_then_classy_call["stderr"]


def test_a_classy_task_call_names_the_vissl_adapter(fresh_import_then_classy_call):
    messages = fresh_import_then_classy_call["messages"]
    for name, error in messages.items():
        assert error is not None, f"{name} accepted a bare tensor as its model output"
        kind, message = error
        assert kind == "TypeError", (name, error)
        assert "Tensor of shape (8, 256)" in message and "ssl_ext.integrations.vissl" in message, (name, message)
        assert "forward_tensors" in message, (name, message)
