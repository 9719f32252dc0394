"""Text RL on a translation run (lmforge.rl.text with reward: bleu): the model adapter's
step-by-step logits against the teacher-forced ones, the translation environment's rewards
and KL against the batched rollout, a tiny end-to-end run through the CLI, and bad input."""

import json
from pathlib import Path

import pytest
import sacrebleu
import torch
import yaml
from fakes import assert_user_error, perturbed_copy, run_cli, tiny_gpt_folder

from lmforge.models.rnn import Seq2Seq, Seq2SeqConfig
from lmforge.rl.text.actions import Stepper, state_logits
from lmforge.rl.text.env import TranslationEnv
from lmforge.rl.text.rollout import action_log_probs, collect, log_probs, token_rewards
from lmforge.rl.text.translation import load_translation_run
from lmforge.tasks.config import load_finetune_recipe
from lmforge.tasks.seq2seq import finetune_seq2seq

SIZES = {"train": 200, "val": 8, "test": 8, "test_long": 8, "test_unseen": 8,
         "test_compositional": 8}


@pytest.fixture(scope="module")
def mt_run(tmp_path_factory):
    """A tiny (barely trained) en -> de Transformer run on the world's translation set."""
    out = tmp_path_factory.mktemp("mt") / "translate"
    r = load_finetune_recipe("translate-transformer-en-de", [
        f"run.out_dir={out}", f"data.world_sizes={json.dumps(SIZES)}",
        "tokenizer.vocab_size=300", "model.d_model=32", "model.n_head=2",
        "model.n_encoder_layers=1", "model.n_decoder_layers=1", "model.d_ff=64",
        "model.max_seq_len=256", "train.max_steps=2", "train.eval_every=2",
        "train.ckpt_every=2", "train.threads=1", "data.val_decode=4", "decode.beams=1",
        "decode.max_new_tokens=8"])
    finetune_seq2seq(r, show_progress=False, log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def loaded(mt_run):
    ref, tok, task = load_translation_run(str(mt_run))
    return ref, perturbed_copy(ref), tok, task


def test_stepper_equals_the_teacher_forced_logits(loaded):
    """The cached decoder (Transformer) and the RNN's decoder state give, step by step, the
    logits one teacher-forced pass gives for every prefix."""
    ref, _, tok, task = loaded
    rnn = Seq2Seq(Seq2SeqConfig(src_vocab=tok.vocab_size, tgt_vocab=tok.vocab_size,
                                d_embed=8, d_hidden=8, pad_id=tok.pad_id, bos_id=tok.bos_id,
                                eos_id=tok.eos_id)).eval()
    src = task.sources(tok, task.splits["train"][:3])
    tokens = torch.randint(4, tok.vocab_size, (3, 6), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = tok.bos_id
    for model in (ref, rnn):
        step = Stepper(model, 3, 6, tok.bos_id, src)
        got = [step.start()] + [step.advance(tokens[:, t]) for t in range(1, 6)]
        with torch.no_grad():
            want = state_logits(model, tokens, src)
        assert torch.allclose(torch.stack(got, 1), want, atol=1e-4), type(model).__name__


@pytest.mark.parametrize("top_k", [None, 7])
def test_translation_env_rewards_and_kl_match_the_batched_rollout(loaded, top_k):
    ref, policy, tok, task = loaded
    beta, pairs = 0.2, task.splits["train"][:4]
    ep = collect(policy, ref, tok, task.reward(pairs), 4, 8, seed=5, top_k=top_k,
                 src=task.sources(tok, pairs))
    with torch.no_grad():
        logp = action_log_probs(log_probs(policy, ep.tokens, ep.src, ep.keep), ep.tokens)
    batched = token_rewards(ep.scores, ep.lengths, logp, ep.ref_logp, beta)
    env = TranslationEnv(ref, tok, pairs, task.tokenize, beta, max_new_tokens=8,
                         policy=policy, top_k=top_k)
    for i in range(4):
        obs, info = env.reset(options={"index": i})
        assert info["index"] == i and obs["source"][:len(env.sources[i])].tolist() == \
            env.sources[i]
        L = int(ep.lengths[i])
        for t in range(L):
            obs, r, done, _, info = env.step(int(ep.tokens[i, t + 1]))
            # step by step: −β (log π − log π_ref) of the action, on A_k when top_k is set
            assert r == pytest.approx(float(batched[i, t]), abs=1e-5)
            assert done == (t == L - 1)
        bleu = sacrebleu.sentence_bleu(ep.texts[i], [pairs[i]["tgt"]], tokenize="13a")
        assert info["text"] == ep.texts[i]
        assert info["score"] == pytest.approx(bleu.score / 100) == float(ep.scores[i])
    assert float(batched.sum() - ep.scores.sum()) != 0.0  # π ≠ π_ref: a real KL penalty


def _recipe(tmp_path, model, **extra) -> str:
    raw = {"algo": "text-dqn", "model": str(model), "reward": "bleu", "rounds": 2,
           "episodes_per_round": 4, "max_new_tokens": 8, "ckpt_every": 2, "eval_samples": 4,
           "eval_split": "test_unseen",
           "dqn": {"batch_size": 4, "buffer_episodes": 8, "learning_starts": 4,
                   "updates_per_round": 2, "target_update_every": 3}, **extra}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_cli_trains_evaluates_and_translates(mt_run, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(["rl", "train", _recipe(tmp_path, mt_run), "--out", str(run),
                              "--set", "top_k_actions=10"], capsys)
    assert code == 0, err
    assert "text-dqn: test_unseen greedy BLEU" in out
    res = json.loads((run / "results.json").read_text())
    assert res["before"]["kl"] == pytest.approx(0.0, abs=1e-6) and res["after"]["n"] == 4
    assert res["episodes"] == 8 and "tok:13a" in res["before"]["bleu_signature"]
    code, out, err = run_cli(["rl", "evaluate", str(run), "--episodes", "3"], capsys)
    assert code == 0 and "sample_bleu" in out and "greedy_chrf" in out, err
    # the saved policy is an ordinary translation model
    code, out, err = run_cli(["generate", str(run), "--prompt", "Anna is here.",
                              "--max-new-tokens", "4"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["rl", "train", _recipe(tmp_path, mt_run, algo="text-reinforce"),
                            "--out", str(tmp_path / "reinforce")], capsys)
    assert code == 0, err


def test_bad_input_is_one_line(mt_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gpt = tiny_gpt_folder(tmp_path / "gpt")
    assert_user_error(["rl", "train", _recipe(tmp_path, gpt), "--out", str(tmp_path / "a")],
                      capsys, "reward: bleu needs a translation run")
    assert_user_error(["rl", "train", _recipe(tmp_path, mt_run, reward="grammar"), "--out",
                       str(tmp_path / "b")], capsys, "is a translation run", "reward: bleu")
    assert_user_error(["rl", "train", _recipe(tmp_path, mt_run, eval_split="dev"), "--out",
                       str(tmp_path / "c")], capsys, "eval_split", "test_long")
    assert not (tmp_path / "c" / "metrics.jsonl").exists()
    for name in ("dqn-text-translate", "reinforce-text-translate"):  # the built-in recipes
        assert_user_error(["rl", "train", name, "--out", str(tmp_path / name)], capsys,
                          "lmforge finetune translate-transformer-en-de")


def test_resume_is_exact(mt_run, tmp_path):
    """The replay keeps each episode's source, so a resumed translation run ends where an
    uninterrupted one does."""
    from lmforge.hub import load_pretrained
    from lmforge.rl.text import build_text_recipe, train_text_rl

    raw = yaml.safe_load(Path(_recipe(tmp_path, mt_run, rounds=3, ckpt_every=1)).read_text())
    train_text_rl(build_text_recipe(raw), tmp_path / "full", log=lambda m: None)
    train_text_rl(build_text_recipe({**raw, "rounds": 2}), tmp_path / "half",
                  log=lambda m: None)
    train_text_rl(build_text_recipe(raw), tmp_path / "half", resume=True, log=lambda m: None)
    a, _ = load_pretrained(tmp_path / "full")
    b, _ = load_pretrained(tmp_path / "half")
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
    ref = load_translation_run(str(mt_run))[0]
    assert not torch.equal(a.lm_head.weight, ref.lm_head.weight)  # the runs did learn
