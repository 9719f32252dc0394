"""DQN for text generation (lmforge.rl.text): the environment's rewards and KL, the soft
Q initialisation, the soft/Double targets, an end-to-end tiny run with exact resume, the
top-k action sets, and bad input."""

import copy
import math

import pytest
import torch
from fakes import perturbed_copy, tiny_gpt_folder

from lmforge.errors import CheckpointError, ConfigError
from lmforge.hub import load_pretrained
from lmforge.rl.targets import double_dqn_target
from lmforge.rl.text import build_text_recipe, train_text_rl
from lmforge.rl.text.actions import restrict, topk_keep
from lmforge.rl.text.env import TextGenerationEnv
from lmforge.rl.text.qlearn import (
    SoftQNetwork,
    dueling_soft_value,
    nstep_targets,
    soft_double_target,
)
from lmforge.rl.text.rollout import action_log_probs, collect, log_probs, step_kl, token_rewards


def length_reward(texts):
    return [len(t) / 10 for t in texts]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tiny_gpt_folder(tmp_path_factory.mktemp("tiny-gpt"))
    ref, tok = load_pretrained(folder)
    return folder, ref, perturbed_copy(ref), tok


def test_env_rewards_and_kl_match_the_batched_rollout(tiny):
    _, ref, policy, tok = tiny
    beta = 0.3
    ep = collect(policy, ref, tok, length_reward, 4, 6, seed=0)
    logp = action_log_probs(log_probs(policy, ep.tokens), ep.tokens).detach()
    batched = token_rewards(ep.scores, ep.lengths, logp, ep.ref_logp, beta)
    env = TextGenerationEnv(ref, tok, length_reward, beta, max_new_tokens=6, policy=policy)
    for i in range(4):
        env.reset(seed=0)
        L = int(ep.lengths[i])
        for t in range(L):
            _, r, done, truncated, info = env.step(int(ep.tokens[i, t + 1]))
            assert r == pytest.approx(float(batched[i, t]), abs=1e-5)
            assert done == (t == L - 1) and not truncated
        assert info["text"] == ep.texts[i] and info["score"] == length_reward([ep.texts[i]])[0]
    # the per-sentence return is E[R] − β·(sampled log-ratio): a nonzero penalty here
    assert float(batched.sum() - ep.scores.sum()) != 0.0
    # against itself the KL penalty vanishes
    env_ref = TextGenerationEnv(ref, tok, length_reward, beta, max_new_tokens=6)
    env_ref.reset()
    _, r, *_ = env_ref.step(5)
    assert r == 0.0 or math.isclose(r, length_reward([env_ref.text()])[0])


def test_initial_q_is_the_lm(tiny):
    _, ref, _, tok = tiny
    q = SoftQNetwork(copy.deepcopy(ref), beta=0.2)
    ep = collect(ref, ref, tok, length_reward, 3, 5, seed=1)
    with torch.no_grad():
        z_ref = ref(ep.tokens).float()
        logp, v = q(ep.tokens, torch.logsumexp(z_ref, -1))
        ref_logp = torch.log_softmax(z_ref, -1)
    qvals = v.unsqueeze(-1) + 0.2 * (logp - ref_logp)
    assert qvals.abs().max() < 1e-5  # Q = 0: π ∝ π_ref exp(Q/β) = π_ref
    assert step_kl(logp, ref_logp).abs().max() < 1e-5


def test_soft_double_target_by_hand_and_its_limits():
    r, g, d = torch.tensor([1.0, 0.5]), 0.9, torch.tensor([0.0, 1.0])
    q_t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    q_on = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    ref = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    # β = 1: π_on ∝ π_ref e^{Q_on} = (1/4, 3/4); V = Σ π_on (Q_t − log(π_on/π_ref))
    v = 0.25 * (1 - math.log(0.5)) + 0.75 * (2 - math.log(1.5))
    y = soft_double_target(r, g, d, q_t, q_on, ref, beta=1.0)
    assert y.tolist() == pytest.approx([1.0 + 0.9 * v, 0.5])
    # β → 0: van Hasselt's Double DQN target (the online net picks, the target values)
    q_on2 = torch.tensor([[0.3, 0.1], [0.0, 1.0]])
    hard = double_dqn_target(r, g, torch.zeros(2), q_t, q_on2)
    soft = soft_double_target(r, g, torch.zeros(2), q_t, q_on2, ref, beta=1e-4)
    assert soft.tolist() == pytest.approx(hard.tolist(), abs=1e-3)
    # the closed form for Q = V + β (log π − log π_ref)
    beta, vt = 0.5, torch.tensor([0.7, -0.2])
    lp_t = torch.log_softmax(torch.randn(2, 5, generator=torch.Generator().manual_seed(0)), -1)
    lp_on = torch.log_softmax(torch.randn(2, 5, generator=torch.Generator().manual_seed(1)), -1)
    lp_ref = torch.log_softmax(torch.randn(2, 5, generator=torch.Generator().manual_seed(2)), -1)
    general = soft_double_target(torch.zeros(2), 1.0, torch.zeros(2),
                                 vt.unsqueeze(1) + beta * (lp_t - lp_ref),
                                 beta * (lp_on - lp_ref), lp_ref, beta)
    assert general.tolist() == pytest.approx(
        dueling_soft_value(vt, lp_on, lp_t, beta).tolist(), abs=1e-5)


