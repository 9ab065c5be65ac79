"""HTTP adapter: FastAPI app, auth, the SSE endpoint, REST routes and the dashboard."""
