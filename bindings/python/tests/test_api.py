"""The Python API as Python users expect it: context managers and reprs, errors that are the standard
exceptions under one GfnError base, KeyboardInterrupt through rewards and progress callbacks, ints that are checked
instead of truncated, rewards that refuse non-numbers, numpy arrays for per-token values, type hints and docstrings,
the optional tqdm progress bar."""
import errno
import inspect
import math
import os
import pickle
import signal
import sys
import threading
import time
import types

import numpy as np
import pytest

import gfnlm
from gfnlm import metrics, rewards
from conftest import FIXTURES, ROOT

REALVOCAB = os.path.join(FIXTURES, "gpt2-realvocab", "legacy17")
TOKENIZER = os.path.join(FIXTURES, "tokenizer")
TINY = os.path.join(FIXTURES, "gptj-tiny", "legacy17")


@pytest.fixture(scope="module")
def tiny():
    return gfnlm.Model.load(TINY)


def trainer(model, reward, **kw):
    lora = gfnlm.LoRA(model, r=2, targets=["q_proj"], seed=4)
    opts = dict(prompts=[[5, 6]], termination=0, max_length=3, batch_size=4, lr=1e-2, warmup_steps=0, seed=3)
    opts.update(kw)
    return gfnlm.GFlowNetTrainer(model, lora, reward, **opts), lora


def zero_reward(prompt_index, states):
    return [0.0] * len(states)


def checkpoint_bytes(tr, directory):
    tr.save(directory)
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))}


# --- handles: context managers, close(), repr -------------------------------------------------------------------

def test_every_handle_is_a_context_manager_with_a_repr(tmp_path):
    with gfnlm.Model.load(REALVOCAB, tokenizer=TOKENIZER) as m:
        assert repr(m) == f"<gfnlm.Model gpt2 n_layer=2 n_embd=32 vocab_size=50257 from {REALVOCAB!r}>"
        assert repr(m.tokenizer) == "<gfnlm.Tokenizer vocab_size=50257 eos_id=50256>"
        with gfnlm.LoRA(m, r=2, targets=["c_attn"]) as lora:
            assert repr(lora) == f"<gfnlm.LoRA parameters={lora.parameter_count}>" and lora.parameter_count > 0
            with gfnlm.SFTTrainer(m, lora) as sft:
                assert repr(sft) == "<gfnlm.SFTTrainer LoRA>"
            assert sft.closed and repr(sft) == "<gfnlm.SFTTrainer (closed)>"
            with gfnlm.rewards.RandomInteger(m) as reward:
                assert repr(reward) == "<gfnlm.rewards.RandomInteger>"
                with gfnlm.GFlowNetTrainer(m, lora, reward, prompts=["Hi"], max_length=2) as tr:
                    assert repr(tr) == "<gfnlm.GFlowNetTrainer objective='subtb' prompts=1>"
                assert tr.closed and repr(tr) == "<gfnlm.GFlowNetTrainer (closed)>"
            assert reward.closed and repr(reward) == "<gfnlm.rewards.RandomInteger (closed)>"
        assert lora.closed and repr(lora) == "<gfnlm.LoRA (closed)>"
    assert m.closed and repr(m) == "<gfnlm.Model (closed)>"
    with pytest.raises(ValueError, match="model is closed") as e:
        m.logits([1, 2])
    assert isinstance(e.value, gfnlm.InvalidArgumentError)
    m.close()  # idempotent
    with gfnlm.Tokenizer.load(TOKENIZER) as tok:
        assert tok.encode("Hello") == [15496]
    assert tok.closed
    with pytest.raises(ValueError, match="tokenizer is closed"):
        tok.encode("Hello")


def test_context_manager_closes_on_exception():
    with pytest.raises(ZeroDivisionError):
        with gfnlm.Model.load(TINY) as m:
            1 / 0
    assert m.closed


# --- errors: the standard exceptions under GfnError ---------------------------------------------------------------

def test_missing_files_are_file_not_found_errors(tmp_path):
    missing = tmp_path / "nothing-here"
    for load in (lambda: gfnlm.Model.load(missing), lambda: gfnlm.Tokenizer.load(missing)):
        with pytest.raises(FileNotFoundError, match="nothing-here") as e:
            load()
        assert isinstance(e.value, gfnlm.GfnError) and isinstance(e.value, OSError)
        assert e.value.errno == errno.ENOENT and e.value.filename == str(missing)
        assert e.value.name == "GFN_ERR_IO"
    with pytest.raises(FileNotFoundError, match="nothing-here"):  # a tokenizer path that does not exist
        gfnlm.Model.load(REALVOCAB, tokenizer=missing)
    m = gfnlm.Model.load(TINY)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        gfnlm.LoRA.load(m, missing)


