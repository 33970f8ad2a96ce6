"""The web dashboard at `/dashboard`: server-rendered pages, a small JS module for the live run graph.

`routes.router` is mounted by the app. Pages and `/dashboard/api/...` share one session check
(`session.py`); read models live in `data.py`, the template drawing in `layout.py`.
"""
