"""Serving a chat model: the request contract in use, the HTTP endpoint server and the MLflow pyfunc."""
