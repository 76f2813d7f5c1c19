"""The HTTP API and the review app, served by verilabel itself (FastAPI + uvicorn): ``create_app(settings, store)``.

Every route under ``/api/v1`` needs a signed-in principal (a user's token as ``Authorization: Bearer``, or the
session cookie a browser gets at sign-in), viewers read, editors change, admins manage users; the app's static
assets ship in this package.
"""
