"""The MCP server: memagent's memory as tools for MCP clients, another front door onto the same use cases.

Nothing here imports the `mcp` package at import time of memagent; `memagent mcp` loads it on demand.
"""
