"""``lmforge rl play``: one greedy episode rendered through gymnasium's ``rgb_array`` mode
and written as an animated GIF (Pillow) or an MP4 (imageio with its ffmpeg binary)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import atomic_write_bytes
from .checkpoint import load_policy
from .evaluate import greedy, run_episodes

FORMATS = (".gif", ".mp4")


def _encode_gif(frames: list[np.ndarray], fps: int) -> bytes:
    import io

    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)
    return buf.getvalue()


def _encode_mp4(frames: list[np.ndarray], fps: int, path: Path) -> bytes:
    try:
        import imageio.v3 as iio
    except ImportError as e:
        raise ConfigError("MP4 output needs the 'rl' extra (imageio, imageio-ffmpeg): "
                          "pip install 'lmforge[rl]', or write a .gif") from e
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    try:
        iio.imwrite(tmp, np.stack(frames), fps=fps, codec="libx264", macro_block_size=1)
        return tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)


def play(run: str | Path, out: str | Path, episodes: int = 1, seed: int = 0,
         fps: int = 30) -> dict:
    """Render ``episodes`` greedy episodes of a trained policy to ``out`` (.gif or .mp4)."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out}: write a .gif or an .mp4 file")
    if fps < 1:
        raise ConfigError(f"--fps {fps}: give at least 1 frame per second")
    q, env = load_policy(run)
    # pygame draws off-screen: no window, no sound device (and no SDL warnings about them)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    frames: list[np.ndarray] = []

    def grab(e) -> None:
        frame = e.render()
        if frame is not None:
            frames.append(np.asarray(frame, dtype=np.uint8))

    result = run_episodes(greedy(q), env["id"], episodes, seed, env.get("kwargs"),
                          render_mode="rgb_array", on_frame=grab)
    if not frames:
        raise ConfigError(f"{env['id']} renders no rgb_array frames")
    data = (_encode_gif(frames, fps) if out.suffix.lower() == ".gif"
            else _encode_mp4(frames, fps, out))
    atomic_write_bytes(out, data)
    return {"frames": len(frames), "returns": [r for r, _ in result], "out": str(out)}
