"""The API service: REST + WebSocket over the pipeline's stores and topics, and the dashboard.

``create_app(settings)`` (:mod:`streams.api.app`) builds the FastAPI application; ``stockpulse api``
(:func:`streams.api.server.api_command`) serves it with uvicorn.
"""
