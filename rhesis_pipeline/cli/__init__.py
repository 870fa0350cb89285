"""Command-line interfaces: ``rhesis-pipeline`` (users) and ``rhesis-monitor`` (operators).

Thin layers over the library: a command parses options, calls one function and prints a
text view or, with ``--json``, one JSON object.

* :mod:`.pipeline`: the ``rhesis-pipeline`` group (``main``) and its commands;
  :mod:`.idle_notice` says why ``run --wait`` does not progress.
* :mod:`.monitor`: the ``rhesis-monitor`` group (``main``); its commands by kind in
  :mod:`.monitor_read`, :mod:`.monitor_repair` and :mod:`.monitor_serve`.
* ``text_*``: the text views, which return text and print nothing: :mod:`.text_runs`,
  :mod:`.text_status`, :mod:`.text_workers`, :mod:`.text_repairs`.
* :mod:`.common` (error handling and exit codes, ``--org``, ``--json`` output, the
  database announcement) and :mod:`.params` (option types: finite numbers in range,
  storable text).
"""
