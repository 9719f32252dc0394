"""``lmforge serve --log-content redacted``: the request log carries prompts and outputs
with personal data masked; by default it carries neither."""

from __future__ import annotations

import json
import logging
import time

import httpx
import openai
import pytest
from serve_fixtures import make_model_folder, running

pytest.importorskip("phonenumbers")

from lmforge.serve.app import ServerOptions, build_app  # noqa: E402
from lmforge.serve.models import ModelSpec  # noqa: E402

PROMPT = "联系人：王小明，电话13800138000，邮箱 bob.smith@example.com"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("content") / "tiny")


def _lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records
            if r.name == "lmforge.serve.access"]


def _wait_for_line(caplog, route: str, timeout: float = 30.0) -> dict:
    """The access line of ``route``: a stream's line is written once the stream has been
    sent (its content redacted on a worker thread), so it may follow the client's end."""
    deadline = time.monotonic() + timeout
    while not (found := [x for x in _lines(caplog) if x["route"] == route]):
        assert time.monotonic() < deadline, f"no access line for {route}"
        time.sleep(0.05)
    return found[0]


@pytest.mark.parametrize("stream", [False, True])
def test_redacted_content_log(folder, caplog, stream):
    app = build_app([ModelSpec("tiny", str(folder))], ServerOptions(log_content="redacted"))
    with caplog.at_level(logging.INFO, logger="lmforge.serve.access"), running(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, seed=1,
                                      stream=stream)
        text = "".join(c.choices[0].text for c in r) if stream else r.choices[0].text
        httpx.get(url + "/health")
        line = _wait_for_line(caplog, "/v1/completions")
    content = line["content"]
    assert content["prompts"] == ["联系人：[PERSON]，电话[PHONE]，邮箱 [EMAIL]"]
    assert len(content["outputs"]) == 1 and isinstance(content["outputs"][0], str)
    if "[" not in text:  # random output rarely holds PII; if it does it is masked too
        assert content["outputs"] == [text]
    raw = "\n".join(r.getMessage() for r in caplog.records)
    assert "13800138000" not in raw and "bob.smith" not in raw and "王小明" not in raw


def test_content_is_not_logged_by_default(folder, caplog):
    app = build_app([ModelSpec("tiny", str(folder))], ServerOptions())
    with caplog.at_level(logging.INFO, logger="lmforge.serve.access"), running(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        client.completions.create(model="tiny", prompt=PROMPT, max_tokens=2)
    line = next(x for x in _lines(caplog) if x["route"] == "/v1/completions")
    assert "content" not in line and line["prompt_tokens"] > 0
    assert "13800138000" not in "\n".join(r.getMessage() for r in caplog.records)


def test_log_content_must_be_known():
    from lmforge.errors import ConfigError
    from lmforge.serve.app import make_access

    with pytest.raises(ConfigError, match="log_content must be one of off, redacted"):
        make_access(None, "full")
