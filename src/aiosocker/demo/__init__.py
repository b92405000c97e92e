"""The `aiosocker demo` app: a live multiplayer page that shows the whole flow."""