def test_nstep_targets_by_hand():
    # one episode of 3 actions, score 1; ℓ_tg = (0.1, 0.2, 0.3); V̂(s_k) = 10 k
    scores, lengths = torch.tensor([1.0]), torch.tensor([3])
    ell, vb = torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([[0.0, 10.0, 20.0, 30.0]])
    beta, g = 0.5, 0.9
    y1 = nstep_targets(scores, lengths, ell, vb, beta, g, 1)
    assert y1.tolist()[0] == pytest.approx([g * 10, g * 20, 1.0])  # s_3 is terminal
    y2 = nstep_targets(scores, lengths, ell, vb, beta, g, 2)
    assert y2.tolist()[0] == pytest.approx([g * (-beta * 0.2) + g * g * 20,
                                            g * (1.0 - beta * 0.3), 1.0])


def test_train_end_to_end_resume_and_generate(tiny, tmp_path):
    folder = tiny[0]
    raw = {"algo": "text-dqn", "model": str(folder), "rounds": 4, "episodes_per_round": 4,
           "max_new_tokens": 8, "ckpt_every": 2, "eval_samples": 8, "eval_heldout": 8,
           "dqn": {"batch_size": 4, "buffer_episodes": 8, "learning_starts": 4,
                   "updates_per_round": 2, "target_update_every": 3}}
    full = train_text_rl(build_text_recipe(raw), tmp_path / "full", log=lambda m: None)
    assert full["before"]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert full["after"]["samples"] == 8
    for name in ("metrics.jsonl", "reward.png", "results.json", "config.yaml"):
        assert (tmp_path / "full" / name).is_file()
    half = train_text_rl(build_text_recipe({**raw, "rounds": 2}), tmp_path / "half",
                         log=lambda m: None)
    assert half["episodes"] == 8
    train_text_rl(build_text_recipe(raw), tmp_path / "half", resume=True, log=lambda m: None)
    a, _ = load_pretrained(tmp_path / "full")
    b, tok = load_pretrained(tmp_path / "half")
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
    assert (tmp_path / "full" / "metrics.jsonl").read_text().count("\n") == 4
    # the run folder is an ordinary LM for `lmforge generate`
    from lmforge.generate import GenerationConfig, generate
    assert isinstance(generate(b, tok, ["h"], GenerationConfig(max_new_tokens=3, seed=0))[0],
                      str)
    res = train_text_rl(build_text_recipe({**raw, "algo": "text-reinforce", "rounds": 2}),
                        tmp_path / "reinforce", log=lambda m: None)
    # an untrained char model is never grammatical: R = 0, G = b, so no step is taken
    assert res["after"]["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("raw, fragment", [
    ({"algo": "dqn"}, "algo"),
    ({"algo": "text-dqn", "epochs": 3}, "epochs"),
    ({"algo": "text-dqn", "dqn": {"gamma": 1.5}}, "dqn.gamma"),
    ({"algo": "text-dqn", "dqn": {"buffer_episodes": 8, "batch_size": 16}}, "buffer_episodes"),
    ({"algo": "text-dqn", "dqn": {"target_update_every": 1}}, "defeats the target network"),
    ({"algo": "text-dqn", "beta": 0}, "beta"),
    ({"algo": "text-dqn", "top_k_actions": 0}, "top_k_actions"),
    ({"algo": "text-dqn", "dqn": {"reward_offset": 0.5, "gamma": 0.9}}, "dqn.reward_offset"),
])
def test_bad_recipe_is_one_config_error(raw, fragment):
    with pytest.raises(ConfigError) as e:
        build_text_recipe(raw)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_missing_model_names_make_quickstart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="make quickstart"):
        train_text_rl(build_text_recipe({"algo": "text-dqn"}), tmp_path / "out")


