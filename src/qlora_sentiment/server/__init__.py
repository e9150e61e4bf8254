"""The HTTP server, `qlora-sentiment serve`: the process (run.py), the connections it keeps (connections.py: caps
and accepting; http_connection.py: each connection, its request heads read in front of uvicorn's protocol;
uvicorn_sockets.py: how uvicorn's protocol reaches them; framing.py, floods.py), the ASGI middleware around the
app (middleware.py), the FastAPI app and its routes (app.py), the checks a request passes before its texts reach
the model (request_checks.py, schema.py) and the micro-batcher that runs them (batcher.py, pace.py)."""
