"""Helpers shared by the API, feed and scenario tests: test task functions, a real uvicorn
server on a free port, SSE and WebSocket readers, and a worker in another process."""