def test_cli_trains_then_generate_samples_the_policy(tiny, tmp_path, capsys):
    """``lmforge rl train RECIPE.yaml`` with a text recipe, then ``lmforge generate``."""
    import yaml
    from fakes import run_cli

    recipe = tmp_path / "text.yaml"
    recipe.write_text(yaml.safe_dump({
        "algo": "text-dqn", "model": str(tiny[0]), "rounds": 2, "episodes_per_round": 4,
        "max_new_tokens": 6, "ckpt_every": 2, "eval_samples": 4, "eval_heldout": 4,
        "dqn": {"batch_size": 4, "buffer_episodes": 8, "learning_starts": 4,
                "updates_per_round": 1, "target_update_every": 2}}))
    run = tmp_path / "run"
    code, out, err = run_cli(["rl", "train", str(recipe), "--out", str(run),
                              "--set", "beta=0.5"], capsys)
    assert code == 0, err
    assert "text-dqn: grammatical" in out
    assert yaml.safe_load((run / "config.yaml").read_text())["beta"] == 0.5
    code, out, err = run_cli(["generate", str(run), "--prompt", "h", "--max-new-tokens", "3",
                              "--seed", "0"], capsys)
    assert code == 0 and out.strip(), err
    code, out, err = run_cli(["rl", "evaluate", str(run), "--episodes", "4"], capsys)
    assert code == 0, err
    assert "grammatical" in out and "distinct_2" in out


def test_bleu_reward_is_sacrebleu_sentence_bleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    from lmforge.rl.text.rewards import bleu_reward

    refs = ["the cat sat on the mat", "小明 在 北京 工作"]
    hyps = ["the cat sat on a mat", "小明 在 北京 工作"]
    got = bleu_reward(refs)(hyps)
    want = [sacrebleu.sentence_bleu(h, [r]).score / 100 for h, r in zip(hyps, refs,
                                                                          strict=True)]
    assert got == pytest.approx(want) and got[1] == pytest.approx(1.0) and 0 < got[0] < 1
    with pytest.raises(ConfigError, match="2 references"):
        bleu_reward(refs)(hyps[:1])


def test_topk_distributions_by_hand():
    """A_2(s) = {2, 3}; π_ref and π renormalised on it; the KL and the soft value there."""
    z_ref = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    z = torch.tensor([[5.0, 0.0, 1.0, 1.0]])  # the policy's own favourite is outside A_2
    keep = topk_keep(z_ref, 2)
    assert keep.tolist() == [[False, False, True, True]]
    assert topk_keep(z_ref, None) is None and topk_keep(z_ref, 4) is None
    ref_k = torch.log_softmax(restrict(z_ref, keep), -1)
    pol_k = torch.log_softmax(restrict(z, keep), -1)
    e = math.e
    assert ref_k.exp().tolist()[0] == pytest.approx([0, 0, 1 / (1 + e), e / (1 + e)])
    assert pol_k.exp().tolist()[0] == pytest.approx([0, 0, 0.5, 0.5])
    kl = 0.5 * math.log(0.5 * (1 + e)) + 0.5 * math.log(0.5 * (1 + e) / e)
    assert float(step_kl(pol_k, ref_k)) == pytest.approx(kl)
    # V = β log Σ_{A_2} π_ref,k exp(Q/β) with Q = β (z − z_ref) is β (LSE_A z − LSE_A z_ref)
    beta = 0.3
    q = beta * (z - z_ref)[0, 2:]
    v = beta * math.log(sum(p * math.exp(x / beta) for p, x in
                            zip(ref_k.exp()[0, 2:].tolist(), q.tolist(), strict=True)))
    net = SoftQNetwork(lambda tokens: z.unsqueeze(0), beta)
    _, v_net = net(torch.zeros(1, 1, dtype=torch.long),
                   torch.logsumexp(restrict(z_ref, keep), -1).unsqueeze(0), keep.unsqueeze(0))
    assert float(v_net) == pytest.approx(v, abs=1e-5)


