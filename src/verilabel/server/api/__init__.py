"""The API's routers, one per resource; ``create_app`` mounts them under ``/api/v1``."""
