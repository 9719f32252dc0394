"""``lmforge rl train|evaluate|play``: thin; parses the options and calls :mod:`lmforge.rl`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _echo, app

rl_app = typer.Typer(help="Reinforcement learning: DQN on gymnasium environments and on text "
                          "generation.", no_args_is_help=True)
app.add_typer(rl_app, name="rl")

TEXT_ALGOS = ("text-dqn", "text-reinforce")


@rl_app.command("train", epilog="Example: lmforge rl train dqn-cartpole --set dqn.double=true "
                                "--out runs/cartpole-double")
def rl_train(
    recipe: Annotated[str, typer.Argument(help="An RL recipe: a built-in name (dqn-cartpole, "
                                          "dqn-acrobot, dqn-text-world, "
                                          "dqn-text-translate) or a YAML path.",
                                          metavar="RECIPE")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a field: section.field=value (repeatable).",
        metavar="KEY=VALUE")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder [default: runs/<run.name>].")]
    = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in the folder "
                                         "from its last checkpoint, exactly.")] = False,
):
    """Train an agent from a recipe: checkpoints, metrics.jsonl, a return curve, the policy."""
    from ..errors import ConfigError
    from ..rl.recipe import build_dqn_recipe, load_rl_raw

    raw = load_rl_raw(recipe, list(set_ or []))
    algo = raw.get("algo", "dqn")
    if algo in TEXT_ALGOS:
        from ..rl.text import build_text_recipe, train_text_rl

        text = build_text_recipe(raw)
        train_text_rl(text, out if out is not None else text.run.path, resume, _echo)
        return
    if algo != "dqn":
        raise ConfigError(f"algo: unknown algorithm '{algo}' (allowed: dqn, "
                          f"{', '.join(TEXT_ALGOS)})")
    from ..rl.train import train_dqn

    train_dqn(build_dqn_recipe(raw), out, resume, _echo)


def _is_text_run(run: Path) -> bool:
    """A text RL run folder: its config.yaml names a text algorithm."""
    import yaml

    f = run / "config.yaml"
    try:
        return f.is_file() and (yaml.safe_load(f.read_text("utf-8")) or {}).get("algo") \
            in TEXT_ALGOS
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return False


@rl_app.command("evaluate", epilog="Example: lmforge rl evaluate runs/dqn-cartpole --episodes 20")
def rl_evaluate(
    run: Annotated[Path, typer.Argument(help="A DQN run folder, its policy/ or a checkpoint.",
                                        metavar="RUN")],
    episodes: Annotated[int, typer.Option(help="Deterministic (greedy) episodes; for a text "
                                          "run, sampled texts.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation environment (the default is "
                                      "the seed of a run's final evaluation).")] = 20_000,
    split: Annotated[str | None, typer.Option(help="For a text run on a translation model: "
                                              "the held-out split [default: the recipe's "
                                              "eval_split].")] = None,
):
    """The greedy policy's return over N episodes (mean ± std, min, max); for a text run,
    its samples against the reference (grammatical rate, KL, distinct-n, bits; for a
    translation run BLEU/chrF of greedy output and of samples on the held-out split)."""
    from ..errors import ConfigError
    from ..rl.checkpoint import load_policy
    from ..rl.evaluate import greedy, run_episodes, summarize

    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: evaluate at least 1 episode")
    if _is_text_run(run):
        from ..rl.text import evaluate_text_run
        from ..rl.text.translation import FIGURES

        res = evaluate_text_run(run, samples=episodes, split=split)
        world = ("grammatical", "reward", "kl", "distinct_1", "distinct_2", "sample_bits",
                 "heldout_bits")
        for name in world if "grammatical" in res["before"] else FIGURES:
            _echo(f"{name:<14}reference {res['before'][name]:8.3f}   policy "
                  f"{res['after'][name]:8.3f}")
        return
    if split is not None:
        raise ConfigError("--split applies to text RL runs on a translation model")
    q, env = load_policy(run)
    s = summarize(run_episodes(greedy(q), env["id"], episodes, seed, env.get("kwargs")))
    _echo(f"{env['id']}: return {s['return_mean']:.1f} ± {s['return_std']:.1f} over "
          f"{s['episodes']} greedy episodes (min {s['return_min']:.1f}, max "
          f"{s['return_max']:.1f}, mean length {s['length_mean']:.1f})")


@rl_app.command("play", epilog="Example: lmforge rl play runs/dqn-cartpole --out cartpole.gif")
def rl_play(
    run: Annotated[Path, typer.Argument(help="A DQN run folder, its policy/ or a checkpoint.",
                                        metavar="RUN")],
    out: Annotated[Path, typer.Option(help="The .gif or .mp4 file to write.")]
    = Path("episode.gif"),
    episodes: Annotated[int, typer.Option(help="Episodes to render, one after another.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the environment.")] = 0,
    fps: Annotated[int, typer.Option(help="Frames per second.")] = 30,
):
    """Render greedy episodes of a trained policy to a GIF or an MP4."""
    from ..errors import ConfigError
    from ..rl.play import play

    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: play at least 1 episode")
    r = play(run, out, episodes, seed, fps)
    _echo(f"wrote {r['out']}: {r['frames']} frames, returns "
          f"{', '.join(f'{x:.0f}' for x in r['returns'])}")