def test_corrupt_file_is_a_value_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(ValueError, match="not a valid ONNX protobuf") as e:
        gfnlm.Model.load(bad)
    assert isinstance(e.value, gfnlm.FormatError) and isinstance(e.value, gfnlm.GfnError)
    assert e.value.name == "GFN_ERR_FORMAT"


def test_bad_arguments_are_value_errors(tiny):
    with pytest.raises(ValueError, match="match no module of this model; available: attn.k_proj") as e:
        gfnlm.LoRA(tiny, targets=["c_attn"])
    assert isinstance(e.value, gfnlm.InvalidArgumentError) and e.value.name == "GFN_ERR_INVALID_ARGUMENT"
    with pytest.raises(ValueError, match="weights must be one of 'fp32', 'bf16', 'int8', 'q4', got 'fp16'"):
        gfnlm.Model.load(TINY, weights="fp16")
    with pytest.raises(ValueError, match="this model has no tokenizer: pass token ids"):
        tiny.generate("text")


def test_out_of_memory_is_a_memory_error(tiny):
    with pytest.raises(MemoryError, match=r"2147483647 rows need at least \d+ bytes") as e:
        tiny.generate([5, 6], n=2**31 - 1)
    assert isinstance(e.value, gfnlm.GfnMemoryError) and e.value.name == "GFN_ERR_OUT_OF_MEMORY"


def test_error_classes_and_pickling():
    assert issubclass(gfnlm.GfnError, RuntimeError)  # code that caught RuntimeError still does
    expected = {-1: ValueError, -2: OSError, -3: ValueError, -4: NotImplementedError, -5: ValueError,
                -6: MemoryError, -7: ArithmeticError}
    for status, std in expected.items():
        e = gfnlm.GfnError(status, "message")
        assert isinstance(e, std) and isinstance(e, gfnlm.GfnError) and type(e) is not gfnlm.GfnError
        assert str(e) == f"message [{e.name}]"
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and back.status == status and str(back) == str(e)
    assert type(gfnlm.GfnError(-9, "x")) is gfnlm.StateError


# --- objectives, rewards ----------------------------------------------------------------------------------------

def test_unknown_objective_lists_the_valid_ones(tiny):
    with pytest.raises(ValueError, match=r"unknown objective 'TBX': expected one of 'subtb', 'tb', 'db', "
                                         r"'reinforce'") as e:
        trainer(tiny, zero_reward, objective="TBX")
    assert isinstance(e.value, gfnlm.InvalidArgumentError)
    with pytest.raises(ValueError, match=r"unknown layout 'stop': expected one of 'forced_stop', 'next_sentence'"):
        trainer(tiny, zero_reward, layout="stop")
    tr, _ = trainer(tiny, zero_reward, objective="TB")  # names are case-insensitive
    assert tr.objective == "TB" and math.isfinite(tr.step()["loss"])


def test_ppo_is_on_policy_and_trains(tiny):
    """PPO (the paper's baseline): refused with tempered or replayed batches, like REINFORCE; on-policy it steps,
    and β of the KL penalty follows the adaptive rule (KL 0 at step 0: β·(1 − 0.2·n/horizon))."""
    with pytest.raises(gfnlm.InvalidArgumentError, match="PPO trains on its own samples only"):
        trainer(tiny, zero_reward, objective="ppo")
    with pytest.raises(gfnlm.InvalidArgumentError, match="leave-one-out"):
        trainer(tiny, zero_reward, objective="ppo", p_on_policy=1.0, p_replay=0.0, batch_size=1)

    def reward(prompt_index, states):
        return [-float(len(s)) for s in states]

    tr, lora = trainer(tiny, reward, objective="ppo", p_on_policy=1.0, p_replay=0.0, ppo_epochs=3, kl_coef=0.1,
                       kl_target=6.0, kl_horizon=100.0)
    s = tr.step()
    assert s["applied"] and math.isfinite(s["loss"]) and s["trajectories"] == 4
    fixed, _ = trainer(tiny, reward, objective="ppo", p_on_policy=1.0, p_replay=0.0, kl_target=None)
    assert math.isfinite(fixed.step()["loss"])


def test_plain_function_reward_works(tiny):
    seen = []

    def reward(prompt_index, states):
        seen.append(len(states))
        return [-float(len(s)) for s in states]

    tr, _ = trainer(tiny, reward)
    assert isinstance(tr.reward, rewards.Callback)
    stats = tr.train(2)
    assert seen and math.isfinite(stats["loss"]) and stats["step"] == 1
    tr.close()
    assert tr.reward.closed  # the Callback made for it goes with the trainer


