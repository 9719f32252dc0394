"""Chat: conversations in the OpenAI messages shape and the chat templates that render
them into a model's prompt, exactly as Hugging Face ``transformers`` does."""

from .messages import (
    ROLES,
    check_messages,
    check_prompt,
    read_chat_jsonl,
    text_of,
    write_chat_jsonl,
)
from .template import (
    DEFAULT_TEMPLATE,
    ChatTemplate,
    Rendered,
    load_chat_template,
    save_chat_template,
)

__all__ = ["ChatTemplate", "DEFAULT_TEMPLATE", "ROLES", "Rendered", "check_messages",
           "check_prompt", "load_chat_template", "read_chat_jsonl", "save_chat_template",
           "text_of", "write_chat_jsonl"]
