"""Model providers: embedders and chat models behind Protocols, over one OpenAI-compatible client."""
