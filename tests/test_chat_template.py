"""Chat templates render exactly as ``transformers``' ``apply_chat_template`` on several
real template styles and conversations, and load and save where ``transformers`` does."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.models import WordLevel
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import render_jinja_template

from lmforge.chat import DEFAULT_TEMPLATE, ChatTemplate, load_chat_template, save_chat_template
from lmforge.errors import ConfigError, DataError

# Llama 2: the system prompt folded into the first user turn, alternation enforced.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)
# Zephyr: written over several lines, so trim_blocks and lstrip_blocks decide the text.
ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""
# Tools as JSON, a namespace, break, and a trimmed assistant turn in a generation block.
TOOLS = """{%- set ns = namespace(found_system=false, n=0) -%}
{%- for message in messages -%}
  {%- if message.role == 'system' -%}{%- set ns.found_system = true -%}{%- endif -%}
{%- endfor -%}
{%- if tools is not none -%}
<tools>{{ tools | tojson }}</tools>
{% endif -%}
{%- if not ns.found_system -%}<sys>You are helpful.</sys>
{% endif -%}
{%- for message in messages -%}
  {%- if message.role == 'stop' -%}{%- break -%}{%- endif -%}
  {%- set ns.n = ns.n + 1 -%}
  {%- if message.role == 'assistant' -%}
<a>{% generation %}{{ message.content | trim }}{{ eos_token }}{% endgeneration %}</a>
  {%- else -%}
<{{ message.role }} n="{{ ns.n }}">{{ message.content }}</{{ message.role }}>
  {%- endif %}

{% endfor -%}
{%- if add_generation_prompt -%}<a>{%- endif -%}"""

TEMPLATES = {"chatml": DEFAULT_TEMPLATE, "llama2": LLAMA2, "zephyr": ZEPHYR, "tools": TOOLS}

CONVERSATIONS = {
    "one turn": [{"role": "user", "content": "Where was Anna born?"}],
    "system and two turns": [
        {"role": "system", "content": "Answer from the world's facts."},
        {"role": "user", "content": "Where was Anna born?"},
        {"role": "assistant", "content": "Anna was born in Lyon. "},
        {"role": "user", "content": "  And where does she live?"}],
    "chinese": [
        {"role": "user", "content": "安娜出生在哪里?"},
        {"role": "assistant", "content": "安娜出生在里昂。"},
        {"role": "user", "content": "她住在哪里?"}],
}
TOOL_SPECS = [{"type": "function", "function": {"name": "lookup", "description": "查找事实",
                                                "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def hf_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"])}
    return PreTrainedTokenizerFast(tokenizer_object=HFTokenizer(WordLevel(vocab, "<unk>")),
                                   bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _ours(template: str, tok, messages, **kw) -> str:
    return ChatTemplate(template).render(messages, **tok.special_tokens_map, **kw).text


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("conv", sorted(CONVERSATIONS))
@pytest.mark.parametrize("gen", [False, True])
def test_renders_as_transformers(hf_tokenizer, name, conv, gen):
    template, messages = TEMPLATES[name], CONVERSATIONS[conv]
    kw = {"tools": TOOL_SPECS} if name == "tools" else {}
    want = hf_tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                            add_generation_prompt=gen, **kw)
    assert _ours(template, hf_tokenizer, messages, add_generation_prompt=gen, **kw) == want


@pytest.mark.parametrize("name", ["chatml", "llama2", "tools"])
def test_continue_final_message_as_transformers(hf_tokenizer, name):
    # the last message is the assistant's, with a trailing space some templates strip
    messages = [*CONVERSATIONS["system and two turns"][:3]]
    want = hf_tokenizer.apply_chat_template(messages, chat_template=TEMPLATES[name],
                                            tokenize=False, continue_final_message=True)
    got = _ours(TEMPLATES[name], hf_tokenizer, messages, continue_final_message=True)
    assert got == want
    assert got.rstrip().endswith("Anna was born in Lyon.")


@pytest.mark.parametrize("name", ["chatml", "tools"])
def test_generation_spans_as_transformers(hf_tokenizer, name):
    messages = CONVERSATIONS["system and two turns"]
    kw = {"tools": TOOL_SPECS} if name == "tools" else {}
    (text,), (want,) = render_jinja_template(
        conversations=[messages], chat_template=TEMPLATES[name],
        return_assistant_tokens_mask=True, **kw, **hf_tokenizer.special_tokens_map)
    out = ChatTemplate(TEMPLATES[name]).render(messages, spans=True, **kw,
                                               **hf_tokenizer.special_tokens_map)
    assert out.text == text
    assert [tuple(s) for s in want] == list(out.spans)
    assert [out.text[a:b] for a, b in out.spans] == [
        "Anna was born in Lyon. <|im_end|>" if name == "chatml" else "Anna was born in Lyon.</s>"]


def test_a_template_that_refuses_names_its_source_and_message(hf_tokenizer):
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(DataError, match=r"^llama2\.jinja: the chat template failed: "
                                        r"Conversation roles must alternate"):
        ChatTemplate(LLAMA2, "llama2.jinja").render(bad, bos_token="<s>", eos_token="</s>")
    with pytest.raises(ConfigError, match=r"^x\.jinja: chat template line 2: "):
        ChatTemplate("{{ messages }}\n{% if %}", "x.jinja")
    with pytest.raises(DataError, match="failed"):  # the sandbox refuses internals
        ChatTemplate("{{ messages.__class__.__mro__ }}").render([])


def test_namespace_refuses_private_names():
    with pytest.raises(DataError, match="cannot set the namespace attribute '_x'"):
        ChatTemplate("{% set ns = namespace(_x=1) %}").render([])


def test_load_and_save_where_transformers_does(tmp_path, hf_tokenizer):
    # current transformers writes chat_template.jinja; lmforge reads it back
    hf_tokenizer.chat_template = ZEPHYR
    hf_tokenizer.save_pretrained(tmp_path / "hf")
    assert load_chat_template(tmp_path / "hf").template == ZEPHYR
    # lmforge writes what transformers reads, and drops the field that could disagree
    cfg = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    cfg["chat_template"] = LLAMA2
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps(cfg))
    save_chat_template(tmp_path / "hf", DEFAULT_TEMPLATE)
    assert "chat_template" not in json.loads(
        (tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert AutoTokenizer.from_pretrained(tmp_path / "hf").chat_template == DEFAULT_TEMPLATE


def test_template_files_are_read_with_one_line_errors(tmp_path):
    from lmforge.chat.template import read_chat_template

    (tmp_path / "ok.jinja").write_text(ZEPHYR, encoding="utf-8")
    assert read_chat_template(tmp_path / "ok.jinja").template == ZEPHYR
    (tmp_path / "latin.jinja").write_bytes("{{ 'café' }}".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.jinja is not UTF-8 text \(byte 7\)"):
        read_chat_template(tmp_path / "latin.jinja")
    with pytest.raises(ConfigError, match="none.jinja does not exist"):
        read_chat_template(tmp_path / "none.jinja")


def test_older_tokenizer_config_fields(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": LLAMA2}))
    assert load_chat_template(tmp_path).template == LLAMA2
    named = [{"name": "default", "template": ZEPHYR}, {"name": "tool_use", "template": TOOLS}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": named}))
    assert load_chat_template(tmp_path).template == ZEPHYR
    assert load_chat_template(tmp_path, "tool_use").template == TOOLS
    with pytest.raises(ConfigError, match="no template named 'rag'; it has default, tool_use"):
        load_chat_template(tmp_path, "rag")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({}))
    assert load_chat_template(tmp_path) is None
