"""The HTTP gateway: a Falcon ASGI application served by uvicorn."""
