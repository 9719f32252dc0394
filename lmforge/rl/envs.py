"""Environments through the gymnasium API, stepped as a synchronous pool.

``EnvPool`` steps ``n`` copies of one environment in lock-step, like gymnasium's
``SyncVectorEnv`` with same-step autoreset: when an episode ends, ``step`` returns the
*final* observation for the transition and the first observation of the next episode as
the new state. Each copy is seeded ``seed + i`` at its first reset.

A pool can be restored exactly from a checkpoint without pickling the environments: for
each copy it remembers how the current episode began (the seed, or the state of the
environment's ``np_random`` before the reset) and the actions taken since; restoring
replays them and checks that the observation matches. That holds for every environment
whose randomness comes from ``np_random`` (the classic-control and Box2D suites do).
"""

from __future__ import annotations

import copy
import difflib

import numpy as np

from ..errors import CheckpointError, ConfigError


def require_gymnasium():
    try:
        import gymnasium
    except ImportError as e:
        raise ConfigError("reinforcement learning needs the 'rl' extra: "
                          "pip install 'lmforge[rl]'") from e
    return gymnasium


def check_env_id(env_id: str) -> None:
    """A one-line ConfigError for an id gymnasium does not know, with the close ones."""
    gym = require_gymnasium()
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else (
        "; DQN recipes use gymnasium ids such as CartPole-v1, Acrobot-v1, MountainCar-v0")
    raise ConfigError(f"env.id: unknown gymnasium environment '{env_id}'{hint}")


def make_env(env_id: str, render_mode: str | None = None, **kwargs):
    """``gymnasium.make`` with checks: a known id, discrete actions, a flat Box observation."""
    gym = require_gymnasium()
    check_env_id(env_id)
    try:
        env = gym.make(env_id, render_mode=render_mode, **kwargs)
    except (TypeError, ValueError, gym.error.Error) as e:
        raise ConfigError(f"env: cannot make '{env_id}': {e}") from e
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise ConfigError(f"env.id: '{env_id}' has a continuous action space "
                          f"({env.action_space}); DQN needs discrete actions (Discrete(n))")
    if not isinstance(env.observation_space, gym.spaces.Box):
        env.close()
        raise ConfigError(f"env.id: '{env_id}' observes {env.observation_space}; lmforge's "
                          "DQN takes Box (vector) observations")
    return env


def obs_dim(env) -> int:
    return int(np.prod(env.observation_space.shape))


class EnvPool:
    """``n`` copies of one environment stepped together, restorable exactly."""

    def __init__(self, env_id: str, n: int, seed: int, env_kwargs: dict | None = None) -> None:
        self.env_id, self.seed = env_id, seed
        self.envs = [make_env(env_id, **(env_kwargs or {})) for _ in range(n)]
        self.obs = np.zeros((n, obs_dim(self.envs[0])), dtype=np.float32)
        self.started: list[dict] = [{} for _ in range(n)]
        self.actions: list[list[int]] = [[] for _ in range(n)]
        self.ep_return = np.zeros(n)
        self.ep_length = np.zeros(n, dtype=np.int64)

    @property
    def n(self) -> int:
        return len(self.envs)

    @property
    def n_actions(self) -> int:
        return int(self.envs[0].action_space.n)

    def _begin(self, i: int, first: bool) -> None:
        env = self.envs[i]
        if first:
            self.started[i] = {"seed": self.seed + i}
            obs, _ = env.reset(seed=self.seed + i)
        else:
            self.started[i] = {"rng": copy.deepcopy(env.unwrapped.np_random.bit_generator.state)}
            obs, _ = env.reset()
        self.obs[i] = np.asarray(obs, dtype=np.float32).reshape(-1)
        self.actions[i] = []
        self.ep_return[i], self.ep_length[i] = 0.0, 0

    def reset(self) -> np.ndarray:
        for i in range(self.n):
            self._begin(i, first=True)
        return self.obs.copy()

    def step(self, actions: np.ndarray):
        """One step of every copy. Returns ``(next_obs, reward, terminated, truncated,
        finished)``: ``next_obs`` the observation each action led to (the final one at an
        episode's end), ``finished`` the ``(return, length)`` of episodes that ended. The
        pool's state ``self.obs`` moves on to the next episode where one ended."""
        n = self.n
        next_obs = np.empty_like(self.obs)
        reward = np.empty(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        finished = []
        for i, env in enumerate(self.envs):
            a = int(actions[i])
            o, r, term, trunc, _ = env.step(a)
            next_obs[i] = np.asarray(o, dtype=np.float32).reshape(-1)
            reward[i], terminated[i], truncated[i] = r, term, trunc
            self.actions[i].append(a)
            self.ep_return[i] += r
            self.ep_length[i] += 1
            if term or trunc:
                finished.append((float(self.ep_return[i]), int(self.ep_length[i])))
                self._begin(i, first=False)
            else:
                self.obs[i] = next_obs[i]
        return next_obs, reward, terminated, truncated, finished

    def state_dict(self) -> dict:
        return {"started": copy.deepcopy(self.started),
                "actions": [list(a) for a in self.actions],
                "ep_return": self.ep_return.tolist(), "ep_length": self.ep_length.tolist(),
                "obs": self.obs.tolist()}

    def load_state_dict(self, state: dict) -> None:
        """Rebuild each copy's current episode: the same start, then the same actions."""
        if len(state["started"]) != self.n:
            raise CheckpointError(f"the checkpoint has {len(state['started'])} environments, "
                                  f"the recipe {self.n}")
        for i, env in enumerate(self.envs):
            start = state["started"][i]
            if "seed" in start:
                obs, _ = env.reset(seed=int(start["seed"]))
            else:
                env.reset(seed=self.seed + i)
                env.unwrapped.np_random.bit_generator.state = copy.deepcopy(start["rng"])
                obs, _ = env.reset()
            for a in state["actions"][i]:
                obs, *_ = env.step(int(a))
            self.obs[i] = np.asarray(obs, dtype=np.float32).reshape(-1)
            if not np.array_equal(self.obs[i], np.asarray(state["obs"][i], dtype=np.float32)):
                raise CheckpointError(f"'{self.env_id}' did not replay to the saved state: the "
                                      "environment is not deterministic given its np_random, "
                                      "so this run cannot resume exactly")
            self.started[i] = copy.deepcopy(start)
            self.actions[i] = [int(a) for a in state["actions"][i]]
        self.ep_return = np.asarray(state["ep_return"], dtype=np.float64)
        self.ep_length = np.asarray(state["ep_length"], dtype=np.int64)

    def close(self) -> None:
        for env in self.envs:
            env.close()
