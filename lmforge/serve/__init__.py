"""The HTTP server: an OpenAI-compatible API over lmforge models (FastAPI + uvicorn), with
API keys and roles (:mod:`.keys`), per-key rate limits (:mod:`.ratelimit`) and an
append-only audit log (:mod:`.audit`), all kept in one SQLite file."""
