"""CLI verb ``lmforge serve MODEL...``: the OpenAI-compatible HTTP server
(:mod:`lmforge.serve`)."""

from __future__ import annotations

import enum
import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from . import app
from .key_options import KeyEnv, KeyFile, PassEnv, optional_key


class Dtype(str, enum.Enum):
    fp32 = "fp32"
    bf16 = "bf16"


class LogContent(str, enum.Enum):
    off = "off"
    redacted = "redacted"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command(epilog="Example: lmforge serve runs/chat-world embed=minilm --port 8000")
def serve(
    models: Annotated[list[str] | None, typer.Argument(
        help="What to serve: a run or model folder (GPT: completions and chat; BERT "
             "encoder: embeddings), NAME=FOLDER to choose its name, or 'minilm' for the "
             "shipped sentence encoder.", metavar="MODEL...")] = None,
    registry: Annotated[Path | None, typer.Option(
        help="A folder of NAME/VERSION/ model folders: serve each NAME at its latest "
             "version; admins load other versions.")] = None,
    model_root: Annotated[list[Path] | None, typer.Option(
        help="A folder admins may load model folders from (POST /admin/models with path); "
             "repeatable. Without it, any folder the server can read.")] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", min=0, max=65535)] = 8000,
    max_running: Annotated[int, typer.Option(
        help="Sequences decoded together (continuous batching).", min=1)] = 16,
    max_waiting: Annotated[int, typer.Option(
        help="Sequences queued before the server answers 503.", min=0)] = 256,
    prefill_chunk: Annotated[int, typer.Option(
        help="Prompt tokens prefilled per engine step (longer prompts are chunked).",
        min=1)] = 512,
    prefix_cache_tokens: Annotated[int, typer.Option(
        help="Prompt tokens kept in the prefix cache; 0 = off.", min=0)] = 4096,
    dtype: Annotated[Dtype, typer.Option(
        help="fp32, or bf16 autocast (fast on CPUs with AMX).")] = Dtype.fp32,
    request_timeout: Annotated[float, typer.Option(
        help="Seconds a request may run; 0 = no limit.", min=0)] = 600.0,
    max_body_bytes: Annotated[int, typer.Option(
        help="Largest request body (413 above).", min=1)] = 4 * 1024 * 1024,
    log_content: Annotated[LogContent, typer.Option(
        help="off: prompts and outputs are never logged; redacted: the request log carries "
             "them with personal data masked ([PHONE], [PERSON], ...).")] = LogContent.off,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    insecure: Annotated[bool, typer.Option(
        help="Allow a non-loopback --host without API keys.")] = False,
    db: Annotated[Path | None, typer.Option(
        help="The keys and audit database [default: $LMFORGE_DB or ~/.lmforge/serve.db].")]
    = None,
    response_cache: Annotated[int, typer.Option(
        help="Entries of the response cache for deterministic requests (temperature 0 "
             "or a seed); 0 = off.", min=0)] = 0,
    response_cache_ttl: Annotated[float, typer.Option(
        help="Seconds a cached response stays valid.", min=0)] = 300.0,
    tool_call_parser: Annotated[str, typer.Option(
        help="The format of function calls (vLLM's --tool-call-parser): hermes, "
             "llama3_json or mistral.")] = "hermes",
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    workers: Annotated[int, typer.Option(
        help="Server processes on one port (each loads its own models; rate limits and "
             "metrics are per process).", min=1)] = 1,
    key_file: KeyFile = None,
    key_env: KeyEnv = None,
    passphrase_env: PassEnv = None,
):
    """Serve models over an OpenAI-compatible HTTP API (completions, chat, embeddings,
    tokenize), with Prometheus metrics at /metrics and health at /health and /ready.
    Encrypted model folders are served with a key option (decrypted in memory only)."""
    from ..errors import ConfigError
    from ..serve.app import ENV_CONFIG, ServerOptions, build_app, config_json
    from ..serve.keys import KeyStore, default_db_path
    from ..serve.models import parse_specs
    from ..serve.registry import registry_specs
    from ..serve.tool_parsers import tool_parser

    tool_parser(tool_call_parser)  # a bad name fails before the models load
    specs = registry_specs(registry) if registry is not None else []
    if models or not specs:
        specs += parse_specs(list(models or []))
    names = [s.name for s in specs]
    if len(set(names)) < len(names):
        raise ConfigError(f"model names must be unique; got {', '.join(names)}")
    for root in model_root or []:
        if not root.is_dir():
            raise ConfigError(f"--model-root {root} is not a folder")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("give both --ssl-certfile and --ssl-keyfile, or neither")
    for f in (ssl_certfile, ssl_keyfile):
        if f is not None and not f.is_file():
            raise ConfigError(f"{f} does not exist")
    # where the key comes from (each worker resolves it again), never the key itself
    key = {"key_file": str(key_file.resolve()) if key_file else None, "key_env": key_env,
           "passphrase_env": passphrase_env}
    if optional_key(key_file, key_env, passphrase_env) is None:  # a bad option fails here
        key = None
    db_path = db or default_db_path()
    keyed = db_path.is_file() and KeyStore(db_path).count_active() > 0
    if not keyed and not is_loopback(host) and not insecure:
        raise ConfigError(f"refusing to serve on {host} without API keys: anyone who can "
                          "reach it could use it. Create a key (lmforge keys create --role "
                          "user --name NAME) or pass --insecure")
    options = ServerOptions(
        engine={"max_running": max_running, "max_waiting": max_waiting,
                "prefill_chunk": prefill_chunk, "prefix_cache_tokens": prefix_cache_tokens,
                "dtype": dtype.value},
        max_body_bytes=max_body_bytes, request_timeout=request_timeout or None,
        db=db_path if keyed else None, registry=registry, model_roots=list(model_root or []),
        response_cache_entries=response_cache,
        response_cache_ttl=response_cache_ttl, key=key, log_content=log_content.value,
        tool_call_parser=tool_call_parser)
    import uvicorn

    # keep-alive longer than clients' pools (httpx and the openai client: 5 s), so a
    # client never reuses a connection the server is closing; nginx uses 75 s too
    server_options = {"ssl_certfile": str(ssl_certfile) if ssl_certfile else None,
           "ssl_keyfile": str(ssl_keyfile) if ssl_keyfile else None,
           "timeout_keep_alive": 75}
    if workers == 1:
        uvicorn.run(build_app(specs, options), host=host, port=port, log_level=log_level,
                    **server_options)
        return
    import shutil
    import tempfile

    from ..serve.metrics import MULTIPROC_ENV

    os.environ[ENV_CONFIG] = config_json(specs, options)
    # the workers' counters meet in one folder (prometheus-client's multiprocess mode)
    metrics_dir = tempfile.mkdtemp(prefix="lmforge-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        uvicorn.run("lmforge.serve.app:app_from_env", factory=True, workers=workers,
                    host=host, port=port, log_level=log_level, **server_options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
