"""Transport adapters: each turns one socket library into socker connections."""
