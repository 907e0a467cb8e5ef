"""Serving a finished run over the OpenAI chat-completions API (transformers' server) and exporting it."""