def test_non_reward_is_a_type_error_that_says_what_to_pass(tiny):
    with pytest.raises(TypeError, match=r"reward must be a gfnlm.rewards.Reward \(e.g. rewards.LMLikelihood\(model\)\) "
                                        r"or a function fn\(prompt_index, states\) -> one log R per state; got int"):
        trainer(tiny, 42)
    with pytest.raises(TypeError, match="Callback needs a function"):
        rewards.Callback("not callable")


def test_reward_returning_strings_is_refused_and_changes_nothing(tiny, tmp_path):
    tr, lora = trainer(tiny, lambda i, states: ["1.5"] * len(states))
    before = checkpoint_bytes(tr, tmp_path / "before")
    with pytest.raises(TypeError, match=r"the reward function's value for state 0 must be a real number, "
                                        r"got str '1.5'") as e:
        tr.step()
    assert isinstance(e.value.__context__, gfnlm.CallbackError)
    assert checkpoint_bytes(tr, tmp_path / "after") == before
    whole, _ = trainer(tiny, lambda i, states: "1.5")
    with pytest.raises(TypeError, match=r"the reward function returned str '1.5'; it must return a sequence of \d+ "
                                        r"real numbers"):
        whole.step()
    # numpy values are numbers
    ok, _ = trainer(tiny, lambda i, states: np.zeros(len(states), dtype=np.float32))
    assert math.isfinite(ok.step()["loss"])


# --- Ctrl-C -------------------------------------------------------------------------------------------------------

def test_ctrl_c_in_the_reward_raises_keyboard_interrupt_and_changes_nothing(tiny, tmp_path):
    calls = {"n": 0, "interrupt_at": None}

    def reward(prompt_index, states):
        calls["n"] += 1
        if calls["n"] == calls["interrupt_at"]:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arriving while the reward runs
            time.sleep(1)  # the handler raises KeyboardInterrupt here, inside the callback
        return [-float(len(s)) for s in states]

    tr, lora = trainer(tiny, reward)
    tr.train(2)
    before = checkpoint_bytes(tr, tmp_path / "before")
    logits = tiny.logits([5, 6, 7], adapter=lora)
    calls["interrupt_at"] = calls["n"] + 1
    with pytest.raises(KeyboardInterrupt) as e:
        tr.train(3)
    assert isinstance(e.value.__context__, gfnlm.CallbackError)
    assert checkpoint_bytes(tr, tmp_path / "after") == before
    assert np.array_equal(tiny.logits([5, 6, 7], adapter=lora), logits)
    assert tr.step()["step"] == 2  # usable, and the interrupted step did not count


def test_ctrl_c_in_the_progress_callback_raises_keyboard_interrupt(tiny):
    tr, _ = trainer(tiny, zero_reward)

    def progress(stats):
        if stats["step"] == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        tr.train(5, progress=progress)
    assert tr.step()["step"] == 2  # the two completed steps stay


