"""The web dashboard: ``rhesis-monitor dashboard``.

Starlette serves pages rendered with Jinja2 from the package's templates and static
files (no CDN: everything ships in the wheel). :mod:`.app` has the routes, :mod:`.data`
the reads (named queries and the monitor's functions), :mod:`.security` the access
token and CSRF tokens. Needs the ``dashboard`` extra (starlette, jinja2, uvicorn).
"""
