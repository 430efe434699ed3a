"""A tiny MCP server speaking stdio, used by the interop tests.

Its one tool, ``lookup_capital``, is deterministic so a test can predict the
exact text that the SDK sends back to the twin as a ``function.result``.
Run it directly (``python mcp_server.py``); the SDK's ``MCPClientSTDIO``
spawns it that way.
"""

from mcp.server.fastmcp import FastMCP

CAPITALS = {
    "france": "Paris",
    "germany": "Berlin",
    "italy": "Rome",
    "japan": "Tokyo",
    "spain": "Madrid",
}

server = FastMCP("agentcap-interop", log_level="WARNING")


def capital_answer(country: str) -> str:
    """The exact string ``lookup_capital`` returns for ``country``."""
    capital = CAPITALS.get(country.strip().lower())
    if capital is None:
        return f"capital-of-{country}: unknown"
    return f"capital-of-{country}: {capital}"


@server.tool()
def lookup_capital(country: str) -> str:
    """Return the capital city of a country.

    Args:
        country: Name of the country, in English.
    """
    return capital_answer(country)


if __name__ == "__main__":
    server.run("stdio")
