"""The AI service: language models, embeddings, documents, decisions and patterns as
workflow steps (see ``docs/ai.md``).

Nothing here is imported when Plait starts: the LLM client (:mod:`plait.ai.llm`) needs
only httpx, and the offline model's heavy libraries (torch, sentence-transformers,
numpy) are imported inside the functions that use them.
"""
