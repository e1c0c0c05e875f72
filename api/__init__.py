"""The HTTP API: starts, queries and describes workflows; never touches business tables beyond exports."""
