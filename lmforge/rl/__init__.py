"""Reinforcement learning: DQN, written by hand (it is what lmforge teaches), on gymnasium
environments and on text generation.

* :mod:`.targets`: the Bellman and Double-DQN targets, the Polyak / hard target update;
* :mod:`.replay`, :mod:`.prioritized`: uniform and prioritized replay, n-step folding;
* :mod:`.networks`: the MLP Q-network and the dueling head;
* :mod:`.envs`: gymnasium environments stepped as a restorable pool;
* :mod:`.dqn`: the learner (ε-greedy acting, updates, state);
* :mod:`.train`, :mod:`.checkpoint`, :mod:`.evaluate`, :mod:`.play`, :mod:`.plot`: the
  run (``lmforge rl train``), its files, evaluation, rendering and the return curve;
* :mod:`.text`: DQN for text generation (``lmforge rl train dqn-text-world``).

The math is in ``docs/rl.md``.
"""
