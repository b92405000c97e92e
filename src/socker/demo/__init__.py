"""The `socker demo` app: a live multiplayer page that shows the whole flow."""