def test_topk_env_matches_the_batched_rollout(tiny):
    _, ref, policy, tok = tiny
    beta, k = 0.3, 3
    ep = collect(policy, ref, tok, length_reward, 4, 6, seed=2, top_k=k)
    z_ref = ref(ep.tokens[:, :-1]).float()
    top = z_ref.topk(k, -1).indices
    for i in range(4):  # every action lies in the reference's top 3 at its state
        for t in range(int(ep.lengths[i])):
            assert int(ep.tokens[i, t + 1]) in top[i, t].tolist()
    logp = action_log_probs(log_probs(policy, ep.tokens, keep=ep.keep), ep.tokens).detach()
    batched = token_rewards(ep.scores, ep.lengths, logp, ep.ref_logp, beta)
    env = TextGenerationEnv(ref, tok, length_reward, beta, max_new_tokens=6, policy=policy,
                            top_k=k)
    for i in range(4):
        env.reset()
        for t in range(int(ep.lengths[i])):
            _, r, done, _, info = env.step(int(ep.tokens[i, t + 1]))
            assert r == pytest.approx(float(batched[i, t]), abs=1e-5)
    env.reset()
    outside = int(z_ref[0, 0].argmin())
    with pytest.raises(ValueError, match="top 3"):
        env.step(outside)
    # on A_k the KL is exact over k tokens: sum of renormalised probabilities is 1
    assert log_probs(policy, ep.tokens, keep=ep.keep).exp().sum(-1).sub(1).abs().max() < 1e-5


def test_topk_end_to_end_initial_q_is_zero_on_a_k(tiny, tmp_path):
    from lmforge.rl.text.qlearn import SoftDQN

    folder, ref, _, tok = tiny
    raw = {"algo": "text-dqn", "model": str(folder), "rounds": 3, "episodes_per_round": 4,
           "max_new_tokens": 8, "ckpt_every": 3, "eval_samples": 8, "eval_heldout": 8,
           "top_k_actions": 5,
           "dqn": {"batch_size": 4, "buffer_episodes": 8, "learning_starts": 4,
                   "updates_per_round": 2, "target_update_every": 3}}
    recipe = build_text_recipe(raw)
    learner = SoftDQN(copy.deepcopy(ref), ref, tok, recipe.dqn, 0.3, 1e-4, 1.0, 0, top_k=5)
    ep = collect(ref, ref, tok, length_reward, 4, 8, seed=3, top_k=5)
    learner.replay.add(ep, tok.pad_id)
    tokens, lengths, _, ref_logp, src = learner.replay.sample(4, tok.bos_id, tok.pad_id,
                                                              tok.eos_id)
    assert src is None
    with torch.no_grad():  # φ = ref: the loss against zero scores is the Huber of Q = 0
        zero = learner.loss(tokens, lengths, torch.zeros(4), ref_logp)
    assert float(zero) == pytest.approx(0.0, abs=1e-6)
    res = train_text_rl(recipe, tmp_path / "dqn", log=lambda m: None)
    assert res["before"]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert res["after"]["kl"] >= 0.0 and res["after"]["samples"] == 8
    res = train_text_rl(build_text_recipe({**raw, "algo": "text-reinforce"}),
                        tmp_path / "reinforce", log=lambda m: None)
    assert res["after"]["kl"] == pytest.approx(0.0, abs=1e-6)  # R = 0: no step taken


def test_reward_offset_shifts_the_targets_by_c(tiny):
    """At φ = ref (Q = 0, V = 0) scores equal to the offset c are fitted exactly, the raw
    scores are not: the learner regresses on R − c."""
    from lmforge.rl.text.qlearn import SoftDQN

    _, ref, _, tok = tiny
    ep = collect(ref, ref, tok, length_reward, 4, 8, seed=4)
    losses = []
    for c in (0.0, 0.7):
        cfg = build_text_recipe({"algo": "text-dqn", "dqn": {
            "batch_size": 4, "buffer_episodes": 8, "reward_offset": c}}).dqn
        learner = SoftDQN(copy.deepcopy(ref), ref, tok, cfg, 0.3, 1e-4, 1.0, 0)
        learner.replay.add(ep, tok.pad_id)
        tokens, lengths, _, ref_logp, _ = learner.replay.sample(4, tok.bos_id, tok.pad_id,
                                                                tok.eos_id)
        with torch.no_grad():
            losses.append(float(learner.loss(tokens, lengths, torch.full((4,), 0.7),
                                             ref_logp)))
    assert losses[0] > 0.01 and losses[1] == pytest.approx(0.0, abs=1e-6)
