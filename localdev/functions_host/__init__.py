"""Local Azure Functions dev host: runs a v2 `function_app.py` against Azurite.

See docs/functions-dev-host.md.
"""