def test_ctrl_c_during_generate_raises_keyboard_interrupt(tiny):
    args = dict(max_new_tokens=200, n=400, seed=1, stop=[])  # about a second
    t0 = time.perf_counter()
    tiny.generate([5, 6], **args)
    duration = time.perf_counter() - t0
    returned = []
    timer = threading.Timer(duration / 10, os.kill, (os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        timer.start()
        tiny.generate([5, 6], **args)
        returned.append(True)
        time.sleep(duration + 2)  # (only reached if the signal came after generate returned)
    timer.join()
    assert not returned, "generate returned normally although Ctrl-C came during it"
    assert len(tiny.generate([5, 6], max_new_tokens=3, n=2)) == 2  # the model is still usable


# --- integers and numbers ---------------------------------------------------------------------------------------

def test_ints_outside_int32_raise_instead_of_truncating(tiny):
    for bad in (2**40, -2**31 - 1, 2**31):
        with pytest.raises(OverflowError, match=f"token id {bad} does not fit in a 32-bit signed integer") as e:
            tiny.generate([5, bad], max_new_tokens=2)
        assert isinstance(e.value, ValueError) and isinstance(e.value, gfnlm.GfnError)
    with pytest.raises(OverflowError, match="max_new_tokens 1099511627776 does not fit in a 32-bit signed integer"):
        tiny.generate([5, 6], max_new_tokens=2**40)
    with pytest.raises(OverflowError, match="n 1099511627776 does not fit in a 32-bit signed integer"):
        tiny.generate([5, 6], n=2**40)
    # the C functions' own integer arguments are checked too (a safety net under the wrappers)
    with pytest.raises(OverflowError, match=r"gfn_status_name\(\) argument 1: 4294967296 does not fit in a 32-bit "
                                            r"signed integer"):
        gfnlm._lib.gfn_status_name(2**32)
    with pytest.raises(OverflowError, match="token id 1099511627776 does not fit"):
        tiny.score([5, 6], [2**40])
    tr, _ = trainer(tiny, zero_reward)
    with pytest.raises(OverflowError, match="steps 4294967296 does not fit"):
        tr.train(2**32)
    with pytest.raises(OverflowError, match="token id 1099511627776 does not fit"):
        gfnlm.GFlowNetTrainer(tiny, gfnlm.LoRA(tiny, r=2, targets=["q_proj"]), zero_reward, prompts=[[5, 2**40]],
                              termination=0)
    # numpy integers are integers; floats and strings are not token ids
    assert len(tiny.generate(np.array([5, 6], dtype=np.int64), max_new_tokens=2)) == 1
    with pytest.raises(TypeError, match="token id must be an integer, got float 6.5"):
        tiny.generate([5, 6.5], max_new_tokens=2)
    with pytest.raises(TypeError, match="token id must be an integer, got str '6'"):
        tiny.generate([5, "6"], max_new_tokens=2)


# --- numpy arrays for per-token values ----------------------------------------------------------------------------

def test_per_token_values_are_numpy_arrays(tiny):
    s = tiny.generate([5, 6], max_new_tokens=4, stop=[0, 1], seed=2)[0]
    assert isinstance(s.token_logprobs, np.ndarray) and s.token_logprobs.dtype == np.float32
    assert s.token_logprobs.shape == (len(s.tokens),)
    assert isinstance(s.stop_logprobs, np.ndarray) and s.stop_logprobs.shape[1] == 2
    assert abs(float(s.token_logprobs.sum()) - s.logprob) < 1e-3
    total, per, stop = tiny.score([5, 6], [7, 8, 9], per_token=True, stop=[0])
    assert isinstance(per, np.ndarray) and per.shape == (3,) and per.dtype == np.float32
    assert isinstance(stop, np.ndarray) and stop.shape == (4,)
    assert abs(float(per.sum()) - total) < 1e-3


# --- progress bar -------------------------------------------------------------------------------------------------

def test_train_progress_bar_uses_tqdm_when_installed(tiny, monkeypatch):
    bars = []

    class FakeTqdm:
        def __init__(self, total, unit):
            self.total, self.n, self.closed, self.postfix = total, 0, False, None
            bars.append(self)

        def update(self, k):
            self.n += k

        def set_postfix(self, refresh=True, **kw):
            self.postfix = kw

        def close(self):
            self.closed = True

    fake = types.ModuleType("tqdm.auto")
    fake.tqdm = FakeTqdm
    monkeypatch.setitem(sys.modules, "tqdm.auto", fake)
    tr, _ = trainer(tiny, zero_reward)
    tr.train(3, progress=True)
    assert len(bars) == 1 and bars[0].total == 3 and bars[0].n == 3 and bars[0].closed
    assert set(bars[0].postfix) == {"loss", "log_r"}
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm not installed: no bar, no error
    assert tr.train(2, progress=True)["step"] == 4


# --- the package: version, typing, documentation ------------------------------------------------------------------

def test_version_comes_from_the_header():
    header = open(os.path.join(ROOT, "include", "gfnlm.h")).read()
    version = header.split('#define GFN_VERSION_STRING "')[1].split('"')[0]
    assert gfnlm.__version__ == version == gfnlm.version()
    assert os.path.exists(os.path.join(os.path.dirname(gfnlm.__file__), "py.typed"))
    assert os.path.samefile(gfnlm.library_path, os.environ.get("GFNLM_LIBRARY", gfnlm.library_path))


def public_api():
    for module in (gfnlm, rewards, metrics, gfnlm.inference):
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", "").split(".")[0] != "gfnlm":
                continue
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                yield f"{module.__name__}.{name}", obj
                for mname, m in vars(obj).items():
                    if mname.startswith("_") and mname not in ("__init__", "__call__"):
                        continue
                    if isinstance(m, (classmethod, staticmethod)):
                        m = m.__func__
                    if isinstance(m, property) or inspect.isfunction(m):
                        yield f"{module.__name__}.{name}.{mname}", m
            elif inspect.isfunction(obj) and obj.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", obj


def test_public_api_has_docstrings_and_type_hints():
    missing = []
    items = list(public_api())
    assert len(items) > 50
    for name, obj in items:
        if name.endswith("__init__"):
            fn = obj
        elif not (inspect.getdoc(obj) or "").strip():
            missing.append(f"{name}: no docstring")
            continue
        else:
            fn = obj.fget if isinstance(obj, property) else obj
        if inspect.isclass(fn):
            continue
        sig = inspect.signature(fn)
        if sig.return_annotation is inspect.Signature.empty and not name.endswith("__init__"):
            missing.append(f"{name}: no return type")
        for p in sig.parameters.values():
            if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty:
                missing.append(f"{name}: parameter {p.name} has no type")
    assert not missing, "\n".join(missing)
