"""The web dashboard: ``rhesis-monitor dashboard``.

Starlette serves pages rendered with Jinja2 from the package's templates and static
files (no CDN: everything ships in the wheel). Needs the ``dashboard`` extra (starlette,
jinja2, uvicorn). Where things are:

* :mod:`.app`: ``create_app``, the table of URLs and routes;
* :mod:`.state`: what the routes share (configuration, templates) and the worker threads
  that keep database work off the event loop;
* :mod:`.gate`: the access token, the organization of a request, the session cookie;
* :mod:`.pages` (HTML), :mod:`.api` (``/api/active-runs``, ``/metrics``),
  :mod:`.actions` (revoke, re-run), :mod:`.login`: the routes;
* :mod:`.data`: what the pages read (named queries and the monitor's functions);
* :mod:`.security`: the token check, CSRF tokens, the security headers;
* :mod:`.errors`: the error pages.
"""
