"""The API's routes, one ``APIRouter`` per concern; ``create_app`` includes them in this order:

- :mod:`.health`: ``/health`` (open) and ``/metrics`` (API key or metrics token, checked by the gate);
- :mod:`.reads`: the account, positions, orders, deal history and symbols (API key);
- :mod:`.trading`: placing, modifying, closing and cancelling (API key, idempotent);
- :mod:`.websocket`: ``/ws``, the live stream (API key).
"""
